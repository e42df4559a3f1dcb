"""Runs a target: plan, build what is stale, publish, record, report.

Like ninja's Builder: state (store entry, lock entry) is written only after a
step succeeded, and a failed step leaves nothing that looks finished. The plan
(plan.py) is fixed before the loop starts; the loop turns each decision into a
`StageResult` (results.py) and talks to the shared cache through one handle
(cache_handle.py) and to people through `Output` (output.py).
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..errors import DiskFull, StageFailed, TfbuildError, UserError, first_line
from . import lockfile, provenance
from .cache_handle import shared_cache
from .fingerprint import StatCache
from .output import Output
from .plan import Options, check_locked, plan
from .reasons import Reason
from .resolver import Decision
from .results import BuildResult, StageResult, finish, link, lock_entry, outcome
from .spec import Artifact, Registry
from .store import BUILD_LOCK, EVALUATION, MEASUREMENT, Store, read_json, write_json


@dataclass(frozen=True)
class _Run:
    """What every stage of one build shares."""
    store: Store
    stat: StatCache
    output: Output
    cache: Any                                  # a cache_handle: NO_CACHE or RemoteCache
    seal: Optional[Callable[[Path], None]]      # signs a built artifact before it is published
    plan: Dict[str, Decision]
    evaluation: Any                             # Options.evaluation


def build_target(cfg: Any, registry: Registry, opts: Options, target: str, output: Output, *,
                 lock_key: Optional[str] = None, link_dir: Optional[Path] = None,
                 write_lock: bool = True) -> BuildResult:
    """Build `target` (`to_json()` of the result is the report). Raises UserError on bad requests."""
    lock_key = lock_key or target
    store = Store(opts.build_dir)
    stat = StatCache(store.meta_dir / "state.json")
    decisions = plan(cfg, registry, opts, lock_key, target, stat)
    if opts.locked:
        check_locked(decisions, opts.lock_file, lock_key)
    if opts.dry_run:
        output.plan(target, decisions)
        stat.save()
        planned = [outcome(d, "planned" if d.stale else "fresh", d.reasons) for d in decisions]
        return finish(target, decisions, planned, store, ok=True, link_dir=None)
    _preflight(decisions, output)
    cache = shared_cache(opts.remote, output)
    if any(d.stale for d in decisions):
        cache.open()  # a missing backend library is a bad request: say so now
    seal = opts.signer.sign if opts.signer and opts.signer.key else None
    run = _Run(store, stat, output, cache, seal, {d.name: d for d in decisions}, opts.evaluation)
    link_dir = link_dir or opts.build_dir / target
    made_dir = not opts.build_dir.exists()
    try:
        with store.lock(BUILD_LOCK, shared=True):  # gc waits for running builds
            try:
                results = _run_all(decisions, run)
            finally:  # what was hashed stays known, even when a bad request stops the build
                stat.save()
            ok = all(r.status != "failed" for r in results)
            if ok:
                if write_lock:
                    lockfile.update(opts.lock_file, lock_key, lock_entry(results))
                link(store, decisions, link_dir)
                _bench(opts, decisions[-1], run)
    except UserError:
        if made_dir:
            _unmake(store)
        raise
    return finish(target, decisions, results, store, ok, link_dir if ok else None)


def _unmake(store: Store) -> None:
    """A build dir this run made, stopped by a bad request (e.g. a truncated checkpoint)
    before anything was published: removed, as when a request is refused before any
    stage, unless another build is using it."""
    with store.lock(BUILD_LOCK, wait=False) as alone:
        if alone and not store.entries():
            shutil.rmtree(store.root, ignore_errors=True)


def _preflight(decisions: List[Decision], output: Output) -> None:
    """Fail before spending time upstream: can this machine build every stale stage?"""
    for d in decisions:
        if d.stale and d.node.spec.preflight:
            with output.running(d.name, "(pre-flight)"):
                d.node.spec.preflight(d.node.settings)


def _run_all(decisions: List[Decision], run: _Run) -> List[StageResult]:
    """Run the stages in order; after a failure the rest are skipped."""
    results: List[StageResult] = []
    for d in decisions:
        if results and results[-1].status in ("failed", "skipped"):
            results.append(outcome(d, "skipped", [Reason("not-reached")]))
        else:
            results.append(_attempt(d, run))
    return results


class _Stopwatch:
    """Times a stage's run, also when it raises."""
    started = seconds = 0.0

    def __enter__(self) -> "_Stopwatch":
        self.started = time.time()
        return self

    def __exit__(self, *_exc) -> None:
        self.seconds = time.time() - self.started


def _attempt(d: Decision, run: _Run) -> StageResult:
    """One stage; a failure becomes its result, a bad request (UserError) stops the build."""
    clock = _Stopwatch()
    try:
        return _run_stage(d, run, clock)
    except UserError:
        raise
    except TfbuildError as e:
        return outcome(d, "failed", [Reason("failed", str(e))], seconds=clock.seconds)
    except Exception as e:  # a bug or a TF error we did not anticipate: keep the trace
        result = outcome(d, "failed", [Reason("crashed", type(e).__name__, new=first_line(e))],
                         seconds=clock.seconds)
        run.output.crashed(traceback.format_exc())
        return result


def _fresh(d: Decision, run: _Run, reasons) -> StageResult:
    return outcome(d, "fresh", reasons, run.store.manifest(d.name, d.fingerprint)["outputs"])


def _run_stage(d: Decision, run: _Run, clock: _Stopwatch) -> StageResult:
    if not d.stale:
        return _judged(d, run, _fresh(d, run, d.reasons))
    store = run.store
    with store.lock(d.fingerprint[:24]):
        # A parallel job may have built the same artifact while we waited.
        if not d.forced and store.damage(d.name, d.fingerprint, run.stat) is None:
            return _judged(d, run, _fresh(d, run, [Reason("meanwhile")]))
        scratch = store.scratch(d.name)
        try:
            return _fetch_or_build(d, run, scratch, clock)
        except Exception as e:
            if _out_of_space(e):
                raise DiskFull(_disk_full(e, scratch)) from None
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def _out_of_space(e: BaseException) -> bool:
    """ENOSPC/EDQUOT, as Python raises it or as TensorFlow's writers word it."""
    import errno
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    return "No space left on device" in str(e) or "Disk quota exceeded" in str(e)


def _disk_full(e: BaseException, scratch: Path) -> str:
    """One line: where, how much the stage had written, how much is free there."""
    where = Path(getattr(e, "filename", None) or scratch)
    written = sum(f.stat().st_size for f in scratch.rglob("*") if f.is_file() and not f.is_symlink())
    free = shutil.disk_usage(scratch if scratch.exists() else scratch.parent).free
    return (f"no space left on the disk writing {where}: the stage had written {written / 2**20:.1f} MiB "
            f"and needed more, {free / 2**20:.1f} MiB free there: free some space, or set build_dir= "
            f"to a larger disk")


def _fetch_or_build(d: Decision, run: _Run, scratch: Path, clock: _Stopwatch) -> StageResult:
    start = time.perf_counter()
    with run.cache.lookup(d.name, d.fingerprint, scratch, pull=not d.forced) as found:
        if found.hit:
            outputs = found.publish(run.store, run.stat)
            return _judged(d, run, outcome(d, "fresh", [Reason("fetched")], outputs, time.perf_counter() - start))
        manifest = _build_stage(d, run, scratch, clock)
        result = _judged(d, run, outcome(d, "built", d.reasons, manifest["outputs"], clock.seconds))
        if result.status == "built":   # only what holds its accuracy goal is shared
            found.store(run.store.path(d.name, d.fingerprint), manifest)
        return result


def _judged(d: Decision, run: _Run, result: StageResult) -> StageResult:
    """The stage's accuracy on the user's data, when the target evaluates it. Kept beside
    the artifact by the evaluation's identity, so changing only `evaluate` re-evaluates and
    rebuilds nothing; a miss fails the stage and unpublishes what this run built."""
    evaluation, hook = run.evaluation, d.node.spec.evaluate
    if evaluation is None or hook is None:
        return result
    root = run.store.path(d.name, d.fingerprint)
    record = read_json(root / EVALUATION) or {}
    if record.pop("identity", None) != evaluation.identity:
        artifact = Artifact(root, run.store.manifest(d.name, d.fingerprint)["metadata"])
        with run.output.running(d.name, "(evaluating)"):
            record = hook(artifact, evaluation, _inputs(d, run))
        write_json(root / EVALUATION, {**record, "identity": evaluation.identity})
    ok, message = evaluation.judge(record)
    if ok:
        return replace(result, evaluation=record)
    if result.status == "built":
        shutil.rmtree(root, ignore_errors=True)
    return replace(result, status="failed", reasons=(Reason("failed", message),), evaluation=record)


def _inputs(d: Decision, run: _Run) -> Dict[str, Artifact]:
    """The published upstream artifacts, as the stage's `run` receives them."""
    store, fps = run.store, {n: run.plan[n].fingerprint for n in d.node.deps}
    return {n: Artifact(store.path(n, fp), store.manifest(n, fp)["metadata"]) for n, fp in fps.items()}


def _build_stage(d: Decision, run: _Run, scratch: Path, clock: _Stopwatch) -> dict:
    inputs = _inputs(d, run)
    with clock, run.output.running(d.name):  # a failed stage reports its time too
        metadata = d.node.spec.run(inputs, d.node.settings, scratch, run.output)
    if not isinstance(metadata, dict):  # downstream stages read it: never publish without
        raise StageFailed(f"stage {d.name} returned {type(metadata).__name__}, not its "
                          "metadata (a dict): nothing was published")
    return run.store.publish(d.name, d.fingerprint, scratch, metadata, run.stat,
                             lambda outputs: provenance.statement(d.name, d.record, outputs, clock.started),
                             seal=run.seal)


def _bench(opts: Options, d: Decision, run: _Run) -> None:
    """Measure the final artifact once (a measurement is not a build input).

    The stage's upstream artifacts come along, so a bench can measure its
    reference (e.g. the frozen graph) in the same run."""
    bench = d.node.spec.bench
    root = run.store.path(d.name, d.fingerprint)
    if opts.bench is None or bench is None or ((root / MEASUREMENT).exists() and not opts.bench_again):
        return
    artifact = Artifact(root, run.store.manifest(d.name, d.fingerprint)["metadata"])
    try:
        with run.output.running("benchmark", f"of {d.name}"):
            figures = bench(artifact, opts.bench, _inputs(d, run))
    except Exception as e:  # the artifact is built and recorded: a failed measurement only warns
        run.output.warn(f"benchmark of {d.name} failed, the artifact is fine: {first_line(e)}")
        return
    write_json(root / MEASUREMENT, figures)
    run.cache.push_measurement(d.name, d.fingerprint, figures)
