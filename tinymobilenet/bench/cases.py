"""What the benchmark times: kernels on MobileNet-typical shapes and whole training steps,
each as a :class:`Case` that builds (forward, backward) closures for tinymobilenet and,
when comparable, for PyTorch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import nn
from ..functional import conv_output_size

__all__ = ["Case", "cases", "kernel_cases", "TARGETS", "target_for"]

# Ratio targets ours / PyTorch CPU (forward + backward), per kind of operation; whole
# networks ("network") have a target per thread count (see target_for)
TARGETS = {"pointwise": 1.2, "standard": 1.5, "depthwise": 2.0, "network": 1.5}
NETWORK_TARGET_1_THREAD = 1.2


def target_for(kind: str, threads: int):
    """The ratio target of an operation of ``kind`` at ``threads`` threads (None: none)."""
    if kind == "network" and threads == 1:
        return NETWORK_TARGET_1_THREAD
    return TARGETS.get(kind)


@dataclass
class Case:
    """One benchmarked operation.

    ``make()`` builds fresh inputs and returns ``(forward, backward)`` closures for
    tinymobilenet; ``make_torch()`` the same for PyTorch (``None`` when not comparable).
    ``flops`` and ``bytes`` are per forward + backward; ``bytes`` is the least memory
    traffic (each input, output and gradient read or written once), 0 when not counted.
    """

    name: str
    kind: str                  # a key of TARGETS, or "other"
    make: object
    make_torch: object = None
    flops: float = 0.0
    bytes: float = 0.0
    activation_bytes: float = 0.0    # size of the op's input, for the memory check


def _randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _layer_pair(module, x, rng):
    """fwd/bwd closures for a tinymobilenet module on input x (float32, train mode)."""
    y = module(x)
    dy = _randn(rng, *y.shape)

    def forward():
        module(x)

    def backward():
        module.backward(dy)

    return forward, backward


def _torch_pair(fn, tensors, out_shape, rng):
    """fwd/bwd closures for PyTorch: ``fn()`` builds the graph, ``backward`` runs it.

    Every input in ``tensors`` requires a gradient, as in a training step."""
    import torch
    dy = torch.from_numpy(_randn(rng, *out_shape))
    state = {}

    def forward():
        for t in tensors:
            t.grad = None
        state["y"] = fn()

    def backward():
        state["y"].backward(dy)

    return forward, backward


def _conv_case(name, kind, N, C, Co, H, K, stride, groups=1):
    pad = (K - 1) // 2
    Ho = conv_output_size(H, K, stride, pad)
    macs = N * Co * Ho * Ho * (C // groups) * K * K
    x_bytes, y_bytes = 4 * N * C * H * H, 4 * N * Co * Ho * Ho
    w_bytes = 4 * Co * C // groups * K * K

    def make(rng):
        conv = nn.Conv2d(C, Co, K, stride, pad, groups=groups, bias=False,
                         rng=np.random.default_rng(0))
        return _layer_pair(conv, _randn(rng, N, C, H, H), rng)

    def make_torch(rng):
        import torch
        x = torch.from_numpy(_randn(rng, N, C, H, H)).requires_grad_()
        w = torch.from_numpy(_randn(rng, Co, C // groups, K, K)).requires_grad_()
        return _torch_pair(lambda: torch.nn.functional.conv2d(x, w, None, stride, pad, 1, groups),
                           [x, w], (N, Co, Ho, Ho), rng)

    # forward: 2 flops per MAC; backward: the same again for dx and for dw
    return Case(name, kind, make, make_torch, flops=6.0 * macs,
                bytes=3.0 * x_bytes + 2.0 * y_bytes + 3.0 * w_bytes, activation_bytes=x_bytes)


def _se_case(name, N, C, S, H):
    def make(rng):
        se = nn.SqueezeExcitation(C, S, rng=np.random.default_rng(0))
        return _layer_pair(se, _randn(rng, N, C, H, H), rng)

    def make_torch(rng):
        import torch
        from torchvision.ops import SqueezeExcitation
        se = SqueezeExcitation(C, S)
        x = torch.from_numpy(_randn(rng, N, C, H, H)).requires_grad_()
        return _torch_pair(lambda: se(x), [x], (N, C, H, H), rng)

    xb = 4 * N * C * H * H
    # mean + gate multiply forward, gate gradient + dx backward: ~6 flops per value
    return Case(name, "other", make, make_torch, flops=6.0 * N * C * H * H,
                bytes=5.0 * xb, activation_bytes=xb)


def _inverted_residual_case(name, N, C, E, H):
    def make(rng):
        block = nn.InvertedResidual(C, C, 1, expanded_channels=E, rng=np.random.default_rng(0))
        return _layer_pair(block, _randn(rng, N, C, H, H), rng)

    def make_torch(rng):
        import torch
        from torchvision.models.mobilenetv2 import InvertedResidual
        block = InvertedResidual(C, C, 1, E // C)
        x = torch.from_numpy(_randn(rng, N, C, H, H)).requires_grad_()
        return _torch_pair(lambda: block(x), [x], (N, C, H, H), rng)

    macs = N * H * H * (2 * C * E + 9 * E)
    return Case(name, "other", make, make_torch, flops=6.0 * macs)


def _torch_mobilenet_v1(num_classes):
    """MobileNetV1 in PyTorch, laid out like :mod:`tinymobilenet.models.mobilenet_v1`."""
    import torch.nn as tnn
    from ..models.mobilenet_v1 import V1_BLOCKS

    def cbr(ci, co, k, s, g):
        return [tnn.Conv2d(ci, co, k, s, (k - 1) // 2, groups=g, bias=False),
                tnn.BatchNorm2d(co), tnn.ReLU()]

    layers, c = cbr(3, 32, 3, 2, 1), 32
    for co, s in V1_BLOCKS:
        layers += cbr(c, c, 3, s, c) + cbr(c, co, 1, 1, 1)
        c = co
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(),
                          tnn.Linear(c, num_classes))


def training_step(model, x, y, lr=1e-4):
    """(forward, backward) closures of one training step of our ``model`` on x, y:
    forward and cross-entropy, then backward and a plain SGD update."""
    loss = nn.CrossEntropyLoss()
    params = model.parameters()

    def forward():
        loss(model(x), y)

    def backward():
        model.backward(loss.backward())
        for p in params:
            p.data -= lr * p.grad

    return forward, backward


def torch_training_step(model, x, y, lr=1e-4):
    """The same step in PyTorch for a torch ``model`` and NumPy x, y."""
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    state = {}

    def forward():
        opt.zero_grad()
        state["loss"] = torch.nn.functional.cross_entropy(model(xt), yt)

    def backward():
        state["loss"].backward()
        opt.step()

    return forward, backward


def _model_case(name, kind, build, build_torch, N, size, num_classes=1000, lr=1e-4):
    """A full training step: forward, cross-entropy, backward, SGD update."""

    def batch(rng):
        return _randn(rng, N, 3, size, size), rng.integers(0, num_classes, N)

    def make(rng):
        return training_step(build(), *batch(rng), lr)

    def make_torch(rng):
        return torch_training_step(build_torch(), *batch(rng), lr)

    from ..count import summary
    flops = 3.0 * 2.0 * summary(build(), (N, 3, size, size)).total_macs
    return Case(name, kind, make, make_torch, flops=flops)


def kernel_cases(quick: bool = False) -> list[Case]:
    """The single operations: MobileNet-typical shapes (batch 16, 56x56 and 14x14
    activations, 32-512 channels), or tiny ones with ``quick``; and a MobileNetV1 training
    step (torchvision has no V1: its PyTorch twin is built here, with its own weights)."""
    if quick:
        N, big, small, model_n, model_size = 2, 16, 8, 2, 32
    else:
        N, big, small, model_n, model_size = 16, 56, 14, 8, 96
    from .. import models
    return [
        _conv_case(f"pointwise 144->24 {big}x{big}", "pointwise", N, 144, 24, big, 1, 1),
        _conv_case(f"pointwise 512->512 {small}x{small}", "pointwise", N, 512, 512, small, 1, 1),
        _conv_case(f"standard 3x3 s1 32->64 {big}x{big}", "standard", N, 32, 64, big, 3, 1),
        _conv_case(f"standard 3x3 s2 32->64 {big}x{big}", "standard", N, 32, 64, big, 3, 2),
        _conv_case(f"depthwise 3x3 s1 144 {big}x{big}", "depthwise", N, 144, 144, big, 3, 1, 144),
        _conv_case(f"depthwise 3x3 s2 144 {big}x{big}", "depthwise", N, 144, 144, big, 3, 2, 144),
        _conv_case(f"depthwise 3x3 s1 512 {small}x{small}", "depthwise", N, 512, 512, small, 3, 1,
                   512),
        _conv_case(f"depthwise 5x5 s1 480 {small}x{small}", "depthwise", N, 480, 480, small, 5, 1,
                   480),
        _conv_case(f"depthwise 5x5 s2 240 {2 * small}x{2 * small}", "depthwise", N, 240, 240,
                   2 * small, 5, 2, 240),
        _se_case(f"squeeze-excitation 480->120 {small}x{small}", N, 480, 120, small),
        _inverted_residual_case(f"inverted residual 24->144->24 {big}x{big}", N, 24, 144, big),
        _model_case(f"MobileNetV1 training step {model_size}px batch {model_n}", "other",
                    lambda: models.mobilenet_v1(num_classes=1000),
                    lambda: _torch_mobilenet_v1(1000), model_n, model_size),
    ]


def cases(quick: bool = False, suite: str = "all") -> list[Case]:
    """The benchmarked cases of ``suite``: "kernels" (:func:`kernel_cases`), "networks"
    (:func:`.networks.network_cases`) or "all"."""
    from .networks import network_cases
    if suite not in ("kernels", "networks", "all"):
        raise ValueError(f"bench: suite must be kernels, networks or all, got {suite!r}")
    out = kernel_cases(quick) if suite in ("kernels", "all") else []
    if suite in ("networks", "all"):
        out += network_cases(quick)
    return out
