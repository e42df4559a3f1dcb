"""train: a seeded, reproducible training checkpoint for a built-in model.

For demos, tests and CI: synthetic class-dependent images fed by tf.data, like
a real training job, with batch-norm updates and an ExponentialMovingAverage
of the weights that the placeholder stage restores. Real users point
`checkpoint.path` at their own checkpoint instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from ..engine.spec import StageSpec
from ..marks import key
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import ModelCfg, PreprocessingCfg, TrainCfg

PREFIX = "model.ckpt"


@dataclass(frozen=True)
class Settings:
    model: ModelCfg
    train: TrainCfg
    # Training sees the same preprocessing and input shape the inference graph will.
    preprocessing: Optional[PreprocessingCfg] = field(metadata=key("placeholder.preprocessing"))
    input_shape: List[int] = field(metadata=key("placeholder.inputs[0].shape"))   # less the batch


def settings(cfg, deps) -> Settings:
    if cfg.placeholder is None or not cfg.placeholder.inputs:
        raise ConfigError("train needs placeholder.inputs to know the model's input shape")
    return Settings(cfg.model, cfg.train, cfg.placeholder.preprocessing,
                    list(cfg.placeholder.inputs[0].shape[1:]))


def synthetic_data(shape, num_classes: int, examples: int, seed: int):
    """Each class is a different brightness ramp plus noise, in 0..255."""
    import numpy as np
    rng = np.random.default_rng(seed)
    labels = np.arange(examples) % num_classes
    ramp = np.linspace(0.0, 1.0, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    base = (labels[:, None] + 1) / (num_classes + 1)
    images = base.reshape((-1,) + (1,) * len(shape)) * 255.0 * (0.5 + 0.5 * ramp)
    images = images + rng.normal(0, 8.0, images.shape)
    return np.clip(images, 0, 255).astype(np.float32), labels.astype(np.int64)


def run(inputs, s: Settings, out: Path, log) -> dict:
    import tensorflow as tf

    from ..tf.models import build_logits
    from ..tf.preprocess import preprocess
    from ..tf.session import op_determinism, session

    t = s.train
    images, labels = synthetic_data(s.input_shape, s.model.num_classes, t.examples, t.seed)
    graph = tf.Graph()
    with op_determinism(), graph.as_default():
        tf.compat.v1.set_random_seed(t.seed)
        data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(t.batch_size)
        x, y = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        x = preprocess(x, s.preprocessing)
        logits = build_logits(s.model, x, is_training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        loss = loss + tf.add_n(tf.compat.v1.losses.get_regularization_losses() or [tf.constant(0.0)])
        step = tf.compat.v1.train.get_or_create_global_step()
        with tf.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
            opt = tf.compat.v1.train.MomentumOptimizer(t.learning_rate, 0.9)
            minimize = opt.minimize(loss, global_step=step)
        ema = tf.compat.v1.train.ExponentialMovingAverage(t.ema_decay, num_updates=step)
        with tf.control_dependencies([minimize]):
            train_op = ema.apply(tf.compat.v1.trainable_variables())
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with session(graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            losses = [float(sess.run([train_op, loss])[1]) for _ in range(t.steps)]
            # No .meta: tf.data function names in it carry per-process counters, so it
            # would differ between identical builds; the placeholder stage rebuilds the graph.
            saver.save(sess, str(out / PREFIX), write_meta_graph=False)
    return {"checkpoint": PREFIX, "steps": t.steps, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None}


SPEC = StageSpec("train", settings, run, tools=("tensorflow",),
                 present=lambda cfg: cfg.train is not None and not cfg.checkpoint.path)
