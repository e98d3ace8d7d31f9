"""The training loop, evaluation and prediction.

    fit(model, data, epochs, optimizer, schedule, test_data=...)   -> history (one row an epoch)
    evaluate(model, data)                                           -> (loss, accuracy)
    predict(model, x)                                               -> labels (N,) or logits (N, K)

``data`` is a :class:`~tinymobilenet.data.Dataset` or a pair ``(x, y)``: images x (N, C, H, W)
for the image models, feature vectors x (N, D) for the 1-D ones, labels y (N,) ints.

Reproducibility: every random choice of epoch e (shuffle order, augmentation) comes from
``numpy.random.default_rng([seed, e])``, so it does not depend on what ran before; the
generators inside the model (dropout) are saved in the checkpoint. A resumed run is bit for
bit the uninterrupted one (same machine, same thread count).
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import nn
from ..data import Dataset, batches
from ..optim import Constant
from .bn import precise_bn as _precise_bn
from .checkpoint import load_checkpoint, save_checkpoint
from .progress import Progress

__all__ = ["fit", "evaluate", "predict", "TrainingInterrupted", "PRECISE_BN_IMAGES"]

#: training samples whose statistics replace BatchNorm's running averages before every
#: evaluation and checkpoint (see :mod:`tinymobilenet.train.bn`)
PRECISE_BN_IMAGES = 512


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`. ``epoch``: the last completed epoch whose checkpoint is
    saved (with no ``checkpoint`` path: the last completed epoch; 0: none);
    ``checkpoint``: the file holding it (None when nothing was saved); ``history``: the
    rows up to it. A ``KeyboardInterrupt``, so code that does not know it still stops."""

    def __init__(self, epoch: int, checkpoint, history: list):
        super().__init__(f"interrupted after epoch {epoch}")
        self.epoch, self.checkpoint, self.history = epoch, checkpoint, history


def as_dataset(data) -> Dataset:
    """A Dataset from a Dataset or a pair (x, y)."""
    if isinstance(data, Dataset):
        return data
    x, y = data
    return Dataset(np.asarray(x), np.asarray(y))


def predict(model, x, batch_size: int = 256, logits: bool = False) -> np.ndarray:
    """Class predictions (N,) int for x (N, C, H, W) or (N, D) of the model's dtype
    (float32 unless ``.to()`` changed it), in eval mode; with ``logits`` the raw scores
    (N, K). The model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        # no caches; BatchNorm + activation in one pass; big images split over the threads
        with nn.no_grad():
            out = [model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    out = np.concatenate(out)                                  # (N, K)
    return out if logits else out.argmax(axis=1)


def evaluate(model, data, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of ``model`` in eval mode on a Dataset or (x, y)."""
    data = as_dataset(data)
    z = predict(model, data.x, batch_size, logits=True)
    loss = nn.CrossEntropyLoss()(z, data.y)
    return float(loss), float((z.argmax(axis=1) == data.y).mean())


def fit(model, data, epochs: int, optimizer, schedule=None, *, test_data=None,
        batch_size: int = 32, seed: int = 0, augment=None, loss_fn=None,
        progress="auto", checkpoint=None, resume=None, config=None,
        on_epoch_end=None, precise_bn: int = PRECISE_BN_IMAGES,
        start_time: float | None = None) -> list[dict]:
    """Train ``model`` on ``data`` (a Dataset or (x, y)) for ``epochs`` and return the history.

    Each epoch shuffles with ``default_rng([seed, epoch])``, applies
    ``augment(x, rng) -> x`` to each batch if given, and for each mini-batch runs forward,
    loss, backward and ``optimizer.step()`` with ``optimizer.lr = schedule(step)``
    (``schedule`` None keeps the optimizer's lr). At the end of an epoch that is evaluated
    or checkpointed, and of the last one, BatchNorm's running statistics are re-estimated
    from ``precise_bn`` training samples (0 keeps the moving averages; see
    :mod:`tinymobilenet.train.bn`), then ``test_data`` is evaluated in eval mode.
    History: one dict per epoch with ``epoch``, ``lr``, ``train_loss``, ``train_accuracy``
    (over the epoch, in train mode), ``test_loss``, ``test_accuracy``, ``seconds``.
    ``loss_fn`` (default ``nn.CrossEntropyLoss()``): ``loss_fn(logits, y)
    -> float``, then ``loss_fn.backward() -> dlogits``.

    ``checkpoint``: a path written after every epoch (see :func:`save_checkpoint`), with
    ``config`` stored in it. ``resume``: a checkpoint path to continue from; the model
    and optimizer must be built as for the original run, and ``epochs`` may be larger than
    the original run's. ``on_epoch_end(row)`` is called after each epoch (after the
    checkpoint); if it returns True, training stops there. ``start_time``: the
    ``time.perf_counter()`` at which this run's work began (default: now), so that the
    checkpoint's ``wall_time_seconds`` covers setup too and adds up across resumes.

    Ctrl-C raises :class:`TrainingInterrupted` naming the last completed epoch and its
    checkpoint; a loss that is NaN or infinite ``FloatingPointError``; a ``resume`` with
    another seed or more epochs than ``epochs`` ``ValueError``. The model is left in eval
    mode.

    While it trains, every BatchNorm + ReLU/ReLU6/SiLU/h-swish pair of the model runs as
    one fused layer (``with nn.fused(model)``: the same numbers, one pass over memory
    fewer); afterwards the model has its own layers again.
    """
    with nn.fused(model):
        return _fit(model, data, epochs, optimizer, schedule, test_data, batch_size, seed,
                    augment, loss_fn, progress, checkpoint, resume, config, on_epoch_end,
                    precise_bn, start_time)


def _fit(model, data, epochs, optimizer, schedule, test_data, batch_size, seed, augment,
         loss_fn, progress, checkpoint, resume, config, on_epoch_end, precise_bn, start_time):
    start_time = time.perf_counter() if start_time is None else start_time
    data = as_dataset(data)
    test_data = None if test_data is None else as_dataset(test_data)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    schedule = schedule or Constant(optimizer.lr)
    history, start, earlier = [], 0, 0.0
    if resume is not None:
        meta = load_checkpoint(resume, model, optimizer)
        history, start = meta["history"], meta["epoch"]
        earlier = float(meta.get("wall_time_seconds", 0.0))
        if meta.get("seed", seed) != seed:
            raise ValueError(f"fit: resume from {resume} was trained with seed "
                             f"{meta['seed']}, not {seed}")
        if epochs < start:
            raise ValueError(f"fit: {resume} holds {start} epochs; epochs={epochs} cannot "
                             f"shorten it")
    bar = Progress(progress)
    n_batches = math.ceil(len(data) / batch_size)
    saved = start                         # the last epoch whose checkpoint is on disk
    try:
        for epoch in range(start + 1, epochs + 1):
            row = _one_epoch(model, data, epoch, epochs, optimizer, schedule, batch_size,
                             seed, augment, loss_fn, bar, n_batches)
            t0 = time.perf_counter()
            if precise_bn and (test_data is not None or checkpoint is not None
                               or epoch == epochs):
                _precise_bn(model, data, precise_bn, batch_size, seed)
            if test_data is not None:
                row["test_loss"], row["test_accuracy"] = evaluate(model, test_data)
            row["seconds"] += time.perf_counter() - t0
            history.append(row)
            bar.end_epoch(epochs, row)
            if checkpoint is not None:
                save_checkpoint(checkpoint, model, optimizer, epoch, history, config, seed,
                                wall_time=earlier + time.perf_counter() - start_time)
                saved = epoch
            if on_epoch_end is not None and on_epoch_end(row):
                break
    except KeyboardInterrupt:
        if checkpoint is None:            # nothing is saved: say which epoch was completed
            done = history[-1]["epoch"] if history else 0
            raise TrainingInterrupted(done, resume if done == start else None, history) from None
        where = None if saved == 0 else checkpoint if saved > start else resume
        raise TrainingInterrupted(saved, where, history[:saved]) from None
    model.eval()
    return history


def _one_epoch(model, data, epoch, epochs, optimizer, schedule, batch_size, seed, augment,
               loss_fn, bar, n_batches) -> dict:
    """One pass over ``data`` in train mode; the history row without test results."""
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
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"fit: the loss is {loss} at epoch {epoch}, batch {b}: training diverged "
                f"(lr {optimizer.lr:.3g}); try a smaller --lr or a longer warm-up")
        model.backward(loss_fn.backward())     # overwrites every .grad: no zero_grad needed
        optimizer.step()
        total_loss += loss * len(y)
        correct += int((logits.argmax(axis=1) == y).sum())
        seen += len(y)
        bar.update(epoch, epochs, b, n_batches, total_loss / seen, correct / seen)
    return {"epoch": epoch, "lr": optimizer.lr, "train_loss": total_loss / seen,
            "train_accuracy": correct / seen, "seconds": time.perf_counter() - t0}
