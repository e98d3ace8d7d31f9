"""Batch-norm folding: merge each conv -> BatchNorm pair into one conv with a bias.

In eval mode BatchNorm is a fixed affine map per output channel c::

    BN(z)_c = gamma_c * (z_c - mean_c) / sqrt(var_c + eps) + beta_c  =  s_c * z_c + t_c,
    s_c = gamma_c / sqrt(var_c + eps),   t_c = beta_c - s_c * mean_c

and a convolution is linear in its weights, so ``BN(conv(x; W, b))`` equals
``conv(x; W', b')`` with ``W'[c] = s_c * W[c]`` (every weight that feeds output channel c)
and ``b'_c = s_c * b_c + t_c``. Inference then skips BN entirely: per pair it saves the
normalisation work and 2 C trainable parameters (gamma, beta) for C new bias values, plus
the 2 C running-statistics buffers.

The same algebra folds ``Linear`` and group-wise dense layers followed by ``BatchNorm1d``.
Folding is for inference: the folded model has no BatchNorm left to train.
"""

from __future__ import annotations

import copy

import numpy as np

from .. import nn

__all__ = ["fold_batchnorm", "fold_pair"]


def _foldable(layer) -> bool:
    return isinstance(layer, (nn.Conv2d, nn.Linear, nn.GroupedLinear))


def fold_pair(layer, bn) -> None:
    """Fold ``bn`` (eval statistics) into ``layer`` in place; ``layer`` gains a bias.

    layer.weight: (C, ...) with output channels first (Conv2d (C, C_in/G, K, K), Linear
    (C, D)); bn: C features. The arithmetic runs in float64 and is cast back.
    """
    w = layer.weight.data
    if bn.num_features != w.shape[0]:
        raise ValueError(f"fold_batchnorm: {bn._label()} does not match {layer._label()} "
                         f"({w.shape[0]} output channels)")
    scale = bn.weight.data.astype(np.float64) / np.sqrt(
        bn.running_var.astype(np.float64) + bn.eps)                               # (C,)
    shift = bn.bias.data.astype(np.float64) - scale * bn.running_mean.astype(np.float64)
    bias = np.zeros(w.shape[0]) if layer.bias is None else layer.bias.data.astype(np.float64)
    w_folded = w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    layer.weight = nn.Parameter(w_folded.astype(w.dtype))
    layer.bias = nn.Parameter((scale * bias + shift).astype(w.dtype))


def fold_batchnorm(model):
    """A deep copy of ``model`` with every conv (or Linear) immediately followed by a
    BatchNorm in the same ``Sequential`` folded into one layer with a bias; each folded BN
    is replaced by ``nn.Identity`` (so the remaining state-dict keys keep their names).

    The copy is put in eval mode and gives the same eval outputs as the original up to
    float round-off, with fewer parameters. The original is untouched. Returns the copy.
    """
    folded = copy.deepcopy(model).eval()
    # a BatchNorm fused with its activation folds into the conv; the activation stays
    nn.unfuse_batchnorm_activation(folded)
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            layer, bn = module._modules[first], module._modules[second]
            if _foldable(layer) and isinstance(bn, (nn.BatchNorm2d, nn.BatchNorm1d)):
                fold_pair(layer, bn)
                setattr(module, second, nn.Identity())    # same position in the Sequential
    folded.zero_grad()
    return folded
