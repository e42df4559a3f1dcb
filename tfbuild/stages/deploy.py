"""What the deployment stages (onnx, trt, tflite) share: the keys of their sections and
the checks of those, their input graph, calibration data and parity inputs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional

from ..engine.spec import Artifact
from ..errors import TfbuildError
from ..marks import PATH
from ..backends import PRECISIONS, check_precision
from .common import at_least

if TYPE_CHECKING:
    import numpy as np


@dataclass
class CalibrationCfg:
    path: Optional[str] = field(default=None, metadata=PATH)   # identity: the files' content
    key: Optional[str] = None
    random: bool = False
    num_samples: int = 32


@dataclass
class DeployCfg:
    """The keys every deployment section has."""
    precision: str = "FP32"              # written in any case, kept upper case
    calibration: CalibrationCfg = field(default_factory=CalibrationCfg)
    tolerance: Optional[float] = None    # null: the precision's default

    def __post_init__(self):
        # Here, not in a stage: other sections read it first (trt's engine sets onnx's).
        if isinstance(self.precision, str) and self.precision.upper() in PRECISIONS:
            self.precision = self.precision.upper()


def check_section(cfg, section: str) -> None:
    """A deployment section's precision, its calibration keys and data, and its tolerance,
    checked before any stage runs; the data's sample shape too where the target's
    placeholder stage names the input. Where the settings are made: the section's
    name and the placeholder are not part of them."""
    s = getattr(cfg, section)
    c = s.calibration
    check_precision(section, s.precision, c.path, c.random, c.num_samples)
    if s.tolerance is not None:
        at_least(f"{section}.tolerance", s.tolerance, 0)
    from ..inputs.calibration import check_source
    p = cfg.placeholder
    check_source(c, section, p.inputs[0].shape if p is not None and p.inputs else None)


def calibration_input(calibration) -> Dict[str, List[Path]]:
    """`files` of a stage with a calibration section."""
    if not calibration.path:
        return {}
    from ..inputs.calibration import calibration_files
    return {"calibration": calibration_files(calibration.path)}


def frozen(freeze: Artifact) -> Path:
    return freeze.path / freeze.metadata["graph"]


def graph_io(freeze: Artifact):
    meta = freeze.metadata
    return meta["inputs"], [o["name"] for o in meta["outputs"]]


@dataclasses.dataclass(frozen=True)
class Samples:
    """A deployment stage's inputs: what it calibrates with, and what its parity runs."""
    calibration: Optional[Dict[str, "np.ndarray"]]   # None: no calibration data
    parity: Dict[str, "np.ndarray"]
    parity_source: str                               # where the parity samples came from


def samples(freeze: Artifact, section: str, calibration, quantizes: bool, batch: int, log) -> Samples:
    """Calibration data when the stage quantizes (or data is given), and at least
    PARITY_SAMPLES held-out samples: the data's own after those it calibrates with,
    else drawn from each input's range."""
    from ..inputs.samples import PARITY_SAMPLES, count, draw, rounded_up, take
    inputs, _ = graph_io(freeze)
    need = rounded_up(PARITY_SAMPLES, batch)
    drawn = Samples(None, draw(inputs, need, seed=1), "drawn from the input ranges")
    if not (calibration.path or calibration.random or quantizes):
        return drawn
    from ..inputs.calibration import in_section, load_samples
    try:
        # Parity uses given data too; only a stage that quantizes with it needs the warnings.
        data = load_samples(dataclasses.asdict(calibration), inputs, need,
                            warn=log.warn if quantizes else lambda _: None)
    except TfbuildError as e:  # name the section the key lives in
        e.args = (in_section(str(e), section),)
        raise
    used = min(calibration.num_samples, count(data)) if quantizes else 0
    if count(data) - used >= need:
        return Samples(take(data, 0, used) if quantizes else data, take(data, used, used + need),
                       "held-out calibration data" if used else "calibration data")
    return dataclasses.replace(drawn, calibration=take(data, 0, used) if quantizes else data)


def parity(freeze: Artifact, feeds: Dict[str, "np.ndarray"], batch: int, run_converted, label: str,
           section: str, given: Optional[float], default: float, source: str = "") -> dict:
    """Run the frozen graph and the converted model on the same samples, `batch` at a
    time; refuse (ParityError) a sample whose outputs differ beyond the tolerance;
    return what the metadata records: the worst and the mean of the samples' diffs."""
    import numpy as np

    from ..errors import ParityError
    from ..inputs.samples import batches, per_sample_diff
    from ..tf.graph_io import frozen_runner

    graph_inputs, outputs = graph_io(freeze)
    diffs, expected_all = [], []
    with frozen_runner(frozen(freeze), [i["name"] for i in graph_inputs], outputs) as run_graph:
        for feed in batches(feeds, graph_inputs, batch):
            expected = run_graph(feed)
            diffs.append(per_sample_diff(expected, run_converted(feed), batch))
            expected_all += expected
    diff = np.concatenate(diffs)
    worst, bound = float(diff.max()), tolerance(given, default, expected_all)
    if worst > bound:
        bad = int((diff > bound).sum())
        raise ParityError(f"{label} differs from the frozen graph by {worst:.3g} (> {section}.tolerance="
                          f"{bound:.3g}) on {bad} of {len(diff)} samples")
    return {"parity_max_abs_diff": worst, "parity_mean_abs_diff": float(diff.mean()),
            "parity_samples": len(diff), "parity_tolerance": bound, "parity_against": "frozen graph",
            **({"parity_inputs": source} if source else {})}


def tolerance(given: Optional[float], default: float, expected: List["np.ndarray"]) -> float:
    """The parity bound: as given, else the precision's default, scaled by the outputs'
    magnitude where it exceeds 1 (logits are unbounded; probabilities are not)."""
    if given is not None:
        return given
    import numpy as np
    scale = max([1.0] + [float(np.max(np.abs(e))) for e in expected if np.size(e)])
    return default * scale


def evaluator(predictor: str, file_name: str):
    """`evaluate` of a deployment stage: its artifact and its frozen graph on the user's
    data, judged against each other. `predictor` names the tfbuild.tf.evaluate function
    that runs the artifact (imported when the stage evaluates: no TensorFlow before)."""
    def evaluate(artifact: Artifact, evaluation, inputs: Dict[str, Artifact]) -> dict:
        from ..tf import evaluate as tf_evaluate
        freeze = inputs["freeze"]
        graph_inputs, outputs = graph_io(freeze)
        reference, _ = tf_evaluate.score_frozen(frozen(freeze), graph_inputs, outputs, evaluation)
        predict = getattr(tf_evaluate, predictor)(artifact.path / file_name)
        value, samples = tf_evaluate.score(predict, graph_inputs, outputs, evaluation,
                                           artifact.metadata.get("batch_size"))
        return evaluation.judged(value, reference, samples)
    return evaluate
