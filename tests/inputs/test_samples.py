"""Model inputs drawn within each input's range, batched, and compared per sample (no TensorFlow)."""
import sys

import numpy as np
import pytest

from tfbuild.inputs.calibration import load_samples
from tfbuild.errors import CalibrationError, ParityError
from tfbuild.inputs.samples import batches, default_range, draw, one_batch, per_sample_diff, rounded_up

IDS = {"name": "ids", "dtype": "int32", "shape": [None, 6], "range": [0, 9]}
MASK = {"name": "mask", "dtype": "int32", "shape": [None, 6]}
IMAGE = {"name": "image", "dtype": "float32", "shape": [None, 4, 4, 3]}
TEMPERATURE = {"name": "temperature", "dtype": "float32", "shape": [], "range": [0.5, 2.0]}
FLAG = {"name": "flag", "dtype": "bool", "shape": [None, 1]}


def test_defaults_by_kind():
    assert default_range("int64", [None, 6]) == [0, 1]
    assert default_range("bool", [None]) == [0, 1]
    assert default_range("float32", [None, 8, 8, 3]) == [0.0, 255.0]
    assert default_range("float32", [None, 8]) == [0.0, 1.0]


def test_draw_stays_in_range_keeps_dtype_and_is_seeded():
    s = draw([IDS, MASK, IMAGE, TEMPERATURE, FLAG], 50)
    assert s["ids"].dtype == np.int32 and s["ids"].min() == 0 and s["ids"].max() == 9
    assert set(np.unique(s["mask"])) == {0, 1}
    assert s["image"].shape == (50, 4, 4, 3) and 0 <= s["image"].min() and s["image"].max() <= 255
    assert s["temperature"].shape == (50,) and 0.5 <= s["temperature"].min() and s["temperature"].max() <= 2.0
    assert s["flag"].dtype == np.bool_ and s["flag"].any() and not s["flag"].all()
    again = draw([IDS, MASK, IMAGE, TEMPERATURE, FLAG], 3)
    assert all(np.array_equal(again[k], s[k][:3]) for k in again)   # sample k does not depend on n
    assert not np.array_equal(draw([IMAGE], 3, seed=1)["image"], again["image"])


def test_batches_cycle_to_whole_batches_and_scalars_stay_rank0():
    s = draw([IMAGE, TEMPERATURE], 5)
    feeds = list(batches(s, [IMAGE, TEMPERATURE], 2))
    assert len(feeds) == 3 and all(f["image"].shape == (2, 4, 4, 3) for f in feeds)
    assert np.array_equal(feeds[2]["image"][1], s["image"][0])   # the last batch cycles
    assert isinstance(feeds[1]["temperature"], np.ndarray) and feeds[1]["temperature"].shape == () and feeds[1]["temperature"] == s["temperature"][2]
    assert rounded_up(8, 3) == 9 and rounded_up(8, 8) == 8
    assert one_batch([IMAGE], 4)["image"].shape == (4, 4, 4, 3)


def test_per_sample_diff_finds_the_bad_sample_and_nan():
    a = [np.zeros((4, 3)), np.zeros(())]
    b = [np.zeros((4, 3)), np.zeros(())]
    b[0][2, 1] = 0.5
    assert per_sample_diff(a, b, 4).tolist() == [0, 0, 0.5, 0]
    b[1] = np.float64(0.1)   # an output without a batch dimension counts for every sample
    assert per_sample_diff(a, b, 4).tolist() == [0.1, 0.1, 0.5, 0.1]
    b[0][0, 0] = np.nan
    assert per_sample_diff(a, b, 4)[0] == np.inf
    with pytest.raises(ParityError, match="shape"):
        per_sample_diff([np.zeros((4, 3))], [np.zeros((4, 2))], 4)


def test_npz_with_one_array_per_input_feeds_each(tmp_path):
    np.savez(tmp_path / "d.npz", ids=np.arange(60).reshape(10, 6) % 7, mask=np.ones((10, 6)),
             labels=np.arange(10))
    spec = {"path": str(tmp_path / "d.npz"), "num_samples": 4}
    data = load_samples(spec, [IDS, MASK], 3, warn=pytest.fail)
    assert data["ids"].shape == (7, 6) and data["ids"].dtype == np.int32   # 4 to calibrate + 3 held out
    assert np.array_equal(data["ids"][1], np.arange(6, 12) % 7)
    np.savez(tmp_path / "bad.npz", ids=np.zeros((10, 5)), mask=np.zeros((10, 6)))
    with pytest.raises(CalibrationError, match="'ids'.*shape \\[5\\].*\\[6\\]"):
        load_samples({"path": str(tmp_path / "bad.npz")}, [IDS, MASK], 0, warn=print)


def test_one_array_feeds_the_image_input_and_says_so(tmp_path):
    np.save(tmp_path / "x.npy", np.full((6, 4, 4, 3), 7.0))
    said = []
    data = load_samples({"path": str(tmp_path / "x.npy"), "num_samples": 4}, [IMAGE, IDS], 10, warn=said.append)
    assert data["image"].shape == (6, 4, 4, 3) and data["ids"].shape == (6, 6)
    assert "feeds input 'image'" in said[0] and "'ids'" in said[0]
    with pytest.raises(CalibrationError, match="one array per input name"):
        load_samples({"path": str(tmp_path / "x.npy")}, [IDS, MASK], 0, warn=print)


def test_no_tensorflow_imported():
    assert "tensorflow" not in sys.modules or pytest.skip("another test imported TensorFlow first")
