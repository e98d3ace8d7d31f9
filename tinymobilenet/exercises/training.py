"""Chapter 9: one step of SGD with momentum and weight decay, against ``optim.SGD``."""

from __future__ import annotations

import numpy as np

from .. import nn, optim
from ._checking import Mismatch, expect_array, expect_tuple, may_update, rng
from .registry import exercise

__all__ = ["check_sgd_step"]


@exercise("9.1", "sgd_step(w, grad, velocity, lr, momentum, weight_decay) -> (w, velocity)",
          difficulty=1, points=1, tol=1e-12)
@may_update("w", "velocity")            # a step may update its state in place, as optim.SGD does
def check_sgd_step(fn):
    """Check ``fn(w, grad, velocity, lr, momentum, weight_decay) -> (w, velocity)``, one step of
    SGD with momentum and L2 weight decay, against :class:`tinymobilenet.optim.SGD` over a few
    steps (the velocity starts at zero), and the velocity it returns against that formula::

        g = grad + weight_decay * w;   v = momentum * v + g;   w = w - lr * v

    ``w`` and ``velocity`` may be updated in place (``grad`` may not).
    """
    def case(lr, mom, wd, steps, seed):
        r = rng(seed)
        w0 = r.standard_normal(7)
        grads = r.standard_normal((steps, 7))
        w, v = w0.copy(), np.zeros(7)
        p = nn.Parameter(w0.copy())
        reference = optim.SGD([p], lr=lr, momentum=mom, weight_decay=wd)
        velocity = np.zeros(7)
        for g in grads:
            w, v = expect_tuple(fn(w.copy(), g.copy(), v.copy(), lr, mom, wd), ("w", "velocity"))
            expect_array("w", w, p.data, np.inf, "(the shape of w)")
            expect_array("velocity", v, p.data, np.inf, "(the shape of w)")
            velocity = mom * velocity + (g + wd * p.data)
            p.grad = g.copy()
            reference.step()
        err = expect_array("w after the last step", w, p.data, 1e-12)
        try:
            return max(err, expect_array("velocity after the last step", v, velocity, 1e-12))
        except Mismatch as e:
            e.hint = ("w is right but the velocity is not the formula's: return v = momentum * "
                      "v + grad + weight_decay * w, without lr in it (lr multiplies v only in "
                      "the update of w); under a learning-rate schedule lr changes from step "
                      "to step, and a velocity that holds lr * v or -lr * v gives other steps")
            raise
    return [
        ("plain SGD (momentum 0, no weight decay)", "w = w - lr * grad",
         lambda: case(0.1, 0.0, 0.0, 3, 0)),
        ("momentum 0.9", "the velocity remembers past gradients: v = momentum * v + grad, then "
         "w = w - lr * v (PyTorch's form, no (1 - momentum) damping)",
         lambda: case(0.1, 0.9, 0.0, 5, 1)),
        ("momentum 0.9 and weight decay 1e-2", "weight decay adds weight_decay * w to the "
         "gradient before it enters the velocity", lambda: case(0.05, 0.9, 1e-2, 5, 2)),
    ]
