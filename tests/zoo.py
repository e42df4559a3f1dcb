"""A zoo of small real models that users deploy, built with random weights.

Each `Case` builds a model (a keras.Model or a tf.Module), says its inputs (shape,
dtype, realistic value range) and the output names its frozen graph will have.
`save` writes it the ways users ship it (.keras file, SavedModel via
`model.export`), `samples` makes realistic inputs, `reference` runs the original
model in inference mode. No weight downloads: keras.applications use
weights=None. Import is cheap: TensorFlow/Keras are imported inside functions.

Output names: a `.keras` file is frozen through the model's call, its outputs
named after the layers that make them (or the keys of a dict output); a
SavedModel through its signature, named by the signature's keys, which for a
single-output `model.export` is `output_0`. `frozen_outputs(case, fmt)` gives
the names for each format; `Case.outputs` are the `.keras` (model's own) names.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np

SEED = 1234

InputSpec = Tuple[tuple, str, tuple]   # (shape with batch None, dtype, (lo, hi))


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], object]
    inputs: Dict[str, InputSpec]
    outputs: Tuple[str, ...]
    int8: bool
    slow: bool = False
    pin: Dict[str, list] = field(default_factory=dict)   # freeze.input_shapes to pin dynamic dims
    sm_outputs: Tuple[str, ...] = ()                   # SavedModel signature keys, if not `outputs`

    @property
    def is_module(self) -> bool:
        return self.name in _MODULE_CASES


# --------------------------------------------------------------------------- builders

def _keras():
    import keras
    keras.utils.set_random_seed(SEED)
    return keras


def _application(fn_name: str, size: int, **kw):
    def build():
        keras = _keras()
        fn = getattr(keras.applications, fn_name)
        image = keras.Input((size, size, 3), name="image")
        return fn(weights=None, input_tensor=image, classes=10, **kw)
    build.__name__ = f"build_{fn_name}"
    return build


def build_bilstm_tokens():
    keras = _keras()
    L = keras.layers
    ids = keras.Input((16,), dtype="int32", name="ids")
    x = L.Embedding(500, 16)(ids)
    x = L.Bidirectional(L.LSTM(16))(x)
    out = L.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(ids, out, name="bilstm_tokens")


def build_gru_tokens():
    keras = _keras()
    L = keras.layers
    ids = keras.Input((16,), dtype="int32", name="ids")
    x = L.Embedding(500, 16)(ids)
    x = L.GRU(16)(x)
    out = L.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(ids, out, name="gru_tokens")


def build_attention_encoder():
    keras = _keras()
    L, ops = keras.layers, keras.ops
    ids = keras.Input((16,), dtype="int32", name="ids")
    mask = keras.Input((16,), dtype="int32", name="mask")
    positions = ops.cumsum(ops.ones_like(ids), axis=1) - 1          # 0..15, symbolic
    x = L.Embedding(300, 16)(ids) + L.Embedding(16, 16)(positions)
    keep = ops.cast(mask, "bool")
    attn_mask = ops.logical_and(ops.expand_dims(keep, 1), ops.expand_dims(keep, 2))   # [B, 16, 16]
    a = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x, attention_mask=attn_mask)
    x = L.LayerNormalization()(x + a)
    f = L.Dense(32, activation="gelu")(x)                           # exact (erf) gelu
    x = L.LayerNormalization()(x + L.Dense(16)(f))
    m = ops.expand_dims(ops.cast(mask, "float32"), -1)
    pooled = ops.sum(x * m, axis=1) / ops.maximum(ops.sum(m, axis=1), 1.0)
    out = L.Dense(2, name="logits")(pooled)
    return keras.Model([ids, mask], out, name="attention_encoder")


def build_dict_two_outputs():
    keras = _keras()
    L = keras.layers
    image = keras.Input((16, 16, 3), name="image")
    meta = keras.Input((4,), name="meta")
    x = L.Conv2D(8, 3, activation="relu")(image)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Concatenate()([x, L.Dense(8, activation="relu")(meta)])
    cls = L.Dense(3, activation="softmax", name="cls")(x)
    box = L.Dense(4, name="box")(x)
    return keras.Model(inputs={"image": image, "meta": meta}, outputs={"cls": cls, "box": box},
                       name="dict_two_outputs")


def build_fully_conv():
    keras = _keras()
    L = keras.layers
    image = keras.Input((None, None, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu")(image)
    x = L.BatchNormalization()(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(5, activation="softmax", name="probs")(x)
    return keras.Model(image, out, name="fully_conv")


def build_scalar_module():
    import tensorflow as tf
    _keras()

    class ScalarModule(tf.Module):
        def __init__(self):
            super().__init__(name="scalar_module")
            self.w = tf.Variable(tf.random.stateless_normal([4, 3], seed=[SEED, 0]), name="w")
            self.b = tf.Variable(tf.zeros([3]), name="b")

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([], tf.float32, name="temperature")])
        def serve(self, x, temperature):
            logits = tf.matmul(x, self.w) + self.b
            if temperature > 1.0:                     # autograph: tf.cond on the scalar
                scaled = logits / temperature
            else:
                scaled = logits / tf.maximum(temperature, 0.1) - tf.reduce_max(logits, -1, keepdims=True)
            return {"probs": tf.nn.softmax(scaled)}

    return ScalarModule()


# --------------------------------------------------------------------------- the zoo

IMG255 = (0.0, 255.0)    # applications with their own preprocessing layers (MobileNetV3, EfficientNet, ConvNeXt)
IMG11 = (-1.0, 1.0)      # ResNetV2 ('tf' mode preprocessing)
IMGCAFFE = (-3.0, 3.0)   # DenseNet ('torch' mode: per-channel normalised)


def _app_case(name, fn_name, size, rng, slow=False, out="predictions", **kw):
    return Case(name, _application(fn_name, size, **kw),
                {"image": ((None, size, size, 3), "float32", rng)}, (out,),
                int8=True, slow=slow, sm_outputs=("output_0",))


CASES: Tuple[Case, ...] = (
    _app_case("mobilenetv3", "MobileNetV3Small", 32, IMG255, minimalistic=False),
    _app_case("efficientnetb0", "EfficientNetB0", 32, IMG255),
    _app_case("convnext_tiny", "ConvNeXtTiny", 32, IMG255, slow=True, out="convnext_tiny_head_dense"),
    _app_case("resnet50v2", "ResNet50V2", 32, IMG11, slow=True),
    _app_case("densenet121", "DenseNet121", 32, IMGCAFFE, slow=True),
    Case("bilstm_tokens", build_bilstm_tokens, {"ids": ((None, 16), "int32", (0, 500))},
         ("probs",), int8=False, sm_outputs=("output_0",)),
    Case("gru_tokens", build_gru_tokens, {"ids": ((None, 16), "int32", (0, 500))},
         ("probs",), int8=False, sm_outputs=("output_0",)),
    Case("attention_encoder", build_attention_encoder,
         {"ids": ((None, 16), "int32", (0, 300)), "mask": ((None, 16), "int32", (0, 1))},
         ("logits",), int8=False, sm_outputs=("output_0",)),
    Case("dict_two_outputs", build_dict_two_outputs,
         {"image": ((None, 16, 16, 3), "float32", (0.0, 1.0)), "meta": ((None, 4), "float32", (-1.0, 1.0))},
         ("box", "cls"), int8=True),
    Case("scalar_module", build_scalar_module,
         {"x": ((None, 4), "float32", (-2.0, 2.0)), "temperature": ((), "float32", (0.5, 2.0))},
         ("probs",), int8=False),
    Case("fully_conv", build_fully_conv, {"image": ((None, None, None, 3), "float32", (0.0, 1.0))},
         ("probs",), int8=True, pin={"image": [None, 24, 24, 3]}, sm_outputs=("output_0",)),
)

_MODULE_CASES = {"scalar_module"}
BY_NAME: Dict[str, Case] = {c.name: c for c in CASES}


def fast_cases() -> Tuple[Case, ...]:
    return tuple(c for c in CASES if not c.slow)


def frozen_outputs(case: Case, fmt: str) -> Tuple[str, ...]:
    """The output node names of the frozen graph made from format `fmt` ('keras' or 'saved_model')."""
    return case.sm_outputs if fmt == "saved_model" and case.sm_outputs else case.outputs


# --------------------------------------------------------------------------- save / samples / reference

def save(case: Case, root: Path, model=None) -> Dict[str, Path]:
    """Build (unless given) and write the model: {"keras": .keras file, "saved_model": dir}.
    tf.Module cases are written only as a SavedModel."""
    import tensorflow as tf
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    model = case.build() if model is None else model
    out: Dict[str, Path] = {}
    sm = root / f"{case.name}_sm"
    if case.is_module:
        tf.saved_model.save(model, str(sm), signatures=model.serve)
    else:
        kpath = root / f"{case.name}.keras"
        model.save(str(kpath))
        out["keras"] = kpath
        model.export(str(sm), verbose=False)
    out["saved_model"] = sm
    return out


def samples(case: Case, n: int = 2, seed: int = 0) -> Dict[str, np.ndarray]:
    """Realistic inputs, batch n (rank-0 inputs: one value). Dynamic non-batch dims take `pin`'s
    sizes (or 24)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, dtype, (lo, hi)) in case.inputs.items():
        pinned = case.pin.get(name)
        if len(shape) == 0:
            dims: tuple = ()
        else:
            dims = tuple(n if i == 0 else (d if d is not None else (pinned[i] if pinned else 24))
                         for i, d in enumerate(shape))
        if np.issubdtype(np.dtype(dtype), np.integer) or dtype == "bool":
            if (lo, hi) == (0, 1):          # a 0/1 mask: mostly ones, a padded tail per row
                a = np.ones(dims, dtype)
                if len(dims) == 2:
                    for r in range(dims[0]):
                        a[r, rng.integers(dims[1] // 2, dims[1] + 1):] = 0
                feeds[name] = a
            else:
                feeds[name] = rng.integers(lo, hi, size=dims).astype(dtype)
        else:
            feeds[name] = rng.uniform(lo, hi, size=dims).astype(dtype)
    return feeds


def reference(case: Case, model, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The original model's own outputs (inference mode), keyed by output name (`case.outputs`)."""
    import tensorflow as tf
    if case.is_module or not hasattr(model, "inputs"):
        out = model.serve(**{k: tf.constant(v) for k, v in feeds.items()})
        return {k: np.asarray(v) for k, v in out.items()}
    struct = getattr(model, "_inputs_struct", None)
    if isinstance(struct, dict):
        args = {k: feeds[k] for k in struct}
    else:
        args = [feeds[t.name] for t in model.inputs]
        if len(args) == 1 and not isinstance(struct, (list, tuple)):
            args = args[0]
    out = model(args, training=False)
    if isinstance(out, dict):
        return {k: np.asarray(v) for k, v in out.items()}
    out = out if isinstance(out, (list, tuple)) else [out]
    return {k: np.asarray(v) for k, v in zip(case.outputs, out)}
