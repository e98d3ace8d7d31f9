"""The gradient checker itself: it passes correct backward passes and catches wrong ones."""

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet import gradcheck, nn

from conftest import randn

# the chapters these tests back (select with: pytest -m ch02)
pytestmark = [pytest.mark.ch02]



def test_checker_catches_a_0_1_percent_error_in_a_strided_depthwise_dw():
    def wrong_backward(dout, cache):
        dx, dw, db = F.depthwise_conv2d_backward(dout, cache)
        return dx, dw * 1.001, db          # a 0.1 % error in dw

    inputs = {"x": randn(2, 3, 7, 7), "w": randn(3, 1, 3, 3, seed=1), "b": None}
    fwd = lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, 2, 1)
    assert gradcheck.check_function(fwd, F.depthwise_conv2d_backward, inputs, wrt=["x", "w"]).ok
    bad = gradcheck.check_function(fwd, wrong_backward, inputs, wrt=["x", "w"])
    assert not bad.ok and bad.worst_name == "w" and bad.worst_error > 1e-4
    assert "FAIL" in str(bad) and "w[" in str(bad)


def test_random_upstream_gradient_catches_a_batchnorm_bug_that_all_ones_hides():
    """With G = 1 the true BN dx is exactly zero (the output's mean does not depend on x), so
    a check that uses all ones tests almost nothing; a random G catches a backward that
    forgets that the batch statistics depend on x."""
    x = randn(4, 3, 2, 2)
    gamma, beta = np.ones(3), np.zeros(3)

    def fwd(x):
        return F.batchnorm_forward(x, gamma, beta, np.zeros(3), np.ones(3), training=True)

    def naive_bwd(dout, cache):        # forgets that the batch statistics depend on x
        xhat, g, inv_std, *_ = cache
        return dout * (g * inv_std).reshape(1, 3, 1, 1)

    out, cache = fwd(x)
    true_dx, _, _ = F.batchnorm_backward(np.ones_like(out), cache)
    np.testing.assert_allclose(true_dx, 0, atol=1e-12)       # all-ones G: dx is exactly zero
    assert gradcheck.check_function(fwd, lambda d, c: F.batchnorm_backward(d, c)[0], {"x": x}).ok
    assert not gradcheck.check_function(fwd, naive_bwd, {"x": x}).ok


def test_check_module_reports_location_and_restores_state():
    bn = nn.BatchNorm2d(3).to(np.float64)
    before = bn.state_dict()
    r = gradcheck.check_module(bn, randn(2, 3, 4, 4))
    assert r.ok and set(r.errors) == {"x", "weight", "bias"}
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])           # running stats restored


def test_check_module_requires_float64():
    with pytest.raises(TypeError, match="float64"):
        gradcheck.check_module(nn.Linear(3, 2), randn(2, 3))


def test_a_gradient_that_is_exactly_zero_passes():
    """A BatchNorm bias feeding a conv and a train-mode BatchNorm: a shift of the bias moves
    every output of a channel by the same amount, which the second BN removes, so the true
    gradient is exactly 0 and both sides hold round-off. The check must call it right."""
    net = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).to(np.float64)
    gradcheck.randomize_batchnorm(net, seed=1)
    result = gradcheck.check_module(net.train(), randn(4, 3, 3, 2))
    assert result.ok, str(result)
    y = net(randn(4, 3, 3, 2))
    net.backward(randn(*y.shape, seed=2))
    assert np.abs(net[0].bias.grad).max() < 1e-12                  # zero up to round-off
    assert result.resolved_by_uncertainty > 0 and "criterion" in str(result)


@pytest.mark.parametrize("train", [True, False])
def test_a_correct_dense_efficientnet_passes_in_both_modes(train):
    """Train mode: projection-BN betas with a true gradient of exactly 0; eval mode:
    squeeze-excitation weights whose gradients (~1e-7) sit near the central difference's
    round-off. An element-wise relative error called both wrong."""
    from tinymobilenet.models import dense
    model = dense.efficientnet(6, base_dim=8, num_classes=3, depth_multiplier=0.5).to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=3)
    model.train(train)
    x = gradcheck.dodge_kinks(model, lambda s: randn(8, 6, seed=s))
    result = gradcheck.check_module(model, x, max_elements=6)
    assert result.ok, str(result)


def test_a_wrong_backward_inside_a_model_still_fails():
    """One layer's backward off by 1 % (a classic: a forgotten factor in dw) is caught."""
    from tinymobilenet.models import dense
    model = dense.efficientnet(6, base_dim=8, num_classes=3, depth_multiplier=0.5).to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=3)
    model.eval()
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    right = linear.backward

    def wrong(dout):
        dx = right(dout)
        linear.weight.grad *= 1.01
        return dx
    linear.backward = wrong
    x = gradcheck.dodge_kinks(model, lambda s: randn(8, 6, seed=s))
    result = gradcheck.check_module(model, x, max_elements=6)
    assert not result.ok and result.worst_name.endswith("weight") and result.worst_error > 1e-3


def test_relative_error_scale_floor():
    a = np.array([1.0, 0.0, 2e-6])
    err, idx = gradcheck.relative_error(a, np.array([1.0, 1e-12, 2e-6 + 1e-12]))
    assert err < 1e-9                                           # round-off-sized entries pass
    err, idx = gradcheck.relative_error(a, np.array([1.0, 0.1, 0.0]))
    assert err > 0.5 and idx == 1                               # a 10 % wrong entry is caught


def test_dodge_kinks_moves_away_from_relu_kink():
    relu = nn.ReLU()

    def sample(seed):               # the first draws sit exactly on the kink
        return np.zeros((2, 3)) if seed < 3 else randn(2, 3, seed=seed)
    x = gradcheck.dodge_kinks(relu, sample)
    assert np.min(np.abs(x)) >= 1e-4
    assert gradcheck.kink_distance(relu, np.zeros((1, 2))) == 0.0
