"""Chapters 6, 7 and 8: the backward passes of whole blocks. Each block's forward pass is
given here with plain arrays (read its docstring), built from the library's own layers,
which are also the oracles of the backward checks:

    se_forward                  squeeze-and-excitation (chapter 7)
    inverted_residual_forward   MobileNetV2's inverted residual, without batch norm (chapter 6)
    stochastic depth            EfficientNet's per-sample drop of a residual branch (chapter 8),
                                ``nn.StochasticDepth``
"""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import nn
from ._checking import TOL, check_grads, expect_array, numeric, rng
from .registry import exercise

__all__ = ["se_forward", "check_se_backward", "inverted_residual_forward",
           "check_inverted_residual_backward", "check_stochastic_depth_forward",
           "check_stochastic_depth_backward"]


# ---- chapter 6 ------------------------------------------------------------------------------

def _inverted_residual(w_expand, w_dw, w_project, stride):
    """The block as the library's layers in float64, and whether it has the shortcut."""
    E, C = w_expand.shape
    Co = w_project.shape[0]
    K = w_dw.shape[-1]
    body = nn.Sequential(nn.PointwiseConv2d(C, E), nn.ReLU6(),
                         nn.DepthwiseConv2d(E, K, stride=stride, padding=K // 2), nn.ReLU6(),
                         nn.PointwiseConv2d(E, Co)).to(np.float64)
    body.load_state_dict({"0.weight": w_expand.reshape(E, C, 1, 1), "2.weight": w_dw,
                          "4.weight": w_project.reshape(Co, E, 1, 1)})
    return body, stride == 1 and C == Co


def inverted_residual_forward(x, w_expand, w_dw, w_project, stride):
    """MobileNetV2's inverted residual block with plain arrays and without batch norm (as
    after folding it into the weights), the forward pass of the
    ``inverted_residual_backward`` exercise::

        x: (N, C, H, W)   w_expand: (E, C)   w_dw: (E, 1, K, K)   w_project: (C_out, E)
        h = relu6(einsum("ec,nchw->nehw", w_expand, x))                 (N, E, H, W)
        d = relu6(depthwise(h, w_dw, stride, padding=K // 2))           (N, E, Ho, Wo)
        y = einsum("oe,nehw->nohw", w_project, d)                       (N, C_out, Ho, Wo)
        y = y + x            only when stride == 1 and C_out == C (the shortcut)

    No ReLU6 after the projection: the bottleneck is linear (chapter 6).
    """
    body, shortcut = _inverted_residual(w_expand, w_dw, w_project, stride)
    y = body(x)
    return y + x if shortcut else y


def _inverted_residual_grads(dy, x, w_expand, w_dw, w_project, stride):
    """(dx, dw_expand, dw_dw, dw_project) from the library's layers' backward passes."""
    body, shortcut = _inverted_residual(w_expand, w_dw, w_project, stride)
    body(x)
    dx = body.backward(dy)
    return (dx + dy if shortcut else dx, body[0].weight.grad.reshape(w_expand.shape),
            body[2].weight.grad, body[4].weight.grad.reshape(w_project.shape))


@exercise("6.4", "inverted_residual_backward(dy, x, w_expand, w_dw, w_project, stride) "
          "-> (dx, dw_expand, dw_dw, dw_project)", difficulty=3, points=3,
          allow=(F.conv_output_size,))
def check_inverted_residual_backward(fn):
    """Check ``fn(dy, x, w_expand, w_dw, w_project, stride) -> (dx, dw_expand, dw_dw,
    dw_project)``, the backward pass of :func:`inverted_residual_forward`, against the
    library's layers (pointwise, ReLU6, depthwise) run backward."""
    def case(N, C, E, Co, K, H, W, s, seed):
        r = rng(seed)
        # inputs of 2 and unit weights: the pre-activations cross both kinks, 0 and 6
        x = 2 * r.standard_normal((N, C, H, W))
        w_expand, w_dw = r.standard_normal((E, C)), r.standard_normal((E, 1, K, K))
        w_project = r.standard_normal((Co, E))
        y = inverted_residual_forward(x, w_expand, w_dw, w_project, s)
        dy = r.standard_normal(y.shape)
        arrays = (x, w_expand, w_dw, w_project)
        got = fn(dy.copy(), *(a.copy() for a in arrays), s)
        return check_grads(got, ("dx", "dw_expand", "dw_dw", "dw_project"),
                           _inverted_residual_grads(dy, *arrays, s))
    hint = ("go backwards: dd = einsum('oe,nohw->nehw', w_project, dy); times ReLU6's mask "
            "(0 < pre-activation < 6); the depthwise backward of chapter 3 (dw_dw, dh); "
            "ReLU6's mask again; then the expansion (dw_expand, dx)")
    return [
        ("C=4 -> 4, E=12, 3x3, stride 1, 5x5 input (with the shortcut)", hint + "; x also "
         "reaches y through the shortcut, so dx gets + dy", lambda: case(2, 4, 12, 4, 3, 5, 5, 1, 0)),
        ("C=4 -> 6, E=12, 3x3, stride 2, 7x6 input (no shortcut)", hint + "; with stride 2 "
         "there is no shortcut, and the depthwise backward sends its gradient to every "
         "second row and column", lambda: case(2, 4, 12, 6, 3, 7, 6, 2, 1)),
        ("C=3 -> 3, E=9, 5x5, stride 1, 6x5 input", hint + "; a 5x5 depthwise kernel has "
         "padding K // 2 = 2", lambda: case(1, 3, 9, 3, 5, 6, 5, 1, 2)),
        ("C=4 -> 6, E=12, 3x3, stride 1, 5x6 input (no shortcut: the channels change)", hint +
         "; the shortcut needs stride 1 *and* C_out == C: here the channels change, so there "
         "is none and dx gets no + dy", lambda: case(2, 4, 12, 6, 3, 5, 6, 1, 3)),
        ("C=4 -> 4, E=8, 3x3, stride 2, 6x6 input (no shortcut: the size halves)", hint +
         "; the shortcut needs stride 1 *and* C_out == C: with stride 2 there is none, even "
         "when the channels stay the same", lambda: case(1, 4, 8, 4, 3, 6, 6, 2, 4)),
    ]


# ---- chapter 7 ------------------------------------------------------------------------------

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


@exercise("7.2", "se_backward(dy, x, w1, b1, w2, b2) -> (dx, dw1, db1, dw2, db2)",
          difficulty=3, points=3)
def check_se_backward(fn):
    """Check ``fn(dy, x, w1, b1, w2, b2) -> (dx, dw1, db1, dw2, db2)`` of :func:`se_forward`
    against central differences."""
    def case(N, C, S, H, W, seed):
        arrays, G = _se_case(N, C, S, H, W, seed)
        got = fn(G.copy(), *(a.copy() for a in arrays))
        return check_grads(got, ("dx", "dw1", "db1", "dw2", "db2"),
                           numeric(lambda: se_forward(*arrays), arrays, G))
    hint = ("x reaches y twice: directly (dy * s) and through the gate; the gate's gradient "
            "ds = sum over H, W of dy * x flows back through h-sigmoid, fc2, ReLU, fc1 and the "
            "mean (divide by H*W)")
    return [
        ("N=2, C=4, S=2, 3x3", hint, lambda: case(2, 4, 2, 3, 3, 0)),
        ("N=3, C=6, S=3, 4x2", hint + "; the map is not square: the mean divides by H*W = 8",
         lambda: case(3, 6, 3, 4, 2, 1)),
    ]


def _se_case(N, C, S, H, W, seed):
    """[x, w1, b1, w2, b2] and the upstream gradient of an SE case. The seed is moved on
    until the gate's every piece is used: some ReLU inputs positive and some negative, some
    h-sigmoid inputs inside (-3, 3) and some outside, none within 0.05 of a kink (a central
    difference across a kink measures neither slope)."""
    while True:
        r = rng(seed)
        x = r.standard_normal((N, C, H, W)) + 0.5
        w1, b1 = r.normal(0, 0.8, (S, C)), r.normal(0.3, 0.5, S)
        w2, b2 = r.normal(0, 1.5, (C, S)), r.normal(0, 1.0, C)
        z1 = x.mean(axis=(2, 3)) @ w1.T + b1
        z2 = np.maximum(z1, 0) @ w2.T + b2
        if ((z1 > 0).any() and (z1 < 0).any() and (np.abs(z2) < 3).any()
                and (np.abs(z2) > 3).any() and np.abs(z1).min() > 0.05
                and np.abs(np.abs(z2) - 3).min() > 0.05):
            return [x, w1, b1, w2, b2], r.standard_normal(x.shape)
        seed += 1000


# ---- chapter 8 ------------------------------------------------------------------------------

def _stochastic_depth(p, N, training, seed):
    """x (N, 3, 4, 4), the library layer's output and the layer after its forward pass,
    and the (N,) keep mask it drew: True where the sample's branch survived. In training with 0 < p < 1 the seed is
    moved on until the draw keeps some samples and drops others; in eval mode (where the
    layer draws nothing) ``keep`` is a mixed draw the answer must ignore."""
    while True:
        r = rng(seed)
        x = r.standard_normal((N, 3, 4, 4))                 # no exact zeros
        layer = nn.StochasticDepth(p, seed=seed).train(training)
        y = layer(x)
        if training:
            keep = np.any(y != 0, axis=(1, 2, 3))
        else:
            keep = r.random(N) < 1 - p
        if p in (0.0, 1.0) or 0 < keep.sum() < N:
            return x, y, layer, keep
        seed += 1000


_SD_CASES = [   # label, p, N, training, hint
    ("training, p = 0.5, 8 samples", 0.5, 8, True,
     "stochastic depth keeps or drops whole samples: out[n] = x[n] * keep[n] / (1 - p); "
     "the division keeps the expected output equal to x"),
    ("training, p = 0.2, 6 samples", 0.2, 6, True,
     "scale the kept samples by 1 / (1 - p), the survival probability, not by 1 / p"),
    ("eval mode, p = 0.5", 0.5, 5, False,
     "in eval mode stochastic depth is the identity: every branch is kept, whatever "
     "`keep` says"),
    ("training, p = 0 (nothing dropped: EfficientNet's first block)", 0.0, 5, True,
     "p = 0 keeps every sample and scales it by 1 / (1 - 0) = 1: the identity, not zero "
     "(EfficientNet's first block has p = 0, the last ones the largest p)"),
    ("training, p = 1 (every branch dropped)", 1.0, 4, True,
     "p = 1 drops every sample: the result is 0; do not divide by 1 - p = 0 (like "
     "torchvision, scale only when 1 - p > 0)"),
]


@exercise("8.4", "stochastic_depth_forward(x, p, keep, training) -> out",
          difficulty=1, points=1)
def check_stochastic_depth_forward(fn):
    """Check ``fn(x, p, keep, training) -> out`` (x: (N, C, H, W), keep: (N,) booleans, the
    caller's draw ``rng.random(N) < 1 - p``) against ``nn.StochasticDepth`` (torchvision's
    "row" mode): in training the samples with ``keep[n]`` False are zeroed and the others
    scaled by 1 / (1 - p); in eval mode the identity."""
    def case(p, N, training, seed):
        x, y, _, keep = _stochastic_depth(p, N, training, seed)
        return expect_array("out", fn(x.copy(), p, keep.copy(), training), y, TOL,
                            "(the shape of x)")
    return [(label, hint, lambda p=p, N=N, t=t, k=k: case(p, N, t, k))
            for k, (label, p, N, t, hint) in enumerate(_SD_CASES)]


@exercise("8.5", "stochastic_depth_backward(dout, p, keep, training) -> dx",
          difficulty=1, points=1)
def check_stochastic_depth_backward(fn):
    """Check ``fn(dout, p, keep, training) -> dx``, the backward pass of the forward of 8.4
    with the same ``keep``, against ``nn.StochasticDepth.backward``."""
    def case(p, N, training, seed):
        x, _, layer, keep = _stochastic_depth(p, N, training, seed)
        dout = rng(seed + 50).standard_normal(x.shape)
        return expect_array("dx", fn(dout.copy(), p, keep.copy(), training),
                            layer.backward(dout), TOL, "(the shape of dout)")
    return [(label, hint.replace("out[n] = x[n]", "dx[n] = dout[n]"),
             lambda p=p, N=N, t=t, k=k: case(p, N, t, k))
            for k, (label, p, N, t, hint) in enumerate(_SD_CASES)]
