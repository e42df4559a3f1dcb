"""What the deployment stages (trt, tflite) share: their input graph,
calibration data and parity inputs."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ..engine.spec import Artifact
from ..errors import TfbuildError

if TYPE_CHECKING:
    import numpy as np


def calibration_input(calibration) -> Dict[str, List[Path]]:
    """`files` of a stage with a calibration section."""
    if not calibration.path:
        return {}
    from ..calibration import calibration_files
    return {"calibration": calibration_files(calibration.path)}


def frozen(freeze: Artifact) -> Path:
    return freeze.path / freeze.metadata["graph"]


def graph_io(freeze: Artifact):
    meta = freeze.metadata
    return meta["inputs"], [o["name"] for o in meta["outputs"]]


def calibration(freeze: Artifact, section: str, calibration, needed: bool, log) -> Optional[np.ndarray]:
    """The section's calibration data (None when not needed and not given)."""
    if not (calibration.path or calibration.random or needed):
        return None
    from ..calibration import load_calibration
    inputs, _ = graph_io(freeze)
    try:
        return load_calibration(dataclasses.asdict(calibration), inputs[0]["shape"], inputs[0]["dtype"],
                                warn=log.warn)
    except TfbuildError as e:  # name the section the key lives in
        e.args = (str(e).replace("calibration.", f"{section}.calibration."),)
        raise


def parity_feeds(inputs: List[dict], batch: int, data: Optional[np.ndarray]) -> List[np.ndarray]:
    """Calibration samples when there are enough (INT8 ranges fit them), else seeded noise."""
    import numpy as np

    from ..tf.measure import seeded_batch
    feeds = []
    for i, spec_ in enumerate(inputs):
        if i == 0 and data is not None and len(data) >= batch:
            feeds.append(np.asarray(data[:batch], dtype=spec_["dtype"]))
        else:
            feeds.append(seeded_batch(spec_["shape"][1:], batch, seed=i).astype(spec_["dtype"]))
    return feeds
