"""Shared helpers for the tests."""

import numpy as np
import pytest

from tinymobilenet import gradcheck


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


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(params=["banded", "multiply-add"])
def depthwise_path(request, monkeypatch):
    """Run a depthwise test twice: every stride-1 "same" case through the banded-matrix
    kernel, then every case through the K*K multiply-add kernels (the default picks by
    width, so small test images would otherwise never reach the second)."""
    from tinymobilenet.functional import depthwise
    monkeypatch.setattr(depthwise, "BANDED_WIDTH", 10 ** 6 if request.param == "banded" else 0)
    return request.param
