"""The minimal trainer: fit, evaluate, predict, checkpoints, and the command line.

    python -m tinymobilenet.train                      # MobileNetV1 on the bundled digits
    python -m tinymobilenet.train --alpha 0.5 --resolution 32 --epochs 20 --out runs/a05

With no options it trains the default below on the digits and writes ``runs/default/
metrics.json`` (test accuracy, per-epoch history, wall time, configuration) and
``runs/default/checkpoint.npz``. ``--resume DIR/checkpoint.npz`` continues a run; the
result is bit for bit the one an uninterrupted run gives.

Reproducibility: every random choice of epoch e (shuffle order, augmentation) comes from
``numpy.random.default_rng([seed, e])``, so it does not depend on what ran before; the
generators inside the model (dropout) are saved in the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

from . import cli, nn
from .data import DATASETS, Dataset, batches, load_dataset, random_shift
from .optim import SGD, Constant, Cosine, Warmup, param_groups

__all__ = ["fit", "evaluate", "predict", "save_checkpoint", "load_checkpoint",
           "CheckpointError", "plot_history", "build_model", "run", "main", "DEFAULTS"]

# The no-option run: chosen to reach >= 97 % test accuracy on the digits in well under a
# minute on two CPU cores (see the README's "Training" section for measurements).
DEFAULTS = {
    "model": "mobilenet_v1", "alpha": 0.25, "resolution": 32, "dataset": "digits",
    "epochs": 15, "batch_size": 32, "lr": 0.05, "momentum": 0.9, "weight_decay": 2e-3,
    "warmup_epochs": 1, "shift": 0.5, "label_smoothing": 0.0, "seed": 0, "out": "runs/default",
}

CHECKPOINT_FORMAT = "tinymobilenet-checkpoint-1"


# ---- evaluation ------------------------------------------------------------------------
def _as_dataset(data) -> Dataset:
    if isinstance(data, Dataset):
        return data
    x, y = data
    return Dataset(np.asarray(x), np.asarray(y))


def predict(model, x, batch_size: int = 256, logits: bool = False) -> np.ndarray:
    """Class predictions (N,) for images x (N, C, H, W), in eval mode (or logits (N, K))."""
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    out = np.concatenate(out)                                  # (N, K)
    return out if logits else out.argmax(axis=1)


def evaluate(model, data, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of ``model`` in eval mode on a Dataset or (x, y)."""
    data = _as_dataset(data)
    z = predict(model, data.x, batch_size, logits=True)
    loss = nn.CrossEntropyLoss()(z, data.y)
    return float(loss), float((z.argmax(axis=1) == data.y).mean())


# ---- progress --------------------------------------------------------------------------
def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return type(shell.get_ipython()).__name__ == "ZMQInteractiveShell"
    except AttributeError:
        return False


class Progress:
    """A one-line progress display.

    ``mode``: "bar" redraws one line with ``\\r`` (a terminal), "notebook" updates one
    output in Jupyter, "epoch" prints one line per epoch (logs, CI), None prints nothing.
    "auto" picks "notebook" in Jupyter, "bar" on a terminal, and "epoch" otherwise or when
    the ``CI`` environment variable is set.
    """

    def __init__(self, mode="auto", stream=None, interval: float = 0.2):
        self.stream = stream if stream is not None else sys.stdout
        if mode == "auto":
            if _in_notebook():
                mode = "notebook"
            elif os.environ.get("CI") or not getattr(self.stream, "isatty", lambda: False)():
                mode = "epoch"
            else:
                mode = "bar"
        if mode not in ("bar", "notebook", "epoch", None, False):
            raise ValueError(f"progress must be 'auto', 'bar', 'notebook', 'epoch' or None, "
                             f"got {mode!r}")
        self.mode, self.interval, self._last, self._handle = mode or None, interval, 0.0, None

    def _show(self, text: str, final: bool) -> None:
        if self.mode == "bar":
            self.stream.write("\r" + text.ljust(100) + ("\n" if final else ""))
            self.stream.flush()
        elif self.mode == "notebook":
            from IPython.display import display
            if self._handle is None:
                self._handle = display({"text/plain": text}, raw=True, display_id=True)
            else:
                self._handle.update({"text/plain": text}, raw=True)
            if final:
                self._handle = None
        elif self.mode == "epoch" and final:
            print(text, file=self.stream, flush=True)

    def update(self, epoch, epochs, done, total, loss, acc) -> None:
        now = time.perf_counter()
        if self.mode in ("bar", "notebook") and (now - self._last >= self.interval or done == total):
            self._last = now
            bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
            self._show(f"epoch {epoch}/{epochs} [{bar}] {done}/{total} "
                       f"loss {loss:.4f} acc {acc:.3f}", final=False)

    def end_epoch(self, epochs, row: dict) -> None:
        text = (f"epoch {row['epoch']}/{epochs}  lr {row['lr']:.4g}  "
                f"loss {row['train_loss']:.4f}  acc {row['train_accuracy']:.3f}")
        if "test_loss" in row:
            text += f"  test loss {row['test_loss']:.4f}  test acc {row['test_accuracy']:.3f}"
        self._show(text + f"  ({row['seconds']:.1f} s)", final=True)


# ---- the training loop -----------------------------------------------------------------
def fit(model, data, epochs: int, optimizer, schedule=None, *, test_data=None,
        batch_size: int = 32, seed: int = 0, augment=None, loss_fn=None,
        progress="auto", checkpoint=None, resume=None, config=None,
        on_epoch_end=None) -> list[dict]:
    """Train ``model`` on ``data`` (a Dataset or (x, y)) for ``epochs`` and return the history.

    Each epoch shuffles with ``default_rng([seed, epoch])``, applies
    ``augment(x, rng) -> x`` to each batch if given, and for each mini-batch runs forward,
    loss, backward and ``optimizer.step()`` with ``optimizer.lr = schedule(step)``
    (``schedule`` None keeps the optimizer's lr). Then it evaluates ``test_data`` in eval
    mode. History: one dict per epoch with ``epoch``, ``lr``, ``train_loss``,
    ``train_accuracy`` (over the epoch, in train mode), ``test_loss``, ``test_accuracy``,
    ``seconds``.

    ``checkpoint``: a path written after every epoch (see :func:`save_checkpoint`), with
    ``config`` stored in it. ``resume``: a checkpoint path to continue from; the model
    and optimizer must be built as for the original run. ``on_epoch_end(row)`` is called
    after each epoch (after the checkpoint); if it returns True, training stops there.
    The model is left in eval mode.
    """
    data = _as_dataset(data)
    test_data = None if test_data is None else _as_dataset(test_data)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    schedule = schedule or Constant(optimizer.lr)
    history, start = [], 0
    if resume is not None:
        meta = load_checkpoint(resume, model, optimizer)
        history, start = meta["history"], meta["epoch"]
        if meta.get("seed", seed) != seed:
            raise ValueError(f"fit: resume from {resume} was trained with seed "
                             f"{meta['seed']}, not {seed}")
    bar = Progress(progress)
    n_batches = math.ceil(len(data) / batch_size)
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, epoch])
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for b, (x, y) in enumerate(batches(data, batch_size, shuffle=True, rng=rng), 1):
            if augment is not None:
                x = augment(x, rng)
            optimizer.lr = schedule(optimizer.step_count)
            logits = model(x)
            loss = loss_fn(logits, y)
            model.backward(loss_fn.backward())     # overwrites every .grad: no zero_grad needed
            optimizer.step()
            total_loss += loss * len(y)
            correct += int((logits.argmax(axis=1) == y).sum())
            seen += len(y)
            bar.update(epoch, epochs, b, n_batches, total_loss / seen, correct / seen)
        row = {"epoch": epoch, "lr": optimizer.lr, "train_loss": total_loss / seen,
               "train_accuracy": correct / seen}
        if test_data is not None:
            row["test_loss"], row["test_accuracy"] = evaluate(model, test_data)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        bar.end_epoch(epochs, row)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, epoch, history, config, seed)
        if on_epoch_end is not None and on_epoch_end(row):
            break
    model.eval()
    return history


# ---- checkpoints -----------------------------------------------------------------------
class CheckpointError(ValueError):
    """A checkpoint file that is not one, holds pickled objects, or does not fit the model."""


def _model_rngs(model):
    """(module name, Generator) for every module that draws random numbers (dropout)."""
    return [(name, m.rng) for name, m in model.named_modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)]


def save_checkpoint(path, model, optimizer, epoch: int, history=(), config=None, seed=0) -> None:
    """Write an ``.npz``: ``model/<key>`` arrays, ``optimizer/velocity/<i>`` arrays and
    ``meta``, a JSON string (epoch, seed, history, config, optimizer hyperparameters and
    step count, the model's random-generator states). Written to a temporary file and
    renamed, so an interrupted save never leaves half a checkpoint."""
    state = optimizer.state_dict()
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, v in enumerate(state["velocity"]):
        if v is not None:
            arrays[f"optimizer/velocity/{i}"] = v
    meta = {"format": CHECKPOINT_FORMAT, "epoch": int(epoch), "seed": int(seed),
            "history": list(history), "config": config or {},
            "optimizer": {"hyperparameters": state["hyperparameters"],
                          "step_count": state["step_count"],
                          "num_params": len(state["velocity"])},
            "rng_states": {name: g.bit_generator.state for name, g in _model_rngs(model)}}
    arrays["meta"] = np.array(json.dumps(meta))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def load_checkpoint(path, model=None, optimizer=None) -> dict:
    """Read a checkpoint with ``allow_pickle=False`` (loading never runs code from the
    file), restore ``model`` and ``optimizer`` if given, and return the meta dict.

    Raises :class:`CheckpointError` for a file that is not a checkpoint, contains pickled
    objects, or does not match the model or optimizer (the message names the key)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a tinymobilenet checkpoint ({e})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a tinymobilenet checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: unreadable meta data ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [k for k in ("epoch", "seed", "history", "config", "optimizer", "rng_states")
               if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: meta data lacks {', '.join(missing)}")
    if model is not None:
        weights = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        try:
            model.load_state_dict(weights)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not match the model: {e}") from None
        rngs = dict(_model_rngs(model))
        for name, st in meta["rng_states"].items():
            if name not in rngs:
                raise CheckpointError(f"{path}: model has no random generator at '{name}'")
            rngs[name].bit_generator.state = st
    if optimizer is not None:
        opt = meta["optimizer"]
        velocity = [arrays.get(f"optimizer/velocity/{i}") for i in range(opt["num_params"])]
        try:
            optimizer.load_state_dict({"hyperparameters": opt["hyperparameters"],
                                       "step_count": opt["step_count"], "velocity": velocity})
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not match the optimizer: {e}") from None
    return meta


# ---- figure ----------------------------------------------------------------------------
def plot_history(history, path=None, title="MobileNetV1 on the 8x8 digits"):
    """Loss and accuracy per epoch, train and test, side by side; saved to ``path`` if
    given (and then closed, outside Jupyter, so scripts do not pile up open figures).
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3,
                 label="train (running, augmented)")
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", ms=3,
                label="train (running, augmented)")
    if history and "test_loss" in history[0]:
        ax_loss.plot(epochs, [r["test_loss"] for r in history], "s-", ms=3, label="test")
        ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in history], "s-", ms=3,
                    label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss (nats, log scale)", yscale="log",
                title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        if not _in_notebook():
            plt.close(fig)
    return fig


# ---- command line ----------------------------------------------------------------------
def _model_names():
    from .models import MODEL_NAMES
    return MODEL_NAMES


def build_model(name="mobilenet_v1", alpha=1.0, num_classes=10, in_channels=1, seed=0):
    """An image model by name (``models.MODEL_NAMES``) with width multiplier ``alpha``
    (``alpha`` of V1, ``width_mult`` of V2/V3; EfficientNet scales by its own variant name,
    so it takes only 1.0). Raises ValueError naming the problem."""
    from .models import get_model
    if name not in _model_names():
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(_model_names())}")
    kwargs = {"num_classes": num_classes, "seed": seed, "in_channels": in_channels}
    if name == "mobilenet_v1":
        kwargs["alpha"] = alpha
    elif name.startswith("mobilenet"):
        kwargs["width_mult"] = alpha
    elif alpha != 1.0:
        raise ValueError(f"{name} has no width multiplier; use --alpha 1 (or efficientnet_b1..b7)")
    return get_model(name, **kwargs)


def build_parser():
    d = DEFAULTS
    p = cli.Parser(prog="python -m tinymobilenet.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=d["model"], help=f"one of {', '.join(_model_names())}")
    p.add_argument("--alpha", type=float, default=d["alpha"], help="width multiplier")
    p.add_argument("--resolution", type=int, default=d["resolution"],
                   help="input size R (images are upsampled to R x R)")
    p.add_argument("--dataset", default=d["dataset"], choices=DATASETS)
    p.add_argument("--epochs", type=int, default=d["epochs"])
    p.add_argument("--batch-size", type=int, default=d["batch_size"])
    p.add_argument("--lr", type=float, default=d["lr"],
                   help="peak learning rate (linear warm-up, then cosine decay to 0)")
    p.add_argument("--momentum", type=float, default=d["momentum"], help="Nesterov momentum")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"],
                   help="L2 decay of conv/linear weights (never of BN parameters or biases)")
    p.add_argument("--warmup-epochs", type=float, default=d["warmup_epochs"])
    p.add_argument("--shift", type=float, default=d["shift"],
                   help="augmentation: random shifts of up to this many pixels of the "
                        "8x8 digits (scaled with the resolution; pixels of the image for "
                        "shapes); 0 turns it off")
    p.add_argument("--label-smoothing", type=float, default=d["label_smoothing"])
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--out", default=d["out"], help="directory for metrics.json and checkpoint.npz")
    p.add_argument("--resume", default=None,
                   help="checkpoint.npz of an interrupted run; its configuration (including "
                        "--out) replaces the other options")
    p.add_argument("--progress", default="auto", choices=["auto", "bar", "epoch", "none"])
    return p


def _check(p, a):
    for name, ok, want in (("alpha", a.alpha > 0 and math.isfinite(a.alpha), "> 0"),
                           ("resolution", a.resolution >= 8, ">= 8"),
                           ("epochs", a.epochs >= 1, ">= 1"),
                           ("batch-size", a.batch_size >= 1, ">= 1"),
                           ("lr", a.lr > 0 and math.isfinite(a.lr), "> 0"),
                           ("momentum", 0 <= a.momentum < 1, "in [0, 1)"),
                           ("weight-decay", a.weight_decay >= 0, ">= 0"),
                           ("warmup-epochs", 0 <= a.warmup_epochs <= a.epochs, "in [0, epochs]"),
                           ("shift", a.shift >= 0, ">= 0"),
                           ("label-smoothing", 0 <= a.label_smoothing < 1, "in [0, 1)")):
        if not ok:
            p.error(f"--{name} must be {want}, got {getattr(a, name.replace('-', '_'))}")
    try:
        build_model(a.model, a.alpha, in_channels=1)      # a cheap check of name and alpha
    except ValueError as e:
        p.error(f"--model: {e}")
    if a.resume is not None and not Path(a.resume).is_file():
        p.error(f"--resume: no such file {a.resume}")


def run(config: dict, progress="auto", resume=None, on_epoch_end=None) -> dict:
    """Train as ``config`` (the keys of :data:`DEFAULTS`) says; write ``out/metrics.json``
    and ``out/checkpoint.npz``; return the metrics. ``resume`` and ``on_epoch_end`` are
    passed to :func:`fit`."""
    c = {**DEFAULTS, **config}
    t_start = time.perf_counter()
    train, test = load_dataset(c["dataset"], c["resolution"], seed=c["seed"])
    model = build_model(c["model"], c["alpha"], len(train.classes), train.x.shape[1], c["seed"])
    steps_per_epoch = math.ceil(len(train) / c["batch_size"])
    warmup = round(c["warmup_epochs"] * steps_per_epoch)
    schedule = Warmup(Cosine(c["lr"], max(1, c["epochs"] * steps_per_epoch - warmup)), warmup)
    optimizer = SGD(param_groups(model, c["weight_decay"]), lr=c["lr"],
                    momentum=c["momentum"], nesterov=c["momentum"] > 0)
    # one pixel of the 8x8 digits is resolution/8 pixels of the upsampled image
    pixels = round(c["shift"] * c["resolution"] / 8) if c["dataset"] == "digits" else round(c["shift"])
    augment = (lambda x, rng: random_shift(x, pixels, rng)) if pixels else None
    out = Path(c["out"])
    history = fit(model, train, c["epochs"], optimizer, schedule, test_data=test,
                  batch_size=c["batch_size"], seed=c["seed"], augment=augment,
                  loss_fn=nn.CrossEntropyLoss(c["label_smoothing"]),
                  progress=progress, checkpoint=out / "checkpoint.npz", resume=resume,
                  config=c, on_epoch_end=on_epoch_end)
    test_loss, test_accuracy = evaluate(model, test)
    from .count import summary
    metrics = {"test_accuracy": test_accuracy, "test_loss": test_loss, "history": history,
               "wall_time_seconds": time.perf_counter() - t_start,
               "train_seconds": sum(r["seconds"] for r in history),
               "params": model.num_parameters(),
               "macs": summary(model, (1,) + train.x.shape[1:]).total_macs,
               "config": c, "numpy": np.__version__}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics


def main(argv=None) -> int:
    p = build_parser()
    a = p.parse_args(argv)
    _check(p, a)
    config = {k: getattr(a, k) for k in DEFAULTS}
    try:
        if a.resume is not None:                 # continue exactly the run that was saved
            config = load_checkpoint(a.resume)["config"]
        m = run(config, progress=None if a.progress == "none" else a.progress, resume=a.resume)
    except CheckpointError as e:
        p.error(str(e))
    print(f"test accuracy {100 * m['test_accuracy']:.2f} %  ({len(m['history'])} epochs, "
          f"{m['wall_time_seconds']:.1f} s)  -> {Path(a.out) / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
