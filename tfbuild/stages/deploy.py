"""What the deployment stages (trt, tflite) share: their input graph,
calibration data and parity inputs."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import numpy as np

from ..errors import TfbuildError


def given(calibration) -> bool:
    return bool(calibration.path or calibration.random)


def frozen(ctx) -> Path:
    return ctx.inputs["freeze"] / "frozen.pb"


def graph_io(ctx):
    meta = ctx.metadata["freeze"]
    return meta["inputs"], [o["name"] for o in meta["outputs"]]


def calibration(ctx, section_name: str, needed: bool) -> Optional[np.ndarray]:
    """The section's calibration data (None when not needed and not given)."""
    section = getattr(ctx.cfg, section_name)
    if not given(section.calibration) and not needed:
        return None
    from ..calibration import load_calibration
    inputs, _ = graph_io(ctx)
    try:
        return load_calibration(dataclasses.asdict(section.calibration), inputs[0]["shape"], inputs[0]["dtype"],
                                warn=ctx.reporter.warn)
    except TfbuildError as e:  # name the section the key lives in
        e.args = (str(e).replace("calibration.", f"{section_name}.calibration."),)
        raise


def parity_feeds(inputs: List[dict], batch: int, data: Optional[np.ndarray]) -> List[np.ndarray]:
    """Calibration samples when there are enough (INT8 ranges fit them), else seeded noise."""
    from ..measure import seeded_batch
    feeds = []
    for i, spec_ in enumerate(inputs):
        if i == 0 and data is not None and len(data) >= batch:
            feeds.append(np.asarray(data[:batch], dtype=spec_["dtype"]))
        else:
            feeds.append(seeded_batch(spec_["shape"][1:], batch, seed=i).astype(spec_["dtype"]))
    return feeds
