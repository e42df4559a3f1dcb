"""Make the real-data demo's assets from scikit-learn's bundled handwritten digits.

    python benchmarks/make_digits_demo.py [--out targets/data] [--epochs 40]

`sklearn.datasets.load_digits` ships with scikit-learn (1797 8x8 images of the
digits 0-9, pixel values 0..16): nothing is downloaded. With a fixed seed this
trains a small Keras 3 CNN on 1200 of them and writes

    digits.keras       the model: input `image` [None, 8, 8, 1] float32 in the raw
                       0..16 range (a Rescaling layer scales it), output `probs` [None, 10]
    digits_val.npz     the 597 held-out samples: `image` [597, 8, 8, 1] float32, `labels` [597] int64
    digits_cal.npz     64 training samples for INT8 calibration: `image` only

and prints the held-out top-1. The shipped targets digits_tflite / digits_onnx
build from these files; re-running the script rewrites them (same split, and the
same weights up to TensorFlow's CPU nondeterminism).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SEED = 0
NUM_TRAIN = 1200
NUM_CAL = 64


def split():
    """The digits, shuffled with SEED: (x_train, y_train, x_val, y_val); x is [N, 8, 8, 1] float32 in 0..16."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = digits.images.astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order], y[order]
    return x[:NUM_TRAIN], y[:NUM_TRAIN], x[NUM_TRAIN:], y[NUM_TRAIN:]


def build_model():
    import keras
    inputs = keras.Input(shape=(8, 8, 1), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / 16.0, name="scale")(inputs)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(24, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "targets" / "data")
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import keras
    keras.utils.set_random_seed(SEED)

    x_train, y_train, x_val, y_val = split()
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=args.epochs, shuffle=True, verbose=0)

    probs = model.predict(x_val, batch_size=128, verbose=0)
    top1 = float(np.mean(np.argmax(probs, axis=1) == y_val))

    args.out.mkdir(parents=True, exist_ok=True)
    shipped = build_model()   # uncompiled: the file holds no optimizer state
    shipped.set_weights(model.get_weights())
    shipped.save(args.out / "digits.keras")
    np.savez_compressed(args.out / "digits_val.npz", image=x_val, labels=y_val)
    np.savez_compressed(args.out / "digits_cal.npz", image=x_train[:NUM_CAL])

    sizes = {p.name: p.stat().st_size for p in sorted(args.out.glob("digits*"))}
    print(json.dumps({"train": len(x_train), "val": len(x_val), "cal": NUM_CAL,
                      "params": int(model.count_params()), "val_top1": round(top1, 4),
                      "files": sizes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
