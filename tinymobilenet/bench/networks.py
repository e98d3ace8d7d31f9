"""Whole networks in the benchmark: training steps and eval inference, beside PyTorch.

Each case builds our model and, for ``--compare torch``, the same network in PyTorch
(torchvision's model of the same name) with *our* weights loaded into it: the state-dict
keys are torchvision's, so they load as they are. Before timing, the two outputs are
compared on the case's input (:func:`check_same_outputs`): the ratio is only meaningful
for the same computation.

    training step   forward, cross-entropy, backward, SGD update (train mode; ours with
                    BatchNorm + ReLU/ReLU6 fused, as the trainer runs it)
    inference       forward in eval mode inside ``nn.no_grad()`` (PyTorch's inside
                    ``torch.no_grad()``), as built and after ``models.fold_batchnorm``
"""

from __future__ import annotations

import numpy as np

from .. import nn
from .cases import Case, _randn, torch_training_step, training_step

__all__ = ["training_case", "inference_case", "network_cases", "check_same_outputs",
           "TRAINING_MODELS", "INFERENCE_MODELS"]

# the networks of the whole-network cases (torchvision names; see network_cases)
TRAINING_MODELS = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0")
INFERENCE_MODELS = ("mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0",
                    "efficientnet_lite0")


def _ours(name, seed=0):
    from .. import models
    return models.get_model(name, num_classes=1000, seed=seed)


def _torch_twin(name, model):
    """torchvision's ``name`` with ``model``'s weights, or None where torchvision has no
    such network (EfficientNet-Lite)."""
    import torch
    import torchvision
    factory = getattr(torchvision.models, name, None)
    if factory is None:
        return None
    twin = factory(num_classes=1000)
    twin.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                          for k, v in model.state_dict().items()})
    return twin


def check_same_outputs(ours, theirs, rtol=1e-3):
    """Raise if two outputs of the same network on the same input differ by more than
    float32 round-off through a deep network (``rtol`` of the largest logit)."""
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    scale = max(float(np.abs(theirs).max()), 1e-12)
    worst = float(np.abs(ours - theirs).max()) / scale
    if not worst <= rtol:
        raise RuntimeError(f"bench: our outputs and PyTorch's differ by {worst:.1e} of the "
                           f"largest logit: not the same computation, the ratio would mean "
                           f"nothing")
    return worst


def _macs(model, input_size):
    from ..count import summary
    return summary(model, input_size).total_macs


def training_case(name, N=8, size=96, lr=1e-4):
    """A training step of ``name`` on random images (N, 3, size, size)."""

    def make(rng):
        x, y = _randn(rng, N, 3, size, size), rng.integers(0, 1000, N)
        # BatchNorm + ReLU/ReLU6 fused, as the trainer runs a model
        return training_step(nn.fuse_batchnorm_activation(_ours(name)), x, y, lr)

    def make_torch(rng):
        import torch
        model = _ours(name)
        twin = _torch_twin(name, model)
        if twin is None:
            return None
        x, y = _randn(rng, N, 3, size, size), rng.integers(0, 1000, N)
        # same weights, same mode: the same logits (dropout off for the check)
        model.eval(), twin.eval()
        with torch.no_grad():
            check_same_outputs(model(x), twin(torch.from_numpy(x)))
        return torch_training_step(twin.train(), x, y, lr)

    flops = 3.0 * 2.0 * _macs(_ours(name), (N, 3, size, size))
    return Case(f"{name} training step {size}px batch {N}", "network", make, make_torch,
                flops=flops)


def inference_case(name, N=1, size=224, fold=False):
    """Eval-mode inference of ``name`` on random images; with ``fold`` our network runs
    with BatchNorm folded into the convolutions (PyTorch's twin runs as built)."""

    def build():
        from .. import models
        model = _ours(name).eval()
        return models.fold_batchnorm(model).eval() if fold else model

    def make(rng):
        model = build()
        x = _randn(rng, N, 3, size, size)

        def forward():
            with nn.no_grad():              # PyTorch's side runs under torch.no_grad()
                model(x)

        return forward, (lambda: None)

    def make_torch(rng):
        import torch
        model = _ours(name).eval()
        twin = _torch_twin(name, model)
        if twin is None:
            return None
        twin.eval()
        x = _randn(rng, N, 3, size, size)
        xt = torch.from_numpy(x)
        with torch.no_grad(), nn.no_grad():
            check_same_outputs(build()(x), twin(xt))

        def forward():
            with torch.no_grad():
                twin(xt)

        return forward, (lambda: None)

    flops = 2.0 * _macs(_ours(name), (N, 3, size, size))
    label = " folded" if fold else ""
    return Case(f"{name} inference{label} {size}px batch {N}", "network", make, make_torch,
                flops=flops)


def network_cases(quick: bool = False) -> list[Case]:
    """Training steps (96 px, batch 8) and inference (224 px, batch 1 and 8, as built and
    folded) of the networks above; tiny sizes with ``quick``."""
    from .. import models
    train_n, train_size = (2, 32) if quick else (8, 96)
    sizes = [(1, 32)] if quick else [(1, 224), (8, 224)]
    out = [training_case(m, train_n, train_size) for m in TRAINING_MODELS]
    for m in INFERENCE_MODELS:
        if m not in models.MODEL_NAMES:          # a network this version does not have
            continue
        for N, size in sizes:
            for fold in (False, True):
                out.append(inference_case(m, N, size, fold))
    return out
