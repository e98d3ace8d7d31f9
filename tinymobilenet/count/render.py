"""The reports: a text or Markdown report (:func:`render`) of where a count's cost goes,
and the same numbers as CSV (:func:`render_csv`, one row per layer) or JSON
(:func:`render_json`). Every function takes a :class:`Summary` and returns a string.
"""

from __future__ import annotations

import csv
import io
import json
import textwrap

from .baseline import standard_baseline
from .records import Summary

__all__ = ["render", "headline", "render_breakdown", "render_separable", "render_layers",
           "render_baseline", "render_csv", "render_json"]


def render(s: Summary, fmt="table", per_layer=False, baseline: Summary | None = None) -> str:
    """The default report: a headline, the breakdown by layer type, then the
    separable-vs-full table; ``per_layer`` adds the per-layer table, ``baseline`` (the
    :func:`standard_baseline` of ``s``) its comparison with ``s``. ``fmt``: "table" (plain
    text) or "markdown"."""
    h = "## " if fmt == "markdown" else ""
    parts = [f"{h}{s.title}, input {_shape(s.input_size)}", headline(s), "",
             f"{h}Where the cost goes", render_breakdown(s, fmt), "",
             f"{h}Depthwise separable vs full K x K convolution of the same shape",
             render_separable(s, fmt)]
    if per_layer:
        parts += ["", f"{h}Per layer", render_layers(s, fmt)]
    if baseline is not None:
        parts += ["", render_baseline(s, baseline, fmt)]
    return "\n".join(parts)


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


def render_baseline(s: Summary, base: Summary, fmt="table") -> str:
    """``base`` (the :func:`standard_baseline` of ``s``): its breakdown and how many times
    the MACs and params of ``s`` it has."""
    h = "## " if fmt == "markdown" else ""
    return "\n".join([
        f"{h}Baseline: {base.title}",
        textwrap.fill("Every depthwise conv and the 1x1 conv after it (with any "
                      "squeeze-excitation between them) replaced by one full K x K conv; "
                      "for MobileNetV1 this is the paper's 'Conv MobileNet' (Table 4).", 100),
        "",
        render_breakdown(base, fmt),
        "",
        f"{h}Full convolutions / depthwise separable",
        f"MACs:   {base.total_macs / s.total_macs:.2f}x  "
        f"({_n(base.total_macs)} vs {_n(s.total_macs)})",
        f"params: {base.total_params / s.total_params:.2f}x  "
        f"({_n(base.total_params)} vs {_n(s.total_params)})"])


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


def render_json(s: Summary, base: Summary | None = None) -> str:
    """:meth:`Summary.to_dict` as JSON, with ``base``'s totals, ratios and breakdown
    under "baseline" when it is given."""
    d = s.to_dict()
    if base is not None:
        d["baseline"] = {"name": "standard", "total_params": base.total_params,
                         "total_macs": base.total_macs,
                         "mac_ratio": base.total_macs / s.total_macs,
                         "params_ratio": base.total_params / s.total_params,
                         "by_kind": [dict(kind=k, layers=n, macs=m, weights=w)
                                     for k, n, m, w in base.by_kind()]}
    return json.dumps(d, indent=1)


# ---- number and table formatting --------------------------------------------------------

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

