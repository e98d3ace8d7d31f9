"""``python -m tinymobilenet.train``: the command line of the trainer."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .. import cli
from ..data import DATASETS, FolderError, ImageError
from ..models import DENSE_MODEL_NAMES, MODEL_NAMES
from .checkpoint import CheckpointError, read_checkpoint
from .loop import TrainingInterrupted
from .recipes import COMMON, recipe_table
from .runner import OPTION_TYPES, ConfigError, resolve_config, run, run_dir

__all__ = ["build_parser", "main"]

PROG = "python -m tinymobilenet.train"
# An option the user did not give is absent from the parsed namespace, so what remains is
# exactly what overrides the recipe (and what --resume must refuse); --help names the defaults.
SUPPRESS = argparse.SUPPRESS

DESCRIPTION = """\
Train a MobileNet-family model on the bundled digits, the procedural shapes or a folder of
your own images, and write its metrics and a checkpoint to resume, evaluate and predict with."""

EPILOG = """\
Recipes: what --model NAME trains with; every option given overrides its part.

{table}

precise BN: before each evaluation and checkpoint, BatchNorm's running statistics are
re-estimated from that many training images, so eval mode is right after any number of
steps while torchvision's momentum 0.01 (V3, EfficientNet) stays the model's own.

examples:
  {prog}
      MobileNetV1 on the digits, under a minute on two cores
  {prog} --model mobilenet_v3_small
  {prog} --model dense_mobilenet
      the 1-D MobileNet on the digits as 64-pixel vectors
  {prog} --data photos --model mobilenet_v2 --resolution 64
      photos/<class>/*.png (split here), or photos/train/<class>/ and photos/test/<class>/
  {prog} --resume runs/mobilenet_v1/checkpoint.npz --epochs 20
      extend a finished run to 20 epochs (Ctrl-C prints the command that resumes)
"""

# the options --resume accepts beside it: the rest comes from the checkpoint's configuration
_RESUME_OPTIONS = {"epochs", "out", "progress", "resume"}


def build_parser() -> cli.Parser:
    """The argument parser of ``python -m tinymobilenet.train``."""
    names = MODEL_NAMES + DENSE_MODEL_NAMES
    p = cli.Parser(prog=PROG, epilog=EPILOG.format(table=recipe_table(), prog=PROG),
                   description=DESCRIPTION)
    recipe = " (default: the model's recipe, below)"
    p.add_argument("--model", default=SUPPRESS, metavar="NAME",
                   help=f"what to train: {', '.join(names)} (default: mobilenet_v1)")
    p.add_argument("--alpha", type=OPTION_TYPES["alpha"], default=SUPPRESS,
                   help="width multiplier (> 0): alpha of V1, width_mult of V2/V3, "
                        "width_multiplier of the dense models; EfficientNet has none" + recipe)
    p.add_argument("--resolution", type=OPTION_TYPES["resolution"], default=SUPPRESS,
                   metavar="R",
                   help="input size: images are resized to R x R (the dense models see "
                        "them as C*R*R vectors)" + recipe)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dataset", default=SUPPRESS, choices=DATASETS,
                   help="a bundled data set: the 8x8 handwritten digits, or circles, squares, "
                        f"triangles and crosses drawn procedurally (default: {COMMON['dataset']})")
    g.add_argument("--data", default=SUPPRESS, metavar="DIR",
                   help="your own images instead: DIR/<class>/ (split here, see "
                        "--test-fraction) or DIR/train/<class>/ and DIR/test/<class>/; "
                        "any image file Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP, "
                        "PPM/PGM; 16-bit gray scaled to 8 bits) (default: none, the "
                        "--dataset)")
    p.add_argument("--in-channels", type=int, choices=(1, 3), default=SUPPRESS,
                   help="1 gray or 3 RGB (default: 1 for the bundled data; for --data 1 if "
                        "every image is grayscale, else 3)")
    p.add_argument("--test-fraction", type=OPTION_TYPES["test_fraction"], default=SUPPRESS,
                   metavar="F",
                   help="--data without train/ and test/: the part of each class held out "
                        f"for testing, drawn with --seed; 0 < F <= 0.95 "
                        f"(default: {COMMON['test_fraction']:g})")
    p.add_argument("--epochs", type=OPTION_TYPES["epochs"], default=SUPPRESS,
                   help="passes over the training set" + recipe)
    p.add_argument("--batch-size", type=OPTION_TYPES["batch_size"], default=SUPPRESS,
                   help="images per SGD step" + recipe)
    p.add_argument("--lr", type=OPTION_TYPES["lr"], default=SUPPRESS,
                   help="peak learning rate (linear warm-up, then cosine decay to 0)" + recipe)
    p.add_argument("--momentum", type=OPTION_TYPES["momentum"], default=SUPPRESS, metavar="M",
                   help=f"Nesterov momentum of SGD, 0: plain SGD; 0 <= M <= 0.999 "
                        f"(default: {COMMON['momentum']:g})")
    p.add_argument("--weight-decay", type=OPTION_TYPES["weight_decay"], default=SUPPRESS,
                   help="L2 decay of conv/linear weights (never of BN parameters or biases)"
                        + recipe)
    p.add_argument("--warmup-epochs", type=OPTION_TYPES["warmup_epochs"], default=SUPPRESS,
                   help="epochs of linear learning-rate warm-up from lr/10" + recipe)
    p.add_argument("--shift", type=OPTION_TYPES["shift"], default=SUPPRESS,
                   help="augmentation: random shifts of up to this many pixels (of the 8x8 "
                        "original for the digits, of the resized image otherwise); 0: off"
                        + recipe)
    p.add_argument("--label-smoothing", type=OPTION_TYPES["label_smoothing"], default=SUPPRESS,
                   metavar="S",
                   help="cross-entropy against (1 - s) one-hot + s uniform; 0 <= s <= 0.99"
                        + recipe)
    p.add_argument("--dropout", type=OPTION_TYPES["dropout"], default=SUPPRESS, metavar="P",
                   help="dropout before the classifier, 0 <= P <= 0.99 (default: the model's "
                        "own, 0.2 for V2/V3/EfficientNet-B0, 0 for V1)")
    p.add_argument("--classifier-range", type=OPTION_TYPES["classifier_range"],
                   default=SUPPRESS, metavar="R",
                   help="draw the classifier's initial weights from U(-R, R); 0: the "
                        "model's own initialisation" + recipe)
    p.add_argument("--zero-init-residual", type=OPTION_TYPES["zero_init_residual"],
                   default=SUPPRESS, metavar="0|1",
                   help="1: every residual block's last batch norm scale starts at 0, so "
                        "each block starts as the identity (deep EfficientNets need it)"
                        + recipe)
    p.add_argument("--precise-bn", type=OPTION_TYPES["precise_bn"], default=SUPPRESS,
                   metavar="N",
                   help="training images whose statistics replace BatchNorm's running "
                        "averages before each evaluation and checkpoint; 0: off" + recipe)
    p.add_argument("--seed", type=OPTION_TYPES["seed"], default=SUPPRESS,
                   help="weights, shuffling, augmentation and the split of --data "
                        f"(default: {COMMON['seed']})")
    p.add_argument("--out", default=SUPPRESS, metavar="DIR",
                   help="directory for metrics.json and checkpoint.npz (default: runs/MODEL; "
                        "with --resume: the checkpoint's directory)")
    p.add_argument("--resume", default=SUPPRESS, metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT with its own configuration; "
                        "--epochs N extends it to N epochs (default: none, a new run)")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "epoch", "none"],
                   help="auto: a redrawn bar on a terminal, one line per epoch otherwise")
    return p


def _options(p, a) -> dict:
    """The configuration from the command line: the options given, the rest the recipe's."""
    given = {k: v for k, v in vars(a).items() if k != "progress"}
    try:
        c = resolve_config(given)
    except ConfigError as e:
        p.error(f"--model: {e}")
    dense = c["model"] in DENSE_MODEL_NAMES
    if c["resolution"] < (1 if dense else 8):
        p.error(f"--resolution must be >= 8 for the image models, got {c['resolution']}")
    if c["warmup_epochs"] > c["epochs"]:
        p.error(f"--warmup-epochs must be <= --epochs ({c['epochs']}), got {c['warmup_epochs']:g}")
    if "data" in given and not Path(given["data"]).is_dir():
        p.error(f"--data: {given['data']}: " + ("not a folder" if Path(given["data"]).exists()
                                               else "no such folder"))
    return given


def _resume_options(p, a) -> tuple[dict, Path]:
    """The checkpoint's configuration, with --epochs and --out applied."""
    extra = sorted(k for k in vars(a) if k not in _RESUME_OPTIONS)
    if extra:
        p.error(f"--resume continues a run as it was configured; only --epochs, --out and "
                f"--progress go with it, not --{extra[0].replace('_', '-')}")
    try:
        meta, _ = read_checkpoint(a.resume, arrays=False)
    except CheckpointError as e:
        p.error(f"--resume: {e}")
    config = dict(meta["config"])
    if "model" not in config or "model_options" not in config:
        p.error(f"--resume: {a.resume} was not written by {PROG} (its config does not say "
                f"what to train)")
    if hasattr(a, "epochs"):
        if a.epochs < meta["epoch"]:
            p.error(f"--epochs {a.epochs}: {a.resume} already holds {meta['epoch']} epochs")
        config["epochs"] = a.epochs
    out = Path(a.out) if hasattr(a, "out") else Path(a.resume).parent
    config["out"] = str(out)
    return config, out


def main(argv=None) -> int:
    """``python -m tinymobilenet.train`` on ``argv`` (default ``sys.argv[1:]``): train, write
    metrics.json and the checkpoint; returns the exit status (0, 1 for a diverged run, 130
    after Ctrl-C). A bad option or configuration exits with a usage error (status 2)."""
    p = build_parser()
    a = p.parse_args(argv)
    progress = None if a.progress == "none" else a.progress
    resume = getattr(a, "resume", None)
    if resume is not None:
        config, out = _resume_options(p, a)
    else:
        config = _options(p, a)
        out = run_dir(resolve_config(config))
    try:
        m = run(config, progress=progress, resume=resume, log=print)
    except TrainingInterrupted as e:
        if e.checkpoint is None:
            print(f"\ninterrupted before the first epoch ended; nothing was saved. Run the "
                  f"same command to start again.", file=sys.stderr)
        else:
            print(f"\ninterrupted; epoch {e.epoch} is saved in {e.checkpoint}. Resume with:\n"
                  f"  {PROG} --resume {shlex.quote(str(e.checkpoint))}", file=sys.stderr)
        return 130
    except (ConfigError, CheckpointError, FolderError, ImageError) as e:
        p.error(str(e))
    except FloatingPointError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 1
    print(f"test accuracy {100 * m['test_accuracy']:.2f} %  ({len(m['history'])} epochs, "
          f"{m['wall_time_seconds']:.1f} s)  -> {out / 'metrics.json'}, "
          f"{out / 'checkpoint.npz'}")
    return 0
