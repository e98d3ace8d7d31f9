"""Depthwise separable against full convolution, block by block: MobileNetV1's one idea,
counted.

A depthwise K x K conv (K*K*C_in*Ho*Wo MACs) followed by a 1 x 1 conv that mixes its
channels (C_in*C_out*Ho*Wo) replaces one full K x K conv (K*K*C_in*C_out*Ho*Wo), so it
costs 1/C_out + 1/K^2 of it: a little over 1/9 for K = 3 and the hundreds of channels
of a MobileNet. :func:`separable_blocks` finds every such pair in a count's rows;
:class:`SeparableBlock` holds both costs, and checks the ratio against the formula exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

__all__ = ["SeparableBlock", "separable_blocks"]


@dataclass
class SeparableBlock:
    """A depthwise K x K conv followed by the 1 x 1 conv that mixes its channels, against
    one full K x K convolution from C_in to C_out with the same output size.

    MACs:  (K*K*C_in + C_in*C_out) * Ho*Wo / (K*K*C_in*C_out * Ho*Wo) = 1/C_out + 1/K^2.
    The weights alone give the same ratio (no Ho*Wo on either side); ``params`` also holds
    the depthwise conv's BatchNorm gamma/beta (2*C_in), which the full convolution does
    not have, so the params ratio is 2/(K*K*C_out) above the formula.
    """
    name: str
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    output_shape: tuple
    macs: int             # depthwise + pointwise
    full_macs: int        # one K x K convolution C_in -> C_out
    weights: int
    full_weights: int
    params: int           # dw + pw weights and biases + the BN right after the depthwise
    full_params: int      # full conv weights + the pointwise conv's bias if it had one
    first: int = field(default=0, repr=False)   # row indices of the dw and pw convs
    last: int = field(default=0, repr=False)

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.macs, self.full_macs)

    @property
    def formula(self) -> Fraction:
        return Fraction(1, self.out_channels) + Fraction(1, self.kernel_size ** 2)

    def to_dict(self):
        d = {k: getattr(self, k) for k in ("name", "in_channels", "out_channels",
                                           "kernel_size", "stride", "macs", "full_macs",
                                           "weights", "full_weights", "params", "full_params")}
        d.update(output_shape=list(self.output_shape), mac_ratio=float(self.ratio),
                 formula=float(self.formula), exact=self.ratio == self.formula,
                 params_ratio=self.params / self.full_params)
        return d


def separable_blocks(rows):
    """Every depthwise conv of ``rows`` (a count's :class:`LayerCount` rows, in forward
    order) paired with the next 1x1 conv that reads its channels: V1's DepthwiseSeparable;
    the depthwise + projection of V2/V3/EfficientNet blocks, where a squeeze-excitation may
    sit in between. A full or grouped conv or a fully connected layer in between breaks
    the pair. Returns a list of :class:`SeparableBlock`."""
    blocks, pending = [], None
    for i, r in enumerate(rows):
        if r.kind.startswith("depthwise"):
            pending = i
        elif r.kind == "pointwise 1x1" and pending is not None:
            dw = rows[pending]
            if r.in_channels == dw.out_channels:
                blocks.append(_pair(rows, pending, i))
            pending = None
        elif r.kind.startswith(("conv", "grouped")) or r.kind == "fully connected":
            pending = None
    return blocks


def _pair(rows, i, j):
    dw, pw = rows[i], rows[j]
    N, C_out, Ho, Wo = pw.output_shape
    K, C_in = dw.kernel_size, dw.in_channels
    full_weights = K * K * C_in * C_out
    bn = sum(r.params for r in rows[i + 1:j] if r.kind == "batch norm" and r.is_leaf
             and r.output_shape[1] == C_in)
    prefix = _common_prefix(dw.name, pw.name)
    return SeparableBlock(
        name=prefix, in_channels=C_in, out_channels=C_out, kernel_size=K, stride=dw.stride,
        output_shape=pw.output_shape, macs=dw.macs + pw.macs,
        full_macs=N * full_weights * Ho * Wo, weights=dw.weights + pw.weights,
        full_weights=full_weights, params=dw.params + pw.params + bn,
        full_params=full_weights + (pw.params - pw.weights), first=i, last=j)


def _common_prefix(a, b):
    pa, pb = a.split("."), b.split(".")
    out = []
    for x, y in zip(pa, pb):
        if x != y:
            break
        out.append(x)
    return ".".join(out) or a

