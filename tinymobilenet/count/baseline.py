"""The baseline a MobileNet is measured against: the same network with full convolutions.

MobileNetV1's Table 4 compares the network with "Conv MobileNet", the same layers with
every depthwise separable pair replaced by one full K x K convolution: 4866 M against
569 M Mult-Adds, 29.3 M against 4.2 M parameters. :func:`standard_baseline` builds that
network's count from a count of the real one (``--baseline standard`` on the command line).
"""

from __future__ import annotations

from .records import LayerCount, Summary

__all__ = ["standard_baseline"]


def standard_baseline(s: Summary) -> Summary:
    """The same network with every depthwise separable pair (see
    :meth:`Summary.separable_blocks`) replaced by one full K x K convolution C_in -> C_out
    with the depthwise conv's stride: the MobileNetV1 paper's "Conv MobileNet" (Table 4).

    The layers between the two convs (the depthwise's BatchNorm and activation, a
    squeeze-excitation) go with them; the pointwise conv's BatchNorm and activation stay
    and now follow the full convolution. Containers are left out of the result.
    """
    blocks = s.separable_blocks()
    rows, skip, by_first = [], set(), {b.first: b for b in blocks}
    for b in blocks:
        skip.update(range(b.first + 1, b.last + 1))
    for i, r in enumerate(s.rows):
        if i in skip or not (r.is_leaf or r.other_ops or r.params):
            continue
        if i in by_first:
            b = by_first[i]
            pw = s.rows[b.last]
            K = b.kernel_size
            r = LayerCount(b.name, "Conv2d", r.depth - 1, b.output_shape,
                           params=b.full_params, macs=b.full_macs, other_ops=pw.other_ops,
                           kind=f"conv {K}x{K}", other_kind=pw.other_kind,
                           weights=b.full_weights, in_channels=b.in_channels,
                           out_channels=b.out_channels, kernel_size=K, stride=b.stride,
                           groups=1)
        rows.append(r)
    return Summary(rows, s.input_size, f"{s.title}, full convolutions")
