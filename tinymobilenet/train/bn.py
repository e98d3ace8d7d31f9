"""Precise BatchNorm: running statistics re-estimated from the weights as they are now.

In training, BatchNorm normalises with the statistics of the batch; in eval mode with its
*running* statistics, an exponential moving average updated after every training step::

    running = (1 - momentum) * running + momentum * batch_statistic

The average remembers about 1/momentum steps, but the weights change at every step, so it
mixes statistics of many *older* networks. torchvision's MobileNetV3 and EfficientNet use
momentum 0.01 (the ImageNet recipe: hundreds of thousands of steps): after a few hundred
steps on a small data set the running statistics still describe the random initial
weights, eval-mode features come out wrong by orders of magnitude or collapse to a
constant, and the test accuracy is chance while the training accuracy is high.

The fix (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021, section 3; fvcore's
``update_bn_stats``; ``torch.optim.swa_utils.update_bn``): before evaluating, run a few
training batches forward through the *current* weights in train mode and set every
running statistic to their plain average (a cumulative average: batch k enters with
momentum 1/k, so k batches weigh equally). The models keep their own momentum (restored
afterwards), so their weights and state dicts stay those of torchvision.

Choices made here:

- dropout and stochastic depth off while estimating: they are off in eval, so the
  statistics must be those of the network without them;
- augmentation off: eval sees unaugmented images, so the statistics are those of
  unaugmented images (and estimating draws no random numbers, which keeps a resumed run
  identical to an uninterrupted one);
- batches of the training batch size: train-mode BatchNorm normalises each layer with its
  batch's statistics, and the network downstream was trained on exactly that;
- a fixed, seeded sample of the training set in shuffled order (a data set sorted by
  class would otherwise give the statistics of the first classes only, and batches of one
  class, unlike the shuffled batches of training).
"""

from __future__ import annotations

import numpy as np

from .. import nn
from ..data import Dataset, batches

__all__ = ["precise_bn", "batchnorm_layers", "random_layers"]


def batchnorm_layers(model) -> list:
    """Every BatchNorm1d/2d of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]


def random_layers(model) -> list:
    """(name, module) of every module that draws random numbers in training (dropout,
    stochastic depth): the ones that hold a ``numpy.random.Generator``."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(getattr(m, "rng", None), np.random.Generator)]


def precise_bn(model, data: Dataset, images: int = 512, batch_size: int = 32,
               seed: int = 0) -> int:
    """Set every BatchNorm's running mean and variance to their average over batches of
    ``batch_size`` of ``images`` training samples (a seeded sample of ``data``, x (N, C, H,
    W) or (N, D)), run forward in train mode with dropout and stochastic depth off.

    Each BN's ``momentum`` and ``num_batches_tracked`` are restored, the model's mode too.
    Returns the number of samples used (0 when the model has no BatchNorm or ``images``
    is 0). Only whole batches are used, at least one: a smaller last batch would give
    noisier statistics the same weight as the others.
    """
    bns = batchnorm_layers(model)
    if not bns or images <= 0 or len(data) == 0:
        return 0
    batch_size = min(batch_size, len(data))
    n = max(batch_size, min(int(images), len(data)) // batch_size * batch_size)
    idx = np.random.default_rng(seed).permutation(len(data))[:n]
    saved = [(m.momentum, m.num_batches_tracked) for m in bns]
    was_training = model.training
    model.train()
    for _, m in random_layers(model):
        m.train(False)
    try:
        for k, (x, _) in enumerate(batches(data[idx], batch_size), 1):
            for m in bns:
                m.momentum = 1.0 / k      # cumulative average: batch 1 replaces, k weighs 1/k
            model(x)
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum, m.num_batches_tracked = momentum, tracked
        model.train(was_training)
    return n
