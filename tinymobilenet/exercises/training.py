"""Chapter 9: one step of SGD with momentum and weight decay, against ``optim.SGD``."""

from __future__ import annotations

import numpy as np

from .. import nn, optim
from ._checking import expect_array, expect_tuple, rng
from .registry import exercise

__all__ = ["check_sgd_step"]


@exercise("9.1", "sgd_step(w, grad, velocity, lr, momentum, weight_decay) -> (w, velocity)",
          difficulty=1, points=1, tol=1e-12)
def check_sgd_step(fn):
    """Check ``fn(w, grad, velocity, lr, momentum, weight_decay) -> (w, velocity)``, one step of
    SGD with momentum and L2 weight decay, against :class:`tinymobilenet.optim.SGD` over a few
    steps (the velocity starts at zero)::

        g = grad + weight_decay * w;   v = momentum * v + g;   w = w - lr * v
    """
    def case(lr, mom, wd, steps, seed):
        r = rng(seed)
        w0 = r.standard_normal(7)
        grads = r.standard_normal((steps, 7))
        w, v = w0.copy(), np.zeros(7)
        p = nn.Parameter(w0.copy())
        reference = optim.SGD([p], lr=lr, momentum=mom, weight_decay=wd)
        for g in grads:
            w, v = expect_tuple(fn(w.copy(), g.copy(), v.copy(), lr, mom, wd), ("w", "velocity"))
            expect_array("w", w, p.data, np.inf, "(the shape of w)")
            expect_array("velocity", v, p.data, np.inf, "(the shape of w)")
            p.grad = g.copy()
            reference.step()
        return expect_array("w after the last step", w, p.data, 1e-12)
    return [
        ("plain SGD (momentum 0, no weight decay)", "w = w - lr * grad",
         lambda: case(0.1, 0.0, 0.0, 3, 0)),
        ("momentum 0.9", "the velocity remembers past gradients: v = momentum * v + grad, then "
         "w = w - lr * v (PyTorch's form, no (1 - momentum) damping)",
         lambda: case(0.1, 0.9, 0.0, 5, 1)),
        ("momentum 0.9 and weight decay 1e-2", "weight decay adds weight_decay * w to the "
         "gradient before it enters the velocity", lambda: case(0.05, 0.9, 1e-2, 5, 2)),
    ]
