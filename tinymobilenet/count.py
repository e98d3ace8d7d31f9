"""Count parameters and multiply-accumulates (MACs) of a model, layer by layer.

Conventions (the papers' "Mult-Adds"):

* MACs = multiply-accumulates of convolutions and fully connected layers only.
  Standard/grouped conv: (C_in/groups) * K*K * C_out * H_out * W_out; depthwise:
  K*K * C * H_out * W_out; pointwise: C_in * C_out * H * W; linear: in * out.
  FLOPs = 2 x MACs, always shown beside them, never mixed in.
* Bias adds, BatchNorm, activations, pooling, SE scaling and residual adds are "other ops",
  counted on their own line (one op per output element), not inside MACs.
* Params = trainable parameters (weights, biases, BN gamma/beta); buffers (BN running
  statistics) are listed apart.

Usage: ``python -m tinymobilenet.count --alpha 0.5``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np

from . import nn

__all__ = ["LayerCount", "Summary", "summary", "main"]


@dataclass
class LayerCount:
    name: str
    type: str
    output_shape: tuple
    params: int
    macs: int
    other_ops: int


@dataclass
class Summary:
    rows: list
    input_size: tuple

    @property
    def total_params(self):
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self):
        return sum(r.macs for r in self.rows)

    @property
    def total_other_ops(self):
        return sum(r.other_ops for r in self.rows)

    def to_dict(self):
        return {"input_size": list(self.input_size), "total_params": self.total_params,
                "total_macs": self.total_macs, "total_flops": 2 * self.total_macs,
                "total_other_ops": self.total_other_ops,
                "layers": [dict(asdict(r), output_shape=list(r.output_shape)) for r in self.rows]}


def _leaf_cost(m, in_shape, out_shape):
    """(macs, other_ops) of one leaf module from its input and output shapes."""
    out_elems = int(np.prod(out_shape))
    if isinstance(m, nn.Conv2d):
        N, Co, Ho, Wo = out_shape
        k = m.kernel_size
        macs = N * (m.in_channels // m.groups) * k * k * Co * Ho * Wo
        return macs, (out_elems if m.bias is not None else 0)
    if isinstance(m, nn.Linear):
        macs = int(np.prod(in_shape)) * m.out_features
        return macs, (out_elems if m.bias is not None else 0)
    if isinstance(m, (nn.Flatten, nn.Identity, nn.Dropout)):
        return 0, 0
    if isinstance(m, nn.GlobalAvgPool2d):
        return 0, int(np.prod(in_shape))
    return 0, out_elems


def summary(model, input_size=(1, 3, 224, 224)) -> Summary:
    """Walk ``model`` with an input of ``input_size`` (one forward pass in eval mode, no
    backward) and return a :class:`Summary` with one :class:`LayerCount` per leaf module."""
    rows = []
    was_training = model.training
    model.eval()
    wrapped = []
    for name, m in model.named_modules():
        if m._modules:          # containers: their leaves are counted
            continue

        def hook(x, m=m, name=name, fwd=m.forward):
            y = fwd(x)
            macs, other = _leaf_cost(m, x.shape, y.shape)
            params = sum(p.data.size for p in m.parameters())
            rows.append(LayerCount(name, type(m).__name__, tuple(y.shape), int(params),
                                   int(macs), int(other)))
            return y
        object.__setattr__(m, "forward", hook)
        wrapped.append(m)
    try:
        dtype = model.parameters()[0].data.dtype if model.parameters() else np.float32
        model.forward(np.zeros(input_size, dtype=dtype))
    finally:
        for m in wrapped:
            del m.__dict__["forward"]
        model.train(was_training)
    return Summary(rows, tuple(input_size))


def _fmt(n):
    return f"{n:,}"


def render_table(s: Summary) -> str:
    lines = [f"{'layer':<32} {'type':<18} {'output':<20} {'params':>12} {'MACs':>15}"]
    lines.append("-" * len(lines[0]))
    for r in s.rows:
        lines.append(f"{r.name:<32} {r.type:<18} {str(r.output_shape):<20} "
                     f"{_fmt(r.params):>12} {_fmt(r.macs):>15}")
    lines.append("-" * len(lines[0]))
    lines.append(f"Total params: {_fmt(s.total_params)}")
    lines.append(f"Total MACs (Mult-Adds): {_fmt(s.total_macs)}  "
                 f"({s.total_macs / 1e6:.1f} M; FLOPs = 2 x MACs = {2 * s.total_macs / 1e6:.1f} M)")
    lines.append(f"Other ops (bias, BN, activations, pooling, adds): {_fmt(s.total_other_ops)}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):          # one line, exit 2, no traceback
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser():
    p = _Parser(prog="python -m tinymobilenet.count",
                description=__doc__.split("\n\n")[0],
                epilog=__doc__.split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenet_v1", choices=["mobilenet_v1"])
    p.add_argument("--alpha", type=float, default=1.0, help="width multiplier (default 1.0)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resolution", type=int, default=None, help="input size (default 224)")
    g.add_argument("--rho", type=float, default=None, help="resolution multiplier: size 224*rho")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--format", choices=["table", "json"], default="table")
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    if not a.alpha > 0:
        p.error(f"--alpha must be > 0, got {a.alpha}")
    res = a.resolution if a.resolution is not None else (
        int(round(224 * a.rho)) if a.rho is not None else 224)
    if res < 1:
        p.error(f"--resolution must be >= 1, got {res}")
    if a.num_classes < 1:
        p.error(f"--num-classes must be >= 1, got {a.num_classes}")
    from .models import mobilenet_v1
    try:
        model = mobilenet_v1(alpha=a.alpha, num_classes=a.num_classes)
        s = summary(model, (1, 3, res, res))
    except ValueError as e:
        p.error(str(e))
    if a.format == "json":
        print(json.dumps(s.to_dict(), indent=1))
    else:
        print(f"{a.model}  alpha={a.alpha}  input 3x{res}x{res}")
        print(render_table(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
