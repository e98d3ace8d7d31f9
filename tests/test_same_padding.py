"""TensorFlow's "SAME" padding (functional/same_pad.py, ``padding="same"`` on the conv
layers): output sizes, the asymmetric amounts, gradient checks, independent oracles
(explicit np.pad + an unpadded kernel, scipy.signal.correlate, PyTorch) and the pitfall
of using PyTorch's symmetric padding instead."""

import math

import numpy as np
import pytest
from scipy import signal

from tinymobilenet import count, gradcheck, models, nn
from tinymobilenet import functional as F

from conftest import assert_module_grads, randn

# the chapters these tests back (select with: pytest -m ch03)
pytestmark = [pytest.mark.ch03, pytest.mark.ch10]



def tf_padding(size, K, stride):
    """TensorFlow's documented rule (tf.nn.convolution, "SAME"), written out on its own
    here: out = ceil(in / stride), pad_total = max((out - 1) * stride + K - in, 0),
    pad_before = pad_total // 2, the rest after."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + K - size, 0)
    return total // 2, total - total // 2


def tf_pad(x, K, stride):
    """x (N, C, H, W) zero-padded exactly as TensorFlow pads it for SAME."""
    (t, b), (l, r) = tf_padding(x.shape[2], K, stride), tf_padding(x.shape[3], K, stride)
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))


def test_same_padding_known_cases():
    # the worked example of TensorFlow's padding documentation: in 13, filter 6, stride 5
    # -> out 3, pad_along 3 = 1 before and 2 after
    assert F.same_padding(13, 6, 5) == (1, 2) and F.same_output_size(13, 5) == 3
    assert F.same_padding(224, 3, 2) == (0, 1)      # even size, stride 2: bottom/right only
    assert F.same_padding(7, 3, 2) == (1, 1)        # odd size: symmetric
    assert F.same_padding(112, 5, 2) == (1, 2)      # EfficientNet's 5x5 stride-2 layers
    assert F.same_padding(9, 5, 1) == (2, 2)        # stride 1, odd K: (K - 1) // 2 each side
    assert F.same_padding(8, 1, 2) == (0, 0)        # 1x1 kernels never pad
    with pytest.raises(ValueError, match="stride"):
        F.same_padding(8, 3, 0)


def test_same_padding_is_tensorflows_rule_for_every_small_case():
    for size in range(1, 26):
        for K in range(1, 8):
            for s in range(1, 4):
                before, after = F.same_padding(size, K, s)
                assert (before, after) == tf_padding(size, K, s), (size, K, s)
                # the padded input holds exactly ceil(size / s) windows, and one zero
                # fewer would lose the last window: the padding is the least that works
                total = before + after
                assert F.conv_output_size(size + total, K, s) == math.ceil(size / s)
                if total:
                    assert size + total - 1 < K or \
                        F.conv_output_size(size + total - 1, K, s) < math.ceil(size / s)


# (N, C_in, C_out, groups, H, W, K, stride): odd, even and non-square maps, K 1/3/5,
# stride 1/2; standard, grouped and depthwise (groups == C_in == C_out)
CASES = [
    (2, 3, 4, 1, 7, 7, 3, 1), (2, 3, 4, 1, 8, 8, 3, 2), (2, 3, 4, 1, 7, 8, 3, 2),
    (2, 3, 2, 1, 9, 6, 5, 2), (1, 4, 6, 2, 8, 9, 5, 1), (2, 4, 6, 2, 10, 7, 3, 2),
    (2, 3, 5, 1, 8, 6, 1, 2), (2, 5, 5, 5, 8, 8, 3, 2), (2, 5, 5, 5, 7, 9, 5, 2),
    (1, 4, 4, 4, 6, 7, 5, 1), (2, 3, 3, 3, 9, 8, 3, 1), (1, 3, 3, 3, 4, 5, 5, 2),
]


def _layer(C, Co, G, K, s, bias=True, seed=0):
    if G == C == Co:
        return nn.DepthwiseConv2d(C, K, stride=s, padding="same", bias=bias, seed=seed)
    return nn.Conv2d(C, Co, K, stride=s, padding="same", groups=G, bias=bias, seed=seed)


@pytest.mark.parametrize("N,C,Co,G,H,W,K,s", CASES)
def test_output_size_is_ceil_h_over_stride(N, C, Co, G, H, W, K, s):
    layer = _layer(C, Co, G, K, s)
    y = layer(randn(N, C, H, W).astype(np.float32))
    assert y.shape == (N, Co, math.ceil(H / s), math.ceil(W / s))
    assert layer.output_shape((N, C, H, W)) == y.shape


@pytest.mark.parametrize("N,C,Co,G,H,W,K,s", CASES)
def test_gradcheck(N, C, Co, G, H, W, K, s, depthwise_path):
    """float64 central differences with a random upstream gradient, dx and every parameter
    (weight and bias); the fixture runs each depthwise case through both kernels."""
    assert_module_grads(_layer(C, Co, G, K, s), (N, C, H, W), tol=1e-7)


@pytest.mark.parametrize("same_forward, same_backward, depthwise", [
    (F.conv2d_same_forward, F.conv2d_same_backward, False),
    (F.depthwise_conv2d_same_forward, F.depthwise_conv2d_same_backward, True)])
def test_functional_pairs_gradcheck(same_forward, same_backward, depthwise):
    x = randn(2, 3, 8, 7)
    w = randn(3, 1, 3, 3, seed=1) if depthwise else randn(4, 3, 3, 3, seed=1)
    b = randn(w.shape[0], seed=2)
    r = gradcheck.check_function(same_forward, same_backward,
                                 dict(x=x, w=w, b=b, stride=2), tol=1e-7)
    assert r.ok and set(r.errors) == {"x", "w", "b"}, str(r)


@pytest.mark.parametrize("N,C,Co,G,H,W,K,s", CASES)
def test_forward_equals_explicit_tf_pad_and_unpadded_naive_kernel(N, C, Co, G, H, W, K, s):
    """Oracle 1: TensorFlow's padding done by np.pad, then the naive loop kernel with
    padding 0. Different summation order from the fast kernels: float64, rtol 1e-12."""
    layer = _layer(C, Co, G, K, s).to(np.float64)
    x = randn(N, C, H, W)
    w, b = layer.weight.data, layer.bias.data
    if G == C == Co:
        ref, _ = F.depthwise_conv2d_forward_naive(tf_pad(x, K, s), w, b, s, 0)
    else:
        ref, _ = F.conv2d_forward_naive(tf_pad(x, K, s), w, b, s, 0, G)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("H,W,K,s", [(8, 8, 3, 2), (7, 8, 3, 2), (9, 6, 5, 2), (6, 7, 5, 1)])
def test_depthwise_forward_equals_scipy_correlate_per_channel(H, W, K, s):
    """Oracle 2: each channel is scipy.signal.correlate(..., "valid") of the TF-padded
    channel with its filter, then every stride-th output (float64, rtol 1e-12)."""
    C = 3
    layer = nn.DepthwiseConv2d(C, K, stride=s, padding="same").to(np.float64)
    x = randn(2, C, H, W)
    xp = tf_pad(x, K, s)
    ref = np.stack([np.stack([signal.correlate(xp[n, c], layer.weight.data[c, 0], "valid")
                              [::s, ::s] for c in range(C)]) for n in range(2)])
    np.testing.assert_allclose(layer(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("N,C,Co,G,H,W,K,s", CASES)
def test_against_torch_pad_then_conv2d(N, C, Co, G, H, W, K, s):
    """Oracle 3 (optional): torch.nn.functional.pad with TensorFlow's amounts, then
    conv2d with padding 0; forward, dx, dw and db by autograd, float64."""
    torch = pytest.importorskip("torch")
    layer = _layer(C, Co, G, K, s).to(np.float64)
    x = randn(N, C, H, W)
    y = layer(x)
    G_out = randn(*y.shape, seed=5)
    dx = layer.backward(G_out)
    (t, b), (l, r) = tf_padding(H, K, s), tf_padding(W, K, s)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(layer.weight.data, requires_grad=True)
    bt = torch.tensor(layer.bias.data, requires_grad=True)
    yt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (l, r, t, b)), wt, bt,
                                    stride=s, groups=G)
    yt.backward(torch.tensor(G_out))
    # different summation orders (im2col/banded vs oneDNN): a float64 round-off tolerance
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, bt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_pytorch_symmetric_padding_is_a_different_function_at_stride_2():
    """The pitfall: with the same weights, ``padding=1`` (PyTorch's habit) and "same"
    give the same output *shape* at stride 2 on an even input, but the windows sit one
    row and column apart, so the numbers differ; at stride 1 with odd K they agree."""
    x = randn(1, 4, 8, 8).astype(np.float32)
    for make in (lambda p: nn.DepthwiseConv2d(4, 3, stride=2, padding=p, seed=1),
                 lambda p: nn.Conv2d(4, 6, 3, stride=2, padding=p, seed=1)):
        same, sym = make("same")(x), make(1)(x)
        assert same.shape == sym.shape == (1, same.shape[1], 4, 4)
        # "same" reads rows/cols 0..2, 2..4, ...; padding=1 reads -1..1, 1..3, ...
        assert np.abs(same - sym).max() > 0.1 * np.abs(same).max()
    for K in (1, 3, 5):
        for make in (lambda p: nn.DepthwiseConv2d(4, K, stride=1, padding=p, seed=2),
                     lambda p: nn.Conv2d(4, 6, K, stride=1, padding=p, seed=2)):
            # stride 1, odd K: "same" hands padding (K - 1) // 2 to the same kernel, so
            # the very same computation runs (same machine, same threads): bit-equal
            np.testing.assert_array_equal(make("same")(x), make((K - 1) // 2)(x))


def test_no_copy_when_tensorflow_pads_symmetrically():
    x = randn(2, 3, 7, 7)
    xp, p, _ = F.same_pad_forward(x, 3, 1)
    assert xp is x and p == 1
    xp, p, cache = F.same_pad_forward(x, 3, 2)          # odd size, stride 2: (1, 1) too
    assert xp is x and p == 1
    xp, p, cache = F.same_pad_forward(randn(2, 3, 8, 7), 3, 2)   # H even (0, 1), W odd (1, 1)
    assert p == 0 and xp.shape == (2, 3, 9, 9)
    np.testing.assert_array_equal(xp, tf_pad(randn(2, 3, 8, 7), 3, 2))
    d = randn(*xp.shape, seed=3)
    np.testing.assert_array_equal(F.same_pad_backward(d, cache), d[:, :, 0:8, 1:8])


def test_layer_options_repr_errors_and_counting():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding="same")
    assert "padding='same'" in repr(conv) and conv.same
    assert "padding='same'" in repr(nn.DepthwiseConv2d(8, 5, 2, padding="same"))
    assert nn.Conv2d(3, 8, 1, padding="same")._kind == "pointwise"       # 1x1: no padding
    for bad in ("valid", "SAME", -1, 1.5):
        with pytest.raises(ValueError, match=r"Conv2d: padding must be an integer >= 0 or "
                                             r"\"same\""):
            nn.Conv2d(3, 8, 3, padding=bad)
    block = nn.Conv2dNormActivation(3, 8, 3, stride=2, padding="same")
    s = count.summary(block, (1, 3, 224, 224))
    assert s.rows[-1].output_shape == (1, 8, 112, 112)
    assert s.total_macs == 3 * 9 * 8 * 112 * 112
    folded = models.fold_batchnorm(block.to(np.float64))
    x = randn(1, 3, 10, 10)
    assert folded[0].padding == "same"
    np.testing.assert_allclose(folded(x), block.eval()(x), rtol=1e-10, atol=1e-12)
