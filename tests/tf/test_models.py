"""tfbuild.tf.models: graph-mode model zoo, exercised with real TensorFlow."""

import re

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from tfbuild.errors import ConfigError  # noqa: E402
from tfbuild.tf.models import build_logits  # noqa: E402

v1 = tf.compat.v1
TINY = {"name": "densenet", "growth_rate": 8, "init_filters": 16, "blocks": [2, 2, 2, 2],
        "reduction": 0.5, "num_classes": 10, "bn_decay": 0.99, "bn_epsilon": 1.1e-5,
        "weight_decay": 1e-4}
DENSENET169 = {"name": "densenet", "growth_rate": 32, "init_filters": 64,
               "blocks": [6, 12, 32, 32], "reduction": 0.5, "num_classes": 2}
MNIST = {"name": "mnist_softmax", "num_classes": 10}


def _images(shape=(None, 32, 32, 3)):
    return v1.placeholder(tf.float32, list(shape), name="images")


def _batch(n=8, seed=0):
    rng = np.random.RandomState(seed)
    return rng.rand(n, 32, 32, 3).astype(np.float32), rng.randint(0, 10, n)


def _var_names():
    return [v.op.name for v in v1.global_variables()]


def _expected_densenet_params(growth, init, blocks, reduction, classes, in_ch=3):
    """Trainable parameters of DenseNet-BC, from the layer formulas alone."""
    def bn(c):  # gamma + beta
        return 2 * c
    total, c = 7 * 7 * in_ch * init + bn(init), init
    for i, layers in enumerate(blocks):
        for _ in range(layers):
            total += bn(c) + c * 4 * growth + bn(4 * growth) + 3 * 3 * 4 * growth * growth
            c += growth
        if i < len(blocks) - 1:
            out = int(c * reduction)
            total, c = total + bn(c) + c * out, out
    return total + bn(c) + c * classes + classes


def test_param_formula_matches_published_densenet169():
    # keras.applications.DenseNet169 reports 14,149,480 trainable parameters.
    assert _expected_densenet_params(32, 64, [6, 12, 32, 32], 0.5, 1000) == 14_149_480


def test_tiny_densenet_shape_and_runs():
    with tf.Graph().as_default():
        images = _images()
        logits = build_logits(TINY, images, is_training=False)
        assert logits.shape.as_list() == [None, 10]
        assert logits.op.name == "densenet/logits"
        # Inference adds no training-only side effects.
        assert not v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        assert not v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)
        x, _ = _batch(4)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            out = sess.run(logits, {images: x})
            # Moving statistics, not batch statistics: a sample's logits do not
            # depend on the rest of the batch.
            single = sess.run(logits, {images: x[:1]})
        assert out.shape == (4, 10) and np.all(np.isfinite(out))
        np.testing.assert_allclose(single[0], out[0], rtol=1e-4, atol=1e-5)


def test_densenet169_param_count_and_layout():
    with tf.Graph().as_default():
        logits = build_logits(DENSENET169, _images((None, 256, 256, 3)), is_training=True)
        assert logits.shape.as_list() == [None, 2]
        trainable = sum(v.shape.num_elements() for v in v1.trainable_variables())
        assert trainable == _expected_densenet_params(32, 64, [6, 12, 32, 32], 0.5, 2)
        names = _var_names()
        blocks = {}
        for n in names:
            m = re.match(r"densenet/dense_block(\d+)/conv_block(\d+)/x1/weights$", n)
            if m:
                blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
        assert {b: len(s) for b, s in blocks.items()} == {1: 6, 2: 12, 3: 32, 4: 32}
        # 168 convolutions + the classifier: where the "169" comes from.
        assert sum(n.endswith("/weights") for n in names) == 169
        assert len(v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES)) == 169
        moving = [v for v in v1.global_variables() if "moving_" in v.op.name]
        assert moving and not any(v.trainable for v in moving)


def test_training_steps_reduce_loss_and_update_moving_stats():
    with tf.Graph().as_default():
        images = _images()
        labels = v1.placeholder(tf.int64, [None])
        logits = build_logits(TINY, images, is_training=True)
        update_ops = v1.get_collection(v1.GraphKeys.UPDATE_OPS)
        # Two updates (mean, variance) per batch norm; one BN per `bn/gamma`.
        n_bn = sum(n.endswith("/bn/gamma") for n in _var_names())
        assert len(update_ops) == 2 * n_bn > 0
        data_loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        loss = data_loss + tf.add_n(v1.get_collection(v1.GraphKeys.REGULARIZATION_LOSSES))
        with tf.control_dependencies(update_ops):
            train = v1.train.GradientDescentOptimizer(0.1).minimize(loss)
        [mean] = [v for v in v1.global_variables() if v.op.name == "densenet/conv0/bn/moving_mean"]
        x, y = _batch()
        feed = {images: x, labels: y}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            before_mean = sess.run(mean)
            first = sess.run(loss, feed)
            for _ in range(5):
                sess.run(train, feed)
            last = sess.run(loss, feed)
            after_mean = sess.run(mean)
    assert last < first
    assert np.all(before_mean == 0) and not np.allclose(after_mean, before_mean)


def test_towers_share_variables_and_prefix_ops():
    with tf.Graph().as_default():
        build_logits(TINY, _images(), is_training=True)
        single = _var_names()
    with tf.Graph().as_default():
        images = _images()
        outs = []
        for card in ("Card_0", "Card_1"):
            with tf.name_scope(card):
                outs.append(build_logits(TINY, images, is_training=True))
        assert _var_names() == single
        assert [o.op.name for o in outs] == ["Card_0/densenet/logits", "Card_1/densenet/logits"]
        convs = [op.name for op in tf.compat.v1.get_default_graph().get_operations()
                 if op.type == "Conv2D"]
        per_card = [sum(c.startswith(p + "/") for c in convs) for p in ("Card_0", "Card_1")]
        assert per_card[0] == per_card[1] == len(convs) // 2 > 0
        # Each tower's side effects are found by filtering on its scope.
        for key in (v1.GraphKeys.UPDATE_OPS, v1.GraphKeys.REGULARIZATION_LOSSES):
            counts = [len(v1.get_collection(key, card)) for card in ("Card_0/", "Card_1/")]
            assert counts[0] == counts[1] > 0


def _fresh_init_values(seed=None):
    with tf.Graph().as_default():
        if seed is not None:
            v1.set_random_seed(seed)
        build_logits(TINY, _images(), is_training=False)
        variables = v1.global_variables()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return dict(zip([v.op.name for v in variables], sess.run(variables)))


def test_names_and_initial_values_are_deterministic():
    a, b = _fresh_init_values(), _fresh_init_values()
    assert list(a) == list(b)
    assert "densenet/conv0/weights" in a
    assert "densenet/dense_block1/conv_block1/x1/bn/gamma" in a
    assert "densenet/classifier/biases" in a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # Per-layer seeds: same-shaped kernels in different layers still differ.
    w1 = a["densenet/dense_block1/conv_block1/x2/weights"]
    w2 = a["densenet/dense_block2/conv_block1/x2/weights"]
    assert w1.shape == w2.shape and not np.array_equal(w1, w2)
    # A graph-level seed is honoured too.
    c = _fresh_init_values(seed=7)
    assert not np.array_equal(c["densenet/conv0/weights"], a["densenet/conv0/weights"])


def test_mnist_softmax():
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [None, 784])
        logits = build_logits(MNIST, x, is_training=True)
        assert logits.shape.as_list() == [None, 10]
        assert {v.op.name: v.shape.as_list() for v in v1.global_variables()} == {
            "mnist/W": [784, 10], "mnist/b": [10]}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            out = sess.run(logits, {x: np.ones((3, 784), np.float32)})
        np.testing.assert_array_equal(out, np.zeros((3, 10)))  # zero-initialised
        with pytest.raises(ConfigError, match="784"):
            build_logits(MNIST, v1.placeholder(tf.float32, [None, 32, 32, 3]), True)


def test_unknown_name_and_missing_keys_raise_config_error():
    with tf.Graph().as_default():
        images = _images()
        with pytest.raises(ConfigError,
                           match=r"unknown model name 'resnet'.*densenet, mnist_softmax"):
            build_logits({"name": "resnet"}, images, True)
        with pytest.raises(ConfigError, match="model.name"):
            build_logits({}, images, True)
        with pytest.raises(ConfigError, match="growth_rate"):
            build_logits({k: v for k, v in TINY.items() if k != "growth_rate"}, images, True)
        with pytest.raises(ConfigError, match="blocks"):
            build_logits({**TINY, "blocks": []}, images, True)
        with pytest.raises(ConfigError, match="num_classes"):
            build_logits({"name": "mnist_softmax"}, images, True)
