"""`tfbuild inspect target=NAME [KEY=VALUE ...]`: the target's model as it is on disk
(inputs, likely outputs, signatures), to help write its freeze section; with
`quantization=true`, the layers that lose the most in INT8, for float_ops/float_nodes.
The one command that imports TensorFlow, inside `run`."""
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
    quantization = QUANTIZATION in args
    cfg = compose(name, [a for a in args if not a.startswith("target=") and a != QUANTIZATION])
    if quantization:
        return _quantization(cfg, name, reporter)
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


def _planned(cfg, name: str):
    """(store, the target's planned stages by name)."""
    from ...config import validate
    from ...engine.fingerprint import StatCache
    from ...engine.plan import plan
    from ...engine.store import Store
    from ...stages import REGISTRY
    from ..options import options

    cfg = validate(cfg)
    store = Store(Path(cfg.build_dir))
    planned = plan(cfg, REGISTRY, options(cfg), name, name, StatCache(store.meta_dir / "state.json"))
    return store, {d.name: d for d in planned}


def _built_graph(cfg, name: str):
    """The placeholder graph this target's plan names, if the store has it (also after a
    failed freeze, when no build/<target> link was made)."""
    store, planned = _planned(cfg, name)
    d = planned.get("placeholder")
    prefix = store.path(d.name, d.fingerprint) / "model.ckpt" if d else None
    return str(prefix) if prefix and Path(f"{prefix}.index").is_file() else None


def _quantization(cfg, name: str, reporter: Reporter) -> int:
    """Each INT8-capable stage's layers by the error they add, the worst first, measured
    on its calibration data against the target's built frozen graph."""
    from rich.markup import escape
    from rich.table import Table

    from ...engine.spec import Artifact
    store, planned = _planned(cfg, name)
    stages = [d for d in planned.values() if d.node.spec.quantization]
    if not stages:
        raise ConfigError(f"target {name} has no stage that quantizes to INT8: add one, e.g. "
                          f"+tflite.precision=INT8 +tflite.calibration.path=cal.npz")
    upstream = {}
    for d in planned.values():
        manifest = store.manifest(d.name, d.fingerprint)
        if manifest is not None:
            upstream[d.name] = Artifact(store.path(d.name, d.fingerprint), manifest["metadata"])
    if "freeze" not in upstream:
        raise ConfigError(f"the frozen graph of {name} is not built yet: build it once "
                          f"(tfbuild target={name}), then inspect it")
    for d in stages:
        with reporter.running(d.name, "INT8 layer errors"):
            layers = d.node.spec.quantization(d.node.settings, upstream, reporter)
        table = Table(title=f"{d.name}: the error each INT8 layer adds", title_justify="left")
        for column in ("#", "error", "op", "layer: its TensorFlow nodes"):
            table.add_column(column, overflow="fold", justify="right" if column in ("#", "error") else "left")
        for rank, layer in enumerate(layers[:SHOWN], 1):
            table.add_row(str(rank), f"{layer.error:.3g}", layer.op, escape("\n".join(layer.tf_nodes)))
        reporter.console.print(table)
        if len(layers) > SHOWN:
            reporter.info(f"  … and {len(layers) - SHOWN} layers adding less")
    reporter.info("error: RMS of a layer's INT8 output error over RMS of its float output (about 1: lost). "
                  f"Keep layers in float: {' or '.join(f'{KEYS[d.name]}=[NODE,...]' for d in stages)} "
                  "(any node of a layer names it), or =auto")
    return 0


QUANTIZATION = "quantization=true"
SHOWN = 10
KEYS = {"tflite": "tflite.float_ops", "onnx": "onnx.float_nodes"}

