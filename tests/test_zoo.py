"""The models users bring, end to end: each zoo model (tests/zoo.py), as a .keras file and
as a SavedModel, through freeze, ONNX and TFLite; every artifact is run on realistic
inputs and compared with the ORIGINAL model's own outputs, not only with the frozen graph.

Larger architectures run with `-m slow`.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import zoo

pytest.importorskip("keras")
pytest.importorskip("tf2onnx")

FP32 = 1e-4        # float32 through other kernels: relative to the outputs' magnitude
INT8 = 0.1
CASES = [pytest.param(c, marks=pytest.mark.slow) if c.slow else c for c in zoo.CASES]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """{case name: (model, {format: path})}, each model built and saved once."""
    root, made = tmp_path_factory.mktemp("zoo"), {}

    def get(case):
        if case.name not in made:
            model = case.build()
            made[case.name] = model, zoo.save(case, root, model)
        return made[case.name]
    return get


def inclusive(dtype: str, lo, hi) -> list:
    """The zoo's integer ranges end before `hi` (numpy's integers), tfbuild's at it; 0/1 masks are 0/1."""
    return [lo, hi - 1] if np.dtype(dtype).kind in "iu" and hi > 1 else [lo, hi]


def target(case, path: Path, body: str) -> str:
    ranges = {k: inclusive(dtype, *r) for k, (_, dtype, r) in case.inputs.items()}
    freeze = {"input_shapes": case.pin, "input_ranges": ranges}
    return f"checkpoint: {{path: {path.name}}}\nfreeze: {json.dumps(freeze)}\n{body}"


def install(project: Path, case, path: Path, body: str) -> None:
    dest = project / path.name
    shutil.copytree(path, dest) if path.is_dir() else shutil.copy(path, dest)
    (project / "targets").mkdir(exist_ok=True)
    (project / "targets" / "m.yaml").write_text(target(case, path, body))


def artifact(run, stage: str) -> Path:
    return Path(next(s["artifact"] for s in run.report["stages"] if s["name"] == stage))


def compare(case, model, fmt, runner, bound: float) -> float:
    """Worst |artifact - original model| over realistic samples, checked against `bound`
    times the outputs' magnitude."""
    feeds = zoo.samples(case, n=2, seed=5)
    want = zoo.reference(case, model, feeds)
    names = zoo.frozen_outputs(case, fmt)
    got = runner(feeds, list(names))
    worst = 0.0
    for key, name in zip(sorted(want) if len(want) > 1 else list(want), names):
        expected, actual = np.asarray(want[key], np.float64), np.asarray(got[names.index(name)], np.float64)
        assert expected.shape == actual.shape, (case.name, name)
        scale = max(1.0, float(np.abs(expected).max()))
        diff = float(np.abs(expected - actual).max())
        assert diff <= bound * scale, f"{case.name} {fmt} {name}: {diff} > {bound * scale}"
        worst = max(worst, diff)
    return worst


@pytest.mark.parametrize("fmt", ["keras", "saved_model"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_fp32_artifacts_match_the_original_model(case, fmt, saved, project, tfbuild):
    model, paths = saved(case)
    if fmt not in paths:
        pytest.skip(f"{case.name} ships only as a SavedModel (a tf.Module)")
    install(project, case, paths[fmt], "onnx: {precision: FP32, batch_size: null}\n"
                                       "tflite: {precision: FP32, batch_size: 2}\n")
    run = tfbuild("target=m")
    assert run.code == 0, run.out + run.err
    assert "Traceback" not in run.out + run.err and "deprecat" not in (run.out + run.err).lower()

    from tfbuild.tf.graph_io import run_frozen
    from tfbuild.tf.runtimes import run_onnx, run_tflite
    frozen = artifact(run, "freeze")
    compare(case, model, fmt, lambda f, o: run_frozen(frozen, f, o), FP32)
    onnx = artifact(run, "onnx")
    compare(case, model, fmt, lambda f, o: run_onnx(onnx, f), FP32)
    tflite = artifact(run, "tflite")
    compare(case, model, fmt, lambda f, o: run_tflite(tflite, f), FP32)
    meta = json.loads((frozen.parent / "tfbuild.json").read_text())["metadata"]
    assert [i["name"] for i in meta["inputs"]] == sorted(case.inputs)


@pytest.mark.parametrize("case", [c for c in zoo.CASES if c.int8 and not c.slow], ids=lambda c: c.name)
def test_int8_artifacts_hold_their_bound_on_the_original_model(case, saved, project, tfbuild):
    model, paths = saved(case)
    install(project, case, paths["keras"],
            "onnx: {precision: INT8, batch_size: null, calibration: {random: true, num_samples: 16}}\n"
            "tflite: {precision: INT8, batch_size: 2, calibration: {random: true, num_samples: 16}}\n")
    run = tfbuild("target=m")
    out = run.out + run.err
    assert "Traceback" not in out
    from tfbuild.tf.runtimes import run_onnx, run_tflite
    for stage, runner in (("onnx", run_onnx), ("tflite", run_tflite)):
        entry = next(s for s in run.report["stages"] if s["name"] == stage)
        if entry["status"] == "failed":   # refused in one line, nothing published
            assert entry["artifact"] is None and run.code == 1 and "differs from the frozen graph" in out
            continue
        meta = json.loads((artifact(run, stage).parent / "tfbuild.json").read_text())["metadata"]
        assert meta["parity_samples"] >= 8 and meta["parity_max_abs_diff"] <= meta["parity_tolerance"]
        compare(case, model, "keras", lambda f, o, p=artifact(run, stage), r=runner: r(p, f), INT8 * 2)


def test_model_export_freezes_to_one_digest_and_verifies(saved, project, tfbuild):
    case = zoo.BY_NAME["dict_two_outputs"]   # two inputs: their order once flipped between builds
    _, paths = saved(case)
    install(project, case, paths["saved_model"], "")
    digests = set()
    for _ in range(3):
        run = tfbuild("target=m", "force=true")
        assert run.code == 0, run.out + run.err
        digests.add(hashlib.sha256(artifact(run, "freeze").read_bytes()).hexdigest())
    assert len(digests) == 1
    run = tfbuild("target=m", "verify=true")
    assert run.code == 0, run.out + run.err


@pytest.mark.parametrize("name, ranges", [("attention_encoder", {"ids": [0, 299], "mask": [0, 1]}),
                                          ("bilstm_tokens", {"ids": [0, 499]})])
def test_token_ids_stay_inside_the_vocabulary_without_being_told(name, ranges, saved, project, tfbuild):
    case = zoo.BY_NAME[name]   # its position embedding (16 rows) is not the vocabulary
    _, paths = saved(case)
    install(project, case, paths["keras"], "")
    (project / "targets" / "m.yaml").write_text(f"checkpoint: {{path: {paths['keras'].name}}}\n")
    run = tfbuild("target=m")
    assert run.code == 0, run.out + run.err
    meta = json.loads((artifact(run, "freeze").parent / "tfbuild.json").read_text())["metadata"]
    assert {i["name"]: i["range"] for i in meta["inputs"]} == ranges


def test_a_transformer_onnx_model_rebuilds_to_the_same_bytes(saved, project, tfbuild):
    # tf2onnx keeps whichever of two equal constants it meets first, and its einsum
    # optimizer orders by object ids: names and node order must not depend on either.
    case = zoo.BY_NAME["attention_encoder"]
    _, paths = saved(case)
    install(project, case, paths["keras"], "onnx: {precision: FP32, batch_size: null}\n")
    digests = set()
    for _ in range(3):
        run = tfbuild("target=m", "force=[onnx]")
        assert run.code == 0, run.out + run.err
        digests.add(hashlib.sha256(artifact(run, "onnx").read_bytes()).hexdigest())
    assert len(digests) == 1
