"""The `tfbuild` command: a thin @hydra.main around `engine.build.build_target`, and the
dispatch of the words that are not builds (`cli.commands.COMMANDS`).

Exit codes: 0 ok, 1 a stage failed, 2 the request is wrong. Hydra reports its
own config errors (unknown key, bad type) with exit 1 and several lines; those
happen before our task runs, so `main` turns them into one line and exit 2.
"""
from __future__ import annotations

import io
import os
import re
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

# Before anything imports TensorFlow: its C++ INFO/WARNING lines are noise here.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hydra  # noqa: E402
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..config import Config, validate
from ..engine.build import build_target
from ..engine.store import write_json
from ..engine.verify import verify
from ..errors import ConfigError, TfbuildError
from ..stages import REGISTRY
from . import sweep
from .commands import COMMANDS, usage
from .config_errors import hydra_message, one_line, unknown_key
from .options import RUN_KEYS, options
from .report import Reporter
from .targets import TargetsSource, check_name, data_dir

ConfigStore.instance().store(name="tfbuild_schema", node=Config)
# Data that ships with tfbuild (demo calibration sets): ${tfbuild.data:NAME}.
OmegaConf.register_new_resolver("tfbuild.data", lambda name: str(data_dir("targets") / "data" / name),
                                replace=True)
Plugins.instance().register(TargetsSource)

_state = {"task_started": False}


def to_config(dcfg: DictConfig) -> Config:
    try:
        _known_keys(dcfg, Config)
        cfg = OmegaConf.to_object(dcfg)
    except OmegaConfBaseException as e:
        raise ConfigError(one_line(str(e))) from None
    return validate(cfg)


def _known_keys(node: DictConfig, schema: type, prefix: str = "") -> None:
    """Reject keys the schema lacks: Hydra lets `+key=...` add them to typed sections."""
    import dataclasses
    fields = {f.name for f in dataclasses.fields(schema)}
    for key in node.keys():
        full = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(unknown_key(full, schema.__name__))
        child = node._get_node(key)
        if child._is_none() or child._is_missing() or child._is_interpolation():
            continue
        for i, item in enumerate(child if OmegaConf.is_list(child) else [child]):
            kind = OmegaConf.get_type(item) if OmegaConf.is_dict(item) else None
            if kind is not None and dataclasses.is_dataclass(kind):
                where = f"{full}[{i}]." if OmegaConf.is_list(child) else f"{full}."
                _known_keys(item, kind, where)


def run_job(dcfg: DictConfig, reporter: Reporter) -> int:
    """Build (or plan, or verify) one target; returns the exit code."""
    return _run_job(dcfg, reporter)[0]


def objective(report: dict, code: int) -> float:
    """A job's value for a sweeper that minimizes (Optuna): the final artifact's median
    latency in ms; inf for a job that failed (a missed accuracy goal fails it) or was
    not measured (bench.enabled=false, dry_run, verify)."""
    median = (report.get("benchmark") or {}).get("median_ms")
    return float(median) if code == 0 and report.get("ok") and median is not None else float("inf")


def _run_job(dcfg: DictConfig, reporter: Reporter) -> tuple:
    """run_job's exit code and the job's report."""
    hc = HydraConfig.get()
    target = hc.runtime.choices.get("target")
    multirun = hc.mode == RunMode.MULTIRUN
    task = OmegaConf.to_container(hc.overrides.task, resolve=False)  # as typed: ${...} unresolved
    job_overrides = [o for o in task if not o.lstrip("+~").startswith(RUN_KEYS)
                     and not o.startswith("target=")]
    lock_key = f"{target}[{','.join(sorted(job_overrides))}]" if multirun and job_overrides else target
    report: dict = {"target": target, "ok": False, "artifact": None, "stages": []}
    code = 2
    try:
        cfg = to_config(dcfg)
        reporter.verbose = cfg.verbose
        if cfg.verify:
            report = verify(cfg, REGISTRY, options(cfg, reporter), target, reporter, lock_key).to_json()
        else:
            link_dir = Path(hc.runtime.output_dir) if multirun else None
            report = build_target(cfg, REGISTRY, options(cfg, reporter), target, reporter,
                                  lock_key=lock_key, link_dir=link_dir).to_json()
        if multirun:  # one line per job; the sweep ends with one table
            built = ",".join(s["name"] for s in report["stages"] if s["status"] == "built")
            reporter.info(f"job {hc.job.num} ({' '.join(job_overrides)}): "
                          f"{'ok' if report['ok'] else 'FAILED'}, built: {built or 'nothing'}")
        elif not cfg.dry_run:
            reporter.summary(report)
        code = 0 if report["ok"] else 1
    except TfbuildError as e:
        reporter.error(str(e))
        report["error"], code = str(e), e.exit_code
    _write_report(dcfg, report)
    if multirun:
        sweep.save_job(Path(hc.runtime.output_dir), dcfg, job_overrides, report, code)
    return code, report


def _write_report(dcfg: DictConfig, report: dict) -> None:
    try:
        path = dcfg.get("report_file")
        if path:
            write_json(Path(path), report)
    except (OSError, OmegaConfBaseException):
        pass  # the report_file key itself is what is wrong: already said


@hydra.main(version_base="1.3", config_path=str(data_dir("conf")), config_name="config")
def _task(dcfg: DictConfig) -> float:
    _state["task_started"] = True
    _restore_stderr()
    code, report = _run_job(dcfg, Reporter())
    if code and HydraConfig.get().mode != RunMode.MULTIRUN:
        raise SystemExit(code)  # a BaseException: Hydra lets it through
    # The job's objective (hydra/sweeper=optuna minimizes it); the exit code stays
    # the sweep's (sweep.exit_code), whatever the value.
    return objective(report, code)


def main(argv: Optional[List[str]] = None) -> int:
    """Run tfbuild on `argv` (default: the command line); returns the exit code."""
    if argv is None:
        return _main()
    saved, sys.argv = sys.argv, [sys.argv[0], *argv]  # Hydra reads sys.argv
    try:
        return _main()
    finally:
        sys.argv = saved


def _main() -> int:
    reporter = Reporter()
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C stops a build even where the parent ignored SIGINT (a script's background
        # job, a test runner): Python installs no handler for an inherited SIG_IGN.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    args = sys.argv[1:] = dropped_sections(sys.argv[1:])
    if os.getcwd() not in sys.path:  # model._target_ builders live in the project, as with python -m
        sys.path.insert(0, os.getcwd())
    try:
        command = COMMANDS.get(args[0]) if args else None
        if command is not None:
            return command.run(args[1:], reporter)
        if "--help" in args or "-h" in args:
            reporter.console.print(usage(), markup=False, soft_wrap=True)
        for name in _target_names(args):
            check_name(name)
        if "-m" in args or "--multirun" in args:
            sweep.check_jobs(args)
    except TfbuildError as e:
        reporter.error(str(e))
        return e.exit_code
    _state["task_started"] = False
    captured = _capture_stderr()
    try:
        _task()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        _restore_stderr()
        # CPython 3.11 marks an interrupt that lands inside a nested eval() (TensorFlow's
        # import has some) as unhandled and then exits by SIGINT instead of our 130;
        # the next eval() resets that mark.
        eval("None")
        reporter.error("interrupted: the stage that was running published nothing")
        return 130
    finally:
        text = _restore_stderr()
    if code and not _state["task_started"]:  # the task may have run in other processes (launchers)
        stopped = sweep.stopped(text or captured.getvalue(), reporter)
        if stopped is not None:
            return stopped
        reporter.error(hydra_message(text or captured.getvalue()))
        return 2
    if text:
        sys.stderr.write(text)
    return code or sweep.exit_code()


def console_main() -> None:
    sys.exit(main())


def dropped_sections(args: List[str]) -> List[str]:
    """`tflite=null` and `~tflite` drop a stage: Hydra reads both as config-group choices
    (conf/tflite/...), so they become one `drop=[...]` key."""
    from ..config import SECTIONS
    drop = [a.lstrip("~").split("=")[0] for a in args
            if re.fullmatch(rf"~({'|'.join(SECTIONS)})|({'|'.join(SECTIONS)})=(null|~)", a)]
    kept = [a for a in args if a.lstrip("~").split("=")[0] not in drop]
    return [*kept, f"drop=[{','.join(drop)}]"] if drop else args


def _target_names(args: List[str]) -> List[str]:
    names: List[str] = []
    for arg in args:
        if arg.startswith("target="):
            value = arg.split("=", 1)[1]
            value = re.sub(r"^(choice|range)\((.*)\)$", r"\2", value)
            names += [v.strip() for v in value.split(",") if v.strip()]
    return names


# Hydra prints config errors to stderr before our task runs; hold them until we know.
_real_stderr: List = []


def _capture_stderr() -> io.StringIO:
    buf = io.StringIO()
    _real_stderr.append(sys.stderr)
    sys.stderr = buf
    return buf


def _restore_stderr() -> str:
    if not _real_stderr:
        return ""
    buf, sys.stderr = sys.stderr, _real_stderr.pop()
    return buf.getvalue() if isinstance(buf, io.StringIO) else ""
