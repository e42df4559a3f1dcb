"""Artifacts run on the user's labelled data (the target's `evaluate` section):
the scoring itself is TensorFlow-free (tfbuild/evaluation.py); this feeds it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .graph_io import frozen_runner

Predict = Callable[[Dict[str, np.ndarray]], List[np.ndarray]]   # feeds by input name -> outputs
_FROZEN: Dict[Tuple[str, str], Tuple[float, int]] = {}           # one score per graph and evaluation


def score(predict: Predict, inputs: List[dict], outputs: List[str], evaluation,
          batch: Optional[int]) -> Tuple[float, int]:
    """(metric value, samples) of `predict` on the evaluation's data; `batch`: the
    artifact's fixed batch size (None: the evaluation's own)."""
    from ..evaluation import load, predict_all, score as metric, select_output
    feeds, labels = load(evaluation.cfg, inputs)
    index = outputs.index(select_output(evaluation.cfg, outputs))
    got = predict_all(lambda f: predict(f)[index], feeds, batch or evaluation.cfg.batch_size,
                      fixed=batch is not None)
    return metric(evaluation.cfg.metric, got, labels), len(labels)


def score_frozen(frozen_pb: Path, inputs: List[dict], outputs: List[str], evaluation) -> Tuple[float, int]:
    """The frozen graph's score: every deployment stage is judged against it, once."""
    key = (str(frozen_pb), evaluation.identity)
    if key not in _FROZEN:
        with frozen_runner(frozen_pb, [i["name"] for i in inputs], outputs) as run:
            _FROZEN[key] = score(run, inputs, outputs, evaluation, None)
    return _FROZEN[key]

