"""Inference without a backward pass: ``with nn.no_grad(): y = model(x)``.

A forward pass normally caches what ``backward`` will need (each layer's input, batch
norm's statistics, ...). When nothing will run backward -- predicting, evaluating, timing
inference -- that is wasted memory, and it also rules out three speed-ups. Inside
``no_grad()`` (in this thread, as ``torch.no_grad``):

- layers keep no cache, so every intermediate array is freed as soon as the next layer
  has read it (``backward`` afterwards raises an error that says why);
- in a ``Sequential``, a convolution, the ``BatchNorm`` after it and a ReLU, ReLU6, SiLU
  or h-swish after that run as a convolution with the batch norm's scale folded into its
  weights and one pass for the rest (:func:`.fusion.forward_fused`), with no change to
  the model;
- a squeeze-and-excitation block computes its gate without its four layers' per-call
  bookkeeping, and for one image folds it into the next 1x1 convolution's weights
  (:meth:`.blocks.SqueezeExcitation._gate_no_grad`, :func:`.fusion._excite_conv`);
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


# Splitting a batch over the threads pays only when each share's NumPy calls are long:
# every call on a short array hands the GIL back and forth between the threads. Measured
# on 2 cores (eval, MobileNetV2 / EfficientNet-B0), split time / whole time against the
# pixels (images x H x W) of one share: 16k (64 px batch 8) 1.24x / 1.17x, 26k (160 px
# batch 2) 1.07x / 1.03x, 37k (96 px batch 8) 0.98x / 0.95x, 50k (224 px batch 2) 0.88x /
# 0.85x, 65k (128 px batch 8) 0.71x / 0.70x, 147k (96 px batch 32) 0.66x / 0.68x.
# So a batch is split into shares of at least this many pixels.
SPLIT_MIN_PIXELS = 48 * 1024


def _shares(module, x) -> int:
    """Into how many shares ``module(x)`` can be split (1: not at all)."""
    from ..functional import tiling
    if tiling.threads_for() < 2:
        return 1
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 2:
        return 1
    n = min(tiling.threads_for(), x.shape[0],
            x.shape[0] * x.shape[2] * x.shape[3] // SPLIT_MIN_PIXELS)
    if n < 2:
        return 1
    # every layer in eval mode (train-mode batch norm mixes the samples, dropout draws
    # from one generator) and one of the library's own, whose eval forward treats each
    # sample on its own (a module of yours may not)
    for m in module.modules():
        if m.training or not type(m).__module__.startswith("tinymobilenet."):
            return 1
    from .. import blas
    return n if blas.controllable() else 1


def split_forward(module, x):
    """``module.forward(x)`` with the batch split into one share per thread, or None
    when the call does not qualify (see the module docstring and :func:`_shares`).

    The calling thread runs the first share, the tile threads the others; meanwhile BLAS
    runs on one thread (two threads each calling a two-thread BLAS: 1.6-2x slower than
    this, measured) and so do the tiled kernels of each share."""
    n = _shares(module, x)
    if n < 2:
        return None
    from .. import blas
    from ..functional import tiling
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
