"""What a count produces: :class:`LayerCount`, one module's counts, and :class:`Summary`,
every module's row in forward order with the totals and breakdowns the reports print.

What MACs, other ops, params and buffers include is written in :mod:`tinymobilenet.count`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .separable import separable_blocks

__all__ = ["LayerCount", "Summary"]


@dataclass
class LayerCount:
    """Counts of one module: its *own* parameters, buffers and work (a container's row
    holds only what its children do not: a residual add, squeeze-excitation's scaling).

    ``kind`` groups MAC-bearing layers ("conv 3x3", "depthwise 3x3", "pointwise 1x1",
    "grouped 3x3", "SE 1x1", "fully connected") and the rest ("batch norm",
    "activation", "pooling", ...); ``other_kind`` names the work counted in ``other_ops``.
    ``weights`` is the part of ``params`` held in conv/FC weight tensors (no bias).
    Convolutions also record their geometry (``in_channels`` ... ``groups``).
    """
    name: str
    type: str
    depth: int
    output_shape: tuple
    params: int = 0
    buffers: int = 0
    macs: int = 0
    other_ops: int = 0
    kind: str = ""
    other_kind: str = ""
    weights: int = 0
    is_leaf: bool = True
    in_channels: int | None = None
    out_channels: int | None = None
    kernel_size: int | None = None
    stride: int | None = None
    groups: int | None = None

    def to_dict(self):
        return dict(asdict(self), output_shape=list(self.output_shape))


@dataclass
class Summary:
    """Rows in forward order (containers before their children, like torchinfo), and
    totals. ``title`` names the network; ``input_size`` is the input shape counted,
    (N, C, H, W) for the image models."""
    rows: list
    input_size: tuple
    title: str = "model"

    # ---- totals ----------------------------------------------------------------------
    @property
    def total_params(self):
        return sum(r.params for r in self.rows)

    @property
    def total_buffers(self):
        return sum(r.buffers for r in self.rows)

    @property
    def total_weights(self):
        return sum(r.weights for r in self.rows)

    @property
    def total_macs(self):
        return sum(r.macs for r in self.rows)

    @property
    def total_flops(self):
        return 2 * self.total_macs

    @property
    def total_other_ops(self):
        return sum(r.other_ops for r in self.rows)

    def param_split(self):
        """{"weights", "biases", "batch norm", "other"}: where the trainable params sit."""
        bn = sum(r.params for r in self.rows if r.kind == "batch norm")
        biases = sum(r.params - r.weights for r in self.rows if r.weights)
        w = self.total_weights
        return {"weights": w, "biases": biases, "batch norm": bn,
                "other": self.total_params - w - biases - bn}

    # ---- breakdowns ------------------------------------------------------------------
    def by_kind(self):
        """[(kind, layers, macs, weights)] of MAC-bearing layer types, in forward order."""
        acc = {}
        for r in self.rows:
            if r.macs or r.weights:
                n, m, w = acc.get(r.kind, (0, 0, 0))
                acc[r.kind] = (n + 1, m + r.macs, w + r.weights)
        return [(k, *v) for k, v in acc.items()]

    def other_by_kind(self):
        """[(other_kind, ops)] of the work outside MACs, in forward order."""
        acc = {}
        for r in self.rows:
            if r.other_ops:
                acc[r.other_kind] = acc.get(r.other_kind, 0) + r.other_ops
        return list(acc.items())

    def separable_blocks(self):
        """Every depthwise conv paired with the next 1x1 conv that reads its channels
        (V1's DepthwiseSeparable; the depthwise + projection of V2/V3/EfficientNet blocks,
        where a squeeze-excitation may sit in between). See :class:`SeparableBlock`."""
        return separable_blocks(self.rows)

    def to_dict(self):
        d = {"title": self.title, "input_size": list(self.input_size),
             "total_params": self.total_params, "total_buffers": self.total_buffers,
             "total_macs": self.total_macs, "total_flops": self.total_flops,
             "total_other_ops": self.total_other_ops, "params_split": self.param_split(),
             "by_kind": [dict(kind=k, layers=n, macs=m, weights=w)
                         for k, n, m, w in self.by_kind()],
             "other_ops_by_kind": dict(self.other_by_kind()),
             "separable_blocks": [b.to_dict() for b in self.separable_blocks()],
             "layers": [r.to_dict() for r in self.rows]}
        return d
