"""Where a convolution's kernel taps land: output sizes, padding, and the stride phases.

Notation (every convolution file uses it)::

    N   batch size            C   input channels        Co  output channels
    H,W input height/width    K   kernel size (square)  G   groups
    Ho,Wo output height/width:  Ho = (H + 2*pad - K) // stride + 1

Kernel tap (i, j) of output pixel (ho, wo) reads padded input pixel
``(i + stride*ho, j + stride*wo)``, i.e. input pixel ``(i + stride*ho - pad, ...)``.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_int

__all__ = ["conv_output_size", "pad2d"]          # the rest: from .conv_geometry import ...


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution along one axis.

    ``out = (size + 2*padding - kernel_size) // stride + 1``

    Raises ``TypeError`` for an argument that is not an integer, ``ValueError`` for
    stride < 1, padding < 0, or a kernel that does not fit in the padded input.
    """
    # the usual case (plain ints) first: the layers ask this a few hundred times a forward
    # pass, and the full check costs ~1 us (2 % of MobileNetV2 at batch 1)
    if not type(size) is type(kernel_size) is type(stride) is type(padding) is int:
        for name, v, low in (("size", size, 0), ("kernel_size", kernel_size, 1),
                             ("stride", stride, 1), ("padding", padding, 0)):
            check_int("conv_output_size", name, v, low)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    padded = size + 2 * padding
    if kernel_size > padded:
        raise ValueError(
            f"kernel size {kernel_size} is larger than the padded input "
            f"({size} + 2*{padding} = {padded})"
        )
    return (padded - kernel_size) // stride + 1


def pad2d(x: np.ndarray, padding: int) -> np.ndarray:
    """Zero-pad the two spatial axes of ``x`` (N, C, H, W) by ``padding`` on each side:
    (N, C, H + 2*padding, W + 2*padding)."""
    if padding == 0:
        return x
    N, C, H, W = x.shape
    xp = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=x.dtype)
    xp[:, :, padding:padding + H, padding:padding + W] = x
    return xp


def tap_range(size, i, stride, padding, out_size):
    """The output positions whose kernel tap ``i`` lands inside the input, and where.

    Output position o reads input position ``i + stride*o - padding``; returns
    ``(output slice, input slice)`` of the taps with ``0 <= i + stride*o - padding < size``
    (the others read zero padding). Used per axis, so padding never has to be built.
    """
    o0 = max(0, -((i - padding) // stride))               # ceil((padding - i) / stride)
    o1 = min(out_size, (size + padding - i + stride - 1) // stride)
    if o1 <= o0:                                          # this tap reads only padding
        return slice(0, 0), slice(0, 0)
    start = i + stride * o0 - padding
    return slice(o0, o1), slice(start, start + stride * (o1 - o0 - 1) + 1, stride)


def is_same_stride1(K, stride, padding):
    """Stride 1 and "same" padding (K = 2*padding + 1, output size = input size): the case
    in which every tap is a plain shift of the image, which the fast layouts exploit."""
    return stride == 1 and K > 1 and 2 * padding == K - 1


class PhaseGeometry:
    """Where the stride x stride *phases* ``xpad[a::s, b::s]`` of a zero-padded input sit.

    Kernel tap (i, j) of output pixel (ho, wo) reads padded pixel ``(i + s*ho, j + s*wo)``:
    pixel ``(i//s + ho, j//s + wo)`` of phase ``(i % s, j % s)``. So a strided
    convolution is, phase by phase, an *unstrided* one, and each tap reads a contiguous
    window of its phase instead of every s-th value. A window reaches
    ``reach = (K-1)//s`` phase pixels past its start, so each phase is cropped to
    Hq x Wq = (Ho + reach) x (Wo + reach) pixels; stored flat with row width Wq, tap (i, j)
    is the flat shift :meth:`shift`. ``rows[a]`` / ``cols[b]`` give, for phase row a /
    column b, the (phase slice, input slice) of its in-image pixels (the rest is padding,
    never copied, only left at zero).
    """

    def __init__(self, H, W, K, stride, padding):
        s = stride
        self.K, self.s = K, s
        self.Ho = conv_output_size(H, K, s, padding)
        self.Wo = conv_output_size(W, K, s, padding)
        self.reach = (K - 1) // s
        self.Hq, self.Wq = self.Ho + self.reach, self.Wo + self.reach
        self.P = min(s, K)                         # phases that are read (K < s skips some)
        self.rows = [tap_range(H, a, s, padding, self.Hq) for a in range(self.P)]
        self.cols = [tap_range(W, b, s, padding, self.Wq) for b in range(self.P)]
        # does some tap read every input pixel? (not when the stride cuts off the last
        # rows or columns, or when stride > K)
        self.covers_input = (sum(len(range(H)[r]) for _, r in self.rows) == H
                             and sum(len(range(W)[c]) for _, c in self.cols) == W)

    def shift(self, i, j):
        """Flat offset of tap (i, j) inside its phase (row width Wq)."""
        return (i // self.s) * self.Wq + j // self.s
