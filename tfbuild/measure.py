"""Latency measured until it settles, with its spread; the memory a runtime takes
(TensorFlow-free).

A single median of 20 runs moves by tens of percent on a shared machine. Here
each model is timed in windows of `runs` calls, the models of one comparison
(an artifact and its frozen graph) taking turns window by window, so a noisy
neighbour hits both. Measuring stops when the last SETTLE medians of every
model agree within `margin` of their middle one, or when `budget_s` is spent;
the figures come from those last windows and say whether they settled.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

SETTLE = 3   # windows whose medians must agree


@dataclass
class Timed:
    """A model ready to be timed: one call is one inference as a user makes it."""
    call: Callable[[], Any]
    batch: int
    info: dict                       # backend, threads, and what else the runtime says
    memory_mb: Optional[float]       # its session's peak memory, in a fresh process (tf/memory.py)


def batch_of(feeds) -> int:
    """The batch size of the first feed (1 where it is a scalar or there is none)."""
    feeds = list(feeds)
    return int(np.shape(feeds[0])[0]) if feeds and np.ndim(feeds[0]) else 1


@dataclass(frozen=True)
class Plan:
    warmup: int = 3            # untimed calls first (allocation, kernel choice)
    runs: int = 20             # timed calls per window
    windows: int = 10          # at most; at least SETTLE
    margin: float = 0.05       # the last SETTLE window medians within this share of their middle one
    budget_s: float = 60.0     # stop here even if not settled (then it says so)


@dataclass
class Series:
    """One model's timed calls (seconds), window by window."""
    windows: List[List[float]] = field(default_factory=list)

    def medians(self) -> List[float]:
        return [float(np.median(w)) for w in self.windows]


def settled(medians: List[float], margin: float) -> bool:
    last = medians[-SETTLE:]
    if len(last) < SETTLE:
        return False
    middle = float(np.median(last))
    return middle > 0 and (max(last) - min(last)) / middle <= margin


def interleaved(calls: Dict[str, Callable[[], object]], plan: Plan,
                clock: Callable[[], float] = time.perf_counter) -> Dict[str, Series]:
    """Time every call in turns, window by window, until all settle, `plan.windows` are
    done (at least SETTLE) or another round would overrun `plan.budget_s`."""
    if plan.runs < 1 or plan.warmup < 0 or plan.windows < 1:
        raise ValueError(f"need runs >= 1, warmup >= 0, windows >= 1; got {plan}")
    for call in calls.values():
        for _ in range(plan.warmup):
            call()
    series = {name: Series() for name in calls}
    names, start = list(calls), clock()
    for window in range(max(plan.windows, SETTLE)):
        began_round = clock()
        for name in (names if window % 2 == 0 else names[::-1]):   # neither always goes first
            times, call = [], calls[name]
            for _ in range(plan.runs):
                began = clock()
                call()
                times.append(clock() - began)
            series[name].windows.append(times)
        done = all(settled(s.medians(), plan.margin) for s in series.values())
        # another round like this one would overrun the budget: stop before it
        if done or window + 1 >= plan.windows or 2 * clock() - began_round - start > plan.budget_s:
            break
    return series


def figures(series: Series, batch: int, margin: float) -> dict:
    """What a benchmark records, from the last SETTLE windows (the settled ones, if any)."""
    times = np.array([t for w in series.windows[-SETTLE:] for t in w])
    median = float(np.median(times))
    return {
        "median_ms": median * 1e3,
        "p10_ms": float(np.percentile(times, 10)) * 1e3,
        "p90_ms": float(np.percentile(times, 90)) * 1e3,
        "cv": float(np.std(times) / np.mean(times)) if np.mean(times) > 0 else 0.0,
        "throughput_per_s": batch / median if median > 0 else None,
        "batch_size": batch,
        "runs": int(times.size),
        "windows": len(series.windows),
        "settled": settled(series.medians(), margin),
    }


def speedup(reference: Optional[dict], artifact: dict) -> Optional[float]:
    if not reference or not artifact.get("median_ms"):
        return None
    return reference["median_ms"] / artifact["median_ms"]


class PeakMemory:
    """The peak resident memory a block adds (MiB), on Linux: the kernel's high-water mark
    (VmHWM) is reset at `start` (/proc/self/clear_refs) and read at `stop`, less the
    resident memory at `start`. None elsewhere. Memory the process had freed before and
    the block reuses is not counted: a floor, not a ceiling."""

    mb: Optional[float] = None

    def start(self) -> "PeakMemory":
        self._start = _status("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self._start = None
        return self

    def stop(self) -> None:
        peak = _status("VmHWM")
        if self._start is not None and peak is not None:
            self.mb = max(0.0, (peak - self._start) / 1024)

    def __enter__(self) -> "PeakMemory":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _status(key: str) -> Optional[int]:
    """A /proc/self/status figure in KiB (None where there is none)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None
