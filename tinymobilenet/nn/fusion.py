"""Fusing a BatchNorm with the activation right after it: one pass over memory, not two.

Run apart, BatchNorm writes its whole output to memory and the activation reads it back:
one more pass over an activation-sized array, each way (forward and backward), and one
more layer call. Fused, BatchNorm applies the activation (ReLU, ReLU6, SiLU or h-swish) to
its own output while each tile is in cache (``F.batchnorm_forward(..., activation="silu")``),
and its backward applies the activation's derivative first. The arithmetic per element
is the same.

Fusion is an explicit step that changes the model's structure, the way
``torch.ao.quantization.fuse_modules`` does: in every Sequential, a ``BatchNorm2d`` (or
``BatchNorm1d``) directly followed by a ``ReLU``, ``ReLU6``, ``SiLU`` or ``HardSwish`` becomes one
:class:`BatchNormAct2d` (:class:`BatchNormAct1d`) in the BatchNorm's place, sharing its
parameters and running statistics, and the activation's place holds an ``Identity``. The
state-dict keys do not change (the activation has no state), so weights load either way.

    fuse_batchnorm_activation(model)     in place, returns model
    unfuse_batchnorm_activation(model)   in place, the layers apart again
    with fused(model): ...               fused inside the block (the trainer does this)
    with unfused(model): ...             apart inside the block (for tools that read
                                         each activation's input, e.g. kink checks)

Models are built unfused, as torchvision lays them out; the trainer and the benchmark's
training steps fuse them while they run. Inside ``no_grad()`` no step is needed, and more
is fused: every ``Sequential`` runs a convolution, its BatchNorm and its activation as a
convolution with folded weights and one pass (:func:`forward_fused`), since no backward
pass will ask for what lies between them.
"""

from __future__ import annotations

from contextlib import contextmanager

import math

import numpy as np

from .. import functional as F
from ..functional.activations import uses_tanh
from .activations import HardSwish, ReLU, ReLU6, SiLU
from .blocks import Conv2dNormActivation, SqueezeExcitation
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d
from .layers import BatchNorm1d, BatchNorm2d, Identity, check_input
from .module import Module, Sequential

__all__ = ["BatchNormAct1d", "BatchNormAct2d", "fuse_batchnorm_activation",
           "unfuse_batchnorm_activation", "fused", "unfused", "forward_fused"]

# the activations a BatchNorm can apply in its own pass (F.batchnorm_forward's names)
_FUSABLE = {ReLU: "relu", ReLU6: "relu6", SiLU: "silu", HardSwish: "hardswish"}


class _BatchNormAct:
    """BatchNorm followed by ReLU, ReLU6, SiLU or h-swish, in one pass (see the module
    docstring)."""

    activation_class = ReLU6
    plain_class = None               # the BatchNorm class this fuses (set by subclasses)

    def forward(self, x):
        return self._normalize(x, activation=_FUSABLE[self.activation_class])

    def extra_repr(self):
        return super().extra_repr() + f", activation={self.activation_class.__name__}"

    def _label(self):
        return f"{type(self).__name__}({self.num_features}, {self.activation_class.__name__})"

    @classmethod
    def of(cls, bn, activation_class):
        """The fused layer of ``bn`` and an activation of ``activation_class``: the same
        Parameter objects and running-statistics arrays (training one trains the other)."""
        fused = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum)
        fused.activation_class = activation_class
        fused.weight, fused.bias = bn.weight, bn.bias
        for name in bn._buffers:
            setattr(fused, name, getattr(bn, name))
        fused.train(bn.training)
        return fused

    def apart(self):
        """(BatchNorm, activation): the two layers again, sharing this one's state."""
        plain = self.plain_class(self.num_features, eps=self.eps, momentum=self.momentum)
        plain.weight, plain.bias = self.weight, self.bias
        for name in self._buffers:
            setattr(plain, name, getattr(self, name))
        plain.train(self.training)
        return plain, self.activation_class().train(self.training)


class BatchNormAct2d(_BatchNormAct, BatchNorm2d):
    """``BatchNorm2d`` then its activation in one pass: x (N, C, H, W) -> same shape."""
    plain_class = BatchNorm2d


class BatchNormAct1d(_BatchNormAct, BatchNorm1d):
    """``BatchNorm1d`` then its activation in one pass: x (N, C) -> same shape."""
    plain_class = BatchNorm1d


_FUSED = {BatchNorm2d: BatchNormAct2d, BatchNorm1d: BatchNormAct1d}


def fuse_batchnorm_activation(model: Module) -> Module:
    """Fuse every BatchNorm directly followed by a ReLU/ReLU6/SiLU/h-swish inside a Sequential of
    ``model``, in place; returns ``model``. Fusing a fused model changes nothing."""
    for seq in [m for m in model.modules() if isinstance(m, Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            bn, act = seq._modules[a], seq._modules[b]
            if type(bn) in _FUSED and type(act) in _FUSABLE:
                setattr(seq, a, _FUSED[type(bn)].of(bn, type(act)))
                setattr(seq, b, Identity().train(act.training))
    return model


def unfuse_batchnorm_activation(model: Module) -> Module:
    """Undo :func:`fuse_batchnorm_activation` in place; returns ``model``."""
    for seq in [m for m in model.modules() if isinstance(m, Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            fused_bn = seq._modules[a]
            if isinstance(fused_bn, _BatchNormAct) and isinstance(seq._modules[b], Identity):
                bn, act = fused_bn.apart()
                setattr(seq, a, bn)
                setattr(seq, b, act)
    return model


@contextmanager
def fused(model: Module):
    """Run ``model`` fused inside the block; its layers are apart again afterwards (if
    they were apart before)."""
    was_fused = any(isinstance(m, _BatchNormAct) for m in model.modules())
    fuse_batchnorm_activation(model)
    try:
        yield model
    finally:
        if not was_fused:
            unfuse_batchnorm_activation(model)


@contextmanager
def unfused(model: Module):
    """Run ``model`` with every fused BatchNorm + activation apart inside the block, so
    each activation module runs and caches its own input; fused again afterwards (if it
    was fused before)."""
    was_fused = any(isinstance(m, _BatchNormAct) for m in model.modules())
    unfuse_batchnorm_activation(model)
    try:
        yield model
    finally:
        if was_fused:
            fuse_batchnorm_activation(model)


# the library's own convolutions (exact types: a subclass of yours may change forward,
# which the fused path would skip)
_CONVS = (Conv2d, DepthwiseConv2d, PointwiseConv2d)


def _activation_at(mods, j):
    """(fused activation name, index after it) of the activation at ``mods[j]`` (an
    Identity in between is skipped: a folded BatchNorm leaves one), or (None, j)."""
    k = j
    while k < len(mods) and type(mods[k]) is Identity:
        k += 1
    if k < len(mods) and type(mods[k]) in _FUSABLE:
        return _FUSABLE[type(mods[k])], k + 1
    return None, j


def _conv_batchnorm(conv, bn, activation, x, w=None, fold=False):
    """``activation(bn(conv(x)))`` in eval mode with the batch norm's scale folded into
    the convolution's weights (``W' = W * scale`` per output channel), so that what is left
    is ``activation(y + shift)``: SiLU in four passes (its tanh chain's 1/2 folded into
    the weights too: :func:`_halves`), ReLU/ReLU6 in two, where the batch
    norm's own affine map costs two more. Folding costs a pass over the weights, so it is
    done only where they are smaller than half the output (the late 1x1 layers of a small
    map have more weights than outputs: there the scale stays in the affine pass), or
    always with ``fold``. ``w``: weights to use instead of the convolution's own.
    Measured (one thread, 224 px, batch 1; the two versions in alternating fresh
    processes): EfficientNet-B0 0.95x the time of running the convolution and the fused
    batch norm apart, MobileNetV2 0.97x, V3-Large 0.99x."""
    w = conv.weight.data if w is None else w
    scale, shift = bn.affine(w.dtype)
    if conv.bias is not None:                       # bn(conv + b) = conv * s + (t + s b)
        shift = shift + scale * conv.bias.data
    if fold or _fold_pays(conv, w, x):
        half = _halves(activation, w.dtype)
        if half:
            scale, shift = scale * 0.5, shift * 0.5
        y, _ = conv._run(x, w * scale.reshape(-1, 1, 1, 1), None)
        return bn._apply_affine(y, None, shift, activation, halved=half)
    y, _ = conv._run(x, w, None)
    return bn._apply_affine(y, scale, shift, activation)


def _fold_pays(conv, w, x):
    """Are the weights ``w`` smaller than half of ``conv``'s output for x (a pass over
    them then costs less than one over the output)?"""
    return 2 * w.size <= math.prod(conv.output_shape(x.shape))


def _halves(activation, dtype):
    """Does SiLU's tanh chain take this activation's input halved (so that a caller
    folding a scale into its weights folds 1/2 too, ``F.affine_activation(...,
    halved=True)``, one pass fewer)? Measured at 224 px, batch 1 (in-process A/B, medians
    of 15 rounds): EfficientNet-B0 0.982x the time at one thread, 0.979x at two."""
    return activation == "silu" and uses_tanh(dtype)


def _conv_bias(conv, activation, x, w=None):
    """``activation(conv(x))`` with the convolution's bias (if any) added in the
    activation's pass (a model after ``models.fold_batchnorm``); ``w``: weights to use
    instead of the convolution's own. (Folding SiLU's 1/2 into the weights here, as
    :func:`_conv_batchnorm` does, costs a pass over them that it does not have anyway:
    EfficientNet-B0 folded, 224 px, batch 1: 0.99-1.00x the time, so it is not done.)"""
    y, _ = conv._run(x, conv.weight.data if w is None else w, None)
    if conv.bias is None and activation is None:
        return y
    shift = np.zeros(y.shape[1], y.dtype) if conv.bias is None else conv.bias.data
    return F.affine_activation(y, None, shift, activation)


def _norm_after(mods, i):
    """(batch norm, fused activation name or None, index after them) of the eval-mode
    BatchNorm at ``mods[i + 1]`` that normalises the output of convolution ``mods[i]``,
    with the activation after it (its own, if it was fused before); else None."""
    conv, bn = mods[i], mods[i + 1] if i + 1 < len(mods) else None
    if (type(bn) not in (BatchNorm2d, BatchNormAct2d) or bn.training
            or bn.num_features != conv.out_channels):
        return None
    if isinstance(bn, _BatchNormAct):
        return bn, _FUSABLE[bn.activation_class], i + 2
    act, j = _activation_at(mods, i + 2)
    return bn, act, j


def _project_after_se(seq, x):
    """(conv, batch norm or None, activation name or None) of a Conv2dNormActivation
    ``seq`` that can take a squeeze-and-excitation gate in its weights: a library 1x1
    convolution of x's channels, then an eval-mode BatchNorm or, folded, the conv's bias
    (and an activation, or none as in a projection); else None."""
    if type(seq) is not Conv2dNormActivation:
        return None
    mods = list(seq._modules.values())
    conv = mods[0]
    if not (type(conv) in _CONVS and conv.kernel_size == 1 and conv.groups == 1
            and conv.stride == 1 and conv.padding == 0 and conv.in_channels == x.shape[1]):
        return None
    found = _norm_after(mods, 0)
    if found is not None:
        bn, act, rest = found
    elif len(mods) > 1 and type(mods[1]) in (BatchNorm2d, BatchNormAct2d):
        return None                                 # in train mode: not foldable
    else:
        bn, (act, rest) = None, _activation_at(mods, 1)
    if not all(type(m) is Identity for m in mods[rest:]):
        return None
    return conv, bn, act


def _excite_conv(se, conv, bn, activation, x):
    """``conv_block(se(x))`` for ONE image in eval mode, where conv_block is a 1x1
    convolution, its batch norm (or bias) and activation: the gate is one value per
    input channel, so it is folded into the convolution's weights, ``W' = W * gate`` per
    input column (with the batch norm's scale per output row), instead of being
    multiplied into x, a pass over the block's widest activation. (A batch would need
    weights per image.) Measured at 224 px, one thread (in-process A/B, medians of 15
    rounds): EfficientNet-B0 in 0.990x the time (folded: 0.983x), MobileNetV3-Large
    0.988x."""
    check_input(se, x, se.input_channels, dtype=se.fc1.weight.data.dtype)
    C = x.shape[1]
    w = conv.weight.data * se._gate_no_grad(x).reshape(1, C, 1, 1)
    if bn is None:
        return _conv_bias(conv, activation, x, w)
    return _conv_batchnorm(conv, bn, activation, x, w, fold=True)


def forward_fused(seq: Sequential, x):
    """``seq.forward(x)`` inside ``no_grad()``, where no backward pass needs what lies
    between a convolution, its batch norm and its activation, so they run as one:

    - a ``Conv2d`` followed by a BatchNorm in eval mode (and an activation): the batch
      norm's scale folded into the weights, then ``activation(y + shift)`` in one pass
      per tile (:func:`_conv_batchnorm`);
    - a ``Conv2d`` with a bias followed by ReLU, ReLU6, SiLU or h-swish (a model after
      ``models.fold_batchnorm``): the bias added in the activation's pass;
    - a BatchNorm followed by one of those activations: one fused pass (the model's
      structure is left as it is, unlike :func:`fuse_batchnorm_activation`);
    - for one image, a SqueezeExcitation followed by a 1x1 Conv2dNormActivation: the gate
      folded into that convolution's weights instead of multiplied into x
      (:func:`_excite_conv`).

    Only the library's own layer types are fused (a subclass may override ``forward``).
    The arithmetic per element is that of the layers apart, up to float round-off."""
    mods = list(seq._modules.values())
    i, n = 0, len(mods)
    while i < n:
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < n else None
        if type(m) in _CONVS and (found := _norm_after(mods, i)) is not None:
            bn, act, j = found
            x = _conv_batchnorm(m, bn, act, x)
        elif (type(m) in _CONVS and m.bias is not None
              and (after := _activation_at(mods, i + 1))[0] is not None):
            act, j = after
            x = _conv_bias(m, act, x)
        elif type(m) in _FUSED and nxt is not None and type(nxt) in _FUSABLE:
            x = m._normalize(x, activation=_FUSABLE[type(nxt)])
            j = i + 2
        elif (x.shape[0] == 1 and type(m) is SqueezeExcitation and m._plain()
              and (project := _project_after_se(nxt, x)) is not None
              and 2 * project[0].weight.data.size <= x.size):
            x = _excite_conv(m, *project, x)
            j = i + 2
        else:
            x = m(x)
            i += 1
            continue
        for skipped in mods[i:j]:                   # drop what an earlier pass cached
            skipped._forget()
        i = j
    return x
