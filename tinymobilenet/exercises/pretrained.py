"""Chapter 10: what running a published network needs. TensorFlow's SAME padding amounts
(against :func:`tinymobilenet.functional.same_padding`), the centre crop of the
EfficientNet-Lite evaluation (against :meth:`tinymobilenet.data.LiteTransform.crop_box`),
and the saliency of a small network, d logit / d image (against the library's ``Linear``
and ``ReLU`` layers run backward with a one-hot upstream gradient)."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import nn
from ..data import LiteTransform
from ._checking import Mismatch, TOL, expect_array, expect_int, expect_tuple, rng
from .registry import exercise

__all__ = ["check_same_padding", "check_lite_crop_box", "check_saliency"]


def _exact_ints(what, got, names, want):
    """``got`` as a tuple of ints named ``names`` equal to ``want``, or Mismatch."""
    values = expect_tuple(got, names)
    values = tuple(expect_int(f"{what}: {n}", v, "whole pixels: use // and int(), not /")
                   for n, v in zip(names, values))
    if values != tuple(want):
        spelled = ", ".join(names)
        raise Mismatch(f"{what}: got ({spelled}) = {values}, expected {tuple(want)}", 1.0)
    return 0.0


# ---- 10.1 -----------------------------------------------------------------------------------

@exercise("10.1", "same_padding(size, kernel_size, stride) -> (before, after)",
          difficulty=1, points=1, tol=0.0)
def check_same_padding(fn):
    """Check ``fn(size, kernel_size, stride) -> (before, after)``, TensorFlow's SAME padding
    along one axis, against :func:`tinymobilenet.functional.same_padding`::

        Ho = ceil(size / stride);   total = max((Ho - 1) * stride + kernel_size - size, 0)
        before = total // 2;        after = total - before
    """
    def case(size, K, s):
        what = f"same_padding(size={size}, kernel_size={K}, stride={s})"
        return _exact_ints(what, fn(size, K, s), ("before", "after"), F.same_padding(size, K, s))
    total = ("first the output size, Ho = ceil(size / stride) (an integer ceil: "
             "-(-size // stride)); then the zeros the last window needs: the windows start "
             "at 0, stride, ..., (Ho - 1) * stride and each is kernel_size wide")
    split = total + "; an odd total puts the extra zero *after*: before = total // 2"
    return [
        ("size=7, K=3, stride 1 (odd K, stride 1: symmetric)", total, lambda: case(7, 3, 1)),
        ("size=8, K=5, stride 1", total, lambda: case(8, 5, 1)),
        ("size=8, K=3, stride 2 (an even size at stride 2)", split, lambda: case(8, 3, 2)),
        ("size=224, K=3, stride 2 (Lite0's stem)", split, lambda: case(224, 3, 2)),
        ("size=56, K=5, stride 2", split, lambda: case(56, 5, 2)),
        ("size=7, K=3, stride 2 (an odd size at stride 2)", split, lambda: case(7, 3, 2)),
        ("size=5, K=2, stride 1 (an even kernel)", split, lambda: case(5, 2, 1)),
        ("size=8, K=1, stride 2 (no padding needed)", "the last window may end before the "
         "edge: then (Ho - 1) * stride + kernel_size - size is negative and no zero is "
         "added, total = max(..., 0)", lambda: case(8, 1, 2)),
        ("size=10, K=4, stride 3", split, lambda: case(10, 4, 3)),
    ]


# ---- 10.2 -----------------------------------------------------------------------------------

@exercise("10.2", "lite_crop_box(width, height, size) -> (left, top, side)",
          difficulty=1, points=1, tol=0.0)
def check_lite_crop_box(fn):
    """Check ``fn(width, height, size) -> (left, top, side)``, the square the EfficientNet-Lite
    evaluation crops from a ``width`` x ``height`` image before resizing it to ``size``,
    against :meth:`tinymobilenet.data.LiteTransform.crop_box`::

        crop_padding = round(size / 7)          (32 for 224: the central 87.5 %)
        side = int(size / (size + crop_padding) * min(width, height))
        left = (width - side + 1) // 2;  top = (height - side + 1) // 2
    """
    def case(w, h, size):
        what = f"lite_crop_box(width={w}, height={h}, size={size})"
        return _exact_ints(what, fn(w, h, size), ("left", "top", "side"),
                           LiteTransform(size).crop_box(w, h))
    side = ("side = int(size / (size + crop_padding) * min(width, height)) with crop_padding "
            "= round(size / 7); centre it: left = (width - side + 1) // 2")
    return [
        ("512 x 600 at 224 (the Grace Hopper photo)", side, lambda: case(512, 600, 224)),
        ("256 x 256 at 224 (a square)", side, lambda: case(256, 256, 224)),
        ("640 x 480 at 224 (landscape: the height is the shorter side)", side + "; the "
         "square's side comes from the *shorter* side", lambda: case(640, 480, 224)),
        ("500 x 375 at 224 (an odd margin)", "375 - 328 = 47 rows are left over: the extra "
         "row goes above the crop, top = (height - side + 1) // 2 = 24, not 47 // 2 = 23",
         lambda: case(500, 375, 224)),
        ("640 x 480 at 300 (Lite4: not exactly 87.5 %)", "crop_padding = round(300 / 7) = 43, "
         "so the kept fraction is 300 / 343 = 0.8746, a little less than 0.875: compute it "
         "from size, do not fix it at 0.875", lambda: case(640, 480, 300)),
        ("100 x 80 at 224 (an image smaller than the output)", side, lambda: case(100, 80, 224)),
    ]


# ---- 10.3 -----------------------------------------------------------------------------------

def _two_layer_network(V, W):
    """x (N, C, H, W) -> relu(x_flat @ V.T) @ W.T as the library's layers, in float64."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(V.shape[1], V.shape[0], bias=False), nn.ReLU(),
                        nn.Linear(W.shape[1], W.shape[0], bias=False)).to(np.float64)
    net.load_state_dict({"1.weight": V, "3.weight": W})
    return net


def _saliency_case(seed, shape, hidden, classes, active):
    """x, V, W, labels of a case; ``active``: every hidden unit positive (a linear model)."""
    r = rng(seed)
    N = shape[0]
    D = int(np.prod(shape[1:]))
    if active:
        x = np.abs(r.standard_normal(shape)) + 0.1
        V = r.uniform(0.1, 1.0, (hidden, D))
    else:
        x = r.standard_normal(shape)
        V = r.standard_normal((hidden, D)) / np.sqrt(D)
    W = r.standard_normal((classes, hidden))
    labels = r.permutation(np.arange(N) % classes)
    return x, V, W, labels


@exercise("10.3", "saliency(x, V, W, labels) -> dx", difficulty=2, points=2)
def check_saliency(fn):
    """Check ``fn(x, V, W, labels) -> dx`` for the network ``logits = relu(x_flat @ V.T) @ W.T``
    (x (N, C, H, W) flattened to (N, D), V (Hd, D), W (K, Hd), no biases): dx (N, C, H, W),
    the gradient of ``logits[n, labels[n]]`` with respect to ``x[n]``, against the library's
    ``Flatten``, ``Linear`` and ``ReLU`` run backward with a one-hot upstream gradient."""
    def case(seed, shape, hidden, classes, active):
        x, V, W, labels = _saliency_case(seed, shape, hidden, classes, active)
        net = _two_layer_network(V, W)
        logits = net(x)
        dy = np.zeros_like(logits)
        dy[np.arange(len(labels)), labels] = 1.0              # one logit per image
        want = net.backward(dy)
        got = fn(x.copy(), V.copy(), W.copy(), labels.copy())
        return expect_array("dx", got, want, TOL, "(N, C, H, W), the shape of x")
    chain = ("with h = x_flat @ V.T: d logit / d h = W[labels] (one row per image), masked by "
             "the ReLU where h <= 0, then dx = (that) @ V, reshaped like x")
    return [
        ("every hidden unit active: a linear model, N=2, (1, 3, 3) images",
         "with every unit active, logits = x_flat @ (W @ V).T and d logit_k / dx = (W @ V)[k] "
         "reshaped to (C, H, W), whatever the image; only the logit of each image's own label "
         "counts, not the sum of all logits", lambda: case(0, (2, 1, 3, 3), 4, 3, True)),
        ("some hidden units off, N=3, (2, 4, 5) images", chain,
         lambda: case(1, (3, 2, 4, 5), 6, 4, False)),
        ("N=5, (3, 2, 3) images, 3 classes: labels repeat", chain,
         lambda: case(2, (5, 3, 2, 3), 8, 3, False)),
    ]
