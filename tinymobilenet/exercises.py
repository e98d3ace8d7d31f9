"""Classroom exercises with self-checks.

Each ``check_*`` function takes *your* function, runs it on a handful of cases (simple ones
first: odd sizes, non-square inputs, stride 2, padding, K = 1/3/5), compares it with the
library's naive loop oracles (forward passes), with central-difference gradients from
:mod:`tinymobilenet.gradcheck` (backward passes, float64, random upstream gradient), or with
the counter and the library itself (costs, scaling, optimizer), and returns an
:class:`ExerciseResult`: PASS or FAIL, the worst relative error, the first case that failed
and a hint (``result.ok`` for a script). In a notebook the result prints itself::

    from tinymobilenet import exercises

    def my_depthwise_backward(dout, x, w, stride, padding):
        ...
        return dx, dw

    exercises.check_depthwise_backward(my_depthwise_backward)

The functions you write (signatures the checkers call; arrays are NCHW, float64):

    chapter 1  conv_output_size(size, kernel_size, stride, padding) -> int
               im2col(x, K, stride, padding) -> col (N, C, K, K, Ho, Wo)
               conv2d_forward(x, w, b, stride, padding) -> out (N, Co, Ho, Wo)
    chapter 2  conv2d_backward(dout, x, w, stride, padding) -> (dx, dw)
    chapter 3  depthwise_forward(x, w, stride, padding) -> out (N, C, Ho, Wo),  w (C, 1, K, K)
               depthwise_backward(dout, x, w, stride, padding) -> (dx, dw)
               cost_ratio(C_out, K) -> float      (depthwise separable / full convolution)
    chapter 4  batchnorm_backward(dout, x, gamma, eps) -> (dx, dgamma, dbeta)   training mode
               fold_batchnorm(w, b, gamma, beta, mean, var, eps) -> (w_folded, b_folded)
    chapter 5  v1_macs(alpha, resolution) -> int    MobileNetV1's Mult-Adds for one image
    chapter 6  inverted_residual_macs(C_in, C_out, expand_ratio, K, H, W, stride) -> int
    chapter 7  hardswish_backward(dout, x) -> dx
               se_backward(dy, x, w1, b1, w2, b2) -> (dx, dw1, db1, dw2, db2)
    chapter 8  compound_scaling(phi) -> (depth, width, resolution)   resolution in pixels
    chapter 9  sgd_step(w, grad, velocity, lr, momentum, weight_decay) -> (w, velocity)

Worked answers live in :mod:`tinymobilenet.solutions`, which this module never imports, so
the exercises can be handed out alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import functional as F
from . import gradcheck

__all__ = [
    "ExerciseResult",
    "check_conv_output_size", "check_im2col", "check_conv2d_forward", "check_conv2d_backward",
    "check_depthwise_forward", "check_depthwise_backward", "check_cost_ratio",
    "check_batchnorm_backward", "check_fold_batchnorm", "check_v1_macs",
    "check_inverted_residual_macs",
    "check_hardswish_backward", "check_se_backward", "check_compound_scaling", "check_sgd_step",
    "se_forward",
]

TOL = 1e-6


@dataclass
class ExerciseResult:
    """Outcome of a ``check_*``. ``bool(result)`` is ``result.ok``; printing it (or leaving it
    as the last expression of a notebook cell) shows the verdict, the worst error and a hint."""

    exercise: str
    ok: bool
    worst_error: float
    cases: int
    failed_case: str = ""
    message: str = ""
    hint: str = ""
    tol: float = TOL

    def __bool__(self):
        return self.ok

    def __str__(self):
        if self.ok:
            tol = "exact" if self.tol == 0 else f"tolerance {self.tol:.0e}"
            return (f"{self.exercise}: PASS  ({self.cases} cases, worst relative error "
                    f"{self.worst_error:.1e}, {tol})")
        lines = [f"{self.exercise}: FAIL  in case '{self.failed_case}'", f"  {self.message}"]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    __repr__ = __str__


class _Mismatch(Exception):
    """A case failed; carries the message shown to the student and the error size."""

    def __init__(self, message, error=np.inf):
        super().__init__(message)
        self.error = error


def _compare(name, got, expected, tol):
    """Relative error of ``got`` against ``expected`` (raises _Mismatch on shape or value)."""
    got = np.asarray(got) if got is not None else None
    if got is None:
        raise _Mismatch(f"{name} is None")
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        raise _Mismatch(f"{name} has shape {got.shape}, expected {expected.shape}")
    if not np.all(np.isfinite(got)):
        raise _Mismatch(f"{name} contains NaN or inf")
    err, flat = gradcheck.relative_error(got, expected)
    if err > tol:
        where = tuple(int(i) for i in np.unravel_index(flat, expected.shape)) if flat is not None else ()
        raise _Mismatch(f"{name}: worst relative error {err:.2e} (tolerance {tol:.0e}) at index "
                        f"{list(where)}: got {got.reshape(-1)[flat]:.6g}, expected "
                        f"{expected.reshape(-1)[flat]:.6g}", err)
    return err


def _run(exercise, cases, tol=TOL):
    """Run ``cases``: a list of (label, hint, thunk); each thunk returns the worst error of
    that case or raises. Stops at the first failing case (cases go from simple to hard)."""
    worst = 0.0
    for label, hint, thunk in cases:
        try:
            worst = max(worst, thunk())
        except _Mismatch as e:
            return ExerciseResult(exercise, False, e.error, len(cases), label, str(e), hint, tol)
        except NotImplementedError:
            return ExerciseResult(exercise, False, np.inf, len(cases), label,
                                  "not implemented yet (the function raised NotImplementedError)",
                                  "replace the `raise NotImplementedError` with your code", tol)
        except Exception as e:          # the student's code crashed: show why, do not re-raise
            return ExerciseResult(exercise, False, np.inf, len(cases), label,
                                  f"your function raised {type(e).__name__}: {e}", hint, tol)
    return ExerciseResult(exercise, True, worst, len(cases), tol=tol)


def _numeric(forward, arrays, G):
    """Central-difference gradients of sum(forward() * G) w.r.t. each array in ``arrays``."""
    return [gradcheck.numerical_gradient(forward, a, G=G) for a in arrays]


def _rng(seed):
    return np.random.default_rng((seed, 0x6578))


def _check_grads(got, names, forward, wrt, G):
    """Compare the student's gradients ``got`` (a tuple named ``names``) with central
    differences of sum(forward() * G) w.r.t. the arrays ``wrt``; the worst error."""
    if not isinstance(got, tuple) or len(got) != len(names):
        raise _Mismatch(f"return a tuple ({', '.join(names)})")
    want = _numeric(forward, wrt, G)
    return max(_compare(n, g, w, TOL) for n, g, w in zip(names, got, want))


def _conv_backward_case(fn, case, seed, forward, depthwise):
    """One case of a convolution backward exercise: fn(dout, x, w, stride, padding)."""
    x, w, s, p = _conv_case_arrays(case, seed, depthwise)

    def out():
        return forward(x, w, None, s, p)[0]
    G = _rng(seed + 200).standard_normal(out().shape)
    return _check_grads(fn(G.copy(), x.copy(), w.copy(), s, p), ("dx", "dw"), out, [x, w], G)


# ---- the shared convolution cases, simple first ---------------------------------------------
#          label                                    N  C  H  W  Co K  s  p   hint
_CONV_CASES = [
    ("3x3, stride 1, no padding, 5x5 input",     2, 3, 5, 5, 4, 3, 1, 0,
     "start from the naive definition: out[n, o, i, j] = sum over c, p, q of "
     "w[o, c, p, q] * x[n, c, i + p, j + q]"),
    ("1x1 kernel, 4x5 input",                    1, 3, 4, 5, 2, 1, 1, 0,
     "with K = 1 there is a single kernel offset; check your loops do not assume K > 1"),
    ("3x3, padding 1, non-square 6x5 input",     2, 2, 6, 5, 3, 3, 1, 1,
     "pad H and W separately (they differ here) and, in a backward pass, crop the padding "
     "off dx at the end"),
    ("3x3, stride 2, padding 1, 7x6 input",      1, 2, 7, 6, 3, 3, 2, 1,
     "fails with stride 2: output pixel (i, j) reads input rows i*stride + p, not i + p "
     "(forward) and sends its gradient back to the same strided places (backward)"),
    ("5x5, stride 2, padding 2, 8x7 input",      2, 2, 8, 7, 3, 5, 2, 2,
     "K = 5 with padding 2: check the output size (H + 2*pad - K) // stride + 1 and that "
     "you use K, not a hard-coded 3"),
]


def _conv_case_arrays(case, seed, depthwise=False):
    _, N, C, H, W, Co, K, s, p, _ = case
    rng = _rng(seed)
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((C, 1, K, K) if depthwise else (Co, C, K, K))
    return x, w, s, p


# ---- chapter 1 ------------------------------------------------------------------------------

def check_conv_output_size(fn):
    """Check ``fn(size, kernel_size, stride, padding) -> int`` on a grid of sizes."""
    def grid(stride_gt_1):
        worst = 0.0
        for size in range(1, 12):
            for k in (1, 2, 3, 5):
                for s in ((2, 3) if stride_gt_1 else (1,)):
                    for p in (0, 1, 2):
                        if k > size + 2 * p:
                            continue
                        want = F.conv_output_size(size, k, s, p)
                        got = fn(size, k, s, p)
                        if not isinstance(got, (int, np.integer)):
                            raise _Mismatch(f"returned {got!r} ({type(got).__name__}); an "
                                            f"output size is an integer")
                        if got != want:
                            raise _Mismatch(f"size={size}, kernel_size={k}, stride={s}, "
                                            f"padding={p}: got {got}, expected {want}", 1.0)
        return worst
    return _run("check_conv_output_size", [
        ("stride 1, padding 0..2", "each side of the input gets `padding` zeros: the padded "
         "size is size + 2*padding; a K-wide window fits size + 2*padding - K + 1 times",
         lambda: grid(False)),
        ("stride 2 and 3", "with stride s the window starts at 0, s, 2s, ...: count the starts "
         "with integer division (//), not true division, and add 1 for the start at 0",
         lambda: grid(True)),
    ], tol=0.0)


def check_im2col(fn):
    """Check ``fn(x, K, stride, padding) -> col`` of shape (N, C, K, K, Ho, Wo)."""
    def case(c, seed):
        x, _, s, p = _conv_case_arrays(c, seed)
        K = c[6]
        return _compare("col", fn(x.copy(), K, s, p), F.im2col(x, K, s, p), 0.0)
    return _run("check_im2col", [
        (c[0], c[-1] + "; col[n, c, p, q, i, j] = xpad[n, c, i*stride + p, j*stride + q]",
         lambda c=c, k=k: case(c, k)) for k, c in enumerate(_CONV_CASES)], tol=0.0)


def check_conv2d_forward(fn):
    """Check ``fn(x, w, b, stride, padding) -> out`` against the naive loop oracle."""
    def case(c, seed):
        x, w, s, p = _conv_case_arrays(c, seed)
        b = _rng(seed + 100).standard_normal(w.shape[0])
        want, _ = F.conv2d_forward_naive(x, w, b, s, p)
        return _compare("out", fn(x.copy(), w.copy(), b.copy(), s, p), want, TOL)
    return _run("check_conv2d_forward", [
        (c[0], c[-1] + "; and do not forget the bias, one value per output channel",
         lambda c=c, k=k: case(c, k)) for k, c in enumerate(_CONV_CASES)])


# ---- chapter 2 ------------------------------------------------------------------------------

def check_conv2d_backward(fn):
    """Check ``fn(dout, x, w, stride, padding) -> (dx, dw)`` against central differences of
    the convolution (float64, random upstream gradient)."""
    return _run("check_conv2d_backward", [
        (c[0], c[-1] + "; dx: every input pixel under several windows collects the sum of "
         "their gradients (+=, not =); dw[o, c, p, q] = sum of dout[n, o, i, j] * "
         "xpad[n, c, i*stride + p, j*stride + q]",
         lambda c=c, k=k: _conv_backward_case(fn, c, k, F.conv2d_forward, False))
        for k, c in enumerate(_CONV_CASES)])


# ---- chapter 3 ------------------------------------------------------------------------------

def check_depthwise_forward(fn):
    """Check ``fn(x, w, stride, padding) -> out`` (w: (C, 1, K, K)) against the naive oracle."""
    def case(c, seed):
        x, w, s, p = _conv_case_arrays(c, seed, depthwise=True)
        want, _ = F.depthwise_conv2d_forward_naive(x, w, None, s, p)
        return _compare("out", fn(x.copy(), w.copy(), s, p), want, TOL)
    return _run("check_depthwise_forward", [
        (c[0], c[-1] + "; depthwise: channel c is convolved with w[c, 0] only, there is no "
         "sum over channels", lambda c=c, k=k: case(c, k)) for k, c in enumerate(_CONV_CASES)])


def check_depthwise_backward(fn):
    """Check ``fn(dout, x, w, stride, padding) -> (dx, dw)`` (w: (C, 1, K, K)) against central
    differences of the depthwise convolution (float64, random upstream gradient)."""
    return _run("check_depthwise_backward", [
        (c[0], c[-1] + "; dw[c, 0, p, q] = sum over n, i, j of dout[n, c, i, j] * "
         "xpad[n, c, i*stride + p, j*stride + q]",
         lambda c=c, k=k: _conv_backward_case(fn, c, k, F.depthwise_conv2d_forward, True))
        for k, c in enumerate(_CONV_CASES)])


def _separable_and_full(C, Co, K, H):
    """(MACs of depthwise + pointwise, MACs of the full K x K convolution), from the counter."""
    from . import count, nn
    pad = K // 2
    separable = nn.Sequential(nn.DepthwiseConv2d(C, K, padding=pad), nn.PointwiseConv2d(C, Co))
    full = nn.Conv2d(C, Co, K, padding=pad, bias=False)
    shape = (1, C, H, H)
    return count.summary(separable, shape).total_macs, count.summary(full, shape).total_macs


def check_cost_ratio(fn):
    """Check ``fn(C_out, K) -> float``, the Mult-Adds of a depthwise separable convolution
    divided by those of a full K x K convolution, against the counter's MACs of both."""
    def case(C, Co, K, H):
        macs_sep, macs_full = _separable_and_full(C, Co, K, H)
        got = fn(Co, K)
        return _compare(f"cost_ratio(C_out={Co}, K={K})", float(got), macs_sep / macs_full, 1e-9)
    hint = ("write both costs with the same factors: depthwise K*K*C*Ho*Wo + pointwise "
            "C*C_out*Ho*Wo over full K*K*C*C_out*Ho*Wo, then cancel C*Ho*Wo")
    return _run("check_cost_ratio", [
        (f"C=8, C_out={Co}, K={K}, {H}x{H} input", hint, lambda Co=Co, K=K, H=H: case(8, Co, K, H))
        for Co, K, H in [(16, 3, 6), (32, 3, 5), (8, 5, 7), (64, 1, 4), (24, 7, 9)]], tol=1e-9)


# ---- chapter 4 ------------------------------------------------------------------------------

def _bn_forward(x, gamma, beta, eps):
    C = x.shape[1]
    return F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), training=True, eps=eps)[0]


def check_batchnorm_backward(fn):
    """Check ``fn(dout, x, gamma, eps) -> (dx, dgamma, dbeta)`` of training-mode batch norm
    (batch statistics over N, H, W per channel) against central differences."""
    def case(shape, seed):
        rng = _rng(seed)
        x = rng.normal(1.0, 2.0, shape)
        C = shape[1]
        gamma, beta = rng.uniform(0.5, 1.5, C), rng.normal(0, 0.5, C)
        eps = 1e-5
        G = rng.standard_normal(shape)
        return _check_grads(fn(G.copy(), x.copy(), gamma.copy(), eps), ("dx", "dgamma", "dbeta"),
                            lambda: _bn_forward(x, gamma, beta, eps), [x, gamma, beta], G)
    hint = ("the batch mean and variance depend on x too: dx = gamma / sqrt(var + eps) * "
            "(dout - mean(dout) - xhat * mean(dout * xhat)), means over (N, H, W) per channel")
    return _run("check_batchnorm_backward", [
        ("(4, 3, 2, 2) input", hint, lambda: case((4, 3, 2, 2), 0)),
        ("(2, 4, 3, 5) input", hint + "; reduce over axes (0, 2, 3), keep the channel axis",
         lambda: case((2, 4, 3, 5), 1)),
    ])


def check_fold_batchnorm(fn):
    """Check ``fn(w, b, gamma, beta, mean, var, eps) -> (w_folded, b_folded)``: a convolution
    with the folded weights must equal convolution followed by eval-mode batch norm.
    ``b`` may be None (a convolution without bias)."""
    def case(with_bias, seed):
        rng = _rng(seed)
        x = rng.standard_normal((2, 3, 6, 5))
        w = rng.standard_normal((4, 3, 3, 3))
        b = rng.standard_normal(4) if with_bias else None
        gamma, beta = rng.uniform(0.5, 1.5, 4), rng.normal(0, 0.5, 4)
        mean, var, eps = rng.normal(0, 0.5, 4), rng.uniform(0.5, 2.0, 4), 1e-5
        y, _ = F.conv2d_forward(x, w, b, 1, 1)
        want, _ = F.batchnorm_forward(y, gamma, beta, mean.copy(), var.copy(), training=False, eps=eps)
        wf, bf = fn(w.copy(), None if b is None else b.copy(), gamma, beta, mean, var, eps)
        _compare("w_folded", wf, w, np.inf)          # shape check only
        _compare("b_folded", bf, np.zeros(4), np.inf)
        got, _ = F.conv2d_forward(x, np.asarray(wf), np.asarray(bf), 1, 1)
        return _compare("conv(x, w_folded, b_folded) - BN(conv(x, w, b))", got, want, TOL)
    hint = ("eval-mode BN is y * s + (beta - mean * s) with s = gamma / sqrt(var + eps): "
            "scale each output channel's filter w[o] by s[o]")
    return _run("check_fold_batchnorm", [
        ("convolution without bias", hint, lambda: case(False, 0)),
        ("convolution with bias", hint + "; the conv bias b passes through BN too: "
         "b_folded = (b - mean) * s + beta", lambda: case(True, 1)),
    ])


# ---- chapter 5 ------------------------------------------------------------------------------

def check_v1_macs(fn):
    """Check ``fn(alpha, resolution) -> int``, the Mult-Adds of MobileNetV1 (1000 classes) for
    one ``resolution`` x ``resolution`` RGB image, against the counter."""
    from . import count
    from .models import mobilenet_v1

    def case(alpha, res):
        want = count.summary(mobilenet_v1(alpha), (1, 3, res, res)).total_macs
        got = fn(alpha, res)
        if got != want:
            raise _Mismatch(f"got {got:,}, the counter says {want:,} (ratio {got / want:.4f})",
                            abs(got - want) / want)
        return 0.0
    hint = ("stem: 3*3*3*C*Ho*Wo; each block: depthwise 3*3*C_in*Ho*Wo + pointwise "
            "C_in*C_out*Ho*Wo with Ho from the output-size formula (3x3, padding 1); "
            "FC: C_last * 1000")
    return _run("check_v1_macs", [
        ("alpha=1, 224 px (the paper's 569 M)", hint, lambda: case(1.0, 224)),
        ("alpha=0.5, 224 px", hint + "; every layer gets int(C * alpha) channels",
         lambda: case(0.5, 224)),
        ("alpha=0.75, 160 px", hint, lambda: case(0.75, 160)),
        ("alpha=1, 100 px (odd sizes on the way down)", "at 100 px the sizes go 50, 25, "
         "13, 7, 4: use (H + 2*1 - 3) // stride + 1, not H // stride", lambda: case(1.0, 100)),
    ], tol=0.0)


# ---- chapter 6 ------------------------------------------------------------------------------

def check_inverted_residual_macs(fn):
    """Check ``fn(C_in, C_out, expand_ratio, K, H, W, stride) -> int``, the multiply-accumulates
    of a MobileNetV2 inverted residual block (expand 1x1, depthwise K x K with ``stride`` and
    padding K // 2, project 1x1) on an H x W input, against the counter."""
    from . import count, nn

    def case(C, Co, t, K, H, W, s):
        block = nn.InvertedResidual(C, Co, s, expand_ratio=t, kernel_size=K)
        want = count.summary(block, (1, C, H, W)).total_macs
        got = fn(C, Co, t, K, H, W, s)
        if got != want:
            raise _Mismatch(f"got {got}, the counter says {want} (ratio {got / want:.3f})",
                            abs(got - want) / want)
        return 0.0
    return _run("check_inverted_residual_macs", [
        ("C_in=16, C_out=16, t=6, 3x3, stride 1, 8x8", "three convolutions: expand C_in -> "
         "t*C_in (1x1), depthwise K x K on t*C_in channels, project t*C_in -> C_out (1x1)",
         lambda: case(16, 16, 6, 3, 8, 8, 1)),
        ("C_in=16, C_out=24, t=6, 3x3, stride 2, 9x7", "with stride 2 the depthwise and the "
         "projection run on the smaller output, Ho = (H + 2*(K//2) - K) // 2 + 1; the expansion "
         "still runs on the full H x W input", lambda: case(16, 24, 6, 3, 9, 7, 2)),
        ("C_in=32, C_out=32, t=1, 5x5, stride 1, 6x6", "with t = 1 there is no expansion layer "
         "at all (MobileNetV2's first block)", lambda: case(32, 32, 1, 5, 6, 6, 1)),
    ], tol=0.0)


# ---- chapter 7 ------------------------------------------------------------------------------

def check_hardswish_backward(fn):
    """Check ``fn(dout, x) -> dx`` of h-swish(x) = x * relu6(x + 3) / 6 against central
    differences (test points kept away from the kinks at -3 and +3)."""
    def case(lo, hi, seed):
        rng = _rng(seed)
        x = rng.uniform(lo, hi, (3, 4, 5, 2))
        x[np.abs(np.abs(x) - 3) < 1e-2] += 0.05          # stay off the kinks
        G = rng.standard_normal(x.shape)
        want = _numeric(lambda: F.hardswish_forward(x)[0], [x], G)[0]
        return _compare("dx", fn(G.copy(), x.copy()), want, TOL)
    return _run("check_hardswish_backward", [
        ("inputs in (-3, 3)", "in the middle h-swish is x (x + 3) / 6, whose derivative is "
         "(2x + 3) / 6; multiply by dout", lambda: case(-2.9, 2.9, 0)),
        ("inputs in (-8, 8)", "outside (-3, 3) h-swish is 0 (below -3) or x (above 3): "
         "derivative 0 and 1", lambda: case(-8, 8, 1)),
    ])


def se_forward(x, w1, b1, w2, b2):
    """Squeeze-and-excitation of MobileNetV3 with plain matrices, the forward pass of the
    ``se_backward`` exercise:

        x: (N, C, H, W)   w1: (S, C)   b1: (S,)   w2: (C, S)   b2: (C,)
        s = hard_sigmoid(relu(mean_{H,W}(x) @ w1.T + b1) @ w2.T + b2)      (N, C)
        y = x * s[:, :, None, None]                                          (N, C, H, W)
    """
    pooled, _ = F.global_avg_pool_forward(x)                # (N, C)
    z1, _ = F.linear_forward(pooled, w1, b1)                # (N, C) @ (C, S) -> (N, S)
    h, _ = F.relu_forward(z1)
    z2, _ = F.linear_forward(h, w2, b2)                     # (N, S) @ (S, C) -> (N, C)
    s, _ = F.hardsigmoid_forward(z2)
    return x * s[:, :, None, None]


def check_se_backward(fn):
    """Check ``fn(dy, x, w1, b1, w2, b2) -> (dx, dw1, db1, dw2, db2)`` of :func:`se_forward`
    against central differences."""
    def case(N, C, S, H, W, seed):
        rng = _rng(seed)
        x = rng.standard_normal((N, C, H, W)) + 0.5
        w1, b1 = rng.normal(0, 0.8, (S, C)), rng.normal(0.3, 0.5, S)
        w2, b2 = rng.normal(0, 0.8, (C, S)), rng.normal(0, 1.0, C)
        G = rng.standard_normal(x.shape)
        arrays = [x, w1, b1, w2, b2]
        return _check_grads(fn(G.copy(), *(a.copy() for a in arrays)),
                            ("dx", "dw1", "db1", "dw2", "db2"), lambda: se_forward(*arrays),
                            arrays, G)
    hint = ("x reaches y twice: directly (dy * s) and through the gate; the gate's gradient "
            "ds = sum over H, W of dy * x flows back through h-sigmoid, fc2, ReLU, fc1 and the "
            "mean (divide by H*W)")
    return _run("check_se_backward", [
        ("N=2, C=4, S=2, 3x3", hint, lambda: case(2, 4, 2, 3, 3, 0)),
        ("N=3, C=6, S=3, 4x2", hint, lambda: case(3, 6, 3, 4, 2, 1)),
    ])


# ---- chapter 8 ------------------------------------------------------------------------------

def check_compound_scaling(fn):
    """Check ``fn(phi) -> (depth, width, resolution)`` of EfficientNet's compound scaling
    against :func:`tinymobilenet.models.compound_scaling`: depth and width multipliers
    alpha^phi and beta^phi, resolution round(224 * gamma^phi), with alpha=1.2, beta=1.1,
    gamma=1.15 (chosen so that alpha * beta^2 * gamma^2 ~ 2: FLOPs double per unit of phi)."""
    from .models import compound_scaling

    def case(phi):
        got = fn(phi)
        if not isinstance(got, tuple) or len(got) != 3:
            raise _Mismatch("return a tuple (depth, width, resolution)")
        return _compare(f"(depth, width, resolution) at phi={phi}", np.array(got, dtype=float),
                        np.array(compound_scaling(phi), dtype=float), 1e-9)
    hint = ("depth = 1.2 ** phi, width = 1.1 ** phi, resolution = 224 * 1.15 ** phi rounded "
            "to the nearest integer")
    return _run("check_compound_scaling", [
        (f"phi={phi}", hint, lambda phi=phi: case(phi)) for phi in (0, 1, 2, 3.5, 7)], tol=1e-9)


# ---- chapter 9 ------------------------------------------------------------------------------

def check_sgd_step(fn):
    """Check ``fn(w, grad, velocity, lr, momentum, weight_decay) -> (w, velocity)``, one step of
    SGD with momentum and L2 weight decay, against :class:`tinymobilenet.optim.SGD` over a few
    steps (the velocity starts at zero)::

        g = grad + weight_decay * w;   v = momentum * v + g;   w = w - lr * v
    """
    from . import nn, optim

    def case(lr, mom, wd, steps, seed):
        rng = _rng(seed)
        w0 = rng.standard_normal(7)
        grads = rng.standard_normal((steps, 7))
        w, v = w0.copy(), np.zeros(7)
        p = nn.Parameter(w0.copy())
        reference = optim.SGD([p], lr=lr, momentum=mom, weight_decay=wd)
        for g in grads:
            w, v = fn(w.copy(), g.copy(), v.copy(), lr, mom, wd)
            p.grad = g.copy()
            reference.step()
        return _compare("w after the last step", w, p.data, 1e-12)
    return _run("check_sgd_step", [
        ("plain SGD (momentum 0, no weight decay)", "w = w - lr * grad",
         lambda: case(0.1, 0.0, 0.0, 3, 0)),
        ("momentum 0.9", "the velocity remembers past gradients: v = momentum * v + grad, then "
         "w = w - lr * v (PyTorch's form, no (1 - momentum) damping)",
         lambda: case(0.1, 0.9, 0.0, 5, 1)),
        ("momentum 0.9 and weight decay 1e-2", "weight decay adds weight_decay * w to the "
         "gradient before it enters the velocity", lambda: case(0.05, 0.9, 1e-2, 5, 2)),
    ], tol=1e-12)
