"""Shared helpers for the tests."""

import numpy as np
import pytest

from tinymobilenet import gradcheck, nn


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def assert_module_grads(module, shape, *, tol=1e-6, train=True, seed=0, max_elements=None):
    """float64 gradient check of ``module`` on a kink-free input of ``shape``; returns the result."""
    module.to(np.float64)
    gradcheck.randomize_batchnorm(module, seed)
    module.train(train)
    x = gradcheck.dodge_kinks(module, lambda s: randn(*shape, seed=1000 * seed + s))
    result = gradcheck.check_module(module, x, tol=tol, seed=seed, max_elements=max_elements)
    assert result.ok, str(result)
    return result


def calibrate_batchnorm(model, x):
    """Set every BN's running statistics to the statistics of ``x`` (one train-mode pass
    with momentum 1) and switch to eval mode.

    Why: fresh weights with made-up running statistics make eval-mode activations shrink
    or blow up layer after layer (nothing renormalises them), until the output no longer
    depends on the input and the check compares round-off with round-off. Why eval mode:
    in train mode, BN makes the shift of a BN that feeds it (through a conv, no residual)
    exactly irrelevant, so those beta gradients are zero and the relative check meaningless.
    Train-mode gradients are compared with PyTorch in test_models_torch.py.
    """
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d))]
    saved = [b.momentum for b in bns]
    for b in bns:
        b.momentum = 1.0
    model.train()(x)
    for b, m in zip(bns, saved):
        b.momentum = m
    return model.eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["dense", "banded", "multiply-add", "tap matrices",
                        "tap matrices, shifts per channel"])
def depthwise_path(request, monkeypatch):
    """Run a depthwise test five times: every case through the dense per-channel
    matrices, through the banded-matrix kernel, then through the direct kernels, first with a
    product and an add per tap, then with the taps as one BLAS matrix product per
    channel wherever that path applies (stride-1 "same" from K = 3 on, as by default),
    with the tap matrices' column shifts copied for the whole tile (as small maps are by
    default) and channel by channel (as large maps are). The default picks by width, so
    small test images would otherwise never reach the direct kernels."""
    from tinymobilenet.functional import _depthwise_direct, depthwise
    monkeypatch.setattr(depthwise, "DENSE_WASTE", 10 ** 9 if request.param == "dense" else 0)
    monkeypatch.setattr(depthwise, "BANDED_WIDTH", 10 ** 6 if request.param == "banded" else 0)
    monkeypatch.setattr(_depthwise_direct, "MATMUL_K",
                        3 if request.param.startswith("tap matrices") else 10 ** 6)
    if request.param == "tap matrices, shifts per channel":
        monkeypatch.setattr(_depthwise_direct, "FLAT_SHIFTS", 0)
    return request.param


# ---- image folders (torchvision's ImageFolder layout) for the data, train and predict tests

def draw_image(label, seed, size=(12, 10), mode="L"):
    """A PIL image of class ``label``: a bright horizontal bar whose height depends on the
    class, on a noisy dark background (learnable in a few steps). ``size`` is (W, H)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    pixels = rng.integers(0, 60, (h, w)).astype(np.uint8)
    row = (label * 3 + 1) % h
    pixels[row:row + 2] = 230
    image = Image.fromarray(pixels, "L")
    if mode == "RGB":
        rgb = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)   # not a gray image
        image = Image.fromarray(rgb, "RGB")
    return image


def make_image_folder(root, classes=("bar0", "bar1", "bar2"), per_class=6, size=(12, 10),
                      mode="L", ext="png", seed=0):
    """root/<class>/<i>.<ext> images of :func:`draw_image`; returns root."""
    from pathlib import Path
    root = Path(root)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_image(k, seed * 1000 + 100 * k + i, size, mode).save(root / name / f"{i}.{ext}")
    return root


def check_model_gradients(model, shape, h=1e-6, tol=1e-5):
    """float64 check of dx and (one sampled entry of) every parameter of ``model``.

    The tolerance is 1e-5 instead of a single layer's 1e-6: the numerical gradient of a
    deep network carries the round-off of every layer it runs through. The step h=1e-6
    (not 1e-5) for networks with kinks: a step in an early weight moves activations many
    layers later by h times the gain in between, and that must stay below the 1e-4 margin
    ``dodge_kinks`` keeps from the kinks."""
    model.to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=1)
    calibrate_batchnorm(model, randn(16, *shape[1:], seed=99))
    x = gradcheck.dodge_kinks(model, lambda s: randn(*shape, seed=s))
    result = gradcheck.check_module(model, x, h=h, tol=tol, max_elements=1)
    assert result.ok, str(result)
    assert len(result.errors) == len(model.parameters()) + 1       # x and every parameter


# ---- MobileNetV1 counted by hand from the paper's Table 1 (Howard et al., 2017) -----------

# Table 1 after the first layer (a full 3x3 conv, 3 -> 32, stride 2): the 13 depthwise
# separable blocks as (output channels, stride of the depthwise 3x3)
V1_TABLE1_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]


def v1_table1_counts(resolution=224, num_classes=1000):
    """MobileNetV1 (alpha 1) written out from Table 1, independently of the library:
    {"macs", "first_conv_macs", "params"}. MACs: conv and FC multiply-accumulates (the
    paper's Mult-Adds); params: conv/FC weights, the FC bias and BatchNorm's gamma and beta
    (the convs have no bias). Output sizes by (H + 2 * 1 - 3) // stride + 1."""
    H = (resolution + 2 - 3) // 2 + 1
    first = 3 * 3 * 3 * 32 * H * H
    macs, params, C = first, 3 * 3 * 3 * 32 + 2 * 32, 32
    for c_out, stride in V1_TABLE1_BLOCKS:
        H = (H + 2 - 3) // stride + 1
        macs += 3 * 3 * C * H * H + C * c_out * H * H        # depthwise, then pointwise
        params += 3 * 3 * C + 2 * C + C * c_out + 2 * c_out  # each conv with its BN
        C = c_out
    macs += C * num_classes                                   # after the global average pool
    params += C * num_classes + num_classes
    return {"macs": macs, "first_conv_macs": first, "params": params}
