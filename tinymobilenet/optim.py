"""Stochastic gradient descent and learning-rate schedules.

The update of :class:`SGD` for one parameter ``w`` with gradient ``g`` (PyTorch's
``torch.optim.SGD``, dampening 0)::

    g = g + weight_decay * w                 # L2 penalty (weight_decay/2) * |w|^2
    v = momentum * v + g                     # velocity; v = g on the first step
    g = g + momentum * v  if nesterov else v # Nesterov: look one step ahead
    w = w - lr * g

A schedule is any callable ``schedule(step) -> lr``; ``step`` counts optimizer updates
from 0. :func:`fit <tinymobilenet.train.fit>` sets ``optimizer.lr = schedule(step)`` before
every update. Schedules hold no state, so a checkpoint only needs the step count.

    Constant(lr)                                lr
    StepDecay(lr, step_size, gamma=0.1)         lr * gamma ** (step // step_size)
    Cosine(lr, total_steps, min_lr=0)           min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2,
                                                t = step / total_steps (clipped at 1)
    Warmup(schedule, warmup_steps, start_factor=0.1)
                                                ramps linearly from start_factor * schedule(0)
                                                to schedule(0), then follows
                                                schedule(step - warmup_steps)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SGD", "param_groups", "Constant", "StepDecay", "Cosine", "Warmup"]


def param_groups(model, weight_decay: float, decay_norm_and_bias: bool = False):
    """Split a model's parameters into a decayed and an undecayed group for :class:`SGD`.

    BatchNorm's gamma/beta and every bias are 1-D; weights of convolutions and linear
    layers have two or more axes. Decaying the 1-D ones pulls BN scales towards 0, which
    only fights the normalisation, so by default they get ``weight_decay=0``.

        SGD(param_groups(model, 5e-4), lr=0.1, momentum=0.9)
    """
    named = list(model.named_parameters())
    if decay_norm_and_bias:
        return [{"params": [p for _, p in named], "weight_decay": weight_decay}]
    return [
        {"params": [p for _, p in named if p.data.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for _, p in named if p.data.ndim <= 1], "weight_decay": 0.0},
    ]


class SGD:
    """SGD with momentum, Nesterov momentum and weight decay (``torch.optim.SGD`` semantics).

    ``params``: an iterable of :class:`~tinymobilenet.nn.Parameter`, or of groups
    ``{"params": [...], "weight_decay": float}`` (see :func:`param_groups`) whose
    ``weight_decay`` overrides the default. ``lr`` is shared by all groups; a schedule
    changes it by assigning ``optimizer.lr``. ``dampening`` d makes the velocity update
    ``v = momentum * v + (1 - d) * g`` after the first step, as in torch.

    ``ValueError`` for lr < 0, momentum outside [0, 1), weight_decay < 0, Nesterov without
    momentum or with dampening, and an empty parameter list or one that repeats a parameter.
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, dampening: float = 0.0):
        if not lr >= 0:
            raise ValueError(f"SGD: lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"SGD: weight_decay must be >= 0, got {weight_decay}")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        self.lr, self.momentum, self.nesterov = float(lr), float(momentum), bool(nesterov)
        self.weight_decay, self.dampening = float(weight_decay), float(dampening)
        params = list(params)
        if params and isinstance(params[0], dict):
            self.params, self.decays = [], []
            for group in params:
                decay = float(group.get("weight_decay", self.weight_decay))
                for p in group["params"]:
                    self.params.append(p)
                    self.decays.append(decay)
        else:
            self.params = params
            self.decays = [self.weight_decay] * len(params)
        if not self.params:
            raise ValueError("SGD: got an empty parameter list")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("SGD: a parameter appears more than once")
        self.velocity = [None] * len(self.params)   # momentum buffers, created on first step
        self.step_count = 0

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to zeros."""
        for p in self.params:
            p.grad = np.zeros_like(p.data)

    def step(self) -> None:
        """Apply one update to every parameter from its ``.grad``."""
        lr, mu = self.lr, self.momentum
        for i, (p, decay) in enumerate(zip(self.params, self.decays)):
            g = p.grad
            if decay:
                g = g + decay * p.data
            if mu:
                v = self.velocity[i]
                if v is None:
                    v = self.velocity[i] = g.copy()
                else:
                    v *= mu
                    v += (1.0 - self.dampening) * g if self.dampening else g
                g = g + mu * v if self.nesterov else v
            p.data -= lr * g                # in place: keeps the dtype (float32 stays float32)
        self.step_count += 1

    # ---- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"hyperparameters": {...}, "step_count": int, "velocity": [ndarray or None]}``."""
        return {
            "hyperparameters": {"lr": self.lr, "momentum": self.momentum,
                                "weight_decay": self.weight_decay, "nesterov": self.nesterov,
                                "dampening": self.dampening, "decays": list(self.decays)},
            "step_count": self.step_count,
            "velocity": [None if v is None else v.copy() for v in self.velocity],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned; checks the parameter count and shapes."""
        velocity = list(state["velocity"])
        if len(velocity) != len(self.params):
            raise ValueError(f"SGD.load_state_dict: state has {len(velocity)} parameters, "
                             f"this optimizer has {len(self.params)}")
        for i, (v, p) in enumerate(zip(velocity, self.params)):
            if v is not None and np.shape(v) != p.data.shape:
                raise ValueError(f"SGD.load_state_dict: velocity {i} has shape {np.shape(v)}, "
                                 f"parameter has {p.data.shape}")
        h = state["hyperparameters"]
        if len(h["decays"]) != len(self.params):
            raise ValueError("SGD.load_state_dict: weight-decay groups do not match")
        self.lr, self.momentum, self.nesterov = float(h["lr"]), float(h["momentum"]), bool(h["nesterov"])
        self.weight_decay, self.dampening = float(h["weight_decay"]), float(h["dampening"])
        self.decays = [float(d) for d in h["decays"]]
        self.velocity = [None if v is None else np.array(v, dtype=p.data.dtype)
                         for v, p in zip(velocity, self.params)]
        self.step_count = int(state["step_count"])

    def __repr__(self):
        return (f"SGD(lr={self.lr:g}, momentum={self.momentum:g}, nesterov={self.nesterov}, "
                f"weight_decay={self.weight_decay:g}, {len(self.params)} parameters)")


# ---- learning-rate schedules: step -> lr ----------------------------------------------
class Constant:
    """lr at every step."""

    def __init__(self, lr: float):
        self.lr = float(lr)

    def __call__(self, step: int) -> float:
        return self.lr

    def __repr__(self):
        return f"Constant(lr={self.lr:g})"


class StepDecay:
    """Multiply lr by ``gamma`` every ``step_size`` steps (``torch.optim.lr_scheduler.StepLR``)."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"StepDecay: step_size must be >= 1, got {step_size}")
        self.lr, self.step_size, self.gamma = float(lr), int(step_size), float(gamma)

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def __repr__(self):
        return f"StepDecay(lr={self.lr:g}, step_size={self.step_size}, gamma={self.gamma:g})"


class Cosine:
    """Half a cosine from ``lr`` down to ``min_lr`` over ``total_steps``, then ``min_lr``
    (``torch.optim.lr_scheduler.CosineAnnealingLR`` with ``T_max=total_steps``)."""

    def __init__(self, lr: float, total_steps: int, min_lr: float = 0.0):
        if total_steps < 1:
            raise ValueError(f"Cosine: total_steps must be >= 1, got {total_steps}")
        self.lr, self.total_steps, self.min_lr = float(lr), int(total_steps), float(min_lr)

    def __call__(self, step: int) -> float:
        t = min(step, self.total_steps) / self.total_steps
        return self.min_lr + (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * t)) / 2.0

    def __repr__(self):
        return f"Cosine(lr={self.lr:g}, total_steps={self.total_steps}, min_lr={self.min_lr:g})"


class Warmup:
    """Linear warm-up in front of another schedule.

    For ``step < warmup_steps`` the lr grows linearly from ``start_factor * schedule(0)``
    to ``schedule(0)``; afterwards it is ``schedule(step - warmup_steps)`` (torch's
    ``SequentialLR([LinearLR(start_factor), schedule], milestones=[warmup_steps])``).
    A large lr on random weights can blow up BatchNorm statistics; warm-up avoids that.
    """

    def __init__(self, schedule, warmup_steps: int, start_factor: float = 0.1):
        if warmup_steps < 0:
            raise ValueError(f"Warmup: warmup_steps must be >= 0, got {warmup_steps}")
        self.schedule, self.warmup_steps = schedule, int(warmup_steps)
        self.start_factor = float(start_factor)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            f = self.start_factor + (1.0 - self.start_factor) * step / self.warmup_steps
            return f * self.schedule(0)
        return self.schedule(step - self.warmup_steps)

    def __repr__(self):
        return (f"Warmup({self.schedule!r}, warmup_steps={self.warmup_steps}, "
                f"start_factor={self.start_factor:g})")
