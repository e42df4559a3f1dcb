"""What the deployment stages (onnx, trt, tflite) share: the keys of their sections and
the checks of those, their input graph, calibration data and parity inputs."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from ..engine.spec import Artifact
from ..errors import StageFailed, TfbuildError
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
    # null: the precision's default max abs diff; a number: that bound; a mapping
    # {measure: bound} (evaluation.MEASURES) gates on those measures instead.
    tolerance: Any = None

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
    s.tolerance = checked_tolerance(f"{section}.tolerance", s.tolerance)
    from ..inputs.calibration import check_source
    p = cfg.placeholder
    check_source(c, section, p.inputs[0].shape if p is not None and p.inputs else None)


def checked_tolerance(key: str, value) -> Union[None, float, Dict[str, float]]:
    """`<stage>.tolerance` as the stage uses it: None, a float (the max abs diff), or
    {measure: float} in evaluation.MEASURES; anything else a one-line ConfigError naming
    `key` and the measures. Numbers become floats, as the field's former float type made them."""
    from collections.abc import Mapping
    from ..errors import ConfigError
    from ..evaluation import MEASURES
    shape = (f"give a number (the max abs diff), null (the precision's default), or "
             f"{{measure: bound}} with measures {', '.join(MEASURES)}")
    if value is None:
        return None
    if isinstance(value, Mapping):
        bounds = {}
        for measure, bound in value.items():
            if measure not in MEASURES:
                raise ConfigError(f"{key}.{measure} is not a parity measure: {shape}")
            bounds[str(measure)] = _number(f"{key}.{measure}", bound, shape)
            if not MEASURES[measure]:   # an error measure: a ceiling
                at_least(f"{key}.{measure}", bounds[measure], 0)
            elif bounds[measure] > 1:   # cosine_min, top1_agreement: a floor, at most 1
                raise ConfigError(f"{key}.{measure}={bounds[measure]:g} can never hold: "
                                  f"{measure} is at most 1")
        if not bounds:
            raise ConfigError(f"{key}={{}} gates on nothing: {shape}")
        return bounds
    bound = _number(key, value, shape)
    at_least(key, bound, 0)
    return bound


def _number(key: str, value, shape: str) -> float:
    import math
    from ..errors import ConfigError
    try:
        if isinstance(value, bool):
            raise ValueError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a number: {shape}") from None
    if math.isnan(number):
        raise ConfigError(f"{key}=nan is not a bound: {shape}")
    return number


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
           section: str, given, default: float, source: str = "") -> dict:
    """Run the frozen graph and the converted model on the same samples, `batch` at a
    time, and refuse (ParityError) a model beyond the tolerance: `given` a number or None
    (the precision's `default`, scaled), a sample whose outputs differ by more; `given` a
    mapping {measure: bound}, a measure of evaluation.agreement beyond its bound. Return
    what the metadata records: the worst and the mean of the samples' diffs, and all of
    agreement's figures (`parity_measures`)."""
    import numpy as np

    from ..errors import ParityError
    from ..evaluation import agreement, gate
    from ..inputs.samples import batches, per_sample_diff
    from ..tf.graph_io import frozen_runner

    graph_inputs, outputs = graph_io(freeze)
    diffs, expected_all, got_all = [], [], []
    with frozen_runner(frozen(freeze), [i["name"] for i in graph_inputs], outputs) as run_graph:
        for feed in batches(feeds, graph_inputs, batch):
            expected, got = run_graph(feed), run_converted(feed)
            diffs.append(per_sample_diff(expected, got, batch))
            expected_all.append([np.asarray(e) for e in expected])
            got_all.append([np.asarray(g) for g in got])
    diff = np.concatenate(diffs)
    worst = float(diff.max())
    key = f"{section}.tolerance"
    if isinstance(given, dict):
        if not np.isfinite(diff).all():   # NaN would compare False against any bound and pass
            bad = int((~np.isfinite(diff)).sum())
            raise ParityError(f"{label} gives NaN or inf where the frozen graph does not on {bad} of "
                              f"{len(diff)} samples ({key}={_shown(given)})")
        bound = dict(given)
    else:
        bound = tolerance(given, default, [e for run in expected_all for e in run])
        if worst > bound:
            bad = int((diff > bound).sum())
            raise ParityError(f"{label} differs from the frozen graph by {worst:.3g} (> {key}="
                              f"{bound:.3g}) on {bad} of {len(diff)} samples")
    measures = agreement(*(_joined(runs, batch) for runs in (expected_all, got_all)))
    if isinstance(given, dict):
        ok, message = gate(measures, given, key)
        if not ok:
            raise ParityError(f"{label} vs the frozen graph over {len(diff)} samples: "
                              f"{message.removeprefix('parity: ')}")
    return {"parity_max_abs_diff": worst, "parity_mean_abs_diff": float(diff.mean()),
            "parity_samples": len(diff), "parity_tolerance": bound, "parity_against": "frozen graph",
            "parity_measures": measures, **({"parity_inputs": source} if source else {})}


def _joined(runs: List[List["np.ndarray"]], batch: int) -> List["np.ndarray"]:
    """Each output over all runs: batched outputs joined along the batch, one without a
    batch dimension (a value per run) stacked, a run per row."""
    import numpy as np
    joined = []
    for parts in zip(*runs):
        batched = all(p.ndim >= 1 and p.shape[0] == batch for p in parts)
        joined.append(np.concatenate(parts) if batched else np.stack(parts))
    return joined


def _shown(bounds: Dict[str, float]) -> str:
    return "{" + ", ".join(f"{m}: {b:g}" for m, b in bounds.items()) + "}"


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
    data, judged against each other. `predictor` names the tfbuild.tf.runtimes function
    that loads the artifact (imported when the stage evaluates: no TensorFlow before)."""
    def evaluate(artifact: Artifact, evaluation, inputs: Dict[str, Artifact]) -> dict:
        from ..tf import runtimes
        predict = getattr(runtimes, predictor)(artifact.path / file_name)
        return evaluation.record(*scored(inputs["freeze"], evaluation, predict, artifact.metadata.get("batch_size")))
    return evaluate


def scored(freeze: Artifact, evaluation, predict, batch: Optional[int]):
    """(value, the frozen graph's value, samples) of `predict` on the evaluation's data."""
    from ..tf import evaluate as tf_evaluate
    graph_inputs, outputs = graph_io(freeze)
    reference, _ = tf_evaluate.score_frozen(frozen(freeze), graph_inputs, outputs, evaluation)
    value, samples = tf_evaluate.score(predict, graph_inputs, outputs, evaluation, batch)
    return value, reference, samples


# ----------------------------------------------------------------------------- INT8 layers kept in float

AUTO = "auto"
AUTO_TRIES = (1, 2, 4, 8, 16)   # how many of the worst layers `auto` keeps in float, try by try


def float_layers(key: str, value, precision: str):
    """`tflite.float_ops` / `onnx.float_nodes` as the stage uses it: a tuple of layer names,
    or "auto"; () where the stage does not quantize (so an FP32 job of a sweep that sets
    it shares its artifact). Anything else: a one-line ConfigError."""
    if precision != "INT8" or value is None:
        return ()
    if value == AUTO:
        return AUTO
    from collections.abc import Sequence
    from ..errors import ConfigError
    if isinstance(value, str) or not isinstance(value, Sequence) or \
            not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}={value!r}: give a list of layer names "
                          f"(tfbuild inspect target=NAME quantization=true lists them) or {AUTO}")
    return tuple(value)


def auto_evaluation(cfg, kept) -> Optional[Any]:
    """The evaluation `auto` judges tries by: the target's, when it evaluates."""
    if kept != AUTO or cfg.evaluate is None:
        return None
    from ..evaluation import evaluation
    return evaluation(cfg.evaluate)


def with_float_layers(key: str, kept, build, rank, holds, log) -> dict:
    """Build the INT8 artifact with the layers `kept` in float: `build(names) -> metadata`.
    "auto": all INT8 first, then the worst layers by `rank()` (1, 2, 4, ...) until
    `holds() -> (ok, one line)`; which were kept and every try are recorded."""
    if kept != AUTO:
        return {**build(list(kept)), "float_layers": list(kept)}
    meta, (ok, said) = build([]), holds()
    tries = [{"float_layers": 0, "holds": ok, "result": said}]
    layers = [] if ok else rank()
    names: List[str] = []
    for count in AUTO_TRIES:
        if ok or len(names) == len(layers):
            break
        names = [layer.name for layer in layers[:count]]
        log.info(f"{key}=auto: {said}; trying again with the {_worst(len(names))} in float")
        meta, (ok, said) = build(names), holds()
        tries.append({"float_layers": len(names), "holds": ok, "result": said})
    if not ok:
        raise StageFailed(f"{key}=auto: INT8 misses its goal even with {len(names)} of {len(layers)} "
                          f"layers in float ({said}): use FP16, or calibration data like the data it is "
                          f"judged on")
    return {**meta, "float_layers": names, "float_tries": tries}


def _worst(count: int) -> str:
    return "worst layer" if count == 1 else f"{count} worst layers"


def goal(freeze: Artifact, evaluation, predict, batch: Optional[int], check_parity):
    """(ok, one line): the evaluation's goal where the target evaluates, else parity."""
    from ..errors import ParityError
    if evaluation is None:
        try:
            check_parity()
        except ParityError as e:
            return False, str(e)
        return True, "parity holds"
    from ..evaluation import judge
    value, reference, _ = scored(freeze, evaluation, predict, batch)
    return judge(evaluation.cfg, value, reference)
