"""Representative data for INT8 calibration (TFLite, TF-TRT) and parity checks.

The data comes from a `.npy`/`.npz` file or a folder of images, or, for demos
and tests only, from seeded random numbers. Every sample is returned float32 in
the model's raw input range (0..255 pixels): preprocessing lives in the graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tfbuild.errors import CalibrationError, ConfigError, TfbuildError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
ARRAY_SUFFIXES = (".npy", ".npz")
SPEC_KEYS = ("path", "key", "num_samples", "random")
DEFAULT_NUM_SAMPLES = 32


def calibration_files(path: str | Path) -> list[Path]:
    """The files whose bytes make up the data, sorted (used to fingerprint inputs).

    Kept free of TensorFlow so that fingerprinting stays cheap.
    """
    path = Path(path)
    if not path.exists():
        raise CalibrationError(
            f"calibration path {path} does not exist: point calibration.path at a "
            f".npy/.npz file or a folder of images")
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise CalibrationError(
                f"calibration folder {path} holds no images "
                f"({', '.join(IMAGE_SUFFIXES)}): add some or point calibration.path elsewhere")
        return files
    if path.suffix.lower() not in ARRAY_SUFFIXES:
        raise CalibrationError(
            f"calibration file {path} is neither .npy nor .npz: save the samples with "
            f"numpy.save or point calibration.path at a folder of images")
    return [path]


def in_section(message: str, section: str) -> str:
    """Name the config section a calibration key lives in (tflite.calibration.path)."""
    return re.sub(r"(?<![\w.])calibration\.(path|key|random|num_samples)\b", rf"{section}.calibration.\1", message)


_MAGIC = (b"\x89PNG", b"\xff\xd8", b"BM", b"GIF8")


def check_source(spec, section: str, sample_shape=None) -> None:
    """Cheap checks of the calibration data before any stage runs (no TensorFlow):
    readable, numeric, not empty, images that are images; the sample shape when known."""
    if not spec.path:
        return
    try:
        path = Path(spec.path)
        files = calibration_files(path)
        if path.is_dir():
            for f in files[:spec.num_samples]:
                with open(f, "rb") as fh:
                    if not fh.read(8).startswith(_MAGIC):
                        raise CalibrationError(f"calibration image {f} is not a PNG, JPEG, BMP or GIF "
                                               "file: remove it from the folder")
        else:
            shape = None if sample_shape is None else \
                [None if d is None or d < 0 else int(d) for d in sample_shape[1:]]
            _load_array(path, spec.key, shape)
    except TfbuildError as e:  # name the section the key lives in
        raise type(e)(in_section(str(e), section)) from None


def load_calibration(spec: Mapping | None, input_shape: Sequence[int | None],
                     dtype: str = "float32", *, seed: int = 0, warn=print) -> np.ndarray:
    """Return calibration samples shaped [N, *input_shape[1:]], cast to `dtype`."""
    if spec is None:
        raise CalibrationError(
            "this stage needs calibration data: set calibration.path (or "
            "calibration.random: true for a demo)")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"calibration must be a mapping with keys {', '.join(SPEC_KEYS)}, "
                          f"got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"unknown calibration key(s) {', '.join(map(str, unknown))}: "
                          f"valid keys are {', '.join(SPEC_KEYS)}")
    num = spec.get("num_samples")
    num = DEFAULT_NUM_SAMPLES if num is None else num
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)):
        raise ConfigError(f"calibration.num_samples must be an integer, got {num!r}")
    if num <= 0:
        raise CalibrationError(f"calibration.num_samples must be at least 1, got {num}")
    random = spec.get("random", False)
    if not isinstance(random, bool):
        raise ConfigError(f"calibration.random must be true or false, got {random!r}")
    if random and spec.get("path") is not None:
        raise ConfigError("calibration sets both path and random: keep only one")

    sample_shape = [None if d is None or d < 0 else int(d) for d in input_shape[1:]]
    if random:
        _require_known(sample_shape, "random calibration data")
        warn("calibration uses random data: it says nothing about accuracy")
        rng = np.random.default_rng(seed)
        data = rng.uniform(0.0, 255.0, size=(num, *sample_shape))
    elif spec.get("path") is None:
        raise CalibrationError(
            "calibration has no path: set calibration.path (or calibration.random: true for a demo)")
    else:
        path = Path(spec["path"])
        files = calibration_files(path)
        if path.is_dir():
            data = _load_images(files[:num], sample_shape)
        else:
            data = _load_array(path, spec.get("key"), sample_shape)[:num]
    if len(data) < num:
        warn(f"calibration asked for {num} samples but {spec.get('path')} holds only "
             f"{len(data)}: using {len(data)}")
    return np.ascontiguousarray(data, dtype=np.dtype(dtype))


def _shape_str(sample_shape) -> str:
    return "[N, " + ", ".join("?" if d is None else str(d) for d in sample_shape) + "]"


def _require_known(sample_shape, what: str) -> None:
    if any(d is None for d in sample_shape):
        raise CalibrationError(
            f"{what} needs a fully known input shape, got {_shape_str(sample_shape)}: "
            f"give the input a fixed shape in the target")


def _load_array(path: Path, key: str | None, sample_shape) -> np.ndarray:
    try:
        # allow_pickle=False: calibration files must not be able to run code;
        # mmap: only the first num_samples of a large .npy are read.
        loaded = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # object arrays need pickle
        raise CalibrationError(f"calibration file {path} holds Python objects ({e}): "
                               f"save a numeric array instead") from None
    except Exception as e:
        raise CalibrationError(f"cannot read calibration file {path}: {e}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if key is not None:
                if key not in names:
                    raise CalibrationError(f"calibration file {path} has no array {key!r}: "
                                           f"set calibration.key to one of {names}")
            elif len(names) == 1:
                key = names[0]
            elif sample_shape is None:  # before the graph is known: one array per input, maybe
                return {n: _numeric(path, loaded[n], n) for n in names}
            else:
                raise CalibrationError(f"calibration file {path} holds arrays {names}: "
                                       f"set calibration.key to the one to use")
            try:
                data = loaded[key]
            except ValueError as e:
                raise CalibrationError(f"array {key!r} in {path} holds Python objects ({e}): "
                                       f"save a numeric array instead") from None
    else:
        data = loaded
    data = _numeric(path, data, None)
    if sample_shape is None:  # checked before the graph is known: the shape comes later
        return data
    expected = _shape_str(sample_shape)
    if data.ndim != len(sample_shape) + 1 or any(
            d is not None and d != n for d, n in zip(sample_shape, data.shape[1:])):
        raise CalibrationError(f"calibration file {path} has shape {list(data.shape)}, "
                               f"expected {expected} to match the model input")
    if len(data) == 0:
        raise CalibrationError(f"calibration file {path} holds 0 samples: expected {expected}")
    return data


def _numeric(path: Path, data, key):
    what = f"array {key!r} in {path}" if key else f"calibration file {path}"
    if data.dtype.kind not in "fiub":  # float, signed or unsigned integer, bool
        raise CalibrationError(f"{what} has dtype {data.dtype}, expected "
                               f"float or integer numbers: save numeric samples")
    if data.ndim == 0 or len(data) == 0:
        raise CalibrationError(f"{what} holds 0 samples: save at least one")
    return data


def load_samples(spec: Mapping, inputs: Sequence[Mapping], extra: int, *, warn) -> dict:
    """The data source's samples, {input name: array}: the first num_samples (to calibrate
    with), plus up to `extra` more where the source has them (held out for parity).

    An .npz whose arrays are named after the inputs feeds each input (other arrays,
    such as labels, are left alone); one array (.npy, an image folder, calibration.key)
    feeds the model's one input, or its one image input: the others are drawn from
    their ranges.
    """
    from .samples import draw
    num = spec.get("num_samples") or DEFAULT_NUM_SAMPLES
    if spec.get("random"):
        warn("calibration uses random data: it says nothing about accuracy")
        return draw(inputs, num)
    path = Path(spec["path"])
    names = [i["name"] for i in inputs]
    if path.suffix.lower() == ".npz" and spec.get("key") is None:
        with np.load(path, allow_pickle=False) as z:
            if set(names) <= set(z.files):
                return {i["name"]: _fits(path, _numeric(path, z[i["name"]], i["name"]), i)[:num + extra]
                        .astype(i["dtype"]) for i in inputs}
    fed = _fed_input(inputs, path)
    shape = [None if d is None or d < 0 else int(d) for d in fed["shape"][1:]]
    one = _load_images(calibration_files(path)[:num + extra], shape) if path.is_dir() \
        else _load_array(path, spec.get("key"), shape)[:num + extra]
    others = [i for i in inputs if i is not fed]
    if others:
        warn(f"calibration data {path.name} feeds input {fed['name']!r}; "
             f"{', '.join(repr(i['name']) for i in others)} drawn from their ranges (an .npz with "
             f"one array per input name feeds them all)")
    return {**draw(others, len(one)), fed["name"]: np.asarray(one, dtype=fed["dtype"])}


def _fed_input(inputs: Sequence[Mapping], path: Path) -> Mapping:
    """The input one array feeds: the only one, else the only float input of rank >= 2."""
    if len(inputs) == 1:
        return inputs[0]
    images = [i for i in inputs if i["shape"] and len(i["shape"]) >= 2 and np.dtype(i["dtype"]).kind == "f"]
    if len(images) == 1:
        return images[0]
    names = ", ".join(i["name"] for i in inputs)
    raise CalibrationError(f"calibration data {path} is one array but the model has inputs {names}: "
                           f"save an .npz with one array per input name (numpy.savez(path, {inputs[0]['name']}=..., ...))")


def _fits(path: Path, data, spec: Mapping):
    want = [None if d is None or d < 0 else int(d) for d in (spec["shape"] or [])[1:]]
    got = list(data.shape[1:])
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want, got)):
        raise CalibrationError(f"array {spec['name']!r} in {path} has samples of shape {got}, expected "
                               f"{want or 'scalars'} to match the model input")
    return data


def _load_images(files: list[Path], sample_shape) -> np.ndarray:
    _require_known(sample_shape, "image calibration data")
    if len(sample_shape) != 3:
        raise CalibrationError(f"an image folder needs a model input of shape [N, H, W, C], "
                               f"got {_shape_str(sample_shape)}: use a .npy file instead")
    height, width, channels = sample_shape
    import tensorflow as tf  # lazy: only image folders need it

    # A private graph works whether or not eager execution is enabled.
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        raw = tf.compat.v1.placeholder(tf.string, [])
        image = tf.io.decode_image(raw, channels=channels, expand_animations=False)
        resized = tf.image.resize(tf.cast(image, tf.float32), [height, width],
                                  method=tf.image.ResizeMethod.BILINEAR)
        images = []
        for f in files:
            try:
                images.append(sess.run(resized, {raw: f.read_bytes()}))
            except tf.errors.OpError as e:
                raise CalibrationError(f"cannot decode calibration image {f}: "
                                       f"{e.message.splitlines()[0]}") from None
    return np.stack(images).astype(np.float32)
