"""What the deployment stages (onnx, trt, tflite) share: their input graph,
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


def check_calibration(cfg, section: str) -> None:
    """The section's calibration data, checked before any stage runs; its sample
    shape too where the target's placeholder stage names the input."""
    from ..calibration import check_source
    p = cfg.placeholder
    check_source(getattr(cfg, section).calibration, section,
                 p.inputs[0].shape if p is not None and p.inputs else None)


def frozen(freeze: Artifact) -> Path:
    return freeze.path / freeze.metadata["graph"]


def graph_io(freeze: Artifact):
    meta = freeze.metadata
    return meta["inputs"], [o["name"] for o in meta["outputs"]]


def calibration(freeze: Artifact, section: str, calibration, needed: bool, log) -> Optional[np.ndarray]:
    """The section's calibration data (None when not needed and not given)."""
    if not (calibration.path or calibration.random or needed):
        return None
    from ..calibration import in_section, load_calibration
    inputs, _ = graph_io(freeze)
    try:
        # Parity uses given data too; only a stage that quantizes with it needs the warning.
        return load_calibration(dataclasses.asdict(calibration), inputs[0]["shape"], inputs[0]["dtype"],
                                warn=log.warn if needed else lambda _: None)
    except TfbuildError as e:  # name the section the key lives in
        e.args = (in_section(str(e), section),)
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


def parity(freeze: Artifact, feeds: List["np.ndarray"], run_converted, label: str, section: str,
           given: Optional[float], default: float) -> dict:
    """Run the frozen graph and the converted model on the same feeds; refuse (ParityError)
    a difference beyond the tolerance; return what the metadata records."""
    from ..errors import ParityError
    from ..tf.measure import max_abs_diff, run_frozen

    graph_inputs, outputs = graph_io(freeze)
    expected = run_frozen(frozen(freeze), {i["name"]: f for i, f in zip(graph_inputs, feeds)}, outputs)
    diff = max_abs_diff(expected, run_converted(feeds))
    bound = tolerance(given, default, expected)
    if diff > bound:
        raise ParityError(f"{label} differs from the frozen graph by {diff:.3g} (> {section}.tolerance={bound:.3g})")
    return {"parity_max_abs_diff": diff, "parity_tolerance": bound}


def tolerance(given: Optional[float], default: float, expected: List["np.ndarray"]) -> float:
    """The parity bound: as given, else the precision's default, scaled by the outputs'
    magnitude where it exceeds 1 (logits are unbounded; probabilities are not)."""
    if given is not None:
        return given
    import numpy as np
    scale = max([1.0] + [float(np.max(np.abs(e))) for e in expected if np.size(e)])
    return default * scale
