"""The train stage's job: a seeded, reproducible training run of a built-in model on
synthetic class-dependent images fed by tf.data, like a real training job, with
batch-norm updates and an ExponentialMovingAverage of the weights that the
placeholder stage restores."""
from __future__ import annotations

from pathlib import Path
from typing import List


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


def train(model, t, preprocessing, input_shape: List[int], out_prefix: Path) -> dict:
    """Train `model` with the train section `t` for `t.steps` steps on synthetic data of
    `input_shape` (less the batch); save the checkpoint at `out_prefix`, without a .meta;
    the losses."""
    import tensorflow as tf

    from tfbuild.tf.models import build_logits
    from tfbuild.tf.preprocess import preprocess
    from tfbuild.tf.session import op_determinism, session

    images, labels = synthetic_data(input_shape, model.num_classes, t.examples, t.seed)
    graph = tf.Graph()
    with op_determinism(), graph.as_default():
        tf.compat.v1.set_random_seed(t.seed)
        data = tf.data.Dataset.from_tensor_slices((images, labels)).repeat().batch(t.batch_size)
        x, y = tf.compat.v1.data.make_one_shot_iterator(data).get_next()
        x = preprocess(x, preprocessing)
        logits = build_logits(model, x, is_training=True)
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
            saver.save(sess, str(out_prefix), write_meta_graph=False)
    return {"steps": t.steps, "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None}
