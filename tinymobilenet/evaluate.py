"""How good a trained checkpoint is: accuracy, per-class accuracy, a confusion matrix.

    python -m tinymobilenet.evaluate --checkpoint runs/x/checkpoint.npz [--data DIR]
                                     [--out confusion.png] [--format table|json]

Without ``--data`` it evaluates the checkpoint's own test set (the digits' or shapes'
test split, or the test part of the image folder it was trained on, as split then).
``--data DIR`` evaluates other images of the same classes: ``DIR/<class>/`` folders, or
``DIR/test/<class>/``; a class folder the checkpoint does not know is an error, classes it
lacks are fine. The confusion-matrix PNG goes beside the checkpoint unless ``--out`` says.

The image folder of the checkpoint's own test set is a path written *in the checkpoint*
(``config.data``, relative to the checkpoint's folder). A checkpoint from elsewhere can
name any folder; it is only read (its images decoded), and an error about it says that the
checkpoint named it and that ``--data DIR`` chooses another.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import cli
from .data import FolderError, ImageError, ImageTransform, find_images
from .files import output_problem, shown

__all__ = ["confusion_matrix", "per_class_accuracy", "evaluate_checkpoint", "test_set",
           "plot_confusion", "build_parser", "main"]


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """(K, K) int64 counts: row = true class, column = predicted class. ValueError for a
    label outside 0..K-1."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} holds labels outside 0..{num_classes - 1}")
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """(K,) accuracy of each true class (NaN for a class without test images)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


def test_set(path, config: dict, data=None):
    """(x, y, description) to evaluate a checkpoint at ``path`` with configuration
    ``config`` on: its own test split, or the image folder ``data`` (labels by class name)."""
    from .train import load_data
    from .train.runner import data_path
    if data is None:
        try:
            _, test, _ = load_data(config, base=Path(path).parent)
            split = config.get("split")
            if split is not None and test.info.get("split") != split:
                raise FolderError(f"{config['data']}: the images differ from those the "
                                  f"checkpoint was trained and split on")
        except (FolderError, ImageError) as e:
            if not config.get("data"):
                raise
            raise type(e)(f"{e} (the folder {config['data']!r} is named by the checkpoint "
                          f"{path}, relative to its folder; --data DIR evaluates on "
                          f"another)") from None
        where = (shown(data_path(config, Path(path).parent)) if config.get("data")
                 else f"the {config['dataset']} test split")
        return test.x, test.y, f"{where} ({len(test)} images)"
    folder = Path(data)
    if (folder / "test").is_dir():
        folder = folder / "test"
    found = find_images(folder, min_classes=1)          # the images of one class are fine
    classes = list(config["classes"])
    unknown = [c for c in found if c not in classes]
    if unknown:
        raise FolderError(f"{folder}/{unknown[0]}: a class the checkpoint does not know "
                          f"(it knows {', '.join(classes)})")
    transform = ImageTransform.from_dict(config["transform"])
    paths = [p for files in found.values() for p in files]
    y = np.concatenate([np.full(len(f), classes.index(c)) for c, f in found.items()])
    return transform.load(paths), y, f"{folder} ({len(paths)} images)"


def evaluate_checkpoint(path, data=None) -> dict:
    """Accuracy, loss, per-class accuracy and confusion matrix of the checkpoint at
    ``path`` on its test set or on the image folder ``data`` (see :func:`test_set`)."""
    from . import nn
    from .predict import load_checkpoint_source
    from .train import predict
    model, _, classes = load_checkpoint_source(path)
    x, y, where = test_set(path, model.checkpoint_meta["config"], data)
    logits = predict(model, x, logits=True)
    matrix = confusion_matrix(y, logits.argmax(axis=1), len(classes))
    return {"checkpoint": str(path), "data": where, "images": int(len(y)),
            "accuracy": float(np.trace(matrix) / max(1, matrix.sum())),
            "loss": float(nn.CrossEntropyLoss()(logits, y)),
            "classes": list(classes),
            "per_class_accuracy": [None if np.isnan(a) else float(a)
                                   for a in per_class_accuracy(matrix)],
            "per_class_images": matrix.sum(axis=1).tolist(),
            "confusion_matrix": matrix.tolist()}


def plot_confusion(matrix, classes, path=None, title="confusion matrix"):
    """The confusion matrix as an image, counts written in the cells (up to 30 classes);
    saved atomically to ``path`` if given. Returns the Figure."""
    import matplotlib
    import matplotlib.pyplot as plt
    from .files import save_figure
    matrix = np.asarray(matrix)
    k = len(classes)
    size = min(12, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    shown = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)   # row-normalised
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted class", ylabel="true class",
           title=title)
    ax.set_xticklabels(classes, rotation=90 if max(map(len, classes)) > 3 else 0)
    ax.set_yticklabels(classes)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if shown[i, j] > 0.5 else "black")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=120)
        if "inline" not in matplotlib.get_backend().lower():
            plt.close(fig)
    return fig


def render(report: dict) -> str:
    """The report as text: accuracy, then one line per class."""
    width = max(5, *map(len, report["classes"]))
    lines = [f"{report['checkpoint']} on {report['data']}: accuracy "
             f"{100 * report['accuracy']:.2f} %, loss {report['loss']:.4f}", "",
             f"{'class':<{width}}  images  accuracy"]
    for name, n, acc in zip(report["classes"], report["per_class_images"],
                            report["per_class_accuracy"]):
        shown = "-" if acc is None else f"{100 * acc:6.2f} %"
        lines.append(f"{name:<{width}}  {n:>6}  {shown:>8}")
    return "\n".join(lines)


def build_parser() -> cli.Parser:
    p = cli.Parser(prog="python -m tinymobilenet.evaluate",
                   description="Measure a trained checkpoint on its test set or a folder of "
                               "images: accuracy,\naccuracy per class, and a confusion-matrix "
                               "PNG.")
    p.add_argument("--checkpoint", required=True, metavar="PATH", default=argparse.SUPPRESS,
                   help="checkpoint.npz written by python -m tinymobilenet.train (required)")
    p.add_argument("--data", default=argparse.SUPPRESS, metavar="DIR",
                   help="images to evaluate on, DIR/<class>/ or DIR/test/<class>/ (default: "
                        "the checkpoint's own test set: the bundled data's, or the test part "
                        "of the image folder whose path the checkpoint holds, relative to "
                        "the checkpoint's folder)")
    p.add_argument("--out", default=argparse.SUPPRESS, metavar="PNG",
                   help="where the confusion matrix goes (default: confusion.png beside the "
                        "checkpoint)")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="json: accuracy, per_class_accuracy, confusion_matrix, ...")
    return p


def main(argv=None) -> int:
    from .train import CheckpointError
    p = build_parser()
    a = p.parse_args(argv)
    data = getattr(a, "data", None)
    if data is not None and not Path(data).is_dir():
        p.error(f"--data: {data}: " + ("not a folder" if Path(data).exists()
                                       else "no such folder"))
    out = Path(a.out) if hasattr(a, "out") else Path(a.checkpoint).parent / "confusion.png"
    problem = output_problem(out)
    if problem:                                      # before the work
        p.error(f"--out: {problem}" if hasattr(a, "out") else problem)
    try:
        report = evaluate_checkpoint(a.checkpoint, data)
    except (CheckpointError, FolderError, ImageError) as e:
        p.error(str(e))
    import matplotlib
    matplotlib.use("Agg")
    plot_confusion(report["confusion_matrix"], report["classes"], out,
                   title=f"{Path(a.checkpoint).parent.name}: accuracy "
                         f"{100 * report['accuracy']:.1f} % on {report['images']} images")
    report["confusion_png"] = str(out)
    print(json.dumps(report, indent=1) if a.format == "json"
          else render(report) + f"\n\nconfusion matrix -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
