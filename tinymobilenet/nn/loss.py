"""Loss modules."""

from __future__ import annotations

import numpy as np

from .. import functional as F
from .layers import check_input
from .module import Module

__all__ = ["CrossEntropyLoss"]


class CrossEntropyLoss(Module):
    """Mean softmax cross-entropy, like ``torch.nn.CrossEntropyLoss``.

    ``forward(logits (N, K), targets (N,) ints) -> float``, the mean over the batch;
    ``backward() -> dL/dlogits`` (N, K), in the logits' dtype. A loss is where
    backpropagation starts, so it needs no upstream gradient; ``backward(dy)`` with a
    number dy scales it (a weighted loss).
    """

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], "
                             f"got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self._cache = None

    def extra_repr(self):
        return f"label_smoothing={self.label_smoothing}" if self.label_smoothing else ""

    def __call__(self, logits, targets):
        return self.forward(logits, targets)

    def forward(self, logits, targets):
        check_input("CrossEntropyLoss", logits, ndim=2, axes="N, K")
        try:
            loss, cache = F.softmax_cross_entropy_forward(
                logits, np.asarray(targets), self.label_smoothing)
            self._cache = self._keep(cache)
        except (ValueError, TypeError) as e:
            raise type(e)(str(e).replace("cross_entropy", "CrossEntropyLoss")) from None
        return loss

    def backward(self, dy=None):
        """dL/dlogits (N, K); ``dy``: the gradient of what the loss feeds, a number (1 if
        None)."""
        d = F.softmax_cross_entropy_backward(self._cached(self._cache))
        if dy is None:
            return d
        if np.ndim(dy) != 0 or not np.issubdtype(np.asarray(dy).dtype, np.number):
            raise TypeError(f"CrossEntropyLoss: dy must be a number (the loss is a scalar), "
                            f"got {type(dy).__name__}"
                            + (f" of shape {np.shape(dy)}" if np.ndim(dy) else ""))
        return d * d.dtype.type(dy)
