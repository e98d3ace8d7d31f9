"""Chapters 4 and 7: batch norm's training backward, folding batch norm into a convolution,
and the derivatives of ReLU6 (between and at its kinks) and h-swish."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from ._checking import TOL, check_grads, expect_array, expect_tuple, numeric, rng
from .registry import exercise

__all__ = ["check_batchnorm_backward", "check_fold_batchnorm", "check_relu6_backward",
           "check_hardswish_backward"]


# ---- chapter 4 ------------------------------------------------------------------------------

def _bn_forward(x, gamma, beta, eps):
    C = x.shape[1]
    return F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), training=True, eps=eps)[0]


@exercise("4.1", "batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)",
          difficulty=3, points=3)
def check_batchnorm_backward(fn):
    """Check ``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` of training-mode batch norm
    (batch statistics over N, H, W per channel) against central differences."""
    def case(shape, seed, std=2.0, eps=1e-5):
        r = rng(seed)
        x = r.normal(1.0, std, shape)
        C = shape[1]
        gamma, beta = r.uniform(0.5, 1.5, C), r.normal(0, 0.5, C)
        G = r.standard_normal(shape)
        got = fn(G.copy(), x.copy(), gamma.copy(), eps)
        want = numeric(lambda: _bn_forward(x, gamma, beta, eps), [x, gamma, beta], G)
        return check_grads(got, ("dx", "dgamma", "dbeta"), want)
    hint = ("the batch mean and variance depend on x too: dx = gamma / sqrt(var + eps) * "
            "(dout - mean(dout) - xhat * mean(dout * xhat)), means over (N, H, W) per channel")
    return [
        ("(4, 3, 2, 2) input", hint, lambda: case((4, 3, 2, 2), 0)),
        ("(2, 4, 3, 5) input", hint + "; reduce over axes (0, 2, 3), keep the channel axis",
         lambda: case((2, 4, 3, 5), 1)),
        ("(3, 2, 4, 3) input, eps = 1e-3 and a variance near eps", hint + "; use the `eps` "
         "you are given (1e-3 here, as in EfficientNet-Lite), inside the square root: "
         "1 / sqrt(var + eps), var the biased variance (divide by N*H*W)",
         lambda: case((3, 2, 4, 3), 2, std=0.03, eps=1e-3)),
    ]


@exercise("4.2", "fold_batchnorm(w, b, gamma, beta, mean, var, eps) -> (w_folded, b_folded)",
          difficulty=2, points=2)
def check_fold_batchnorm(fn):
    """Check ``fn(w, b, gamma, beta, mean, var, eps) -> (w_folded, b_folded)``: a convolution
    with the folded weights must equal convolution followed by eval-mode batch norm.
    ``b`` may be None (a convolution without bias)."""
    def case(with_bias, seed, var_range=(0.5, 2.0), eps=1e-5):
        r = rng(seed)
        x = r.standard_normal((2, 3, 6, 5))
        w = r.standard_normal((4, 3, 3, 3))
        b = r.standard_normal(4) if with_bias else None
        gamma, beta = r.uniform(0.5, 1.5, 4), r.normal(0, 0.5, 4)
        mean, var = r.normal(0, 0.5, 4), r.uniform(*var_range, 4)
        y, _ = F.conv2d_forward(x, w, b, 1, 1)
        want, _ = F.batchnorm_forward(y, gamma, beta, mean.copy(), var.copy(), training=False, eps=eps)
        got = fn(w.copy(), None if b is None else b.copy(), gamma, beta, mean, var, eps)
        wf, bf = expect_tuple(got, ("w_folded", "b_folded"))
        expect_array("w_folded", wf, w, np.inf, "(Co, C, K, K), the shape of w")
        expect_array("b_folded", bf, np.zeros(4), np.inf, "(Co,): one bias per output channel")
        folded, _ = F.conv2d_forward(x, wf, bf, 1, 1)
        return expect_array("conv(x, w_folded, b_folded) against BN(conv(x, w, b))",
                            folded, want, TOL)
    hint = ("eval-mode BN is y * s + (beta - mean * s) with s = gamma / sqrt(var + eps): "
            "scale each output channel's filter w[o] by s[o]")
    return [
        ("convolution without bias", hint, lambda: case(False, 0)),
        ("convolution with bias", hint + "; the conv bias b passes through BN too: "
         "b_folded = (b - mean) * s + beta", lambda: case(True, 1)),
        ("eps = 1e-3 (EfficientNet-Lite's batch norm), running variances near eps", hint +
         "; use the `eps` you are given (1e-3 here), inside the square root",
         lambda: case(True, 2, var_range=(1e-3, 1e-2), eps=1e-3)),
    ]


def _off_kinks(x, kinks, margin=1e-2):
    """Move the entries of ``x`` within ``margin`` of a kink away from it: a central
    difference across a kink averages two slopes instead of measuring one."""
    for k in kinks:
        x[np.abs(x - k) < margin] += 5 * margin
    return x


def _activation_case(fn, forward, lo, hi, kinks, seed):
    """dx of ``fn(dout, x)`` against central differences of ``forward`` on x in (lo, hi)."""
    r = rng(seed)
    x = _off_kinks(r.uniform(lo, hi, (3, 4, 5, 2)), kinks)
    G = r.standard_normal(x.shape)
    want = numeric(lambda: forward(x)[0], [x], G)[0]
    return expect_array("dx", fn(G.copy(), x.copy()), want, TOL, "(the shape of x)")


@exercise("4.4", "relu6_backward(dout, x) -> dx", difficulty=1, points=1)
def check_relu6_backward(fn):
    """Check ``fn(dout, x) -> dx`` of relu6(x) = min(max(x, 0), 6): between the kinks
    against central differences, and exactly *at* the kinks x = 0 and x = 6 against the
    library's ``F.relu6_backward``, which (like PyTorch) passes no gradient there."""
    def at_kinks(seed):
        r = rng(seed)
        x = r.permutation(np.resize([0.0, 6.0, -2.5, 2.5, 8.5], 2 * 3 * 4 * 5)).reshape(2, 3, 4, 5)
        G = r.standard_normal(x.shape)
        want = F.relu6_backward(G, F.relu6_forward(x)[1])
        return expect_array("dx", fn(G.copy(), x.copy()), want, TOL, "(the shape of x)")
    return [
        ("inputs in (0, 6)", "between the kinks relu6(x) = x: the derivative is 1, so dx = "
         "dout", lambda: _activation_case(fn, F.relu6_forward, 0.1, 5.9, (0, 6), 0)),
        ("inputs in (-4, 10)", "below 0 relu6 is the constant 0 and above 6 the constant 6: "
         "derivative 0 on both sides, 1 only for 0 < x < 6",
         lambda: _activation_case(fn, F.relu6_forward, -4, 10, (0, 6), 1)),
        ("inputs exactly 0 and 6 (the kinks)", "relu6 has no derivative at x = 0 and x = 6 "
         "(the slope jumps); the library and PyTorch pass no gradient there: keep dout only "
         "where 0 < x < 6, with strict inequalities", lambda: at_kinks(2)),
    ]


# ---- chapter 7 ------------------------------------------------------------------------------

@exercise("7.1", "hardswish_backward(dout, x) -> dx", difficulty=1, points=1)
def check_hardswish_backward(fn):
    """Check ``fn(dout, x) -> dx`` of h-swish(x) = x * relu6(x + 3) / 6 against central
    differences (test points kept away from the kinks at -3 and +3)."""
    return [
        ("inputs in (-3, 3)", "in the middle h-swish is x (x + 3) / 6, whose derivative is "
         "(2x + 3) / 6; multiply by dout",
         lambda: _activation_case(fn, F.hardswish_forward, -2.9, 2.9, (-3, 3), 0)),
        ("inputs in (-8, 8)", "outside (-3, 3) h-swish is 0 (below -3) or x (above 3): "
         "derivative 0 and 1",
         lambda: _activation_case(fn, F.hardswish_forward, -8, 8, (-3, 3), 1)),
    ]
