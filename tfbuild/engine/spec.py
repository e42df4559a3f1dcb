"""What a stage declares once: the engine's only view of a stage.

A stage is a plain function `run(inputs, settings, out, log) -> metadata`
plus this declaration. Settings are a typed object built from the config; the
engine fingerprints exactly that object and hands exactly it to `run`, so what
a stage reads and what makes it stale cannot drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union


@dataclass(frozen=True)
class Artifact:
    """A published upstream artifact, as a stage sees it."""
    path: Path            # the artifact's directory in the store
    metadata: dict        # what the stage's `run` returned


def _none(_settings) -> dict:
    return {}


@dataclass(frozen=True)
class StageSpec:
    """A stage's declaration: how to get its settings, run it, and what it reads."""
    name: str
    # (cfg, deps present) -> the typed settings object that `run` receives.
    settings: Callable[[Any, Tuple[str, ...]], Any]
    # (inputs by upstream name, settings, out dir, logger) -> metadata.
    run: Callable[[Dict[str, Artifact], Any, Path, Any], dict]
    # Is the stage part of this target?
    present: Callable[[Any], bool]
    # Each entry: a stage that must be present, or a tuple of alternatives,
    # nearest first, of which the first present one is used (none: fine).
    # Or a function of the config giving those entries, for a stage whose inputs
    # depend on its settings (e.g. on which backend builds it).
    upstream: Union[Tuple[Union[str, Tuple[str, ...]], ...], Callable[[Any], tuple]] = ()
    # Main output file (None: the whole dir), or a function of the settings giving it.
    artifact: Union[None, str, Callable[[Any], Optional[str]]] = None
    files: Callable[[Any], Dict[str, List[Path]]] = _none  # external input files by label
    tools: Tuple[str, ...] = ()                          # distributions whose versions count
    environment: Callable[[Any], dict] = _none           # anything else of the machine that counts
    check: Optional[Callable[[Any], None]] = None        # cheap validation, no TensorFlow
    preflight: Optional[Callable[[Any], None]] = None    # can this machine build it at all?
    # (artifact, bench settings, upstream artifacts by name) -> figures
    bench: Optional[Callable[[Artifact, Any, Dict[str, Artifact]], dict]] = None
    # (artifact, evaluation, upstream artifacts by name) -> a record with `ok` and `message`:
    # the artifact's accuracy on the user's data; not ok fails the stage, nothing published.
    evaluate: Optional[Callable[[Artifact, Any, Dict[str, Artifact]], dict]] = None
    # (settings, upstream artifacts by name, logger) -> the INT8 model's layers, the worst
    # first (`tfbuild inspect target=NAME quantization=true`)
    quantization: Optional[Callable[[Any, Dict[str, Artifact], Any], list]] = None

    @property
    def module(self) -> str:
        """The implementing module: the root of the stage's code identity."""
        return self.run.__module__


def section(name: str) -> Callable[[Any], bool]:
    """`present` for a stage that is built when the config's section `name` is not null."""
    return lambda cfg: getattr(cfg, name, None) is not None


def check_upstream(name: str, upstream: tuple, earlier) -> None:
    """Every stage `upstream` names must be registered before stage `name`."""
    for up in upstream:
        for dep in (up,) if isinstance(up, str) else up:
            if dep not in earlier:
                raise ValueError(f"stage {name!r}: upstream {dep!r} must be registered first")


class Registry:
    """Stages in declaration order, which is also build order."""

    def __init__(self, specs: Tuple[StageSpec, ...] = ()):
        self._specs: Dict[str, StageSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: StageSpec) -> StageSpec:
        if spec.name in self._specs:
            raise ValueError(f"stage {spec.name!r} is registered twice")
        if not callable(spec.upstream):  # a function's entries are checked when a graph is made
            check_upstream(spec.name, spec.upstream, self._specs)
        self._specs[spec.name] = spec
        return spec

    def replace(self, spec: StageSpec) -> None:
        """Swap a registered stage's declaration (e.g. to wrap its run for measuring)."""
        if spec.name not in self._specs:
            raise KeyError(spec.name)
        self._specs[spec.name] = spec

    def __getitem__(self, name: str) -> StageSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[StageSpec]:
        return iter(self._specs.values())

    def names(self) -> List[str]:
        return list(self._specs)

