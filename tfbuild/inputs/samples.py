"""Model inputs that look like real data: for parity checks, calibration and benchmarks.

Each input the frozen graph records carries a value `range` [lo, hi] (inclusive
for integers): the user's `freeze.input_ranges`, else what the freeze stage
inferred (token ids: the embedding's vocabulary), else a default by kind. A
sample set is {input name: array}, N samples each; a rank-0 input (a scalar
such as a temperature, which has no batch dimension) holds N values, one per run.
No TensorFlow here: planning imports this.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Mapping, Sequence

import numpy as np

PARITY_SAMPLES = 8   # every parity check runs at least this many samples

Samples = Dict[str, np.ndarray]


def default_range(dtype: str, shape) -> list:
    """0/1 for integer and bool inputs (masks; token ids get their vocabulary from the
    graph), raw pixels 0..255 for images, 0..1 for other floats."""
    if dtype == "bool" or np.issubdtype(np.dtype(dtype), np.integer):
        return [0, 1]
    return [0.0, 255.0] if shape is not None and len(shape) == 4 else [0.0, 1.0]


def is_scalar(spec: Mapping) -> bool:
    return spec["shape"] == []


def draw(inputs: Sequence[Mapping], n: int, seed: int = 0) -> Samples:
    """n seeded samples per input within its range. Sample k is the same for every n > k."""
    out = {}
    for i, spec in enumerate(inputs):
        rng = np.random.default_rng([seed, i])
        lo, hi = spec.get("range") or default_range(spec["dtype"], spec["shape"])
        size = (n, *(spec["shape"] or [])[1:])
        dtype = np.dtype(spec["dtype"])
        if dtype.kind in "biu":
            values = rng.integers(int(lo), int(hi) + 1, size=size)
        else:
            values = rng.uniform(float(lo), float(hi), size=size)
        out[spec["name"]] = values.astype(dtype)
    return out


def count(samples: Samples) -> int:
    return min((len(v) for v in samples.values()), default=0)


def take(samples: Samples, start: int, stop: int) -> Samples:
    return {k: v[start:stop] for k, v in samples.items()}


def batches(samples: Samples, inputs: Sequence[Mapping], batch: int) -> Iterator[Samples]:
    """Feeds of `batch` samples each (the last one filled by cycling); a scalar input
    takes the value of its batch's first sample."""
    n = count(samples)
    for start in range(0, n, batch):
        idx = [(start + k) % n for k in range(batch)]
        yield {s["name"]: np.asarray(samples[s["name"]][idx[0]] if is_scalar(s) else samples[s["name"]][idx])
               for s in inputs}


def rounded_up(n: int, batch: int) -> int:
    """The smallest multiple of `batch` that is at least n: whole batches only."""
    return -(-n // batch) * batch


def one_batch(inputs: Sequence[Mapping], batch: int, seed: int = 0) -> Samples:
    """One feed for a benchmark or a single run."""
    return next(batches(draw(inputs, batch, seed), inputs, batch))


def per_sample_diff(expected: List[np.ndarray], got: List[np.ndarray], batch: int) -> np.ndarray:
    """Max |expected - got| of each of a run's `batch` samples over all outputs; an output
    without a batch dimension counts for every sample. NaN counts as infinite."""
    from ..errors import ParityError
    if len(expected) != len(got):
        raise ParityError(f"got {len(got)} outputs to compare with {len(expected)}: the models "
                          "must have the same outputs")
    worst = np.zeros(batch)
    for i, (x, y) in enumerate(zip(expected, got)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            raise ParityError(f"output {i} has shape {list(x.shape)} in one model and "
                              f"{list(y.shape)} in the other: the conversion changed its shape")
        if not x.size:
            continue
        diff = np.nan_to_num(np.abs(x - y), nan=np.inf)
        if x.ndim >= 1 and x.shape[0] == batch:
            worst = np.maximum(worst, diff.reshape(batch, -1).max(axis=1))
        else:
            worst = np.maximum(worst, diff.max())
    return worst
