"""Calibration data from .npy/.npz files, image folders and seeded random numbers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbuild.inputs.calibration import calibration_files, load_calibration
from tfbuild.errors import CalibrationError, ConfigError

REPO = Path(__file__).resolve().parents[2]
SHAPE = [None, 32, 32, 3]


def write_pngs(folder: Path, names, height=40, width=48):
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
            (folder / name).write_bytes(sess.run(tf.io.encode_png(pixels)))
    return folder


def test_npy_takes_first_n_as_float32(tmp_path):
    data = np.arange(40 * 32 * 32 * 3, dtype=np.uint8).reshape(40, 32, 32, 3)
    np.save(tmp_path / "cal.npy", data)
    out = load_calibration({"path": str(tmp_path / "cal.npy"), "num_samples": 5}, SHAPE)
    assert out.dtype == np.float32 and out.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(out, data[:5].astype(np.float32))
    assert len(load_calibration({"path": tmp_path / "cal.npy"}, [-1, 32, 32, 3])) == 32


def test_npz_single_array_or_named_key(tmp_path):
    a = np.ones((3, 32, 32, 3), np.float64)
    np.savez(tmp_path / "one.npz", images=a)
    assert load_calibration({"path": tmp_path / "one.npz"}, SHAPE).shape == (3, 32, 32, 3)
    np.savez(tmp_path / "two.npz", x=a, y=2 * a)
    out = load_calibration({"path": tmp_path / "two.npz", "key": "y"}, SHAPE)
    assert out.dtype == np.float32 and float(out.max()) == 2.0
    with pytest.raises(CalibrationError, match="calibration.key"):
        load_calibration({"path": tmp_path / "two.npz"}, SHAPE)
    with pytest.raises(CalibrationError, match="'z'"):
        load_calibration({"path": tmp_path / "two.npz", "key": "z"}, SHAPE)


def test_image_folder_is_decoded_and_resized(tmp_path):
    folder = write_pngs(tmp_path / "imgs", ["b.png", "a.png", "c.png"])
    (folder / "notes.txt").write_text("not an image")
    out = load_calibration({"path": str(folder), "num_samples": 2}, SHAPE, warn=pytest.fail)
    assert out.shape == (2, 32, 32, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255 and out.std() > 10  # real pixels, 0..255
    gray = load_calibration({"path": str(folder)}, [None, 8, 8, 1], warn=lambda m: None)
    assert gray.shape == (3, 8, 8, 1)


def test_calibration_files_sorted_images_only(tmp_path):
    folder = write_pngs(tmp_path / "imgs", ["b.PNG", "a.png"])
    (folder / "c.jpg").write_bytes(b"")
    (folder / "readme.md").write_text("x")
    assert [p.name for p in calibration_files(folder)] == ["a.png", "b.PNG", "c.jpg"]
    np.save(tmp_path / "x.npy", np.zeros((1, 2)))
    assert calibration_files(tmp_path / "x.npy") == [tmp_path / "x.npy"]


def test_calibration_files_does_not_import_tensorflow(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 2)))
    code = ("import sys; from tfbuild.inputs.calibration import calibration_files; "
            f"assert calibration_files({str(tmp_path / 'x.npy')!r}); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_wrong_trailing_shape_names_both_shapes(tmp_path):
    np.save(tmp_path / "cal.npy", np.zeros((4, 28, 28, 3), np.float32))
    with pytest.raises(CalibrationError, match=r"\[4, 28, 28, 3\].*\[N, 32, 32, 3\]") as err:
        load_calibration({"path": tmp_path / "cal.npy"}, SHAPE)
    assert "cal.npy" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("data", [np.array([["a"] * 3] * 2),
                                  np.zeros((2, 32, 32, 3), complex),
                                  np.array([None, 1], dtype=object)])
def test_non_numeric_dtype_rejected(tmp_path, data):
    np.save(tmp_path / "cal.npy", data, allow_pickle=True)
    with pytest.raises(CalibrationError, match="cal.npy"):
        load_calibration({"path": tmp_path / "cal.npy"}, SHAPE)


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(CalibrationError, match="nowhere.npy"):
        load_calibration({"path": tmp_path / "nowhere.npy"}, SHAPE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="empty"):
        load_calibration({"path": tmp_path / "empty"}, SHAPE)
    with pytest.raises(CalibrationError, match="empty"):
        calibration_files(tmp_path / "empty")
    (tmp_path / "cal.csv").write_text("1,2")
    with pytest.raises(CalibrationError, match="cal.csv"):
        calibration_files(tmp_path / "cal.csv")
    with pytest.raises(CalibrationError, match="calibration"):
        load_calibration(None, SHAPE)
    with pytest.raises(CalibrationError, match="num_samples"):
        load_calibration({"random": True, "num_samples": 0}, SHAPE)
    with pytest.raises(ConfigError, match="pth"):
        load_calibration({"pth": "x.npy"}, SHAPE)


def test_corrupt_image_names_the_file(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="broken.png"):
        load_calibration({"path": tmp_path / "imgs"}, SHAPE)


def test_random_is_seeded_and_warns():
    warnings = []
    a = load_calibration({"random": True, "num_samples": 4}, SHAPE, warn=warnings.append)
    b = load_calibration({"random": True, "num_samples": 4}, SHAPE, warn=warnings.append)
    assert a.shape == (4, 32, 32, 3) and a.dtype == np.float32
    assert 0 <= a.min() and a.max() <= 255
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, load_calibration({"random": True}, SHAPE, seed=1,
                                                  warn=warnings.append)[:4])
    assert warnings == ["calibration uses random data: it says nothing about accuracy"] * 3
