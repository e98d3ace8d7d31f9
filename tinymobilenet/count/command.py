"""``python -m tinymobilenet.count``: the command line of the counter.

It builds the model the options name (or the one a trainer checkpoint was trained as),
counts it with :func:`summary` and prints one of the reports of :mod:`.render`. Its
``--help`` closes with the conventions written in :mod:`tinymobilenet.count`.
"""

from __future__ import annotations

import sys

from .. import cli
from .baseline import standard_baseline
from .render import render, render_csv, render_json
from .walk import summary

__all__ = ["build_parser", "main", "default_resolution"]


MAX_ALPHA = 4.0          # the papers use 0.25 ... 1.4; 4 keeps the weights in memory
MAX_RESOLUTION = 2048
MAX_CLASSES = 100_000     # the classifier's weights are built, so keep them in memory
MAX_CHANNELS = 4096


def build_parser():
    """The argument parser of ``python -m tinymobilenet.count``."""
    names, _, _ = _models()
    doc = sys.modules[__package__].__doc__          # the conventions, in tinymobilenet.count
    p = cli.Parser(prog="python -m tinymobilenet.count",
                description="Parameters and multiply-accumulates (the papers' Mult-Adds) of "
                            "a MobileNet-family model: where the cost goes, per layer type, "
                            "and depthwise separable vs full convolutions.",
                # the docstring after its title line, up to its usage line
                epilog=doc.split("\n\nUsage:")[0].split("\n\n", 1)[1])
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
                   help="resolution multiplier: input size round(P x the model's own), "
                        "e.g. 0.857 -> 192 for MobileNetV1 (default: none, --resolution)")
    p.add_argument("--num-classes", type=cli.number(int), default=None, metavar="K",
                   help="classes of the final layer (default 1000, ImageNet)")
    p.add_argument("--in-channels", type=cli.number(int), default=None, metavar="C",
                   help="channels of the input images (default 3, RGB; 1 for grayscale)")
    p.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="count the model trained in PATH (checkpoint.npz of python -m "
                        "tinymobilenet.train): its architecture, options and input size, as "
                        "its metrics.json reports them; replaces --model, --alpha, "
                        "--resolution, --rho, --num-classes and --in-channels")
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



def main(argv=None):
    """``python -m tinymobilenet.count`` on ``argv`` (default ``sys.argv[1:]``): build the
    model, count it and print the report; returns 0. A bad option exits with a usage error
    (status 2)."""
    from ..memory import check_fits
    p = build_parser()
    a = p.parse_args(argv)
    name, kwargs, input_shape = _resolve(p, a)
    width = next((f"{k}={v:g}" for k, v in kwargs.items()
                  if k not in ("num_classes", "in_channels", "seed", "input_dim")), "")
    title = f"{name}" + (f" ({width})" if width else "") + (
        f" from {a.checkpoint}" if a.checkpoint else "") + (
        ", BatchNorm folded" if a.fold_bn else "")
    # a checkpoint's options are checked for their types when it is read; what the model
    # itself refuses is then the file's fault, and the message names it
    where = f"{a.checkpoint}: " if a.checkpoint else ""
    options = "meta data config.model_options: " if a.checkpoint else ""
    try:
        problem = check_fits(name, kwargs, input_shape, 1, "build")
        if problem:
            p.error(where + problem)
        model = _models()[1](name, **kwargs)
        s = summary(model, (1,) + tuple(input_shape), fold_bn=a.fold_bn, title=title)
    except (TypeError, ValueError, RuntimeError) as e:
        p.error(f"{where}{options}{e}")
    base = standard_baseline(s) if a.baseline else None
    if a.format == "json":
        print(render_json(s, base))
    elif a.format == "csv":
        print(render_csv(*([s] if base is None else [s, base])))
    else:
        print(render(s, a.format, a.per_layer, base))
    return 0


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
        key = models.width_option(model)
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
        if not 1 <= res <= MAX_RESOLUTION:
            p.error(f"--rho {a.rho:g} gives the input size round({a.rho:g} x {base}) = {res}; "
                    f"it must be in 1..{MAX_RESOLUTION}")
    else:
        res = a.resolution if a.resolution is not None else base
    if not 1 <= res <= MAX_RESOLUTION:
        p.error(f"--resolution must be in 1..{MAX_RESOLUTION}, got {res}")
    return model, kwargs, (channels, res, res)


def _from_checkpoint(p, a):
    """(model name, kwargs, input size) of the model a trainer checkpoint was trained as."""
    from ..train import CheckpointError, read_checkpoint
    from ..train.checkpoint import model_spec
    given = [f"--{k.replace('_', '-')}" for k in ("model", "alpha", "resolution", "rho",
                                                   "num_classes", "in_channels")
             if getattr(a, k) is not None]
    if given:
        p.error(f"--checkpoint gives the model and its input; {given[0]} cannot change them")
    try:
        name, options, shape = model_spec(a.checkpoint,
                                          read_checkpoint(a.checkpoint, arrays=False)[0])
    except CheckpointError as e:
        p.error(str(e))
    if shape is None:
        p.error(f"{a.checkpoint}: its config lacks 'input_shape' (not written by python -m "
                f"tinymobilenet.train?)")
    return name, options, shape


def default_resolution(name: str) -> int:
    """The input size a model is meant for: 224, EfficientNet-B1..B7 and -Lite1..4 their
    own (the third column of their tables)."""
    from .. import models
    for table in (models.EFFICIENTNET_PARAMS, models.EFFICIENTNET_LITE_PARAMS):
        if name in table:
            return int(table[name][2])
    return 224


def _models():
    """(model names, get_model, the models module): imported when a command first needs them."""
    from .. import models
    return list(models.MODEL_NAMES), models.get_model, models
