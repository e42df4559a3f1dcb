"""Runs a target: resolve, build what is stale, publish, record, report."""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional

from . import lockfile
from .config import STAGES, Config
from .digests import StatCache
from .errors import ConfigError, TfbuildError, UserError, first_line
from .graph import make_graph
from .report import Reporter, write_json
from .resolver import Decision, resolve
from .stages import StageContext, load
from .store import MEASUREMENT, Store


def parse_force(force, names: List[str]) -> List[str]:
    if force is True:
        return list(names)
    if force in (False, None):
        return []
    items = [force] if isinstance(force, str) else list(force)
    unknown = [s for s in items if s not in STAGES]
    if unknown:
        raise ConfigError(f"force names unknown stage {unknown[0]!r}: use force=true or "
                          f"force=[{','.join(names)}] (stages of this target)")
    return [s for s in items if s in names]


def plan(cfg: Config, lock_key: str, target: str, cache: StatCache) -> List[Decision]:
    stages = make_graph(cfg)
    for stage in stages:
        check = getattr(load(stage.name), "check", None)
        if check:
            check(cfg)
    force = parse_force(cfg.force, [s.name for s in stages])
    previous = lockfile.read(Path(cfg.lock_file))
    entry = previous.get(lock_key) or previous.get(target) or {}
    return resolve(stages, Store(Path(cfg.build_dir)), cache, entry.get("stages"), force)


def build_target(cfg: Config, target: str, reporter: Reporter, *, lock_key: Optional[str] = None,
                 link_dir: Optional[Path] = None, write_lock: bool = True) -> dict:
    """Build `target`; return the report (interface.md). Raises UserError on bad requests."""
    lock_key = lock_key or target
    store = Store(Path(cfg.build_dir))
    cache = StatCache(store.meta_dir / "state.json")
    decisions = plan(cfg, lock_key, target, cache)
    if cfg.dry_run:
        reporter.plan(target, decisions)
        return _report(target, decisions, store, ok=True, link_dir=None)
    for d in decisions:  # fail before spending time upstream
        preflight = getattr(load(d.name), "preflight", None)
        if d.stale and preflight:
            preflight(cfg)
    ok = True
    for d in decisions:
        if not ok:
            d.status, d.reasons = "skipped", ["not reached: an earlier stage failed"]
            continue
        try:
            _run_stage(cfg, d, decisions, store, cache, reporter)
        except UserError:
            raise
        except TfbuildError as e:
            d.status, d.reasons, ok = "failed", [str(e)], False
        except Exception as e:  # a bug or a TF error we did not anticipate: keep the trace
            d.status, ok = "failed", False
            d.reasons = [f"{type(e).__name__}: {first_line(e)}"]
            reporter.err.print(traceback.format_exc(), markup=False)
    cache.save()
    link_dir = link_dir or Path(cfg.build_dir) / target
    if ok:
        _bench(cfg, decisions[-1], store, reporter)
        if write_lock:
            with store.lock("lockfile"):
                lockfile.update(Path(cfg.lock_file), lock_key, _lock_entry(decisions))
        _link(store, decisions, link_dir)
    return _report(target, decisions, store, ok, link_dir if ok else None)


def _run_stage(cfg: Config, d: Decision, decisions: List[Decision], store: Store,
               cache: StatCache, reporter: Reporter) -> None:
    if not d.stale:
        d.status = "fresh"
        d.outputs = store.manifest(d.name, d.fingerprint)["outputs"]
        return
    with store.lock(d.fingerprint[:24]):
        # A parallel job may have built the same artifact while we waited.
        if not d.forced and store.damage(d.name, d.fingerprint, cache) is None:
            d.status, d.reasons = "fresh", ["built meanwhile by a parallel job"]
            d.outputs = store.manifest(d.name, d.fingerprint)["outputs"]
            return
        scratch = store.scratch(d.name)
        try:
            upstream = {u.name: u for u in decisions if u.name in d.stage.deps}
            ctx = StageContext(
                cfg=cfg, out=scratch, reporter=reporter, files=d.stage.files,
                inputs={n: store.path(n, u.fingerprint) for n, u in upstream.items()},
                metadata={n: store.manifest(n, u.fingerprint)["metadata"] for n, u in upstream.items()},
            )
            start = time.perf_counter()
            try:
                with reporter.running(d.name):
                    metadata = load(d.name).build(ctx)
            finally:  # a failed stage reports its time too
                d.seconds = time.perf_counter() - start
            manifest = store.publish(d.name, d.fingerprint, scratch, metadata, cache)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    d.status, d.outputs = "built", manifest["outputs"]


def _bench(cfg: Config, d: Decision, store: Store, reporter: Reporter) -> None:
    """Measure the final artifact once (a measurement is not a build input)."""
    bench = getattr(load(d.name), "bench", None)
    path = store.path(d.name, d.fingerprint) / MEASUREMENT
    if not (cfg.bench.enabled and bench) or (path.exists() and not cfg.bench.again):
        return
    meta = store.manifest(d.name, d.fingerprint)["metadata"]
    with reporter.running("benchmark", f"of {d.name}"):
        write_json(path, bench(cfg, store.path(d.name, d.fingerprint), meta))


def _artifact(root: Path, d: Decision) -> Path:
    name = getattr(load(d.name), "ARTIFACT", None)
    return root / name if name else root


def _link(store: Store, decisions: List[Decision], link_dir: Path) -> None:
    for d in decisions:
        store.link(link_dir / d.name, store.path(d.name, d.fingerprint))


def _lock_entry(decisions: List[Decision]) -> dict:
    return {"stages": {d.name: {**d.record, "outputs": d.outputs} for d in decisions}}


def _size(path: Path) -> Optional[int]:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None


def _report(target: str, decisions: List[Decision], store: Store, ok: bool,
            link_dir: Optional[Path]) -> dict:
    stages = []
    for d in decisions:
        artifact = _artifact(store.path(d.name, d.fingerprint), d)
        # A failed or skipped stage published nothing: point at nothing.
        exists = d.status in ("built", "fresh", "planned")
        stage = {"name": d.name, "status": d.status, "reason": d.reason, "fingerprint": d.fingerprint,
                 "artifact": str(artifact.resolve()) if exists else None,
                 "seconds": round(d.seconds, 3), "size": _size(artifact) if exists else None}
        if link_dir:  # the stable, readable path shown to people
            stage["link"] = str(_artifact(link_dir / d.name, d))
        stages.append(stage)
    final = stages[-1]["artifact"] if ok and stages else None
    report = {"target": target, "ok": ok, "artifact": final, "stages": stages}
    if ok and decisions:
        bench = store.path(decisions[-1].name, decisions[-1].fingerprint) / MEASUREMENT
        meta = store.manifest(decisions[-1].name, decisions[-1].fingerprint)
        report["metadata"] = meta["metadata"] if meta else None
        report["benchmark"] = _read_json(bench)
    return report


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def verify(cfg: Config, target: str, reporter: Reporter, lock_key: Optional[str] = None) -> dict:
    """Rebuild from scratch elsewhere; a stage fails where its outputs differ from the lock."""
    lock_key = lock_key or target
    entry = lockfile.read(Path(cfg.lock_file)).get(lock_key)
    if not entry:
        raise UserError(f"{cfg.lock_file} has no entry for {lock_key!r}: build it once "
                        "(tfbuild target=...) and commit the lock file, then verify")
    with tempfile.TemporaryDirectory(prefix="tfbuild-verify-") as scratch:
        fresh = replace(cfg, build_dir=scratch, force=False, verify=False,
                        lock_file=str(Path(scratch) / "verify.lock"),
                        bench=replace(cfg.bench, enabled=False))
        report = build_target(fresh, target, reporter, write_lock=False,
                              link_dir=Path(scratch) / "links")
        for s in report["stages"]:
            recorded = entry["stages"].get(s["name"], {})
            outputs = _outputs_of(scratch, s)
            if recorded.get("fingerprint") != s["fingerprint"]:
                s["status"], report["ok"] = "failed", False
                s["reason"] = "inputs or settings differ from the lock file: rebuild and commit it"
            elif s["status"] == "built" and outputs != recorded.get("outputs"):
                diff = sorted(k for k in set(outputs) | set(recorded.get("outputs", {}))
                              if outputs.get(k) != recorded.get("outputs", {}).get(k))
                s["status"], s["reason"] = "failed", f"differs from the lock file: {', '.join(diff)}"
                report["ok"] = False
            elif s["status"] == "built":
                s["reason"] = "rebuilt from scratch: identical to the lock file"
            s["artifact"] = s["link"] = None  # the scratch directory is gone
        report["artifact"] = None
    return report


def _outputs_of(scratch: str, stage: dict) -> Dict[str, str]:
    manifest = Store(Path(scratch)).manifest(stage["name"], stage["fingerprint"])
    return manifest["outputs"] if manifest else {}
