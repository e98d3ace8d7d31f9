"""Walking a model: :func:`summary` counts every module from the shapes it sees.

:meth:`Module.trace` walks the model the way its forward would, with shapes instead of
arrays: every layer reports its ``output_shape``, every block routes shapes as its forward
routes arrays, and a tracer is told when each module starts and ends. The tracer here,
:class:`_Counter`, opens one :class:`LayerCount` per module and fills it at the end from
the module's input and output shapes: a leaf's MACs and other work (:func:`_leaf_cost`:
the formulas of :mod:`tinymobilenet.count`), a container's own work (:func:`_own_cost`:
a residual add, squeeze-excitation's pooling and scaling).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .records import LayerCount, Summary

__all__ = ["summary"]


def summary(model, input_size=(1, 3, 224, 224), *, fold_bn: bool = False,
            title: str | None = None) -> Summary:
    """Count ``model`` for an input of ``input_size`` ((N, C, H, W) for image models,
    (N, features) for the dense ones); returns a :class:`Summary` with one
    :class:`LayerCount` per module, in forward order.

    The model is walked by :meth:`Module.trace`: every module maps the input shape to its
    output shape the way its forward would, and the counter reads each layer's work off
    those shapes. No kernel runs, no parameter changes; a wrong input size gets the
    error the first layer that refuses it would raise. A model fused for speed
    (``nn.fuse_batchnorm_activation``) is counted as its layers apart. ``fold_bn=True``
    counts ``models.fold_batchnorm(model)`` instead (see :mod:`tinymobilenet.count`).
    """
    input_size = tuple(int(v) for v in input_size)
    if not input_size or min(input_size) < 1:
        raise ValueError(f"summary: input_size must be a shape of positive integers such as "
                         f"(N, C, H, W) or (N, features), got {input_size}")
    if fold_bn:
        from ..models import fold_batchnorm
        model = fold_batchnorm(model)
    with nn.unfused(model):
        counter = _Counter(model)
        model.trace(input_size, counter)
    s = Summary(counter.rows, input_size, title or type(model).__name__)
    missing = model.num_parameters() - s.total_params
    if missing:          # modules the forward never calls still own parameters
        counter.rows.append(LayerCount("(not called by forward)", "-", 1, (), params=missing))
    return s


class _Counter:
    """The tracer of :meth:`Module.trace`: one :class:`LayerCount` per module, in the
    order forward calls them, filled from the shapes each module sees."""

    def __init__(self, model):
        self.names = {id(m): n for n, m in model.named_modules()}
        self.parents = {id(c): m for m in model.modules() for c in m.children()}
        self.rows, self.open = [], []

    def enter(self, m, shape):
        name = self.names.get(id(m), "")
        row = LayerCount(name or type(m).__name__, type(m).__name__,
                         0 if name == "" else name.count(".") + 1, (),
                         params=sum(p.data.size for p in m._parameters.values() if p is not None),
                         buffers=sum(np.size(getattr(m, b)) for b in m._buffers),
                         is_leaf=not m._modules)
        self.rows.append(row)
        self.open.append(row)

    def exit(self, m, shape, out):
        row = self.open.pop()
        row.output_shape = out
        if row.is_leaf:
            _leaf_cost(row, m, self.parents.get(id(m)), shape, out)
        else:
            _own_cost(row, m, shape, out)


# layers that cost nothing, and every activation class of the library
_NO_OP = (nn.Flatten, nn.Dropout, nn.Identity, nn.StochasticDepth)
_ACTIVATIONS = tuple(set(nn.ACTIVATIONS.values()))


def _leaf_cost(row, m, parent, in_shape, out_shape):
    """Fill ``row``'s kind, macs, other ops and conv geometry for leaf ``m``."""
    out_elems = int(np.prod(out_shape))
    has_bias = getattr(m, "bias", None) is not None
    if isinstance(m, nn.Conv2d):
        N, C_out, Ho, Wo = out_shape
        K = m.kernel_size
        row.kind = _conv_kind(m, parent)
        row.macs = N * (m.in_channels // m.groups) * K * K * C_out * Ho * Wo
        row.weights = m.weight.data.size
        row.in_channels, row.out_channels, row.kernel_size = m.in_channels, C_out, K
        row.stride, row.groups = m.stride, m.groups
        if has_bias:
            row.other_ops, row.other_kind = out_elems, "bias add"
    elif isinstance(m, (nn.Linear, nn.GroupedLinear)):
        groups = getattr(m, "groups", 1)
        row.kind = ("SE fc" if isinstance(parent, nn.DenseSqueezeExcitation)
                    else "grouped dense" if groups > 1 else "fully connected")
        row.macs = in_shape[0] * (m.in_features // groups) * m.out_features
        row.weights = m.weight.data.size
        row.in_channels, row.out_channels, row.groups = m.in_features, m.out_features, groups
        if has_bias:
            row.other_ops, row.other_kind = out_elems, "bias add"
    elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        row.kind = row.other_kind = "batch norm"
        row.other_ops = out_elems
    elif isinstance(m, _ACTIVATIONS):
        row.kind = row.other_kind = "activation"
        row.other_ops = out_elems
    elif isinstance(m, nn.GlobalAvgPool2d):
        row.kind = row.other_kind = "pooling"
        row.other_ops = int(np.prod(in_shape))
    elif isinstance(m, _NO_OP):
        row.kind = "reshape/identity"
    else:                                    # a layer this counter does not know
        row.kind = row.other_kind = type(m).__name__
        row.other_ops = out_elems


def _own_cost(row, m, in_shape, out_shape):
    """Work a container does in its own forward (not in a child)."""
    if isinstance(m, nn.SqueezeExcitation):
        row.other_ops = 2 * int(np.prod(in_shape))      # mean over H, W; then x * scale
        row.other_kind = "SE pool + scale"
    elif isinstance(m, nn.DenseSqueezeExcitation):
        row.other_ops = int(np.prod(in_shape))          # x * scale (no pooling on vectors)
        row.other_kind = "SE scale"
    elif getattr(m, "use_res_connect", False):
        row.other_ops = int(np.prod(out_shape))
        row.other_kind = "residual add"


def _conv_kind(m, parent):
    """The ``kind`` of convolution ``m``, whose parent module is ``parent``."""
    K = m.kernel_size
    if m.groups > 1 and m.groups == m.in_channels == m.out_channels:
        return f"depthwise {K}x{K}"
    if m.groups > 1:
        return f"grouped {K}x{K}"
    if isinstance(parent, nn.SqueezeExcitation):
        return "SE 1x1"
    if K == 1:
        return "pointwise 1x1"
    return f"conv {K}x{K}"

