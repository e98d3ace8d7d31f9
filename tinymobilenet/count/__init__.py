"""Count parameters and multiply-accumulates (MACs) of a model, layer by layer.

Conventions (those of the MobileNet papers, whose "Mult-Adds" are MACs):

  MACs       multiply-accumulates of convolutions and fully connected layers only, for
             the whole input batch (N = 1 by default):
               conv / grouped conv   (C_in/groups) * K*K * C_out * H_out * W_out
               depthwise             K*K * C * H_out * W_out
               pointwise (1x1)       C_in * C_out * H * W
               fully connected       in_features * out_features
  FLOPs      2 x MACs (one multiply + one add), always printed beside them, never mixed in.
  other ops  everything else, on its own line and never inside MACs, one op per element:
             bias add and BatchNorm (in inference an affine x*scale + shift) and
             activations per output element; global average pooling per input element;
             squeeze-excitation's own pooling and scaling 2 per element of its input;
             residual add per output element.
  params     trainable parameters: conv/FC weights, biases, BatchNorm gamma/beta.
  buffers    not trained, listed apart: BatchNorm running mean/var (and the one-number
             num_batches_tracked counter per BatchNorm, as in the state dict).
  --fold-bn  counts the inference network with every BatchNorm folded into the
             convolution before it: the BN's gamma/beta and buffers disappear, the
             convolution gains a bias (C_out params, C_out*H*W bias adds). MACs unchanged.

How other counters differ (most print MACs under the name "FLOPs"):
  fvcore     FlopCountAnalysis counts one fused multiply-add as one "flop": its FLOPs are
             MACs, with BatchNorm and adaptive average pooling added into the same total
             by default; activations, residual adds and SE products are skipped.
  ptflops    get_model_complexity_info returns MACs (printed "GMac"), but adds bias,
             BatchNorm (2 per element), activations and pooling into the same total, so it
             is a little higher than the papers' Mult-Adds.
  thop       profile() returns MACs (often stored in a variable named flops); BatchNorm and
             (in some versions) bias are added into the total.
  torchinfo  its "Mult-Adds" column is params x output positions: conv (weight + bias) x
             N*H_out*W_out, so biases count one per output; layers with parameters
             (BatchNorm, Linear) add N x params; parameter-free ops count zero.
  here       MACs exactly as the papers count them; everything else apart.

The counter walks the model with shapes only (``Module.trace``: each layer's
``output_shape``, each block routing shapes as its forward routes arrays): no convolution
is run and no backward, so even EfficientNet-B7 at 600 x 600 is counted in a moment.

Usage: python -m tinymobilenet.count --alpha 0.5
"""

from __future__ import annotations

import argparse
import csv
import inspect
import io
import json
import sys
import textwrap
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from .. import cli, nn

__all__ = ["LayerCount", "Summary", "SeparableBlock", "summary", "standard_baseline",
           "default_resolution", "build_parser", "main"]


# ---------------------------------------------------------------------------------------
# one row per module
# ---------------------------------------------------------------------------------------

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
        blocks, pending = [], None
        for i, r in enumerate(self.rows):
            if r.kind.startswith("depthwise"):
                pending = i
            elif r.kind == "pointwise 1x1" and pending is not None:
                dw = self.rows[pending]
                if r.in_channels == dw.out_channels:
                    blocks.append(_pair(self.rows, pending, i))
                pending = None
            elif r.kind.startswith(("conv", "grouped")) or r.kind == "fully connected":
                pending = None
        return blocks

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


# ---------------------------------------------------------------------------------------
# walking a model
# ---------------------------------------------------------------------------------------

_NO_OP = (nn.Flatten, nn.Dropout, nn.Identity, nn.StochasticDepth)
_ACTIVATIONS = tuple(set(nn.ACTIVATIONS.values()))


def _conv_kind(m, parent):
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
    counts ``models.fold_batchnorm(model)`` instead (see the module docstring).
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


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------

def _n(v):
    return f"{v:,}"


def _m(v):
    return f"{v / 1e6:,.1f} M"


def _pct(part, whole):
    return f"{100 * part / whole:.2f}%" if whole else "--"


def _shape(shape):
    return "x".join(str(v) for v in shape)


def _table(headers, rows, align, fmt="table"):
    """Aligned text table (``fmt="table"``) or a Markdown table; ``align`` is a string of
    "<" / ">" per column."""
    cells = [[str(c) for c in row] for row in rows]
    if fmt == "markdown":
        rule = ["---:" if a == ">" else ":---" for a in align]
        lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in cells]
        return "\n".join(lines)
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h))
              for i, h in enumerate(headers)]

    def line(row):
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, align, widths)).rstrip()
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def render_breakdown(s: Summary, fmt="table") -> str:
    """Where the cost goes: MACs and weights per layer type, and the totals."""
    kinds = s.by_kind()
    M, W = s.total_macs, s.total_weights
    body = [(k, n, _n(m), _pct(m, M), _n(w), _pct(w, W)) for k, n, m, w in kinds]
    body.append(("total", sum(n for _, n, _, _ in kinds), _n(M), _pct(M, M), _n(W),
                 _pct(W, W)))
    table = _table(("layer type", "layers", "MACs", "share", "weights", "share"), body,
                   "<>>>>>", fmt)
    split = s.param_split()
    other = s.other_by_kind()
    lines = [table, ""]
    bullet = "- " if fmt == "markdown" else ""
    parts = [f"weights {_n(split['weights'])}", f"biases {_n(split['biases'])}",
             f"BatchNorm gamma/beta {_n(split['batch norm'])}"]
    if split["other"]:
        parts.append(f"other {_n(split['other'])}")
    lines += [
        f"{bullet}MACs (Mult-Adds): {_n(M)} = {_m(M)}; FLOPs = 2 x MACs = {_m(s.total_flops)}",
        f"{bullet}params (trainable): {_n(s.total_params)} = " + " + ".join(parts),
        f"{bullet}buffers (not trained): {_n(s.total_buffers)}  "
        "(BatchNorm running mean/var and counters)",
        f"{bullet}other ops (not in MACs): {_n(s.total_other_ops)} = "
        + (" + ".join(f"{k} {_n(v)}" for k, v in other) or "0"),
    ]
    return "\n".join(lines)


def render_separable(s: Summary, fmt="table") -> str:
    """Every depthwise separable pair against a full K x K conv of the same shape."""
    blocks = s.separable_blocks()
    if not blocks:
        return "(no depthwise separable convolutions)"
    body = []
    for b in blocks:
        mark = "=" if b.ratio == b.formula else "!="
        body.append((b.name, f"{b.in_channels}->{b.out_channels}", b.kernel_size, b.stride,
                     f"{b.output_shape[2]}x{b.output_shape[3]}", _n(b.macs), _n(b.full_macs),
                     f"{float(b.ratio):.4f}", mark,
                     f"1/{b.out_channels} + 1/{b.kernel_size ** 2} = {float(b.formula):.4f}",
                     f"{b.params / b.full_params:.4f}"))
    macs, full = sum(b.macs for b in blocks), sum(b.full_macs for b in blocks)
    params, full_p = sum(b.params for b in blocks), sum(b.full_params for b in blocks)
    body.append((f"all {len(blocks)} blocks", "", "", "", "", _n(macs), _n(full),
                 f"{macs / full:.4f}", "", "", f"{params / full_p:.4f}"))
    table = _table(("block", "C_in->C_out", "K", "s", "out", "dw+pw MACs", "full KxK MACs",
                    "ratio", "", "1/C_out + 1/K^2", "params ratio"), body,
                   "<>>>>>>><<>", fmt)
    exact = all(b.ratio == b.formula for b in blocks)
    base = standard_baseline(s)
    bullet = "- " if fmt == "markdown" else ""
    notes = [
        f"{bullet}MAC ratio = 1/C_out + 1/K^2 "
        + ("exactly for every block (compared as fractions)." if exact
           else "NOT exactly for every block: see the '!=' rows."),
        f"{bullet}params: the weights alone give the same ratio (K*K*C_in + C_in*C_out over "
        "K*K*C_in*C_out, no H*W on either side); the BatchNorm gamma/beta after the "
        "depthwise conv (2*C_in) adds 2/(K*K*C_out): the params ratio column.",
        f"{bullet}whole network: {_m(s.total_macs)} MACs, {_n(s.total_params)} params with "
        f"depthwise separable convolutions vs {_m(base.total_macs)} MACs, "
        f"{_n(base.total_params)} params with full convolutions "
        f"({base.total_macs / s.total_macs:.2f}x the MACs, "
        f"{base.total_params / s.total_params:.2f}x the params).",
    ]
    if fmt != "markdown":
        notes = [textwrap.fill(n, 100, subsequent_indent="  ") for n in notes]
    return table + "\n\n" + "\n".join(notes)


def render_layers(s: Summary, fmt="table") -> str:
    """Per-layer table in torchinfo's layout (tree, Output Shape, Param #, Mult-Adds)."""
    if fmt == "markdown":
        body = [(r.name, r.type, _shape(r.output_shape), _n(r.params) if r.params else "--",
                 _n(r.macs) if r.macs else "--", _n(r.other_ops) if r.other_ops else "--")
                for r in s.rows]
        return _table(("layer", "type", "output", "params", "MACs", "other ops"), body,
                      "<<<>>>", fmt)
    counters, body = {}, []
    for r in s.rows:
        if r.depth == 0:
            label = r.type
        else:
            counters[r.depth] = counters.get(r.depth, 0) + 1
            tree = "│    " * (r.depth - 1) + ("├─" if r.depth == 1 else "└─")
            label = f"{tree}{r.type}: {r.depth}-{counters[r.depth]}"
        body.append((label, str(list(r.output_shape)), _n(r.params) if r.params else "--",
                     _n(r.macs) if r.macs else "--", _n(r.other_ops) if r.other_ops else "--"))
    table = _table(("Layer (type:depth-idx)", "Output Shape", "Param #", "Mult-Adds",
                    "Other ops"), body, "<<>>>")
    rule = "=" * max(len(line) for line in table.splitlines())
    head, sep, rest = table.split("\n", 2)
    foot = [f"Total params: {_n(s.total_params)}",
            f"Trainable params: {_n(s.total_params)}",
            f"Non-trainable params: 0  (buffers apart: {_n(s.total_buffers)})",
            f"Total mult-adds (M): {s.total_macs / 1e6:,.2f}",
            f"Other ops (M, not in mult-adds): {s.total_other_ops / 1e6:,.2f}"]
    return "\n".join([rule, head, rule, rest, rule, *foot, rule])


def render_csv(*summaries: Summary) -> str:
    """One CSV row per layer of each summary; the first column names the network."""
    buf = io.StringIO()
    cols = ["name", "type", "depth", "output_shape", "params", "buffers", "macs", "other_ops",
            "kind", "other_kind", "weights"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["network"] + cols)
    for s in summaries:
        for r in s.rows:
            w.writerow([s.title] + [_shape(r.output_shape) if c == "output_shape"
                                    else getattr(r, c) for c in cols])
    return buf.getvalue().rstrip("\n")


def headline(s: Summary) -> str:
    """One sentence: the totals and the layer types that dominate MACs and weights."""
    line = (f"{_m(s.total_macs)} MACs ({_m(s.total_flops)} FLOPs), "
            f"{s.total_params / 1e6:.2f} M params")
    kinds = s.by_kind()
    if kinds and s.total_macs and s.total_weights:
        k_m = max(kinds, key=lambda k: k[2])
        k_w = max(kinds, key=lambda k: k[3])
        line += f": {k_m[0]} layers do {_pct(k_m[2], s.total_macs)} of the MACs"
        line += (" and" if k_w is k_m else f", {k_w[0]} layers") + (
            f" hold {_pct(k_w[3], s.total_weights)} of the weights")
    return line + "."


def render(s: Summary, fmt="table", per_layer=False) -> str:
    """The default report: a headline, the breakdown by layer type, then the
    separable-vs-full table; ``per_layer`` adds the per-layer table."""
    h = "## " if fmt == "markdown" else ""
    parts = [f"{h}{s.title}, input {_shape(s.input_size)}", headline(s), "",
             f"{h}Where the cost goes", render_breakdown(s, fmt), "",
             f"{h}Depthwise separable vs full K x K convolution of the same shape",
             render_separable(s, fmt)]
    if per_layer:
        parts += ["", f"{h}Per layer", render_layers(s, fmt)]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------

MAX_ALPHA = 4.0          # the papers use 0.25 ... 1.4; 4 keeps the weights in memory
MAX_RESOLUTION = 2048
MAX_CLASSES = 100_000     # the classifier's weights are built, so keep them in memory
MAX_CHANNELS = 4096


def _models():
    from .. import models
    return list(models.MODEL_NAMES), models.get_model, models


def default_resolution(name: str) -> int:
    """The input size a model is meant for: 224, EfficientNet-B1..B7 and -Lite1..4 their
    own (the third column of their tables)."""
    from .. import models
    for table in (models.EFFICIENTNET_PARAMS, models.EFFICIENTNET_LITE_PARAMS):
        if name in table:
            return int(table[name][2])
    return 224


def _width_kwarg(factory):
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    for k in ("alpha", "width_mult"):
        if k in params:
            return k
    return None


def build_parser():
    names, _, _ = _models()
    doc = __doc__.split("\n\n")
    p = cli.Parser(prog="python -m tinymobilenet.count",
                description="Parameters and multiply-accumulates (the papers' Mult-Adds) of "
                            "a MobileNet-family model: where the cost goes, per layer type, "
                            "and depthwise separable vs full convolutions.",
                epilog="\n\n".join(doc[1:-1]),
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, choices=names, metavar="NAME",
                   help="one of: " + ", ".join(names) + " (default mobilenet_v1)")
    p.add_argument("--alpha", type=cli.number(float), default=None, metavar="A",
                   help="width multiplier: alpha of MobileNetV1, width_mult of V2/V3 "
                        f"(0 < A <= {MAX_ALPHA:g}, default 1). EfficientNet-B0..B7 have none:"
                        " their width comes with depth and resolution from compound scaling")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resolution", type=cli.number(int), default=None, metavar="R",
                   help="input size R x R (default: the model's own, 224 for MobileNets)")
    g.add_argument("--rho", type=cli.number(float), default=None, metavar="P",
                   help="resolution multiplier: input size round(P x default), "
                        "e.g. 0.857 -> 192 for MobileNetV1")
    p.add_argument("--num-classes", type=cli.number(int), default=None, metavar="K",
                   help="classes of the final layer (default 1000, ImageNet)")
    p.add_argument("--in-channels", type=cli.number(int), default=None, metavar="C",
                   help="channels of the input images (default 3, RGB; 1 for grayscale)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="count the model trained in PATH (checkpoint.npz of python -m "
                        "tinymobilenet.train): its architecture, options and input size, as "
                        "its metrics.json reports them; replaces the five options above")
    p.add_argument("--per-layer", action="store_true",
                   help="also print every layer (torchinfo's layout)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table",
                   help="csv is always per layer; json carries total_params, total_macs, "
                        "layers and the breakdowns")
    p.add_argument("--baseline", choices=["standard"], default=None,
                   help="standard: also count the same network with every depthwise "
                        "separable convolution replaced by a full convolution (the "
                        "MobileNetV1 paper's 'Conv MobileNet', Table 4) and print the ratio")
    p.add_argument("--fold-bn", action="store_true",
                   help="count the inference network with BatchNorm folded into the convs")
    return p


def _resolve(p, a):
    """Checked (model name, model kwargs, input size) from parsed arguments; p.error()
    otherwise."""
    if a.checkpoint is not None:
        return _from_checkpoint(p, a)
    names, get, models = _models()
    model = a.model or "mobilenet_v1"
    num_classes = 1000 if a.num_classes is None else a.num_classes
    kwargs = {"num_classes": num_classes}
    if not 1 <= num_classes <= MAX_CLASSES:
        p.error(f"--num-classes must be in 1..{MAX_CLASSES:,}, got {num_classes}")
    if a.alpha is not None:
        if not 0 < a.alpha <= MAX_ALPHA:
            p.error(f"--alpha must be in (0, {MAX_ALPHA:g}], got {a.alpha:g}")
        key = _width_kwarg(getattr(models, model, get))
        if key is None:
            p.error(f"--alpha: {model} has no width multiplier; EfficientNet-B0..B7 (and "
                    "-Lite0..4) scale width, depth and resolution together (compound "
                    "scaling): choose another efficientnet_b* (efficientnet_lite*) instead")
        kwargs[key] = a.alpha
    channels = 3 if a.in_channels is None else a.in_channels
    if not 1 <= channels <= MAX_CHANNELS:
        p.error(f"--in-channels must be in 1..{MAX_CHANNELS}, got {channels}")
    if a.in_channels is not None:
        kwargs["in_channels"] = channels
    base = default_resolution(model)
    if a.rho is not None:
        if not a.rho > 0:
            p.error(f"--rho must be > 0, got {a.rho:g}")
        res = int(round(base * a.rho))
    else:
        res = a.resolution if a.resolution is not None else base
    if not 1 <= res <= MAX_RESOLUTION:
        p.error(f"--resolution must be in 1..{MAX_RESOLUTION}, got {res}")
    return model, kwargs, (channels, res, res)


def _from_checkpoint(p, a):
    """(model name, kwargs, input size) of the model a trainer checkpoint was trained as."""
    from ..train import CheckpointError, read_checkpoint
    given = [f"--{k.replace('_', '-')}" for k in ("model", "alpha", "resolution", "rho",
                                                   "num_classes", "in_channels")
             if getattr(a, k) is not None]
    if given:
        p.error(f"--checkpoint gives the model and its input; {given[0]} cannot change them")
    try:
        meta, _ = read_checkpoint(a.checkpoint, arrays=False)
        c = meta["config"]
        return c["model"], dict(c["model_options"]), tuple(c["input_shape"])
    except CheckpointError as e:
        p.error(str(e))
    except KeyError as e:
        p.error(f"{a.checkpoint}: its config lacks {e} (not written by python -m "
                f"tinymobilenet.train?)")


def main(argv=None):
    from ..memory import check_fits
    p = build_parser()
    a = p.parse_args(argv)
    name, kwargs, input_shape = _resolve(p, a)
    width = next((f"{k}={v:g}" for k, v in kwargs.items()
                  if k not in ("num_classes", "in_channels", "seed", "input_dim")), "")
    title = f"{name}" + (f" ({width})" if width else "") + (
        f" from {a.checkpoint}" if a.checkpoint else "") + (
        ", BatchNorm folded" if a.fold_bn else "")
    try:
        problem = check_fits(name, kwargs, input_shape, 1, "build")
        if problem:
            p.error(problem)
        model = _models()[1](name, **kwargs)
        s = summary(model, (1,) + tuple(input_shape), fold_bn=a.fold_bn, title=title)
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    base = standard_baseline(s) if a.baseline else None
    if a.format == "json":
        d = s.to_dict()
        if base is not None:
            d["baseline"] = {"name": "standard", "total_params": base.total_params,
                             "total_macs": base.total_macs,
                             "mac_ratio": base.total_macs / s.total_macs,
                             "params_ratio": base.total_params / s.total_params,
                             "by_kind": [dict(kind=k, layers=n, macs=m, weights=w)
                                         for k, n, m, w in base.by_kind()]}
        print(json.dumps(d, indent=1))
    elif a.format == "csv":
        print(render_csv(*([s] if base is None else [s, base])))
    else:
        print(render(s, a.format, a.per_layer))
        if base is not None:
            h = "## " if a.format == "markdown" else ""
            print(f"\n{h}Baseline: {base.title}")
            print(textwrap.fill(
                "Every depthwise conv and the 1x1 conv after it (with any squeeze-excitation "
                "between them) replaced by one full K x K conv; for MobileNetV1 this is the "
                "paper's 'Conv MobileNet' (Table 4).", 100) + "\n")
            print(render_breakdown(base, a.format))
            print(f"\n{h}Full convolutions / depthwise separable\n"
                  f"MACs:   {base.total_macs / s.total_macs:.2f}x  "
                  f"({_n(base.total_macs)} vs {_n(s.total_macs)})\n"
                  f"params: {base.total_params / s.total_params:.2f}x  "
                  f"({_n(base.total_params)} vs {_n(s.total_params)})")
    return 0

