"""Convolution kernels: fast == naive == scipy.signal.correlate, gradients, output size."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.signal import correlate

from tinymobilenet import functional as F
from tinymobilenet import gradcheck

from conftest import randn

# the chapters these tests back (select with: pytest -m ch01)
pytestmark = [pytest.mark.ch01, pytest.mark.ch02, pytest.mark.ch03]


# (N, C, H, W, Co, K, stride, padding, groups): odd and non-square sizes, stride 1/2/3,
# padding 0/1/2, K 1/3/5, groups 1 / g / C, channel multiplier > 1 (Co = 2C, groups = C)
CONV_CASES = [
    (2, 3, 7, 9, 4, 3, 1, 1, 1),
    (2, 3, 8, 5, 5, 3, 2, 1, 1),
    (1, 4, 9, 7, 6, 5, 2, 2, 2),
    (2, 6, 7, 11, 6, 3, 3, 0, 3),
    (2, 4, 5, 6, 4, 1, 1, 0, 1),
    (1, 4, 6, 7, 8, 1, 2, 1, 4),
    (2, 5, 9, 8, 5, 3, 1, 2, 5),      # depthwise through groups = C
    (2, 3, 7, 6, 6, 3, 2, 1, 3),      # channel multiplier 2 through groups
    (1, 2, 5, 5, 3, 5, 1, 0, 1),      # kernel as large as the input
]
DW_CASES = [  # (N, C, H, W, K, stride, padding)
    (2, 3, 7, 9, 3, 1, 1), (2, 4, 8, 5, 3, 2, 1), (1, 5, 9, 7, 5, 2, 2),
    (2, 3, 7, 11, 3, 3, 0), (2, 2, 6, 6, 1, 1, 0), (1, 3, 5, 8, 5, 1, 0),
]
PW_CASES = [(2, 3, 5, 7, 4), (1, 6, 1, 1, 2), (3, 1, 4, 3, 5)]


def _conv_args(case, dtype=np.float64):
    N, C, H, W, Co, K, s, p, g = case
    x = randn(N, C, H, W, seed=1).astype(dtype)
    w = randn(Co, C // g, K, K, seed=2).astype(dtype)
    b = randn(Co, seed=3).astype(dtype)
    return x, w, b, s, p, g


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_fast_matches_naive_forward_and_backward(case):
    x, w, b, s, p, g = _conv_args(case)
    out, cache = F.conv2d_forward(x, w, b, s, p, g)
    ref, ref_cache = F.conv2d_forward_naive(x, w, b, s, p, g)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = randn(*out.shape, seed=4)
    for fast, slow in zip(F.conv2d_backward(dout, cache), F.conv2d_backward_naive(dout, ref_cache)):
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_scipy_correlate(case):
    """An independent definition: each output channel is a sum over its group's input
    channels of scipy's 2-D cross-correlation, sampled with the stride."""
    x, w, b, s, p, g = _conv_args(case)
    out, _ = F.conv2d_forward(x, w, b, s, p, g)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    N, C = x.shape[:2]
    Co, Cg = w.shape[:2]
    ref = np.zeros_like(out)
    for n in range(N):
        for o in range(Co):
            c0 = (o // (Co // g)) * Cg
            full = sum(correlate(xp[n, c0 + c], w[o, c], mode="valid") for c in range(Cg))
            ref[n, o] = full[::s, ::s] + b[o]
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradcheck(case):
    x, w, b, s, p, g = _conv_args(case)
    r = gradcheck.check_function(
        lambda x, w, b: F.conv2d_forward(x, w, b, s, p, g), F.conv2d_backward,
        {"x": x, "w": w, "b": b}, tol=1e-7)
    assert r.ok, str(r)


@pytest.mark.parametrize("case", DW_CASES)
def test_depthwise_fast_naive_scipy_and_grouped_conv_agree(case, depthwise_path):
    N, C, H, W, K, s, p = case
    x, w, b = randn(N, C, H, W, seed=1), randn(C, 1, K, K, seed=2), randn(C, seed=3)
    out, cache = F.depthwise_conv2d_forward(x, w, b, s, p)
    ref, ref_cache = F.depthwise_conv2d_forward_naive(x, w, b, s, p)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    grouped, gcache = F.conv2d_forward(x, w, b, s, p, groups=C)       # depthwise == groups=C
    np.testing.assert_allclose(out, grouped, rtol=1e-12, atol=1e-12)
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    for n in range(N):
        for c in range(C):
            expected = correlate(xp[n, c], w[c, 0], mode="valid")[::s, ::s] + b[c]
            np.testing.assert_allclose(out[n, c], expected, rtol=1e-10, atol=1e-10)
    dout = randn(*out.shape, seed=4)
    fast = F.depthwise_conv2d_backward(dout, cache)
    for other in (F.depthwise_conv2d_backward_naive(dout, ref_cache), F.conv2d_backward(dout, gcache)):
        for a, e in zip(fast, other):
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_dense_depthwise_path_builds_its_matrices_in_float32(monkeypatch):
    """float32 in, float32 throughout: the dense path's 0/1 tap matrices (and so every
    channel's matrix built from them) take x's dtype. In float64 they would double the
    path's memory and time while its results differed only by round-off, which no
    comparison of results can see."""
    from tinymobilenet.functional import _depthwise_dense, depthwise
    built, taps = [], _depthwise_dense._taps
    monkeypatch.setattr(_depthwise_dense, "_taps", lambda *a: built.append(taps(*a)) or built[-1])
    x = randn(8, 5, 4, 4, seed=1).astype(np.float32)
    w = randn(5, 1, 3, 3, seed=2).astype(np.float32)
    assert depthwise._path(x.shape, 3, 1, 1) is _depthwise_dense
    out, cache = F.depthwise_conv2d_forward(x, w, None, 1, 1)
    dx, dw, _ = F.depthwise_conv2d_backward(randn(*out.shape, seed=3).astype(np.float32), cache)
    assert len(built) == 2 and all(G.dtype == np.float32 for G in built)
    assert out.dtype == dx.dtype == dw.dtype == np.float32


@pytest.mark.parametrize("case", DW_CASES)
def test_depthwise_gradcheck(case, depthwise_path):
    N, C, H, W, K, s, p = case
    r = gradcheck.check_function(
        lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, s, p), F.depthwise_conv2d_backward,
        {"x": randn(N, C, H, W, seed=1), "w": randn(C, 1, K, K, seed=2), "b": randn(C, seed=3)},
        tol=1e-7)
    assert r.ok, str(r)


@pytest.mark.parametrize("case", PW_CASES)
def test_pointwise_fast_naive_and_conv_agree_and_gradcheck(case):
    N, C, H, W, Co = case
    x, w, b = randn(N, C, H, W, seed=1), randn(Co, C, 1, 1, seed=2), randn(Co, seed=3)
    out, cache = F.pointwise_conv2d_forward(x, w, b)
    ref, ref_cache = F.pointwise_conv2d_forward_naive(x, w, b)
    conv, ccache = F.conv2d_forward(x, w, b)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, conv, rtol=1e-12, atol=1e-12)
    dout = randn(*out.shape, seed=4)
    for a, e, c in zip(F.pointwise_conv2d_backward(dout, cache),
                       F.pointwise_conv2d_backward_naive(dout, ref_cache),
                       F.conv2d_backward(dout, ccache)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)
    r = gradcheck.check_function(F.pointwise_conv2d_forward, F.pointwise_conv2d_backward,
                                 {"x": x, "w": w, "b": b}, tol=1e-7)
    assert r.ok, str(r)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_keep_dtype(dtype):
    x = randn(2, 4, 6, 5).astype(dtype)
    cases = [
        (F.conv2d_forward(x, randn(6, 2, 3, 3).astype(dtype), None, 2, 1, 2), F.conv2d_backward),
        (F.depthwise_conv2d_forward(x, randn(4, 1, 3, 3).astype(dtype), None, 1, 1),
         F.depthwise_conv2d_backward),
        (F.pointwise_conv2d_forward(x, randn(3, 4, 1, 1).astype(dtype)), F.pointwise_conv2d_backward),
    ]
    for (out, cache), backward in cases:
        assert out.dtype == dtype
        for g in backward(np.ones_like(out), cache):
            assert g is None or g.dtype == dtype


def test_im2col_col2im_are_adjoint():
    """<im2col(x), c> == <x, col2im(c)> for all x, c: col2im is the exact transpose."""
    x = randn(2, 3, 7, 6, seed=1)
    col = F.im2col(x, 3, stride=2, padding=1)
    c = randn(*col.shape, seed=2)
    lhs = np.sum(col * c)
    rhs = np.sum(x * F.col2im(c, 7, 6, stride=2, padding=1))
    assert abs(lhs - rhs) < 1e-10 * max(1.0, abs(lhs))


def test_im2col_columns_are_patches():
    x = randn(1, 2, 5, 6, seed=1)
    col = F.im2col(x, 3, stride=2, padding=1)            # (1, 2, 3, 3, Ho, Wo)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    assert col.shape == (1, 2, 3, 3, 3, 3)
    np.testing.assert_array_equal(col[0, :, :, :, 1, 2], xp[0, :, 2:5, 4:7])


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 40), k=st.integers(1, 7), stride=st.integers(1, 4), pad=st.integers(0, 3))
def test_output_size_formula(size, k, stride, pad):
    """The formula agrees with counting window positions, and refuses windows that do not fit."""
    if k > size + 2 * pad:
        with pytest.raises(ValueError, match="larger than the padded input"):
            F.conv_output_size(size, k, stride, pad)
        return
    positions = len(range(0, size + 2 * pad - k + 1, stride))
    assert F.conv_output_size(size, k, stride, pad) == positions


@settings(max_examples=25, deadline=None)
@given(h=st.integers(3, 9), w=st.integers(3, 9), k=st.sampled_from([1, 3]),
       stride=st.integers(1, 3), pad=st.integers(0, 2))
def test_conv_output_shape_property(h, w, k, stride, pad):
    x = randn(1, 2, h, w)
    out, _ = F.conv2d_forward(x, randn(3, 2, k, k), None, stride, pad)
    assert out.shape == (1, 3, F.conv_output_size(h, k, stride, pad), F.conv_output_size(w, k, stride, pad))


def test_conv_refuses_bad_shapes():
    with pytest.raises(ValueError, match="groups=2 must divide"):
        F.conv2d_forward(randn(1, 3, 5, 5), randn(4, 1, 3, 3), groups=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d_forward(randn(1, 3, 2, 2), randn(4, 3, 5, 5), padding=1)
    with pytest.raises(ValueError, match=r"expected input \(N, C, H, W\)"):
        F.depthwise_conv2d_forward(randn(3, 5, 5), randn(3, 1, 3, 3))
