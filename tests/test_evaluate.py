"""Accuracy on the user's labelled data, end to end: the shipped digits targets (a Keras
CNN trained on scikit-learn's bundled digits, its held-out 597 digits) through freeze,
TFLite and ONNX, with real TensorFlow."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfbuild.cli.targets import data_dir

DATA = data_dir("targets") / "data"


def independent_top1() -> float:
    """The original Keras model's own top-1 on the held-out digits, counted here."""
    import keras
    model = keras.saving.load_model(DATA / "digits.keras", compile=False)
    val = np.load(DATA / "digits_val.npz")
    predicted = np.argmax(model.predict(val["image"], verbose=0), axis=1)
    return float(np.mean(predicted == val["labels"]))


def entries(project: Path, stage: str) -> list:
    return sorted((project / "build" / "store" / stage).glob("*")) if (project / "build" / "store" / stage).is_dir() else []


def test_reported_top1_is_the_count_and_every_stage_carries_it(tfbuild, project):
    run = tfbuild("target=digits_tflite")
    assert run.code == 0, run.out + run.err
    count = independent_top1()
    freeze, tflite = (s["evaluation"] for s in run.report["stages"])
    assert freeze["value"] == pytest.approx(count, abs=1e-12) and freeze["samples"] == 597
    assert freeze["reference"] is None
    assert tflite["value"] == pytest.approx(count, abs=1e-12) and tflite["drop"] == pytest.approx(0.0, abs=1e-12)
    assert run.report["evaluation"] == tflite


def test_changing_only_evaluate_rebuilds_nothing(tfbuild, project):
    assert tfbuild("target=digits_onnx").code == 0
    run = tfbuild("target=digits_onnx", "evaluate.max_drop=0.02", "evaluate.min=0.9")
    assert run.code == 0 and run.built() == [], run.status()
    assert run.report["evaluation"]["samples"] == 597


def test_an_impossible_floor_fails_in_one_line_and_publishes_nothing(tfbuild, project):
    run = tfbuild("target=digits_tflite", "evaluate.min=0.999")
    assert run.code == 1
    failed = [s for s in run.report["stages"] if s["status"] == "failed"]
    assert failed[0]["name"] == "freeze" and failed[0]["artifact"] is None
    assert "top1 0.98" in failed[0]["reason"] and "below evaluate.min 0.999" in failed[0]["reason"]
    assert entries(project, "freeze") == [] and not (project / "tfbuild.lock").exists()
    assert "Traceback" not in run.out + run.err


def test_int8_holds_its_drop_on_the_held_out_digits(tfbuild, project):
    run = tfbuild("target=digits_onnx", "onnx.precision=INT8")
    assert run.code == 0, run.out + run.err
    evaluation = run.report["evaluation"]
    assert evaluation["drop"] <= 0.01 and evaluation["value"] >= 0.95


def test_a_tighter_goal_judges_the_kept_evaluation_again(tfbuild, project):
    assert tfbuild("target=digits_tflite").code == 0
    run = tfbuild("target=digits_tflite", "evaluate.min=0.99")   # same data, same metric: not re-run
    assert run.code == 1 and run.status()["freeze"] == "failed"
    assert "below evaluate.min 0.99" in run.reasons()["freeze"]
