"""`tfbuild inspect target=NAME [KEY=VALUE ...]`: the target's model as it is on disk
(inputs, likely outputs, signatures), to help write its freeze section. The one
command that imports TensorFlow, inside `run`."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ...errors import ConfigError
from ..report import Reporter


def run(args: List[str], reporter: Reporter) -> int:
    from rich.markup import escape

    from ..targets import compose

    name = next((a.split("=", 1)[1] for a in args if a.startswith("target=")), None)
    if name is None:
        raise ConfigError("inspect needs a target: tfbuild inspect target=NAME [KEY=VALUE ...]")
    cfg = compose(name, [a for a in args if not a.startswith("target=")])
    path = cfg.checkpoint.path or _built_graph(cfg, name)
    if not path:
        raise ConfigError(f"target {name} names no checkpoint.path and its placeholder graph is not "
                          f"built yet: build it once (tfbuild target={name}), or give checkpoint.path")
    with reporter.running("inspect", path):
        from ...tf.inspect import describe as look
        info = look(path)
    reporter.info(f"[bold]{escape(path)}[/]: {info['format']}")
    for key in ("inputs", "outputs"):
        for spec in info.get(key, []):
            extra = " (has a default: bind it in freeze.constants)" if spec.get("default") else ""
            reporter.info(f"  {key[:-1]:6} {escape(spec['name'])}  {spec['dtype']} {spec['shape']}{extra}")
    if "likely_outputs" in info:
        shown = info["likely_outputs"]
        reporter.info(f"  likely outputs (for freeze.outputs): {escape(', '.join(shown[:12]) or '(none found)')}"
                      f"{' …' if len(shown) > 12 else ''}")
    for sig, io in info.get("signatures", {}).items():
        reporter.info(f"  signature {escape(sig)}: " + ", ".join(i["name"] for i in io["inputs"]) + " -> "
                      + ", ".join(o["name"] for o in io["outputs"]))
    v = info.get("variables")
    if v:
        reporter.info(f"  variables: {v['count']} ({v['elements']:,} values)")
    if info.get("random_ops"):
        reporter.info(f"  random ops: {escape(', '.join(info['random_ops'][:5]))}: bind what switches them "
                      "off (keep_prob, is_training) in freeze.constants")
    if info.get("note"):
        reporter.info(f"  note: {escape(info['note'])}")
    return 0


def _built_graph(cfg, name: str):
    """The placeholder graph this target's plan names, if the store has it (also after a
    failed freeze, when no build/<target> link was made)."""
    from ...config import validate
    from ...engine.fingerprint import StatCache
    from ...engine.plan import plan
    from ...engine.store import Store
    from ...stages import REGISTRY
    from ..options import options

    cfg = validate(cfg)
    store = Store(Path(cfg.build_dir))
    for d in plan(cfg, REGISTRY, options(cfg), name, name, StatCache(store.meta_dir / "state.json")):
        prefix = store.path(d.name, d.fingerprint) / "model.ckpt"
        if d.name == "placeholder" and Path(f"{prefix}.index").is_file():
            return str(prefix)
    return None

