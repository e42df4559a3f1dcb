"""Accuracy on the user's own labelled data, and richer parity figures (issue 19, parts 1-2).

A target's `evaluate` section names labelled data and a metric:

    evaluate:
      data: {path: val.npz}   # .npz: one array per model input name + `labels`;
                              # a folder with one sub-folder of images per class;
                              # or {_target_: pkg.fn, **params}: fn(**params) -> (inputs, labels)
      metric: top1            # top1, top5, mae, mse, or {_target_: pkg.fn, higher_is_better: true, **params}
      output: probs           # the output the metric reads (default: the only one)
      max_drop: 0.01          # worse than the frozen graph by more than this (metric units): fail
      min: null               # absolute bounds on the value: top1 >= min ...
      max: null               # ... mae <= max
      num_samples: null       # all
      batch_size: 32

The frozen graph's value is the reference; `judge` compares an artifact's value
with it. "Drop" is always measured in the metric's bad direction: for top1/top5
(higher is better) drop = reference - value, for mae/mse (lower is better)
drop = value - reference; a positive drop is a loss.

`min` and `max` are plain absolute bounds on the value, whatever the metric's
direction: `min: 0.95` for top1, `max: 0.02` for mae. A bound that could only fail
*better* models (`max` on top1, `min` on mae) is refused by `check`.

No TensorFlow here (numpy at import; Pillow only for image folders): planning
imports this module, and evaluation feeds any backend through a `predict` callable.
"""
from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .errors import ConfigError
from .marks import PATH

# name -> higher is better
METRICS = {"top1": True, "top5": True, "mae": False, "mse": False}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
LABELS = "labels"
DATA_KEYS = ("path", "_target_")
METRIC_KEYS = ("_target_", "higher_is_better")   # any other key is a keyword argument of the metric
REL_EPS = 1e-6     # relative error: |got - expected| / max(|expected|, REL_EPS)
TOLERANCE = 1e-9   # float slack when comparing a drop or a value with its bound


@dataclass
class EvaluateCfg:
    data: Any = None                 # {path: FILE.npz | DIR} or {_target_: pkg.fn, **params}
    metric: Any = "top1"             # top1 | top5 | mae | mse | {_target_: pkg.fn, higher_is_better: bool, **params}
    output: Optional[str] = None     # null: the model's only output
    max_drop: Optional[float] = 0.01
    min: Optional[float] = None      # value >= min
    max: Optional[float] = None      # value <= max
    num_samples: Optional[int] = None   # null: all
    batch_size: int = 32


# ----------------------------------------------------------------------------- config

def _plain(value):
    """A mapping as a plain dict (OmegaConf's DictConfig included); other values unchanged."""
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else value


def _data_spec(cfg: EvaluateCfg) -> dict:
    data = _plain(cfg.data)
    if isinstance(data, str):   # a bare path, for the command line: evaluate.data=val.npz
        data = {"path": data}
    if not isinstance(data, dict):
        raise ConfigError(f"evaluate.data={cfg.data!r}: give {{path: FILE.npz or DIR}} or "
                          "{_target_: package.module.function}")
    kinds = [k for k in DATA_KEYS if data.get(k) is not None]
    if len(kinds) != 1:
        raise ConfigError(f"evaluate.data={data!r}: give exactly one of path (an .npz or a folder of "
                          "class folders) or _target_ (package.module.function returning (inputs, labels))")
    if "path" in kinds and set(data) - {"path"}:
        extra = ", ".join(sorted(set(data) - {"path"}))
        raise ConfigError(f"evaluate.data.{extra}: unknown with a path: give only evaluate.data.path")
    return data


def metric_name(metric) -> str:
    """What reports call the metric: top1, or the custom function's dotted name."""
    metric = _plain(metric)
    if isinstance(metric, dict):
        return str(metric.get("_target_"))
    return str(metric).lower()


def higher_is_better(metric) -> bool:
    metric = _plain(metric)
    if isinstance(metric, dict):
        return bool(metric.get("higher_is_better", True))
    return METRICS[str(metric).lower()]


def _import(key: str, target) -> Callable:
    """package.module.function, imported and callable; else a ConfigError naming `key`."""
    if not isinstance(target, str) or "." not in target.strip("."):
        raise ConfigError(f"{key}={target!r}: give package.module.function, importable from where tfbuild runs")
    module_name, _, fn_name = target.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(f"{key}={target!r} cannot be imported ({_one_line(e)}): give "
                          "package.module.function, importable from where tfbuild runs") from None
    if not callable(fn):
        raise ConfigError(f"{key}={target!r} is a {type(fn).__name__}, not a function: "
                          "name a function (package.module.function)")
    return fn


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _metric_fn(metric) -> Tuple[Callable, dict]:
    metric = _plain(metric)
    params = {k: v for k, v in metric.items() if k not in METRIC_KEYS}
    return _import("evaluate.metric._target_", metric.get("_target_")), params


def check(cfg: EvaluateCfg) -> EvaluateCfg:
    """Cheap checks before anything runs; normalises the metric's name. Raises ConfigError."""
    data = _data_spec(cfg)
    if data.get("path") is not None:
        _check_path(Path(str(data["path"])).expanduser())
    else:
        _import("evaluate.data._target_", data["_target_"])
    metric = _plain(cfg.metric)
    if isinstance(metric, dict):
        unknown_target = metric.get("_target_") is None
        if unknown_target:
            raise ConfigError(f"evaluate.metric={metric!r}: a custom metric needs _target_: "
                              "package.module.function (outputs, labels) -> float")
        hib = metric.get("higher_is_better", True)
        if not isinstance(hib, bool):
            raise ConfigError(f"evaluate.metric.higher_is_better={hib!r}: give true or false")
        _metric_fn(metric)
        cfg.metric = metric
    elif isinstance(metric, str) and metric.lower() in METRICS:
        cfg.metric = metric.lower()
    else:
        raise ConfigError(f"evaluate.metric={metric!r} is unknown: use one of {', '.join(METRICS)}, "
                          "or {_target_: package.module.function} taking (outputs, labels) -> float")
    if cfg.max_drop is not None and not cfg.max_drop >= 0:
        raise ConfigError(f"evaluate.max_drop={cfg.max_drop}: give a drop >= 0 (in the metric's units), "
                          "or null for none")
    if cfg.num_samples is not None and cfg.num_samples < 1:
        raise ConfigError(f"evaluate.num_samples={cfg.num_samples}: give at least 1, or null for all")
    if cfg.batch_size < 1:
        raise ConfigError(f"evaluate.batch_size={cfg.batch_size}: give at least 1")
    if cfg.min is not None and cfg.max is not None and cfg.min > cfg.max:
        raise ConfigError(f"evaluate.min={cfg.min} > evaluate.max={cfg.max}: no value can pass; "
                          "lower min or raise max")
    name, hib = metric_name(cfg.metric), higher_is_better(cfg.metric)
    if hib and cfg.max is not None:
        raise ConfigError(f"evaluate.max={cfg.max}: {name} is higher-is-better, so a ceiling only fails "
                          f"better models: use evaluate.min={cfg.max} for a floor")
    if not hib and cfg.min is not None:
        raise ConfigError(f"evaluate.min={cfg.min}: {name} is lower-is-better, so a floor only fails "
                          f"better models: use evaluate.max={cfg.min} for a ceiling")
    return cfg


def _check_path(path: Path) -> None:
    if not path.exists():
        raise ConfigError(f"evaluate.data.path={path} does not exist: give an .npz (one array per "
                          f"input name + {LABELS}) or a folder with one sub-folder of images per class")
    if path.is_dir():
        _class_folders(path)
        return
    if path.suffix.lower() != ".npz":
        raise ConfigError(f"evaluate.data.path={path} is not an .npz: save it with "
                          f"numpy.savez(path, INPUT_NAME=..., {LABELS}=...), or give a folder of class folders")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
    except Exception as e:
        raise ConfigError(f"evaluate.data.path={path} cannot be read as an .npz ({_one_line(e)}): "
                          "save it with numpy.savez") from None
    if LABELS not in names:
        raise ConfigError(f"evaluate.data.path={path} has no {LABELS!r} array (it holds {names}): "
                          f"save the labels as numpy.savez(path, ..., {LABELS}=y)")


def _class_folders(path: Path) -> List[Tuple[str, List[Path]]]:
    """[(class name, sorted image files)] sorted by class name; the class index is the position."""
    classes = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        files = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        classes.append((sub.name, files))
    if not classes:
        raise ConfigError(f"evaluate.data.path={path} holds no class folders: put each class's images "
                          f"({', '.join(IMAGE_SUFFIXES)}) in a sub-folder named after the class")
    if not any(files for _, files in classes):
        raise ConfigError(f"evaluate.data.path={path}: its class folders hold no images "
                          f"({', '.join(IMAGE_SUFFIXES)}): add some")
    return classes


def data_files(cfg: EvaluateCfg) -> List[Path]:
    """The files whose bytes are the data (sorted), for the evaluation's identity. For a
    custom loader, its module's source file (what that code reads in turn is not followed)."""
    data = _data_spec(cfg)
    if data.get("path") is not None:
        path = Path(str(data["path"])).expanduser()
        if path.is_dir():
            return [f for _, files in _class_folders(path) for f in files]
        return [path]
    return _module_files(data["_target_"])


def code_files(cfg: EvaluateCfg) -> List[Path]:
    """The code the evaluation's result depends on: this module, and a custom metric's module."""
    files = [Path(__file__)]
    metric = _plain(cfg.metric)
    if isinstance(metric, dict):
        files += _module_files(metric.get("_target_"))
    return files


def _module_files(target) -> List[Path]:
    try:
        spec = importlib.util.find_spec(str(target).rpartition(".")[0])
    except (ImportError, ValueError):
        spec = None
    origin = spec.origin if spec else None
    return [Path(origin)] if origin and origin.endswith(".py") else []


def identity_params(cfg: EvaluateCfg) -> dict:
    """The evaluation's settings for its fingerprint, without data.path (its content is an
    input: `data_files`), so that moving the data changes nothing."""
    data = {k: v for k, v in _data_spec(cfg).items() if k != "path"}
    metric = _plain(cfg.metric)
    return {"data": data, "metric": dict(metric) if isinstance(metric, dict) else metric,
            "output": cfg.output, "num_samples": cfg.num_samples}


def select_output(cfg: EvaluateCfg, outputs: Sequence[str]) -> str:
    """The output the metric reads: evaluate.output, else the model's only one."""
    outputs = list(outputs)
    if cfg.output is not None:
        if cfg.output not in outputs:
            raise ConfigError(f"evaluate.output={cfg.output}: the model has no such output; "
                              f"give one of {', '.join(outputs)}")
        return cfg.output
    if len(outputs) == 1:
        return outputs[0]
    raise ConfigError(f"evaluate.output is not set and the model has outputs {', '.join(outputs)}: "
                      f"set evaluate.output={outputs[0]} (or another)")


# ----------------------------------------------------------------------------- data

def load(cfg: EvaluateCfg, inputs: Sequence[Mapping]) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """The labelled data: ({input name: [N, ...] array in the input's dtype}, labels [N, ...]).

    `inputs` are the frozen graph's inputs, dicts {name, dtype, shape, range} (shape[0]
    None: the batch). The first `num_samples` are kept: the file's (or loader's) order,
    or for an image folder the classes taken in turn, so that a subset holds every class.
    """
    data = _data_spec(cfg)
    if data.get("path") is not None:
        path = Path(str(data["path"])).expanduser()
        _check_path(path)
        if path.is_dir():
            feeds, labels = _load_folder(path, inputs, cfg.num_samples)
        else:
            feeds, labels = _load_npz(path, inputs)
        where = f"evaluate.data.path={path}"
    else:
        params = {k: v for k, v in data.items() if k != "_target_"}
        fn = _import("evaluate.data._target_", data["_target_"])
        result = fn(**params)
        where = f"evaluate.data._target_={data['_target_']}"
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise ConfigError(f"{where} returned {type(result).__name__}, not (inputs, labels): "
                              "return ({input name: array}, labels), or (array, labels) for one input")
        feeds, labels = result
        if not isinstance(feeds, Mapping):
            if len(inputs) != 1:
                raise ConfigError(f"{where} returned one array but the model has inputs "
                                  f"{', '.join(i['name'] for i in inputs)}: return {{input name: array}}")
            feeds = {inputs[0]["name"]: feeds}
    return _validate(where, dict(feeds), labels, inputs, cfg.num_samples)


def _load_npz(path: Path, inputs: Sequence[Mapping]):
    with np.load(path, allow_pickle=False) as z:
        names = [n for n in z.files if n != LABELS]
        wanted = [i["name"] for i in inputs]
        if set(wanted) <= set(names):
            feeds = {n: z[n] for n in wanted}
        elif len(wanted) == 1 and len(names) == 1:   # one input, one array: whatever its name
            feeds = {wanted[0]: z[names[0]]}
        else:
            missing = ", ".join(n for n in wanted if n not in names)
            raise ConfigError(f"evaluate.data.path={path} has no array for input(s) {missing} (it holds "
                              f"{', '.join(names) or 'only labels'}): save one array per input name")
        return feeds, z[LABELS]


def _load_folder(path: Path, inputs: Sequence[Mapping], num: Optional[int]):
    where = f"evaluate.data.path={path}"
    if len(inputs) != 1:
        raise ConfigError(f"{where} is a folder of images but the model has inputs "
                          f"{', '.join(i['name'] for i in inputs)}: save an .npz with one array per input name")
    spec = inputs[0]
    shape = list(spec["shape"] or [])
    if len(shape) != 4 or any(d is None or d < 0 for d in shape[1:]) or shape[3] not in (1, 3, 4):
        raise ConfigError(f"{where} is a folder of images but input {spec['name']!r} has shape "
                          f"{_shape_str(shape)}: images need [N, H, W, 1|3|4]; save an .npz instead")
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError(f"{where} is a folder of images, and reading images needs Pillow: "
                          "pip install pillow (or save the data as an .npz)") from None
    height, width, channels = shape[1:]
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    classes = _class_folders(path)
    # The classes in turn (one of each, then the next of each ...): any prefix is balanced.
    order = [(label, files[k]) for k in range(max(len(f) for _, f in classes))
             for label, (_, files) in enumerate(classes) if k < len(files)]
    if num is not None:
        order = order[:num]
    images, labels = [], []
    for label, file in order:
        try:
            with Image.open(file) as im:
                im = im.convert(mode)
                if im.size != (width, height):
                    im = im.resize((width, height), Image.BILINEAR)
                array = np.asarray(im, dtype=np.float32)
        except Exception as e:
            raise ConfigError(f"evaluate.data: {file} cannot be read as an image ({_one_line(e)}): "
                              "remove it or replace it") from None
        images.append(array.reshape(height, width, channels))
        labels.append(label)
    # Raw 0..255 pixels, as calibration reads them: preprocessing lives in the graph.
    return {spec["name"]: np.stack(images)}, np.asarray(labels, dtype=np.int64)


def _shape_str(shape) -> str:
    return "[" + ", ".join("N" if i == 0 else "?" if d is None or d < 0 else str(d)
                           for i, d in enumerate(shape)) + "]"


def _validate(where: str, feeds: dict, labels, inputs: Sequence[Mapping], num: Optional[int]):
    by_name = {i["name"]: i for i in inputs}
    unknown = [n for n in feeds if n not in by_name]
    if unknown:
        raise ConfigError(f"{where}: {', '.join(map(str, unknown))} is not a model input; "
                          f"the inputs are {', '.join(by_name)}")
    missing = [n for n in by_name if n not in feeds]
    if missing:
        raise ConfigError(f"{where} gives no data for input(s) {', '.join(missing)}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "fiub" or labels.ndim == 0:
        raise ConfigError(f"{where}: labels have dtype {labels.dtype} and shape {list(labels.shape)}: "
                          "give numbers, one row per sample")
    out = {}
    for name, spec in by_name.items():
        array = np.asarray(feeds[name])
        want = list(spec["shape"] or [])
        if array.dtype.kind not in "fiub":
            raise ConfigError(f"{where}: input {name!r} has dtype {array.dtype}: give numbers")
        if array.ndim != max(len(want), 1) or any(
                w is not None and w >= 0 and w != g for w, g in zip(want[1:], array.shape[1:])):
            raise ConfigError(f"{where}: input {name!r} has shape {list(array.shape)}, expected "
                              f"{_shape_str(want) if want else '[N]'} to match the model input")
        dtype = np.dtype(spec["dtype"])
        if dtype.kind in "iub" and array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
            raise ConfigError(f"{where}: input {name!r} is {dtype} but the data holds fractional "
                              "values: save whole numbers")
        out[name] = array.astype(dtype, copy=False)
    counts = {len(a) for a in out.values()} | {len(labels)}
    if len(counts) != 1:
        sizes = ", ".join(f"{n}: {len(a)}" for n, a in out.items())
        raise ConfigError(f"{where}: the inputs and labels differ in length ({sizes}, "
                          f"{LABELS}: {len(labels)}): give one label per sample")
    if len(labels) == 0:
        raise ConfigError(f"{where} holds 0 samples: give at least one")
    if num is not None:
        out = {n: a[:num] for n, a in out.items()}
        labels = labels[:num]
    return out, labels


def batches(feeds: Dict[str, np.ndarray], batch_size: int, fixed: bool = False):
    """(start, stop, feed) for each batch. `fixed`: every feed holds exactly batch_size
    samples, the last one filled by repeating its last sample (an artifact with a fixed batch)."""
    n = min(len(a) for a in feeds.values())
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        feed = {k: a[start:stop] for k, a in feeds.items()}
        if fixed and stop - start < batch_size:
            pad = batch_size - (stop - start)
            feed = {k: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for k, a in feed.items()}
        yield start, stop, feed


def predict_all(predict: Callable[[Dict[str, np.ndarray]], np.ndarray], feeds: Dict[str, np.ndarray],
                batch_size: int, fixed: bool = False,
                progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """`predict(feed) -> the metric's output` over all samples in batches, concatenated.
    `progress(done, total)` after each batch."""
    n = min(len(a) for a in feeds.values())
    parts = []
    for start, stop, feed in batches(feeds, batch_size, fixed):
        out = np.asarray(predict(feed))
        parts.append(out[:stop - start])
        if progress is not None:
            progress(stop, n)
    return np.concatenate(parts)


# ----------------------------------------------------------------------------- metrics

def _class_scores(name: str, outputs: np.ndarray) -> np.ndarray:
    """[N, C] from [N, C] or [N, 1, 1, C] (size-1 middle dims dropped)."""
    outputs = np.asarray(outputs)
    if outputs.ndim > 2:
        kept = [d for d in outputs.shape[1:] if d != 1]
        outputs = outputs.reshape(len(outputs), *(kept or [1]))
    if outputs.ndim != 2 or outputs.shape[1] < 2:
        raise ConfigError(f"evaluate.metric={name} needs class scores [N, C], got an output of shape "
                          f"{list(np.shape(outputs))}: pick another evaluate.output or a custom metric")
    return outputs


def _class_labels(name: str, labels, n: int, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == classes and classes > 1:   # one-hot (or soft) labels
        labels = np.argmax(labels, axis=1)
    labels = labels.reshape(len(labels), -1) if labels.ndim > 1 else labels
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or len(labels) != n:
        raise ConfigError(f"evaluate.metric={name}: labels of shape {list(np.shape(labels))} do not fit "
                          f"{n} samples of {classes} classes: give class indices [N] or one-hot [N, {classes}]")
    if labels.dtype.kind == "f":
        if not np.all(labels == np.round(labels)):
            raise ConfigError(f"evaluate.metric={name}: labels hold fractional values: give class indices")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ConfigError(f"evaluate.metric={name}: labels run from {labels.min()} to {labels.max()} but "
                          f"the output has {classes} classes: give indices 0..{classes - 1}")
    return labels


def _top_k(outputs, labels, k: int) -> float:
    name = f"top{k}"
    scores = _class_scores(name, outputs)
    n, classes = scores.shape
    if classes < k:
        raise ConfigError(f"evaluate.metric={name} needs at least {k} classes, the output has {classes}: "
                          "use top1")
    truth = _class_labels(name, labels, n, classes)
    if k == 1:
        hits = np.argmax(scores, axis=1) == truth
    else:
        best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        hits = np.any(best == truth[:, None], axis=1)
    return float(np.mean(hits))


def _errors(name: str, outputs, labels) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if labels.shape != outputs.shape:
        if labels.size != outputs.size:
            raise ConfigError(f"evaluate.metric={name}: labels of shape {list(labels.shape)} do not match "
                              f"the output's {list(outputs.shape)}: give one target per output value")
        labels = labels.reshape(outputs.shape)
    return outputs - labels


def score(metric, outputs: np.ndarray, labels) -> float:
    """The metric over all samples: outputs [N, ...] (the chosen output), labels [N, ...]."""
    metric = _plain(metric)
    if isinstance(metric, dict):
        fn, params = _metric_fn(metric)
        value = fn(outputs, labels, **params)
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"evaluate.metric._target_={metric.get('_target_')} returned "
                              f"{type(value).__name__}, not a number: return a float") from None
        if math.isnan(value):
            raise ConfigError(f"evaluate.metric._target_={metric.get('_target_')} returned NaN")
        return value
    name = str(metric).lower()
    if name == "top1":
        return _top_k(outputs, labels, 1)
    if name == "top5":
        return _top_k(outputs, labels, 5)
    if name == "mae":
        return float(np.mean(np.abs(_errors(name, outputs, labels))))
    if name == "mse":
        return float(np.mean(np.square(_errors(name, outputs, labels))))
    raise ConfigError(f"evaluate.metric={metric!r} is unknown: use one of {', '.join(METRICS)}")


def drop(metric, value: float, reference: float) -> float:
    """How much worse `value` is than `reference`, in the metric's bad direction (> 0: worse)."""
    return reference - value if higher_is_better(metric) else value - reference


def judge(cfg: EvaluateCfg, value: float, reference: Optional[float]) -> Tuple[bool, str]:
    """(ok, one line) for an artifact's value against the frozen graph's (`reference`;
    None: judge the frozen graph itself, against min/max only)."""
    name = metric_name(cfg.metric)
    d = None if reference is None else drop(cfg.metric, value, reference)
    shown = f"{name} {value:.4f}" + ("" if reference is None else f" vs frozen graph {reference:.4f}")
    if d is not None and cfg.max_drop is not None and d > cfg.max_drop + TOLERANCE:
        return False, f"{shown}: drop {d:.4f} > evaluate.max_drop {cfg.max_drop}"
    if cfg.min is not None and value < cfg.min - TOLERANCE:
        return False, f"{shown}: below evaluate.min {cfg.min}"
    if cfg.max is not None and value > cfg.max + TOLERANCE:
        return False, f"{shown}: above evaluate.max {cfg.max}"
    return True, shown + ("" if d is None else f" (drop {d:.4f})")


def record(cfg: EvaluateCfg, value: float, reference: Optional[float], samples: int) -> dict:
    """The report's `evaluation` entry."""
    return {"metric": metric_name(cfg.metric), "value": value, "reference": reference,
            "drop": None if reference is None else drop(cfg.metric, value, reference), "samples": samples}


# ----------------------------------------------------------------------------- parity figures

# measure -> True if larger is better (a gate is a floor), False if smaller is (a ceiling)
MEASURES = {"max_abs_error": False, "mean_abs_error": False, "max_rel_error": False,
            "mean_rel_error": False, "cosine_min": True, "top1_agreement": True}


def _classifier_like(a: np.ndarray) -> bool:
    return a.ndim == 2 and a.shape[1] > 1


def agreement(expected: Sequence[np.ndarray], got: Sequence[np.ndarray], eps: float = REL_EPS) -> dict:
    """Parity figures over paired outputs (each [N, ...]), the worst over the outputs:
    max/mean absolute error, max/mean relative error (|got - expected| / max(|expected|, eps)),
    cosine_min (the least cosine similarity of a sample's values; for outputs of one value per
    sample, over the whole output), top1_agreement (the share of samples whose argmax agrees,
    over the outputs of shape [N, C], C > 1; None where there is none)."""
    if len(expected) != len(got):
        raise ValueError(f"agreement: {len(expected)} expected outputs but {len(got)} got")
    figures = {"max_abs_error": 0.0, "mean_abs_error": 0.0, "max_rel_error": 0.0, "mean_rel_error": 0.0,
               "cosine_min": 1.0, "top1_agreement": None, "samples": 0}
    for e, g in zip(expected, got):
        e = np.asarray(e, dtype=np.float64)
        g = np.asarray(g, dtype=np.float64)
        if e.shape != g.shape:
            raise ValueError(f"agreement: output shapes differ: expected {list(e.shape)}, got {list(g.shape)}")
        figures["samples"] = max(figures["samples"], len(e) if e.ndim else 1)
        if e.size == 0:
            continue
        diff = np.abs(g - e)
        rel = diff / np.maximum(np.abs(e), eps)
        figures["max_abs_error"] = max(figures["max_abs_error"], float(diff.max()))
        figures["mean_abs_error"] = max(figures["mean_abs_error"], float(diff.mean()))
        figures["max_rel_error"] = max(figures["max_rel_error"], float(rel.max()))
        figures["mean_rel_error"] = max(figures["mean_rel_error"], float(rel.mean()))
        rows_e, rows_g = (e.reshape(len(e), -1), g.reshape(len(g), -1)) if e.ndim >= 2 and e[0].size > 1 \
            else (e.reshape(1, -1), g.reshape(1, -1))
        figures["cosine_min"] = min(figures["cosine_min"], float(_cosines(rows_e, rows_g).min()))
        if _classifier_like(e):
            share = float(np.mean(np.argmax(e, axis=1) == np.argmax(g, axis=1)))
            prior = figures["top1_agreement"]
            figures["top1_agreement"] = share if prior is None else min(prior, share)
    return figures


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity; two zero rows agree (1), one zero row does not (0)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    cos = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


def gate(figures: dict, tolerance: Mapping, key: str) -> Tuple[bool, str]:
    """(ok, one line) for `<stage>.tolerance: {measure: bound, ...}` (`key`: e.g. tflite.tolerance):
    a ceiling for the error measures, a floor for cosine_min and top1_agreement."""
    worst = []
    for measure, bound in dict(tolerance).items():
        if measure not in MEASURES:
            raise ConfigError(f"{key}.{measure}: not a parity measure; use one of {', '.join(MEASURES)}")
        value = figures.get(measure)
        if value is None:
            raise ConfigError(f"{key}.{measure}: the model has no classifier output [N, C] to measure "
                              "it on: gate on another measure")
        floor = MEASURES[measure]
        if (value < bound - TOLERANCE) if floor else (value > bound + TOLERANCE):
            worst.append(f"{measure} {value:.6g} {'<' if floor else '>'} {bound}")
    if worst:
        return False, f"parity: {'; '.join(worst)} ({key})"
    return True, "parity: " + ", ".join(f"{m} {figures[m]:.6g}" for m in tolerance)


# ----------------------------------------------------------------------------- the engine's view

@dataclass(frozen=True)
class Evaluation:
    """What the engine hands each stage's `evaluate` (engine.plan.Options.evaluation)."""
    cfg: EvaluateCfg = field(metadata=PATH)   # in a stage's settings, `identity` stands for it
    identity: str     # digest of the data's bytes, the settings and the code that scores

    def record(self, value: float, reference: Optional[float], samples: int) -> dict:
        return record(self.cfg, value, reference, samples)

    def judge(self, entry: dict) -> Tuple[bool, str]:
        """Against today's max_drop/min/max: a kept record is judged again on every run."""
        return judge(self.cfg, entry["value"], entry["reference"])


def evaluation(cfg: Optional[EvaluateCfg]) -> Optional[Evaluation]:
    """The evaluation of a target's `evaluate` section (None: the target evaluates nothing)."""
    if cfg is None:
        return None
    import hashlib
    import json
    digest = hashlib.sha256(json.dumps(identity_params(cfg), sort_keys=True, default=str).encode())
    for path in (*data_files(cfg), *code_files(cfg)):
        digest.update(path.name.encode())
        digest.update(Path(path).read_bytes())
    return Evaluation(cfg, digest.hexdigest()[:24])
