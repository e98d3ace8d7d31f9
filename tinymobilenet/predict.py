"""The class of your own image files, from a trained checkpoint.

    python -m tinymobilenet.predict photo.png [more.jpg ...] --checkpoint runs/x/checkpoint.npz
                                    [--topk 5] [--format table|json]

In Python, for any model, transform and class names::

    predict_files(model, ["photo.png"], transform, class_names, topk=3)
    -> [{"path": "photo.png", "top": [{"class": "cat", "index": 0, "probability": 0.93}, ...]}]

``transform(path)`` turns one image file into the model's input (C, H, W) (or (D,)); a
checkpoint written by ``python -m tinymobilenet.train`` stores its transform
(:class:`~tinymobilenet.data.ImageTransform`) and class names, so the same preprocessing
as in training is applied. :func:`load_source` is where a model comes from; another
source (pretrained ImageNet weights) adds an option there.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import cli
from .data import ImageError, ImageTransform
from .functional import log_softmax

__all__ = ["predict_files", "probabilities", "load_checkpoint_source", "load_source",
           "render_table", "build_parser", "main"]


def probabilities(model, x, batch_size: int = 64) -> np.ndarray:
    """Softmax probabilities (N, K) of ``model`` in eval mode on x (N, C, H, W) or (N, D)."""
    from .train import predict
    return np.exp(log_softmax(predict(model, x, batch_size, logits=True).astype(np.float64)))


def predict_files(model, paths, transform, class_names, topk: int = 5,
                  batch_size: int = 64) -> list[dict]:
    """The ``topk`` most probable classes of each image file: a list with one
    ``{"path", "top": [{"class", "index", "probability"}, ...]}`` per path, most probable
    first (``topk`` is capped at the number of classes). Raises
    :class:`~tinymobilenet.data.ImageError` naming a file that cannot be read."""
    paths = [str(p) for p in paths]
    x = np.stack([transform(p) for p in paths])                       # (N, C, H, W)
    p = probabilities(model, x, batch_size)                           # (N, K)
    if p.shape[1] != len(class_names):
        raise ValueError(f"predict_files: the model gives {p.shape[1]} classes, "
                         f"{len(class_names)} class names were given")
    k = min(int(topk), p.shape[1])
    order = np.argsort(-p, axis=1, kind="stable")[:, :k]              # (N, k)
    return [{"path": path, "top": [{"class": str(class_names[j]), "index": int(j),
                                    "probability": float(p[i, j])} for j in order[i]]}
            for i, path in enumerate(paths)]


def render_table(results: list[dict]) -> str:
    """One block per image: its path, then rank, class and probability per line."""
    lines = []
    width = max((len(t["class"]) for r in results for t in r["top"]), default=5)
    for r in results:
        lines.append(r["path"])
        for rank, t in enumerate(r["top"], 1):
            lines.append(f"  {rank:>2}. {t['class']:<{width}}  {100 * t['probability']:6.2f} %")
    return "\n".join(lines)


# ---- where the model comes from ----------------------------------------------------------

def load_checkpoint_source(path):
    """(model in eval mode, transform, class names) of a ``train`` checkpoint."""
    from .train import CheckpointError, load_model
    model = load_model(path)
    config = model.checkpoint_meta["config"]
    if "transform" not in config or "classes" not in config:
        raise CheckpointError(f"{path}: no class names or preprocessing saved in it (written "
                              f"by an older version of the trainer?)")
    return model, ImageTransform.from_dict(config["transform"]), tuple(config["classes"])


def load_source(args):
    """(model, transform, class names) for the parsed command line. Each source of a
    model is one option of the ``source`` group of :func:`build_parser`."""
    return load_checkpoint_source(args.checkpoint)


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m tinymobilenet.predict",
                   description="Print the most probable classes of image files, with the model "
                               "and the preprocessing\nof a trained checkpoint.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, ... files")
    source = p.add_argument_group("where the model comes from")
    source.add_argument("--checkpoint", required=True, metavar="PATH", default=argparse.SUPPRESS,
                        help="checkpoint.npz written by python -m tinymobilenet.train "
                             "(required)")
    p.add_argument("--topk", type=cli.number(int, 1), default=5,
                   help="how many classes per image, most probable first")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="json: a list with one {path, top: [{class, index, probability}]} "
                        "per image")
    return p


def main(argv=None) -> int:
    from .train import CheckpointError
    p = build_parser()
    a = p.parse_args(argv)
    try:
        model, transform, classes = load_source(a)
        results = predict_files(model, a.images, transform, classes, a.topk)
    except (CheckpointError, ImageError) as e:
        p.error(str(e))
    print(json.dumps(results, indent=1) if a.format == "json" else render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
