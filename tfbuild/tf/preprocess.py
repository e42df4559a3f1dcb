"""Inference preprocessing as batch-wide tensor ops.

The posts used `tf.map_fn` per image; its While/TensorArray ops block TFLite
and TensorRT and make `.meta` bytes differ between identical exports.
"""
from __future__ import annotations


def preprocess(images, pre):
    """(images - mean) * scale; `pre` is a PreprocessingCfg or None."""
    import tensorflow as tf
    x = tf.cast(images, tf.float32)
    if pre is None:
        return x
    if pre.mean:
        x = x - tf.constant(pre.mean, tf.float32, name="channel_mean")
    if pre.scale != 1.0:
        x = x * tf.constant(pre.scale, tf.float32, name="scale")
    return x
