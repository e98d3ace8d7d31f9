"""Inference without a backward pass: ``with nn.no_grad(): y = model(x)``.

A forward pass normally caches what ``backward`` will need (each layer's input, batch
norm's statistics, ...). When nothing will run backward -- predicting, evaluating, timing
inference -- that is wasted memory, and it also rules out two speed-ups. Inside
``no_grad()`` (in this thread, as ``torch.no_grad``):

- layers keep no cache, so every intermediate array is freed as soon as the next layer
  has read it (``backward`` afterwards raises an error that says why);
- a ``BatchNorm`` directly followed by ReLU, ReLU6, SiLU or h-swish in a ``Sequential``
  runs as one fused pass (:mod:`.fusion`), with no change to the model;
- a batch of images in eval mode is split over the threads (:func:`split_forward`): each
  thread runs the whole network on its share of the batch.

The results equal a plain forward pass up to float round-off (another computation order).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numpy as np

__all__ = ["no_grad", "is_grad_enabled", "split_forward", "forward", "SPLIT_MIN_PIXELS"]

_state = threading.local()      # .enabled (grad mode), .inside (a module's forward runs)


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():`` in this thread: layers then keep no cache."""
    return getattr(_state, "enabled", True)


@contextmanager
def no_grad():
    """Forward passes inside the block keep nothing for a backward pass (see the module
    docstring); nestable, restores the previous mode on exit."""
    previous = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous


# Splitting a batch over two threads pays only when the NumPy calls are long: each call
# on a short array hands the GIL back and forth between the threads. Measured on 2
# cores (MobileNetV2, eval): 224 px batch 8 0.63x and batch 2 0.83x the time of the
# unsplit two-thread run; 64 px batch 8 1.13x and 32 px batch 2 1.9x (slower). So only
# images of at least this many pixels (H * W) are split.
SPLIT_MIN_PIXELS = 112 * 112


def _splittable(module, x) -> bool:
    """Can ``module(x)`` run as one forward per share of the batch, on threads?"""
    from ..functional import tiling
    if tiling.threads_for() < 2:
        return False
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 2:
        return False
    if x.shape[2] * x.shape[3] < SPLIT_MIN_PIXELS:
        return False
    # every layer in eval mode (train-mode batch norm mixes the samples, dropout draws
    # from one generator) and one of the library's own, whose eval forward treats each
    # sample on its own (a module of yours may not)
    for m in module.modules():
        if m.training or not type(m).__module__.startswith("tinymobilenet."):
            return False
    from .. import blas
    return blas.controllable()


def split_forward(module, x):
    """``module.forward(x)`` with the batch split into one share per thread, or None
    when the call does not qualify (see the module docstring and :func:`_splittable`).

    The calling thread runs the first share, the tile threads the others; meanwhile BLAS
    runs on one thread (two threads each calling a two-thread BLAS: 1.6-2x slower than
    this, measured) and so do the tiled kernels of each share."""
    if not _splittable(module, x):
        return None
    from .. import blas
    from ..functional import tiling
    n = min(tiling.num_threads(), x.shape[0])
    bounds = [x.shape[0] * k // n for k in range(n + 1)]
    shares = [x[bounds[k]:bounds[k + 1]] for k in range(n)]

    def run(chunk):
        outer = is_grad_enabled(), getattr(_state, "inside", False)
        _state.enabled, _state.inside = False, True
        try:
            with tiling.serial():
                return [module.forward(share) for share in chunk]
        finally:
            _state.enabled, _state.inside = outer

    with blas.limit(1):
        outs = [y for chunk in tiling.run_tiles(run, shares) for y in chunk]
    if not all(isinstance(y, np.ndarray) for y in outs):
        raise TypeError(f"{module._label()}: a batch split needs array outputs")
    return np.concatenate(outs)


def forward(module, x):
    """``module(x)`` inside ``no_grad()``: the outermost call may split the batch over the
    threads (:func:`split_forward`); the calls it makes run as they are."""
    if getattr(_state, "inside", False):
        return module.forward(x)
    _state.inside = True
    try:
        y = split_forward(module, x)
        return module.forward(x) if y is None else y
    finally:
        _state.inside = False
