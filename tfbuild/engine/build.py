"""Runs a target: plan, build what is stale, publish, record, report.

Like ninja's Builder: state (store entry, lock entry) is written only after a
step succeeded, and a failed step leaves nothing that looks finished.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ConfigError, LockOutOfDate, StageFailed, TfbuildError, UserError, first_line
from . import lockfile, provenance
from .fingerprint import StatCache
from .graph import make_graph
from .resolver import Decision, differences, resolve
from .spec import Artifact, Registry
from .store import BUILD_LOCK, MEASUREMENT, PROVENANCE, SIGNATURE, Store, write_json


@dataclass(frozen=True)
class Options:
    """How to run, as opposed to what to build: none of it is part of any identity."""
    build_dir: Path
    lock_file: Path
    force: Any = False          # True, or a list of stage names
    dry_run: bool = False
    locked: bool = False        # fail (exit 1) before building when the lock file is out of date
    bench: Any = None           # the bench settings handed to each stage's `bench`; None: measure nothing
    bench_again: bool = False
    remote: Any = None          # a cache.Remote: fetch stale stages, push built ones
    signer: Any = None          # signs what is built (`key`, `sign(dir)`), checks (`public_key`, `problem(dir)`)


def parse_force(force, known: List[str], names: List[str]) -> List[str]:
    if force is True:
        return list(names)
    if force in (False, None):
        return []
    items = [force] if isinstance(force, str) else list(force)
    unknown = [s for s in items if s not in known]
    if unknown:
        raise ConfigError(f"force names unknown stage {unknown[0]!r}: use force=true or "
                          f"force=[{','.join(names)}] (stages of this target)")
    return [s for s in items if s in names]


def plan(cfg: Any, registry: Registry, opts: Options, lock_key: str, target: str,
         cache: StatCache) -> List[Decision]:
    nodes = make_graph(cfg, registry)
    force = parse_force(opts.force, registry.names(), [n.name for n in nodes])
    previous = lockfile.read(opts.lock_file)
    entry = previous.get(lock_key) or previous.get(target) or {}
    return resolve(nodes, Store(opts.build_dir), cache, entry.get("stages"), force)


def build_target(cfg: Any, registry: Registry, opts: Options, target: str, reporter, *,
                 lock_key: Optional[str] = None, link_dir: Optional[Path] = None,
                 write_lock: bool = True) -> dict:
    """Build `target`; return the report (interface.md). Raises UserError on bad requests."""
    return _build(cfg, registry, opts, target, reporter, lock_key or target, link_dir, write_lock)[0]


def _build(cfg, registry, opts, target, reporter, lock_key, link_dir, write_lock
           ) -> Tuple[dict, List[Decision]]:
    store = Store(opts.build_dir)
    cache = StatCache(store.meta_dir / "state.json")
    decisions = plan(cfg, registry, opts, lock_key, target, cache)
    if opts.locked:
        _check_locked(decisions, opts.lock_file, lock_key)
    if opts.dry_run:
        for d in decisions:
            d.status = "planned" if d.stale else "fresh"
        reporter.plan(target, decisions)
        cache.save()
        return _report(target, decisions, store, ok=True, link_dir=None), decisions
    for d in decisions:  # fail before spending time upstream
        if d.stale and d.node.spec.preflight:
            with reporter.running(d.name, "(pre-flight)"):
                d.node.spec.preflight(d.node.settings)
    if opts.remote and any(d.stale for d in decisions):
        opts.remote.open()  # a missing backend library is a bad request: say so now
    link_dir = link_dir or opts.build_dir / target
    with store.lock(BUILD_LOCK, shared=True):  # gc waits for running builds
        try:
            ok = _run_all(decisions, store, cache, reporter, opts)
        finally:  # what was hashed stays known, even when a bad request stops the build
            cache.save()
        if ok:
            if write_lock:
                lockfile.update(opts.lock_file, lock_key, _lock_entry(decisions))
            _link(store, decisions, link_dir)
            _bench(opts, decisions, store, reporter)
    return _report(target, decisions, store, ok, link_dir if ok else None), decisions


def _check_locked(decisions: List[Decision], lock_file: Path, key: str) -> None:
    """Like cargo's --locked: CI proves the committed lock file is current, for free."""
    stale = [d for d in decisions if d.locked]
    if stale:
        d = stale[0]
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        raise LockOutOfDate(f"{lock_file} is out of date for {key}: {d.name}: {'; '.join(d.locked[:2])}"
                            f"{more}: build it (without locked=true) and commit the lock file")


def _run_all(decisions: List[Decision], store: Store, cache: StatCache, reporter, opts: Options) -> bool:
    """Run the stages in order; after a failure the rest are skipped. Returns ok."""
    ok = True
    for d in decisions:
        if not ok:
            d.status, d.reasons = "skipped", ["not reached: an earlier stage failed"]
            continue
        try:
            _run_stage(d, decisions, store, cache, reporter, opts)
        except UserError:
            raise
        except TfbuildError as e:
            d.status, d.reasons, ok = "failed", [str(e)], False
        except Exception as e:  # a bug or a TF error we did not anticipate: keep the trace
            d.status, ok = "failed", False
            d.reasons = [f"{type(e).__name__}: {first_line(e)}"]
            reporter.err.print(traceback.format_exc(), markup=False)
    return ok


def _inputs(d: Decision, decisions: List[Decision], store: Store) -> Dict[str, Artifact]:
    ups = {u.name: u for u in decisions if u.name in d.node.deps}
    return {n: Artifact(store.path(n, u.fingerprint), store.manifest(n, u.fingerprint)["metadata"])
            for n, u in ups.items()}


def _run_stage(d: Decision, decisions: List[Decision], store: Store, cache: StatCache,
               reporter, opts: Options) -> None:
    remote = opts.remote
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
            if not d.forced and remote and _fetch(d, store, cache, scratch, remote, reporter):
                return
            seal = opts.signer.sign if opts.signer and opts.signer.key else None
            manifest = _build_stage(d, decisions, store, cache, scratch, reporter, seal)
            d.status, d.outputs = "built", manifest["outputs"]
            if remote:
                root = store.path(d.name, d.fingerprint)
                with reporter.running(d.name, "(pushing to the cache)"):
                    remote.push(d.name, d.fingerprint, root, {**manifest, **_attestations(root)})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if remote:
                remote.release(d.name, d.fingerprint)  # a failed build lets the waiters try


def _build_stage(d: Decision, decisions: List[Decision], store: Store, cache: StatCache,
                 scratch: Path, reporter, seal) -> dict:
    inputs = _inputs(d, decisions, store)
    start = time.time()
    try:
        with reporter.running(d.name):
            metadata = d.node.spec.run(inputs, d.node.settings, scratch, reporter)
    finally:  # a failed stage reports its time too
        d.seconds = time.time() - start
    if not isinstance(metadata, dict):  # downstream stages read it: never publish without
        raise StageFailed(f"stage {d.name} returned {type(metadata).__name__}, not its "
                          "metadata (a dict): nothing was published")
    return store.publish(d.name, d.fingerprint, scratch, metadata, cache,
                         lambda outputs: provenance.statement(d.name, d.record, outputs, start), seal=seal)


def _attestations(root: Path) -> dict:
    """What travels with a cache entry besides the manifest: statement and signature."""
    sig = root / SIGNATURE
    return {"provenance": _json(root / PROVENANCE), "signature": sig.read_text() if sig.is_file() else None}


def _fetch(d: Decision, store: Store, cache: StatCache, scratch: Path, remote, reporter) -> bool:
    """Publish the cache's copy of a stale stage, if it has a whole, verified one."""
    start = time.perf_counter()
    with reporter.running(d.name, "(looking in the cache)"):
        entry = remote.fetch(d.name, d.fingerprint, scratch)
    if entry is None:  # a refused entry may have left files: the stage builds into an empty dir
        shutil.rmtree(scratch)
        scratch.mkdir()
        return False
    stmt, sig = entry.get("provenance"), entry.get("signature")
    store.publish(d.name, d.fingerprint, scratch, entry["metadata"], cache,
                  (lambda _: stmt) if stmt else None, outputs=entry["outputs"],
                  seal=(lambda built: (built / SIGNATURE).write_text(sig)) if sig else None)
    figures = remote.fetch_measurement(d.name, d.fingerprint)
    if figures:
        write_json(store.path(d.name, d.fingerprint) / MEASUREMENT, figures)
    d.status, d.reasons, d.outputs = "fresh", ["fetched from cache"], entry["outputs"]
    d.seconds = time.perf_counter() - start
    return True


def _bench(opts: Options, decisions: List[Decision], store: Store, reporter) -> None:
    """Measure the final artifact once (a measurement is not a build input).

    The stage's upstream artifacts come along, so a bench can measure its
    reference (e.g. the frozen graph) in the same run."""
    d = decisions[-1]
    bench = d.node.spec.bench
    root = store.path(d.name, d.fingerprint)
    if opts.bench is None or bench is None or ((root / MEASUREMENT).exists() and not opts.bench_again):
        return
    artifact = Artifact(root, store.manifest(d.name, d.fingerprint)["metadata"])
    try:
        with reporter.running("benchmark", f"of {d.name}"):
            figures = bench(artifact, opts.bench, _inputs(d, decisions, store))
    except Exception as e:  # the artifact is built and recorded: a failed measurement only warns
        reporter.warn(f"benchmark of {d.name} failed, the artifact is fine: {first_line(e)}")
        return
    write_json(root / MEASUREMENT, figures)
    if opts.remote:
        opts.remote.push_measurement(d.name, d.fingerprint, figures)


def _artifact(root: Path, d: Decision) -> Path:
    name = d.node.spec.artifact
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
        last = decisions[-1]
        meta = store.manifest(last.name, last.fingerprint)
        report["metadata"] = meta["metadata"] if meta else None
        report["benchmark"] = _json(store.path(last.name, last.fingerprint) / MEASUREMENT)
    return report


def _json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _provenance_problems(d: Decision, rebuilt: Store, local: Store) -> List[str]:
    """The rebuilt artifact's statement must hold, and so must the one beside this
    machine's copy of the same artifact (the one a CI job would publish)."""
    stmt = rebuilt.manifest(d.name, d.fingerprint, PROVENANCE)
    problems = [f"provenance: {p}" for p in provenance.check(stmt, d.name, d.record, d.outputs)]
    mine = local.manifest(d.name, d.fingerprint, PROVENANCE)
    if mine is not None:  # absent: built by tfbuild < 0.3
        problems += [f"provenance: {local.path(d.name, d.fingerprint) / PROVENANCE}: {p}"
                     for p in provenance.check(mine, d.name, d.record, d.outputs)]
    return problems


def _signature_problems(d: Decision, local: Store, signer) -> List[str]:
    """With a public key: this machine's copy of the artifact must carry a valid signature."""
    if not (signer and signer.public_key):
        return []
    root = local.path(d.name, d.fingerprint)
    if local.manifest(d.name, d.fingerprint) is None:
        return [f"signature: no copy in {local.root} to check: build or fetch it first"]
    problem = signer.problem(root)
    return [f"signature: {problem}"] if problem else []


def verify(cfg: Any, registry: Registry, opts: Options, target: str, reporter,
           lock_key: Optional[str] = None) -> dict:
    """Rebuild from scratch elsewhere; a stage fails where it differs from the lock file."""
    lock_key = lock_key or target
    entry = lockfile.read(opts.lock_file).get(lock_key)
    if not entry:
        raise UserError(f"{opts.lock_file} has no entry for {lock_key!r}: build it once "
                        "(tfbuild target=...) and commit the lock file, then verify")
    with tempfile.TemporaryDirectory(prefix="tfbuild-verify-") as scratch:
        fresh = replace(opts, build_dir=Path(scratch), lock_file=Path(scratch) / "verify.lock",
                        force=False, dry_run=False, bench=None, remote=None)  # a proof builds
        report, decisions = _build(cfg, registry, fresh, target, reporter, lock_key,
                                   Path(scratch) / "links", write_lock=False)
        recorded_stages = entry.get("stages", {})
        for s, d in zip(report["stages"], decisions):
            recorded = recorded_stages.get(d.name, {})
            if s["status"] in ("failed", "skipped"):
                pass  # its own reason says why
            elif not recorded:
                s["status"], s["reason"] = "failed", "not in the lock file: rebuild and commit it"
            elif recorded.get("fingerprint") != d.fingerprint:
                why = "; ".join(differences(recorded, d.record)) or "its fingerprint"
                s["status"], s["reason"] = "failed", f"differs from the lock file in {why}: rebuild and commit it"
            elif s["status"] == "built" and d.outputs != recorded.get("outputs"):
                old = recorded.get("outputs", {})
                diff = sorted(k for k in set(d.outputs) | set(old) if d.outputs.get(k) != old.get(k))
                s["status"], s["reason"] = "failed", f"output differs from the lock file: {', '.join(diff)}"
            elif s["status"] == "built":
                problems = _provenance_problems(d, Store(Path(scratch)), Store(opts.build_dir))
                problems += _signature_problems(d, Store(opts.build_dir), opts.signer)
                s["reason"] = "rebuilt from scratch: identical to the lock file"
                if problems:
                    s["status"], s["reason"] = "failed", problems[0]
            s["artifact"] = s["link"] = None  # the scratch directory is gone
        for name in sorted(set(recorded_stages) - {d.name for d in decisions}):
            report["stages"].append({"name": name, "status": "failed", "fingerprint": None, "artifact": None,
                                     "reason": "in the lock file but not in this target: rebuild and commit it",
                                     "seconds": 0.0, "size": None})
        report["ok"] = report["ok"] and all(s["status"] != "failed" for s in report["stages"])
        report["artifact"] = None
    return report
