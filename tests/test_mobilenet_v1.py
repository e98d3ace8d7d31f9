"""MobileNetV1: the paper's Table 1 network, width multiplier, any resolution, gradients."""

import numpy as np
import pytest

from tinymobilenet import gradcheck, models, nn

from conftest import V1_TABLE1_BLOCKS, randn, v1_table1_counts

# the chapters these tests back (select with: pytest -m ch05)
pytestmark = [pytest.mark.ch05]



def test_parameter_count_matches_table_1_by_hand():
    # trainable parameters (weights, BN gamma/beta, FC bias) counted layer by layer from
    # the paper's Table 1 (conftest.v1_table1_counts), and the paper's own 4.2 M (Table 6)
    params = models.mobilenet_v1().num_parameters()
    assert params == v1_table1_counts()["params"]
    assert round(params / 1e6, 1) == 4.2


def test_structure_follows_table_1():
    m = models.mobilenet_v1()
    blocks = list(m.features)[1:]
    assert len(blocks) == 13 and all(isinstance(b, nn.DepthwiseSeparable) for b in blocks)
    assert [b.stride for b in blocks].count(2) == 4
    assert m.features[0][0].stride == 2 and m.last_channel == 1024
    sd = m.state_dict()
    assert sd["features.1.depthwise.0.weight"].shape == (32, 1, 3, 3)
    assert sd["features.1.pointwise.0.weight"].shape == (64, 32, 1, 1)
    assert sd["classifier.1.weight"].shape == (1000, 1024)


@pytest.mark.parametrize("alpha, res", [(1.0, 64), (0.5, 96), (0.25, 33), (0.75, 40)])
def test_forward_shapes_any_resolution(alpha, res):
    m = models.mobilenet_v1(alpha=alpha, num_classes=7).eval()
    y = m(randn(2, 3, res, res + 8).astype(np.float32))
    assert y.shape == (2, 7) and y.dtype == np.float32
    assert m.last_channel == int(1024 * alpha)


def test_width_multiplier_thins_every_layer():
    full, half = models.mobilenet_v1(1.0), models.mobilenet_v1(0.5)
    for (k, a), (_, b) in zip(full.state_dict().items(), half.state_dict().items()):
        if k.endswith("pointwise.0.weight"):
            assert b.shape == (a.shape[0] // 2, a.shape[1] // 2, 1, 1)


def test_a_width_multiplier_that_leaves_fractions_truncates_them():
    """alpha = 0.6 gives fractional widths (128 * 0.6 = 76.8): every layer of Table 1 gets
    int(c * alpha) channels (TensorFlow's depth() and Keras' int(filters * alpha)), not
    the rounded 77."""
    alpha = 0.6
    m = models.mobilenet_v1(alpha)
    widths = [m.features[0][0].weight.shape[0]] + [b.out_channels for b in list(m.features)[1:]]
    table1 = [32] + [c for c, _ in V1_TABLE1_BLOCKS]
    assert widths == [int(c * alpha) for c in table1]
    assert m.classifier[1].in_features == int(1024 * alpha)


def test_same_seed_same_weights():
    a, b, c = models.mobilenet_v1(0.25, seed=3), models.mobilenet_v1(0.25, seed=3), models.mobilenet_v1(0.25, seed=4)
    for (k, v), w, u in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        np.testing.assert_array_equal(v, w)
    assert not np.array_equal(a.features[0][0].weight.data, c.features[0][0].weight.data)


@pytest.mark.slow
def test_end_to_end_gradcheck_small_v1():
    """The whole network, train mode (batch statistics keep the signal alive through 14
    random layers; in eval mode with random weights gradients shrink to ~1e-10, below
    what central differences resolve). 64 px keeps >= 4 values per channel at the end.
    A few sampled entries of every parameter; a looser tolerance than a single layer's
    because 28 ReLUs and BNs compound the round-off."""
    m = models.mobilenet_v1(alpha=0.125, num_classes=3, dropout=0.2).to(np.float64)
    gradcheck.randomize_batchnorm(m)
    x = gradcheck.dodge_kinks(m, lambda s: randn(2, 3, 64, 64, seed=s), margin=1e-5)
    r = gradcheck.check_module(m, x, max_elements=3, h=1e-6, tol=1e-5)
    assert r.ok, str(r)


def test_bad_input_and_options():
    m = models.mobilenet_v1(0.25)
    with pytest.raises(ValueError, match=r"mobilenet_v1: expected input \(N, 3, H, W\), got \(1, 1, 32, 32\)"):
        m(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        models.mobilenet_v1(alpha=0)
    with pytest.raises(ValueError, match="num_classes"):
        models.mobilenet_v1(num_classes=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'width'"):
        models.mobilenet_v1(width=0.5)
