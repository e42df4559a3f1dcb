"""The build graph as plain data: which stages a target has and what each reads.

Made from a config and a `Registry`; it knows no stage by name. Every stage's
settings are built and checked here, before anything runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Tuple

from ..errors import ConfigError
from .spec import Registry, StageSpec, check_upstream


@dataclass(frozen=True)
class Node:
    """One stage of this target: its spec, settings, upstream stages and input files."""
    spec: StageSpec                       # with `upstream` and `artifact` as plain values
    settings: Any                         # exactly what `spec.run` receives
    deps: Tuple[str, ...] = ()            # upstream stages, in the order declared
    files: Dict[str, List[Path]] = field(default_factory=dict)  # external inputs by label

    @property
    def name(self) -> str:
        return self.spec.name


def make_graph(cfg: Any, registry: Registry) -> List[Node]:
    """The target's stages in build order, validated."""
    nodes: List[Node] = []
    present: set = set()
    for spec in registry:
        if not spec.present(cfg):
            continue
        upstream = _upstream(spec, cfg, registry.names())
        deps = tuple(_dep(spec, up, present) for up in upstream)
        deps = tuple(d for d in deps if d)
        settings = spec.settings(cfg, deps)
        if spec.check:
            spec.check(settings)
        files = spec.files(settings)
        if set(files) & set(deps):  # both live in the record's inputs
            raise ValueError(f"stage {spec.name}: input label {sorted(set(files) & set(deps))[0]!r} "
                             "is also an upstream stage's name")
        artifact = spec.artifact(settings) if callable(spec.artifact) else spec.artifact
        if upstream is not spec.upstream or artifact is not spec.artifact:
            spec = replace(spec, upstream=upstream, artifact=artifact)  # what this target's stage is
        nodes.append(Node(spec, settings, deps, files))
        present.add(spec.name)
    if not nodes:
        raise ConfigError(f"the target builds no stage: give it a section for one of "
                          f"{', '.join(registry.names())}")
    return nodes


def _upstream(spec: StageSpec, cfg: Any, order: List[str]) -> tuple:
    if not callable(spec.upstream):
        return spec.upstream
    upstream = tuple(spec.upstream(cfg))
    check_upstream(spec.name, upstream, order[:order.index(spec.name)])
    return upstream


def _dep(spec: StageSpec, up, present: set) -> str:
    if isinstance(up, str):
        if up not in present:
            raise ConfigError(f"stage {spec.name} needs the {up} stage, which this target does "
                              f"not have: add a {up} section to the target")
        return up
    return next((name for name in up if name in present), "")
