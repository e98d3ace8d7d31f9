"""Chapters 3, 5, 6 and 8: costs and scaling rules, checked against the counter
(:func:`tinymobilenet.count.summary`) on the library's real layers and models, and against
:func:`tinymobilenet.models.compound_scaling`."""

from __future__ import annotations

import numpy as np

from .. import count, nn
from .. import functional as F
from ..models import compound_scaling, mobilenet_v1
from ._checking import Mismatch, exact, expect_number, expect_tuple, expect_int
from .registry import exercise

__all__ = ["check_cost_ratio", "check_v1_macs", "check_inverted_residual_macs",
           "check_mbconv_macs", "check_compound_scaling"]


def _macs(model, input_size):
    return count.summary(model, input_size).total_macs


# ---- chapter 3 ------------------------------------------------------------------------------

@exercise("3.3", "cost_ratio(C_out, K) -> float", difficulty=1, points=1, tol=1e-9)
def check_cost_ratio(fn):
    """Check ``fn(C_out, K) -> float``, the Mult-Adds of a depthwise separable convolution
    divided by those of a full K x K convolution, against the counter's MACs of both."""
    def case(C, Co, K, H):
        pad = K // 2
        separable = nn.Sequential(nn.DepthwiseConv2d(C, K, padding=pad),
                                  nn.PointwiseConv2d(C, Co))
        full = nn.Conv2d(C, Co, K, padding=pad, bias=False)
        want = _macs(separable, (1, C, H, H)) / _macs(full, (1, C, H, H))
        what = f"cost_ratio(C_out={Co}, K={K})"
        got = expect_number(what, fn(Co, K))
        err = abs(got - want) / want
        if err > 1e-9:
            raise Mismatch(f"{what}: got {got:.6g}, the counter's MACs give {want:.6g}", err)
        return err
    hint = ("write both costs with the same factors: depthwise K*K*C*Ho*Wo + pointwise "
            "C*C_out*Ho*Wo over full K*K*C*C_out*Ho*Wo, then cancel C*Ho*Wo")
    return [(f"C=8, C_out={Co}, K={K}, {H}x{H} input", hint,
             lambda Co=Co, K=K, H=H: case(8, Co, K, H))
            for Co, K, H in [(16, 3, 6), (32, 3, 5), (8, 5, 7), (64, 1, 4), (24, 7, 9)]]


# ---- chapter 5 ------------------------------------------------------------------------------

@exercise("5.3", "v1_macs(alpha, resolution) -> int", difficulty=2, points=2, tol=0.0,
          allow=(F.conv_output_size,))
def check_v1_macs(fn):
    """Check ``fn(alpha, resolution) -> int``, the Mult-Adds of MobileNetV1 (1000 classes) for
    one ``resolution`` x ``resolution`` RGB image, against the counter."""
    def case(alpha, res):
        want = _macs(mobilenet_v1(alpha), (1, 3, res, res))
        return exact(f"v1_macs(alpha={alpha}, resolution={res})", fn(alpha, res), want)
    hint = ("stem: 3*3*3*C*Ho*Wo; each block: depthwise 3*3*C_in*Ho*Wo + pointwise "
            "C_in*C_out*Ho*Wo with Ho from the output-size formula (3x3, padding 1); "
            "FC: C_last * 1000")
    return [
        ("alpha=1, 224 px (the paper's 569 M)", hint, lambda: case(1.0, 224)),
        ("alpha=0.5, 224 px", hint + "; every layer gets int(C * alpha) channels",
         lambda: case(0.5, 224)),
        ("alpha=0.75, 160 px", hint, lambda: case(0.75, 160)),
        ("alpha=0.35, 128 px (round and int differ)", "the width multiplier truncates: "
         "int(128 * 0.35) = 44 channels, where round() would give 45 (and int(32 * 0.35) = 11 "
         "for the stem)", lambda: case(0.35, 128)),
        ("alpha=1, 100 px (odd sizes on the way down)", "at 100 px the sizes go 50, 25, "
         "13, 7, 4: use (H + 2*1 - 3) // stride + 1, not H // stride", lambda: case(1.0, 100)),
        ("alpha=0.25, 129 px (an odd input size)", "the stem is a 3x3 convolution with "
         "stride 2 and padding 1 as well: (129 + 2*1 - 3) // 2 + 1 = 65 rows, not 129 // 2 = 64",
         lambda: case(0.25, 129)),
    ]


# ---- chapter 6 ------------------------------------------------------------------------------

@exercise("6.1", "inverted_residual_macs(C_in, C_out, expand_ratio, K, H, W, stride) -> int",
          difficulty=2, points=2, tol=0.0, allow=(F.conv_output_size,))
def check_inverted_residual_macs(fn):
    """Check ``fn(C_in, C_out, expand_ratio, K, H, W, stride) -> int``, the multiply-accumulates
    of a MobileNetV2 inverted residual block (expand 1x1, depthwise K x K with ``stride`` and
    padding K // 2, project 1x1) on an H x W input, against the counter."""
    def case(C, Co, t, K, H, W, s):
        want = _macs(nn.InvertedResidual(C, Co, s, expand_ratio=t, kernel_size=K), (1, C, H, W))
        return exact(f"inverted_residual_macs({C}, {Co}, {t}, {K}, {H}, {W}, {s})",
                     fn(C, Co, t, K, H, W, s), want)
    return [
        ("C_in=16, C_out=16, t=6, 3x3, stride 1, 8x8", "three convolutions: expand C_in -> "
         "t*C_in (1x1), depthwise K x K on t*C_in channels, project t*C_in -> C_out (1x1)",
         lambda: case(16, 16, 6, 3, 8, 8, 1)),
        ("C_in=16, C_out=24, t=6, 3x3, stride 2, 9x7", "with stride 2 the depthwise and the "
         "projection run on the smaller output, Ho = (H + 2*(K//2) - K) // 2 + 1; the expansion "
         "still runs on the full H x W input", lambda: case(16, 24, 6, 3, 9, 7, 2)),
        ("C_in=32, C_out=32, t=1, 5x5, stride 1, 6x6", "with t = 1 there is no expansion layer "
         "at all (MobileNetV2's first block)", lambda: case(32, 32, 1, 5, 6, 6, 1)),
    ]


# ---- chapter 8 ------------------------------------------------------------------------------

@exercise("8.1", "compound_scaling(phi) -> (depth, width, resolution)", difficulty=1,
          points=1, tol=1e-9)
def check_compound_scaling(fn):
    """Check ``fn(phi) -> (depth, width, resolution)`` of EfficientNet's compound scaling
    against :func:`tinymobilenet.models.compound_scaling`: depth and width multipliers
    alpha^phi and beta^phi, resolution round(224 * gamma^phi), with alpha=1.2, beta=1.1,
    gamma=1.15 (chosen so that alpha * beta^2 * gamma^2 ~ 2: FLOPs double per unit of phi)."""
    def case(phi):
        depth, width, res = expect_tuple(fn(phi), ("depth", "width", "resolution"))
        got = np.array([expect_number("depth", depth), expect_number("width", width),
                        expect_int("resolution", res, "round to whole pixels: "
                                   "int(round(...))")], dtype=float)
        want = np.array(compound_scaling(phi), dtype=float)
        err = np.max(np.abs(got - want) / want)
        if err > 1e-9:
            raise Mismatch(f"(depth, width, resolution) at phi={phi}: got "
                           f"({got[0]:.6g}, {got[1]:.6g}, {got[2]:.0f}), expected "
                           f"({want[0]:.6g}, {want[1]:.6g}, {want[2]:.0f})", err)
        return err
    hint = ("depth = 1.2 ** phi, width = 1.1 ** phi, resolution = 224 * 1.15 ** phi rounded "
            "to the nearest integer")
    return [(f"phi={phi}", hint, lambda phi=phi: case(phi)) for phi in (0, 1, 2, 3.5, 7)]


@exercise("8.6", "mbconv_macs(C_in, C_out, expand_ratio, K, H, W, stride) -> int",
          difficulty=2, points=2, tol=0.0, allow=(F.conv_output_size, nn.make_divisible))
def check_mbconv_macs(fn):
    """Check ``fn(C_in, C_out, expand_ratio, K, H, W, stride) -> int``, the multiply-accumulates
    of EfficientNet's MBConv block (``nn.MBConv``: expand 1x1 to E = make_divisible(C_in *
    expand_ratio, 8) channels, depthwise K x K with padding K // 2, squeeze-and-excitation
    E -> S = max(1, C_in // 4) -> E, project 1x1) on an H x W input, against the counter."""
    def case(C, Co, t, K, H, W, s):
        want = _macs(nn.MBConv(C, Co, s, expand_ratio=t, kernel_size=K), (1, C, H, W))
        return exact(f"mbconv_macs({C}, {Co}, {t}, {K}, {H}, {W}, {s})",
                     fn(C, Co, t, K, H, W, s), want)
    hint = ("the inverted residual's three convolutions (6.1) plus SE's two 1x1 convolutions, "
            "which see one pooled value per channel: E*S + S*E MACs, S = max(1, C_in // 4) "
            "from the block's *input* channels")
    return [
        ("C_in=16, C_out=16, t=6, 3x3, stride 1, 8x8", hint, lambda: case(16, 16, 6, 3, 8, 8, 1)),
        ("C_in=16, C_out=24, t=6, 5x5, stride 2, 9x7", hint + "; with stride 2 the depthwise "
         "and the projection run on Ho x Wo, Ho = (H + 2*(K//2) - K) // 2 + 1",
         lambda: case(16, 24, 6, 5, 9, 7, 2)),
        ("C_in=32, C_out=16, t=1, 3x3, stride 1, 7x7 (EfficientNet-B0's first block)",
         "with t = 1, E = make_divisible(32, 8) = 32 = C_in: there is no expansion layer; the "
         "SE still squeezes to C_in // 4 = 8", lambda: case(32, 16, 1, 3, 7, 7, 1)),
        ("C_in=10, C_out=10, t=3, 3x3, stride 1, 5x5 (E rounded to a multiple of 8)",
         "E = make_divisible(10 * 3, 8) = 32, not 30: MBConv rounds the expanded channels to a "
         "multiple of 8 (nn.make_divisible); the SE squeezes to max(1, 10 // 4) = 2",
         lambda: case(10, 10, 3, 3, 5, 5, 1)),
        ("C_in=11, C_out=16, t=3, 3x3, stride 1, 6x5 (E rounded to the nearest multiple of 8)",
         "E = make_divisible(33, 8) = 32: the *nearest* multiple of 8, int(33 + 4) // 8 * 8, "
         "not the next one up (40); the SE squeezes to max(1, 11 // 4) = 2, floor division "
         "(not round(11 / 4) = 3)", lambda: case(11, 16, 3, 3, 6, 5, 1)),
        ("C_in=12, C_out=12, t=3, 3x3, stride 1, 5x5 (E halfway between multiples of 8)",
         "12 * 3 = 36 lies halfway between 32 and 40: make_divisible rounds it up, "
         "int(36 + 4) // 8 * 8 = 40 (Python's round(36 / 8) = round(4.5) = 4 rounds half to "
         "even)", lambda: case(12, 12, 3, 3, 5, 5, 1)),
        ("C_in=3, C_out=8, t=6, 3x3, stride 2, 6x6 (rounding down would remove over 10 %)",
         "3 * 6 = 18 rounds to 16, 11 % less than 18: make_divisible never removes more than "
         "10 %, so it adds 8, E = 24; the SE squeezes to max(1, 3 // 4) = 1 channel, not 0",
         lambda: case(3, 8, 6, 3, 6, 6, 2)),
        ("C_in=12, C_out=12, t=1, 3x3, stride 1, 5x5 (t = 1, yet an expansion layer)",
         "E = make_divisible(12 * 1, 8) = 16 differs from C_in = 12, so this block does expand "
         "(12 -> 16): the expansion is skipped when E == C_in, not whenever t = 1",
         lambda: case(12, 12, 1, 3, 5, 5, 1)),
    ]
