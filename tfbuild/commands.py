"""The words that are not builds: `list`, `inspect`, `gc`, `--version`, and the usage
for `--help`. None goes through Hydra's command line; only `inspect` imports TensorFlow.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Dict, List

from .errors import ConfigError
from .report import Reporter, human_size

USAGE = """\
tfbuild: Make for TensorFlow deployment artifacts.

Usage:
  tfbuild [target=NAME] [KEY=VALUE ...]  build NAME and whatever before it is stale
  tfbuild -m target=NAME KEY=A,B ...     a sweep, ending in one comparison table
  tfbuild list                           the targets: ./targets/ first, then shipped
  tfbuild inspect target=NAME            the target's model: inputs, likely outputs, signatures
  tfbuild gc [dry_run=true]              delete what no lock entry and no link uses
  tfbuild --version                      tfbuild, TensorFlow, Hydra, TensorRT, ...

Run keys:    build_dir=build lock_file=tfbuild.lock report_file=PATH dry_run=true
             force=true|[STAGE,...] verify=true bench.enabled=false verbose=true
Target keys: checkpoint.path model placeholder freeze onnx trt tflite (docs/interface.md)

Examples:
  tfbuild target=densenet_tflite dry_run=true       # what is stale, and why
  tfbuild target=tiny_tflite tflite.precision=FP16  # rebuilds only tflite
  tfbuild -m target=tiny_tflite tflite.precision=FP32,FP16,INT8 tflite.batch_size=1,8

Hydra's own help follows.
"""

_TOOLS = ("tensorflow", "hydra-core", "omegaconf", "tensorrt", "onnxruntime", "tf2onnx")


def version() -> str:
    from . import __version__
    found = {"tfbuild": __version__}
    for name in _TOOLS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return " ".join(f"{k} {v}" for k, v in found.items())


def list_targets(reporter: Reporter) -> int:
    from rich.table import Table

    table = Table(title="targets (./targets first, then shipped)", title_justify="left")
    for col in ("target", "final stage", "description", "from"):
        table.add_column(col, overflow="fold")
    for row in describe():
        table.add_row(row["name"], row["final"], row["description"], row["where"], style=row.get("style"))
    reporter.console.print(table)
    return 0


def describe() -> List[dict]:
    """{name, final, description, where} per target; a broken target says why."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from .config import validate
    from .stages import REGISTRY
    from .targets import available, data_dir

    rows = []
    with initialize_config_dir(config_dir=str(data_dir("conf")), version_base="1.3"):
        for name in available():
            where = "./targets" if (Path.cwd() / "targets" / f"{name}.yaml").is_file() else "shipped"
            try:
                cfg = validate(OmegaConf.to_object(compose("config", overrides=[f"target={name}"])))
            except Exception as e:  # a broken target is listed, not fatal
                rows.append({"name": name, "final": "", "where": where, "style": "red",
                             "description": f"invalid: {str(e).strip().splitlines()[0]}"})
                continue
            final = [spec.name for spec in REGISTRY if spec.present(cfg)][-1:]
            rows.append({"name": name, "final": "".join(final), "description": cfg.description,
                         "where": where})
    return rows


def inspect(args: List[str], reporter: Reporter) -> int:
    """`tfbuild inspect target=NAME [KEY=VALUE ...]`: the target's model as it is on disk."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from rich.markup import escape

    from .targets import check_name, data_dir

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .cli import one_line

    name = next((a.split("=", 1)[1] for a in args if a.startswith("target=")), None)
    if name is None:
        raise ConfigError("inspect needs a target: tfbuild inspect target=NAME [KEY=VALUE ...]")
    check_name(name)
    overrides = [a for a in args if not a.startswith("target=")]
    try:
        with initialize_config_dir(config_dir=str(data_dir("conf")), version_base="1.3"):
            cfg = OmegaConf.to_object(compose("config", overrides=[f"target={name}", *overrides]))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(str(e))) from None
    path = cfg.checkpoint.path or _built_graph(cfg, name)
    if not path:
        raise ConfigError(f"target {name} names no checkpoint.path and its placeholder graph is not "
                          f"built yet: build it once (tfbuild target={name}), or give checkpoint.path")
    with reporter.running("inspect", path):
        from .tf.inspect import describe as look
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
    from .cli import options
    from .config import validate
    from .engine.plan import plan
    from .engine.fingerprint import StatCache
    from .engine.store import Store
    from .stages import REGISTRY

    cfg = validate(cfg)
    store = Store(Path(cfg.build_dir))
    for d in plan(cfg, REGISTRY, options(cfg), name, name, StatCache(store.meta_dir / "state.json")):
        prefix = store.path(d.name, d.fingerprint) / "model.ckpt"
        if d.name == "placeholder" and Path(f"{prefix}.index").is_file():
            return str(prefix)
    return None


def gc(args: List[str], reporter: Reporter) -> int:
    from .engine import gc as collector
    from .engine.store import Store

    opts = _keys(args, {"build_dir": "build", "lock_file": "tfbuild.lock", "dry_run": "false",
                        "keep_sweeps": "10"})
    dry_run = _bool("dry_run", opts["dry_run"])
    try:
        keep = int(opts["keep_sweeps"])
        if keep < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(f"keep_sweeps={opts['keep_sweeps']!r}: give a whole number >= 0") from None
    root = Path(opts["build_dir"])
    if not root.is_dir():
        reporter.info(f"nothing to collect: {root} does not exist")
        return 0
    garbage = collector.run(Store(root), Path(opts["lock_file"]), keep, dry_run)
    verb = "would free" if dry_run else "freed"
    for path in garbage.paths:
        reporter.info(f"{'would delete' if dry_run else 'deleted'} {path}")
    reporter.info(f"gc: {verb} {human_size(garbage.size)} in {len(garbage.paths)} paths")
    return 0


def _keys(args: List[str], defaults: Dict[str, str]) -> Dict[str, str]:
    out = dict(defaults)
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq or key not in defaults:
            raise ConfigError(f"gc takes {', '.join(f'{k}=' for k in defaults)}; got {arg!r}")
        out[key] = value
    return out


def _bool(key: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ConfigError(f"{key}={value!r}: use true or false")
    return value.lower() == "true"
