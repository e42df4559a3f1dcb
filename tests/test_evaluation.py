"""tfbuild.evaluation: metrics, judging, data loading and parity figures (numpy only, no TensorFlow)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfbuild import evaluation as ev
from tfbuild.errors import ConfigError

IMAGE = {"name": "image", "dtype": "float32", "shape": [None, 8, 8, 1], "range": [0.0, 16.0]}


def cfg(**kw) -> ev.EvaluateCfg:
    return ev.EvaluateCfg(**{"data": {"path": "unused.npz"}, **kw})


# ----------------------------------------------------------------------------- metrics

def test_top1_equals_an_independent_count():
    rng = np.random.default_rng(0)
    outputs = rng.random((200, 7)).astype(np.float32)
    labels = rng.integers(0, 7, 200)
    hits = 0
    for row, label in zip(outputs.tolist(), labels.tolist()):
        hits += max(range(7), key=lambda c: row[c]) == label
    assert ev.score("top1", outputs, labels) == hits / 200


def test_top1_by_hand_with_one_hot_and_column_labels():
    outputs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([1, 0, 0, 1])                     # right, right, wrong, wrong
    assert ev.score("top1", outputs, labels) == 0.5
    assert ev.score("top1", outputs, np.eye(2)[labels]) == 0.5        # one-hot
    assert ev.score("top1", outputs, labels[:, None]) == 0.5          # [N, 1]
    assert ev.score("top1", outputs[:, None, None, :], labels) == 0.5  # [N, 1, 1, C]


def test_top5_by_hand():
    outputs = np.tile(np.arange(10.0), (3, 1))          # classes 5..9 are the top five
    assert ev.score("top5", outputs, np.array([9, 5, 4])) == pytest.approx(2 / 3)
    rng = np.random.default_rng(1)
    outputs, labels = rng.random((50, 12)), rng.integers(0, 12, 50)
    count = sum(int(l in np.argsort(-o)[:5]) for o, l in zip(outputs, labels))
    assert ev.score("top5", outputs, labels) == count / 50


def test_mae_mse():
    outputs = np.array([[1.0, 2.0], [3.0, 4.0]])
    labels = np.array([[1.5, 2.0], [2.0, 4.0]])          # errors 0.5, 0, 1, 0
    assert ev.score("mae", outputs, labels) == pytest.approx(0.375)
    assert ev.score("mse", outputs, labels) == pytest.approx(1.25 / 4)
    assert ev.score("mae", outputs, labels.ravel()) == pytest.approx(0.375)   # same size: reshaped


@pytest.mark.parametrize("metric, outputs, labels, words", [
    ("top1", np.zeros((4, 1)), np.zeros(4), "needs class scores [N, C]"),
    ("top5", np.zeros((4, 3)), np.zeros(4), "needs at least 5 classes"),
    ("top1", np.zeros((4, 3)), np.array([0, 1, 2, 3]), "0..2"),
    ("top1", np.zeros((4, 3)), np.zeros(5), "do not fit 4 samples"),
    ("mse", np.zeros((4, 3)), np.zeros(5), "do not match"),
])
def test_metric_misfits_are_one_line(metric, outputs, labels, words):
    with pytest.raises(ConfigError) as e:
        ev.score(metric, outputs, labels)
    assert words in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- judge

def test_judge_passes_and_fails_with_one_line():
    c = cfg(metric="top1", max_drop=0.01)
    ok, message = ev.judge(c, 0.975, 0.98)
    assert ok and message == "top1 0.9750 vs frozen graph 0.9800 (drop 0.0050)"
    ok, message = ev.judge(c, 0.95, 0.98)
    assert not ok and message == "top1 0.9500 vs frozen graph 0.9800: drop 0.0300 > evaluate.max_drop 0.01"
    ok, message = ev.judge(cfg(metric="top1", max_drop=None, min=0.99), 0.98, 0.98)
    assert not ok and message == "top1 0.9800 vs frozen graph 0.9800: below evaluate.min 0.99"
    ok, message = ev.judge(c, 0.99, 0.98)                                 # better than the reference
    assert ok and "drop -0.0100" in message
    assert ev.judge(c, 0.97, 0.98)[0]                                      # exactly max_drop (float slack)


def test_judge_lower_is_better_metrics():
    c = cfg(metric="mae", max_drop=0.1, max=1.0)
    assert ev.drop("mae", 0.5, 0.3) == pytest.approx(0.2)
    ok, message = ev.judge(c, 0.5, 0.3)
    assert not ok and message.startswith("mae 0.5000 vs frozen graph 0.3000: drop 0.2000 >")
    assert ev.judge(c, 0.2, 0.3)[0]                                        # lower error: better
    ok, message = ev.judge(cfg(metric="mae", max_drop=None, max=1.0), 1.5, None)   # the frozen graph itself
    assert not ok and message == "mae 1.5000: above evaluate.max 1.0"
    assert ev.record(c, 0.5, 0.3, 10) == {"metric": "mae", "value": 0.5, "reference": 0.3,
                                          "drop": pytest.approx(0.2), "samples": 10}


# ----------------------------------------------------------------------------- check

@pytest.fixture
def npz(tmp_path):
    path = tmp_path / "val.npz"
    np.savez(path, image=np.zeros((6, 8, 8, 1), np.float32), labels=np.arange(6) % 3)
    return path


@pytest.mark.parametrize("change, words", [
    ({"metric": "top3"}, "evaluate.metric='top3' is unknown: use one of top1, top5, mae, mse"),
    ({"metric": {"_target_": "no_such_module_xyz.fn"}}, "evaluate.metric._target_='no_such_module_xyz.fn' cannot be imported"),
    ({"max_drop": -0.1}, "evaluate.max_drop=-0.1: give a drop >= 0"),
    ({"num_samples": 0}, "evaluate.num_samples=0: give at least 1"),
    ({"batch_size": 0}, "evaluate.batch_size=0"),
    ({"max": 0.9}, "evaluate.max=0.9: top1 is higher-is-better"),
    ({"metric": "mse", "min": 0.1}, "evaluate.min=0.1: mse is lower-is-better"),
    ({"data": {"path": "/no/such/val.npz"}}, "evaluate.data.path=/no/such/val.npz does not exist"),
    ({"data": {"path": "x", "_target_": "a.b"}}, "give exactly one of path"),
    ({"data": {"_target_": "os.sep"}}, "evaluate.data._target_='os.sep' is a str, not a function"),
])
def test_check_refuses_in_one_line_naming_the_key(npz, change, words):
    c = ev.EvaluateCfg(data={"path": str(npz)})
    for k, v in change.items():
        setattr(c, k, v)
    with pytest.raises(ConfigError) as e:
        ev.check(c)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_check_npz_needs_labels_and_accepts_good_config(tmp_path, npz):
    bare = tmp_path / "bare.npz"
    np.savez(bare, image=np.zeros((2, 8, 8, 1)))
    with pytest.raises(ConfigError, match="has no 'labels' array"):
        ev.check(ev.EvaluateCfg(data={"path": str(bare)}))
    c = ev.check(ev.EvaluateCfg(data={"path": str(npz)}, metric="TOP1", min=0.5))
    assert c.metric == "top1" and ev.data_files(c) == [npz]
    assert ev.identity_params(c) == {"data": {}, "metric": "top1", "output": None, "num_samples": None}
    assert ev.check(ev.EvaluateCfg(data=str(npz))).data == str(npz)     # a bare path works too


def test_select_output():
    assert ev.select_output(cfg(), ["probs"]) == "probs"
    assert ev.select_output(cfg(output="b"), ["a", "b"]) == "b"
    with pytest.raises(ConfigError, match="set evaluate.output=a"):
        ev.select_output(cfg(), ["a", "b"])
    with pytest.raises(ConfigError, match="evaluate.output=c: the model has no such output"):
        ev.select_output(cfg(output="c"), ["a", "b"])


# ----------------------------------------------------------------------------- custom metric and loader

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_eval_mod.py").write_text(textwrap.dedent("""
        import numpy as np

        def errors_at(outputs, labels, threshold=0.5):
            return float(np.mean((outputs[:, 1] > threshold) != labels))

        def loader(n=5):
            x = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
            return {"x": x, "t": np.ones(n, np.int64)}, np.arange(n) % 2

        def one_array():
            return np.zeros((3, 2)), np.zeros(3)

        def not_a_pair():
            return 42
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path / "user_eval_mod.py"
    sys.modules.pop("user_eval_mod", None)


def test_custom_metric(user_module, npz):
    metric = {"_target_": "user_eval_mod.errors_at", "higher_is_better": False, "threshold": 0.3}
    c = ev.check(ev.EvaluateCfg(data={"path": str(npz)}, metric=metric, max_drop=0.0))
    outputs = np.array([[0.8, 0.2], [0.6, 0.4], [0.1, 0.9]])
    assert ev.score(c.metric, outputs, np.array([0, 0, 1])) == pytest.approx(1 / 3)   # threshold 0.3 applied
    assert ev.metric_name(c.metric) == "user_eval_mod.errors_at" and not ev.higher_is_better(c.metric)
    ok, message = ev.judge(c, 0.4, 0.3)
    assert not ok and message.startswith("user_eval_mod.errors_at 0.4000 vs frozen graph 0.3000: drop 0.1000")
    assert user_module in ev.code_files(c)


def test_custom_loader(user_module):
    inputs = [{"name": "x", "dtype": "float32", "shape": [None, 2], "range": [0, 1]},
              {"name": "t", "dtype": "int32", "shape": [None], "range": [0, 1]}]
    c = ev.check(ev.EvaluateCfg(data={"_target_": "user_eval_mod.loader", "n": 7}, num_samples=4))
    feeds, labels = ev.load(c, inputs)
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (4, 2)
    assert feeds["t"].dtype == np.int32 and labels.tolist() == [0, 1, 0, 1]
    assert ev.data_files(c) == [user_module]
    one = [{"name": "only", "dtype": "float32", "shape": [None, 2], "range": [0, 1]}]
    feeds, _ = ev.load(ev.EvaluateCfg(data={"_target_": "user_eval_mod.one_array"}), one)
    assert list(feeds) == ["only"]
    with pytest.raises(ConfigError, match=r"returned int, not \(inputs, labels\)"):
        ev.load(ev.EvaluateCfg(data={"_target_": "user_eval_mod.not_a_pair"}), one)


# ----------------------------------------------------------------------------- npz

def test_npz_by_input_name_with_labels(tmp_path):
    path = tmp_path / "two.npz"
    rng = np.random.default_rng(0)
    a, b, y = rng.random((10, 3)), rng.integers(0, 5, (10, 4)), rng.integers(0, 2, 10)
    np.savez(path, b=b, a=a, labels=y, extra=np.zeros(10))
    inputs = [{"name": "a", "dtype": "float32", "shape": [None, 3]},
              {"name": "b", "dtype": "int64", "shape": [None, 4]}]
    feeds, labels = ev.load(ev.EvaluateCfg(data={"path": str(path)}), inputs)
    np.testing.assert_array_equal(feeds["b"], b)
    np.testing.assert_allclose(feeds["a"], a.astype(np.float32))
    assert feeds["a"].dtype == np.float32 and labels.tolist() == y.tolist()
    feeds, labels = ev.load(ev.EvaluateCfg(data={"path": str(path)}, num_samples=3), inputs)
    assert len(feeds["a"]) == len(labels) == 3


def test_npz_misfits_are_one_line(tmp_path):
    inputs = [IMAGE]
    cases = {
        "shape": ({"image": np.zeros((4, 8, 7, 1)), "labels": np.zeros(4)}, "has shape [4, 8, 7, 1], expected [N, 8, 8, 1]"),
        "length": ({"image": np.zeros((4, 8, 8, 1)), "labels": np.zeros(3)}, "differ in length"),
        "missing": ({"a": np.zeros((4, 8, 8, 1)), "b": np.zeros(4), "labels": np.zeros(4)}, "no array for input(s) image"),
    }
    for name, (arrays, words) in cases.items():
        path = tmp_path / f"{name}.npz"
        np.savez(path, **arrays)
        with pytest.raises(ConfigError) as e:
            ev.load(ev.EvaluateCfg(data={"path": str(path)}), inputs)
        assert words in str(e.value) and "\n" not in str(e.value), name
    path = tmp_path / "frac.npz"
    np.savez(path, ids=np.array([[0.5, 1.0]]), labels=np.zeros(1))
    with pytest.raises(ConfigError, match="fractional"):
        ev.load(ev.EvaluateCfg(data={"path": str(path)}), [{"name": "ids", "dtype": "int32", "shape": [None, 2]}])


def test_one_input_takes_the_only_array_whatever_its_name(tmp_path):
    path = tmp_path / "x.npz"
    np.savez(path, x=np.ones((2, 8, 8, 1)), labels=np.array([3, 4]))
    feeds, labels = ev.load(ev.EvaluateCfg(data={"path": str(path)}), [IMAGE])
    assert feeds["image"].shape == (2, 8, 8, 1) and labels.tolist() == [3, 4]


# ----------------------------------------------------------------------------- image folders

def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow reads image folders")
    root = tmp_path / "images"
    values = {"cat": [10, 20, 30], "dog": [200], "emu": [100, 110]}
    for cls, grays in values.items():
        (root / cls).mkdir(parents=True)
        for k, gray in enumerate(grays):
            Image.fromarray(np.full((16, 12), gray, np.uint8)).save(root / cls / f"{k}.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    c = ev.check(ev.EvaluateCfg(data={"path": str(root)}))
    assert len(ev.data_files(c)) == 6
    spec = {"name": "image", "dtype": "float32", "shape": [None, 4, 4, 1]}
    feeds, labels = ev.load(c, [spec])
    # The classes in turn: cat0 dog0 emu0 cat1 emu1 cat2; resized to 4x4, raw 0..255 values.
    assert labels.tolist() == [0, 1, 2, 0, 2, 0]
    assert feeds["image"].shape == (6, 4, 4, 1) and feeds["image"].dtype == np.float32
    np.testing.assert_allclose(feeds["image"][:, 0, 0, 0], [10, 200, 100, 20, 110, 30])
    feeds, labels = ev.load(ev.EvaluateCfg(data={"path": str(root)}, num_samples=3),
                            [{**spec, "shape": [None, 4, 4, 3]}])
    assert labels.tolist() == [0, 1, 2] and feeds["image"].shape == (3, 4, 4, 3)   # balanced prefix, RGB
    with pytest.raises(ConfigError, match=r"images need \[N, H, W, 1\|3\|4\]"):
        ev.load(c, [{**spec, "shape": [None, 4]}])


def test_image_folder_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(ConfigError, match="holds no class folders"):
        ev.check(ev.EvaluateCfg(data={"path": str(tmp_path / "flat")}))


# ----------------------------------------------------------------------------- batching

def test_predict_all_batches_and_pads_a_fixed_batch():
    feeds = {"x": np.arange(10.0)[:, None]}
    seen, progress = [], []

    def predict(feed):
        seen.append(len(feed["x"]))
        return feed["x"] * 2

    out = ev.predict_all(predict, feeds, 4, fixed=True, progress=lambda d, n: progress.append((d, n)))
    assert seen == [4, 4, 4] and out[:, 0].tolist() == [2.0 * i for i in range(10)]
    assert progress == [(4, 10), (8, 10), (10, 10)]
    seen.clear()
    ev.predict_all(predict, feeds, 4)
    assert seen == [4, 4, 2]


# ----------------------------------------------------------------------------- agreement

def test_agreement_figures_on_constructed_cases():
    expected = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])
    got = expected.copy()
    got[3] = [0.4, 0.5, 0.1]                        # one argmax flips: 3/4 agree
    f = ev.agreement([expected], [got])
    assert f["max_abs_error"] == pytest.approx(0.1)
    assert f["mean_abs_error"] == pytest.approx(0.2 / 12)
    assert f["max_rel_error"] == pytest.approx(0.25)          # 0.1 / 0.4
    assert f["mean_rel_error"] == pytest.approx((0.1 / 0.5 + 0.1 / 0.4) / 12)
    a, b = np.array([0.5, 0.4, 0.1]), np.array([0.4, 0.5, 0.1])
    assert f["cosine_min"] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert f["top1_agreement"] == 0.75 and f["samples"] == 4


def test_agreement_identical_opposite_zero_and_several_outputs():
    x = np.random.default_rng(0).normal(size=(5, 6))
    f = ev.agreement([x], [x.copy()])
    assert f["max_abs_error"] == 0 and f["cosine_min"] == pytest.approx(1.0) and f["top1_agreement"] == 1.0
    assert ev.agreement([x], [-x])["cosine_min"] == pytest.approx(-1.0)
    zeros = np.zeros((2, 3))
    assert ev.agreement([zeros], [zeros])["cosine_min"] == 1.0           # both zero: agree
    assert ev.agreement([zeros], [zeros + 1])["cosine_min"] == 0.0
    # Regression output [N] (no classifier): no top-1 figure; the worst over two outputs.
    reg = np.array([1.0, 2.0, 4.0])
    f = ev.agreement([reg, x], [reg * 1.5, x])
    assert f["top1_agreement"] is None or f["top1_agreement"] == 1.0
    assert f["max_abs_error"] == pytest.approx(2.0) and f["max_rel_error"] == pytest.approx(0.5)
    assert ev.agreement([reg], [reg])["top1_agreement"] is None
    with pytest.raises(ValueError, match="shapes differ"):
        ev.agreement([x], [x[:2]])


def test_gate_on_a_named_measure():
    f = {"max_abs_error": 0.02, "top1_agreement": 0.98, "cosine_min": 0.999}
    assert ev.gate(f, {"top1_agreement": 0.97}, "tflite.tolerance")[0]
    ok, message = ev.gate(f, {"top1_agreement": 0.99, "max_abs_error": 0.01}, "tflite.tolerance")
    assert not ok and message == "parity: top1_agreement 0.98 < 0.99; max_abs_error 0.02 > 0.01 (tflite.tolerance)"
    with pytest.raises(ConfigError, match="tflite.tolerance.top2: not a parity measure"):
        ev.gate(f, {"top2": 1}, "tflite.tolerance")


def test_imports_no_tensorflow():
    code = "import sys, tfbuild.evaluation; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'PIL')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
