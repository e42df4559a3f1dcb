"""Graph-mode (tf.compat.v1) model zoo: DenseNet-BC and MNIST softmax regression.

Built from raw ops (`get_variable`, `tf.nn.conv2d`, `fused_batch_norm`, ...)
because `tf.contrib` is gone and `tf.compat.v1.layers` refuses to run under
Keras 3. The one entry point is `build_logits`.

Variables live under a fixed variable scope (`densenet/...`, `mnist/...`)
opened with AUTO_REUSE, so calling `build_logits` once per tower under
`tf.name_scope('Card_0')`, `tf.name_scope('Card_1')`, ... shares one set of
variables while each tower's ops carry its own prefix.

Each training-mode call adds its own batch-norm update ops to UPDATE_OPS and
its own weight-decay terms to REGULARIZATION_LOSSES, all under the current
name scope: in a multi-tower graph filter them by tower, e.g.
`tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, 'Card_0/')`.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, Mapping

import tensorflow as tf

from tfbuild.errors import ConfigError

_UNKNOWN = ("unknown model name {name!r}; built-in models: densenet, mnist_softmax "
            "(or give model._target_: package.module.function)")


def build_logits(model: Any, images: tf.Tensor, is_training: bool) -> tf.Tensor:
    """Build the model's graph on `images` and return logits [batch, num_classes].

    `model` is a mapping or a ModelCfg dataclass.
    """
    if dataclasses.is_dataclass(model):
        model = dataclasses.asdict(model)
    name = _require(model, "name")
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ConfigError(_UNKNOWN.format(name=name))
    return builder(model, images, is_training)


# --------------------------------------------------------------------------- config

def _require(model: Mapping[str, Any], key: str) -> Any:
    if key not in model or model[key] is None:
        what = model.get("name", "the model")
        raise ConfigError(f"model.{key} is required for {what}")
    return model[key]


def _positive_int(model: Mapping[str, Any], key: str) -> int:
    value = _require(model, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
    return value


def _number(model: Mapping[str, Any], key: str, default: float) -> float:
    value = model.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"model.{key} must be a number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- layers

def _seed() -> int:
    # Seed from the variable's scope path (not a counter, not Python's hash): the
    # same layer gets the same weights in every build and every process, and two
    # layers of the same shape still differ.
    path = tf.compat.v1.get_variable_scope().name + "/weights"
    return zlib.crc32(path.encode()) & 0x7FFFFFFF


def _conv(x, filters: int, kernel: int, stride: int, hp: dict, bias: bool = False):
    """Conv in the current variable scope: `weights` (+ `biases`), SAME padding."""
    in_ch = int(x.shape[-1])
    w = tf.compat.v1.get_variable(
        "weights", [kernel, kernel, in_ch, filters], tf.float32,
        # He init suits the ReLU that precedes/follows every conv.
        initializer=tf.compat.v1.variance_scaling_initializer(scale=2.0, seed=_seed()))
    if hp["is_training"]:
        # Added per call (so per tower), named under the tower's name scope.
        tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES,
                                       tf.multiply(hp["weight_decay"], tf.nn.l2_loss(w),
                                                   name="weight_decay"))
    y = tf.nn.conv2d(x, w, strides=stride, padding="SAME")
    if bias:
        b = tf.compat.v1.get_variable("biases", [filters], tf.float32,
                                      initializer=tf.compat.v1.zeros_initializer())
        y = tf.nn.bias_add(y, b)
    return y


def _batch_norm(x, hp: dict):
    """Fused BN with gamma/beta and moving statistics, in variable scope `bn`."""
    channels = [int(x.shape[-1])]
    with tf.compat.v1.variable_scope("bn"):
        def var(name, init, trainable=True):
            return tf.compat.v1.get_variable(name, channels, tf.float32, initializer=init,
                                             trainable=trainable)
        gamma = var("gamma", tf.compat.v1.ones_initializer())
        beta = var("beta", tf.compat.v1.zeros_initializer())
        moving_mean = var("moving_mean", tf.compat.v1.zeros_initializer(), trainable=False)
        moving_var = var("moving_variance", tf.compat.v1.ones_initializer(), trainable=False)
        eps = hp["bn_epsilon"]
        if not hp["is_training"]:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=moving_mean, variance=moving_var, epsilon=eps,
                is_training=False)
            return y
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=eps, is_training=True)
        # moving -= (moving - batch) * (1 - decay), i.e. an exponential moving
        # average; the caller runs these via UPDATE_OPS alongside the train op.
        momentum = 1.0 - hp["bn_decay"]
        for moving, batch in ((moving_mean, mean), (moving_var, variance)):
            # read_value=False: collect a plain Operation, fine for tf.group and
            # control_dependencies with resource and ref variables alike.
            update = moving.assign_sub((moving - batch) * momentum, read_value=False)
            tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, update)
        return y


def _bn_relu(x, hp: dict):
    return tf.nn.relu(_batch_norm(x, hp))


# --------------------------------------------------------------------------- DenseNet

def _conv_block(x, growth: int, hp: dict):
    """Bottleneck BN-ReLU-1x1(4k) then BN-ReLU-3x3(k); the k new maps join the input."""
    with tf.compat.v1.variable_scope("x1"):
        y = _conv(_bn_relu(x, hp), 4 * growth, 1, 1, hp)
    with tf.compat.v1.variable_scope("x2"):
        y = _conv(_bn_relu(y, hp), growth, 3, 1, hp)
    return tf.concat([x, y], axis=-1)


def _dense_block(x, layers: int, growth: int, hp: dict):
    for i in range(1, layers + 1):
        with tf.compat.v1.variable_scope(f"conv_block{i}"):
            x = _conv_block(x, growth, hp)
    return x


def _transition(x, reduction: float, hp: dict):
    """Compress channels (the "C" in DenseNet-BC) and halve the spatial size."""
    filters = int(int(x.shape[-1]) * reduction)
    x = _conv(_bn_relu(x, hp), filters, 1, 1, hp)
    return tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="VALID")


def _densenet(model: Mapping[str, Any], images: tf.Tensor, is_training: bool) -> tf.Tensor:
    growth = _positive_int(model, "growth_rate")
    init_filters = _positive_int(model, "init_filters")
    num_classes = _positive_int(model, "num_classes")
    blocks = _require(model, "blocks")
    if (not isinstance(blocks, (list, tuple)) or not blocks
            or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in blocks)):
        raise ConfigError(f"model.blocks must be a non-empty list of positive integers, "
                          f"got {blocks!r}")
    reduction = _number(model, "reduction", 0.5)
    if not 0.0 < reduction <= 1.0:
        raise ConfigError(f"model.reduction must be in (0, 1], got {reduction!r}")
    hp = {"is_training": bool(is_training),
          "bn_decay": _number(model, "bn_decay", 0.99),
          "bn_epsilon": _number(model, "bn_epsilon", 1.1e-5),
          "weight_decay": _number(model, "weight_decay", 1e-4)}

    with tf.compat.v1.variable_scope("densenet", reuse=tf.compat.v1.AUTO_REUSE):
        with tf.compat.v1.variable_scope("conv0"):
            x = _bn_relu(_conv(images, init_filters, 7, 2, hp), hp)
        x = tf.nn.max_pool2d(x, ksize=3, strides=2, padding="SAME")
        for i, layers in enumerate(blocks, start=1):
            with tf.compat.v1.variable_scope(f"dense_block{i}"):
                x = _dense_block(x, layers, growth, hp)
            if i < len(blocks):
                with tf.compat.v1.variable_scope(f"transition{i}"):
                    x = _transition(x, reduction, hp)
        with tf.compat.v1.variable_scope("final"):
            x = _bn_relu(x, hp)
        x = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        # Not called "logits": that scope would push the output op to "logits_1".
        with tf.compat.v1.variable_scope("classifier"):
            x = _conv(x, num_classes, 1, 1, hp, bias=True)
        # Squeeze only the spatial axes so a batch of one stays [1, num_classes].
        return tf.squeeze(x, axis=[1, 2], name="logits")


# --------------------------------------------------------------------------- MNIST

def _mnist_softmax(model: Mapping[str, Any], images: tf.Tensor, is_training: bool) -> tf.Tensor:
    num_classes = _positive_int(model, "num_classes")
    with tf.compat.v1.variable_scope("mnist", reuse=tf.compat.v1.AUTO_REUSE):
        features = images.shape[1:]
        if features.is_fully_defined() and features.num_elements() != 784:
            raise ConfigError(f"mnist_softmax needs 28x28 = 784 values per image, "
                              f"got images of shape {images.shape}")
        x = tf.reshape(images, [-1, 784])  # also accepts [N, 28, 28, 1] images
        # Zeros like the tutorial: softmax regression is convex, no symmetry to break.
        W = tf.compat.v1.get_variable("W", [784, num_classes], tf.float32,
                                      initializer=tf.compat.v1.zeros_initializer())
        b = tf.compat.v1.get_variable("b", [num_classes], tf.float32,
                                      initializer=tf.compat.v1.zeros_initializer())
        return tf.add(tf.matmul(x, W), b, name="logits")


_BUILDERS = {"densenet": _densenet, "mnist_softmax": _mnist_softmax}
