"""Timing that knows when it is stable, and the memory a runtime takes: the logic on a
fake clock (no timings asserted), the figures end to end on the tiny models."""
from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest

from tfbuild.measure import SETTLE, PeakMemory, Plan, figures, interleaved, settled, speedup


class FakeClock:
    """A clock that moves only when a fake model runs: each call takes the next of its durations."""

    def __init__(self):
        self.now, self.calls = 0.0, []

    def __call__(self) -> float:
        return self.now

    def model(self, name: str, durations):
        durations = itertools.cycle(durations)

        def call():
            self.calls.append(name)
            self.now += next(durations)
        return call


def test_steady_models_settle_after_the_fewest_windows_and_take_turns():
    clock = FakeClock()
    calls = {"model": clock.model("model", [0.010]), "frozen": clock.model("frozen", [0.030])}
    series = interleaved(calls, Plan(warmup=2, runs=4, windows=10), clock)
    assert [len(s.windows) for s in series.values()] == [SETTLE, SETTLE]
    # warm-up, then window by window in turns, neither always first
    assert clock.calls[:4] == ["model", "model", "frozen", "frozen"]
    windows = [clock.calls[i] for i in range(4, len(clock.calls), 4)]
    assert windows == ["model", "frozen", "frozen", "model", "model", "frozen"]
    model, frozen = (figures(series[n], 8, 0.05) for n in ("model", "frozen"))
    assert model["median_ms"] == pytest.approx(10.0) and model["settled"] and model["windows"] == SETTLE
    assert model["runs"] == 4 * SETTLE and model["cv"] == pytest.approx(0.0, abs=1e-9)
    assert model["throughput_per_s"] == pytest.approx(800.0)
    assert speedup(frozen, model) == pytest.approx(3.0)


def test_a_model_that_keeps_moving_stops_at_the_window_limit_and_says_so():
    clock = FakeClock()
    # each window of 4 calls has a median 10% above or below the one before
    calls = {"model": clock.model("model", [0.010] * 4 + [0.011] * 4)}
    series = interleaved(calls, Plan(warmup=0, runs=4, windows=7, margin=0.05), clock)
    result = figures(series["model"], 1, 0.05)
    assert result["windows"] == 7 and result["settled"] is False
    assert result["p10_ms"] <= result["median_ms"] <= result["p90_ms"] and result["cv"] > 0


def test_the_budget_ends_a_measurement_that_has_not_settled():
    clock = FakeClock()
    calls = {"model": clock.model("model", [1.0] * 4 + [2.0] * 4)}   # 4 s then 8 s a window
    series = interleaved(calls, Plan(warmup=0, runs=4, windows=100, budget_s=30.0), clock)
    assert len(series["model"].windows) == 4      # 4 + 8 + 4 + 8 = 24 s; the 5th would pass 30 s
    assert figures(series["model"], 1, 0.05)["settled"] is False


def test_settled_needs_the_last_windows_within_the_margin():
    assert not settled([1.0, 1.0], 0.05)                      # too few windows
    assert settled([9.0, 1.00, 1.02, 0.99], 0.05)             # an early outlier does not count
    assert not settled([1.0, 1.0, 1.2], 0.05)
    with pytest.raises(ValueError):
        interleaved({"m": lambda: None}, Plan(runs=0))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from Linux's /proc")
def test_peak_memory_counts_what_a_block_holds_at_its_peak():
    with PeakMemory() as memory:
        block = np.ones(64 * 2**20 // 8)   # 64 MiB, touched
        del block
    assert 60 <= memory.mb <= 80


def test_a_real_benchmark_records_spread_settling_and_memory(project, capsys):
    import json

    from tfbuild.cli.main import main
    code = main(["target=tiny_onnx", "onnx.batch_size=null", "bench.runs=5", "bench.batches=[4]",
                 "report_file=r.json"])
    assert code == 0, capsys.readouterr()
    bench = json.loads((project / "r.json").read_text())["benchmark"]
    assert bench["p10_ms"] <= bench["median_ms"] <= bench["p90_ms"] and bench["cv"] >= 0
    assert SETTLE <= bench["windows"] <= 10 and isinstance(bench["settled"], bool)
    assert bench["runs"] == 5 * SETTLE and bench["batch_size"] == 1
    assert bench["memory_mb"] > 0 and bench["frozen"]["memory_mb"] > 0    # onnxruntime's session, TF's graph
    assert bench["speedup"] == pytest.approx(bench["frozen"]["median_ms"] / bench["median_ms"])
    (four,) = bench["batches"]
    assert four["batch_size"] == 4 and four["frozen"]["batch_size"] == 4 and four["speedup"] > 0
