"""The gradient checker itself: it passes correct backward passes and catches wrong ones."""

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet import gradcheck, nn

from conftest import randn

# the chapters these tests back (select with: pytest -m ch02)
pytestmark = [pytest.mark.ch02]



@pytest.mark.parametrize("error", [1e-3, 1e-5])
def test_checker_catches_a_small_error_in_a_strided_depthwise_dw(error):
    """A 0.1 % error, and one of 1e-5 (a relative error of 5e-6: five times the default
    tolerance of 1e-6, which a loosened tolerance would let through)."""
    def wrong_backward(dout, cache):
        dx, dw, db = F.depthwise_conv2d_backward(dout, cache)
        return dx, dw * (1 + error), db

    inputs = {"x": randn(2, 3, 7, 7), "w": randn(3, 1, 3, 3, seed=1), "b": None}
    fwd = lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, 2, 1)
    assert gradcheck.check_function(fwd, F.depthwise_conv2d_backward, inputs, wrt=["x", "w"]).ok
    bad = gradcheck.check_function(fwd, wrong_backward, inputs, wrt=["x", "w"])
    assert not bad.ok and bad.worst_name == "w" and bad.worst_error > error / 4
    assert "FAIL" in str(bad) and "w[" in str(bad)


def test_float32_inputs_are_checked_in_float64():
    """check_function copies its arrays to float64: differences of float32 outputs would
    carry round-off far above the tolerance and call a correct backward wrong."""
    inputs = {"x": randn(2, 3, 7, 7).astype(np.float32),
              "w": randn(3, 1, 3, 3, seed=1).astype(np.float32), "b": None}
    fwd = lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, 2, 1)
    result = gradcheck.check_function(fwd, F.depthwise_conv2d_backward, inputs, wrt=["x", "w"])
    assert result.ok, str(result)


def test_numerical_gradient_is_a_central_difference():
    """(f(x + h) - f(x - h)) / 2h: for f = x^3 its error is h^2 (relative h^2 / x^2 ~ 1e-10
    here), where a one-sided difference would be off by 3h / x ~ 1e-5."""
    x = 1 + np.abs(randn(3, 4))
    G = randn(3, 4, seed=1)
    num = gradcheck.numerical_gradient(lambda: x ** 3, x, G=G)
    np.testing.assert_allclose(num, 3 * x ** 2 * G, rtol=1e-8)


def test_a_function_that_bends_within_a_few_steps_passes_and_a_wrong_one_fails():
    """sin(k x) with k = 1000: the central difference's truncation error, (h k)^2 / 6 ~ 2e-5
    of the gradient, is above the tolerance; the check measures it by doubling the step
    and passes the right backward, while a backward 1 % off still fails."""
    k = 1000.0
    fwd = lambda x: (np.sin(k * x), x)
    right = lambda dout, x: dout * k * np.cos(k * x)
    inputs = {"x": randn(3, 5)}
    result = gradcheck.check_function(fwd, right, inputs)
    assert result.ok and result.resolved_by_uncertainty > 0, str(result)
    assert not gradcheck.check_function(fwd, lambda d, x: 1.01 * right(d, x), inputs).ok


def test_sampled_entries_are_spread_over_the_array():
    """With max_elements the checked entries are a random sample, not the first ones: a dw
    that is right only in its first entries fails."""
    def wrong_backward(dout, cache):
        dx, dw, db = F.depthwise_conv2d_backward(dout, cache)
        dw.reshape(-1)[6:] *= 1.01
        return dx, dw, db

    inputs = {"x": randn(2, 3, 7, 7), "w": randn(3, 1, 3, 3, seed=1), "b": None}
    fwd = lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, 2, 1)
    bad = gradcheck.check_function(fwd, wrong_backward, inputs, wrt=["x", "w"], max_elements=6)
    assert not bad.ok and bad.worst_name == "w" and bad.checked == 12


def test_random_upstream_gradient_catches_a_batchnorm_bug_that_all_ones_hides():
    """With G = 1 the true BN dx is exactly zero (the output's mean does not depend on x),
    and a backward that forgets the variance term (-xhat * mean(dout * xhat)) gives that
    same zero; a random G catches it, in check_function and in check_module. A backward
    that forgets every batch-statistics term fails either way."""
    x = randn(4, 3, 2, 2)
    gamma, beta = np.ones(3), np.zeros(3)

    def fwd(x):
        return F.batchnorm_forward(x, gamma, beta, np.zeros(3), np.ones(3), training=True)

    def naive_bwd(dout, cache):        # forgets that the batch statistics depend on x
        xhat, g, inv_std, *_ = cache
        return dout * (g * inv_std).reshape(1, 3, 1, 1)

    def no_variance_term(dout, cache):
        xhat, g, inv_std, *_ = cache
        centred = dout - dout.mean(axis=(0, 2, 3), keepdims=True)
        return centred * (g * inv_std).reshape(1, 3, 1, 1)

    out, cache = fwd(x)
    true_dx, _, _ = F.batchnorm_backward(np.ones_like(out), cache)
    np.testing.assert_allclose(true_dx, 0, atol=1e-12)       # all-ones G: dx is exactly zero
    np.testing.assert_allclose(no_variance_term(np.ones_like(out), cache), 0, atol=1e-12)
    assert gradcheck.check_function(fwd, lambda d, c: F.batchnorm_backward(d, c)[0], {"x": x}).ok
    assert not gradcheck.check_function(fwd, naive_bwd, {"x": x}).ok
    assert not gradcheck.check_function(fwd, no_variance_term, {"x": x}).ok

    bn = nn.BatchNorm2d(3).to(np.float64)
    right = bn.backward

    def wrong(dy):
        right(dy)                      # the parameters' gradients stay right
        return no_variance_term(dy, fwd(x)[1])
    bn.backward = wrong
    bad = gradcheck.check_module(bn, x)
    assert not bad.ok and bad.worst_name == "x"


def test_the_upstream_gradient_is_random_and_not_the_caller_s_data():
    """G is a fresh standard-normal draw, from a stream apart from the caller's: data drawn
    with the same seed as the check's must not come back as G (for a BatchNorm, G = x
    makes the true dx all but vanish)."""
    x = randn(6, 5)
    seen = []

    def identity_backward(dout, cache):
        seen.append(dout.copy())
        return dout

    assert gradcheck.check_function(lambda x: (x + 0.0, None), identity_backward, {"x": x}).ok
    layer = nn.Identity()
    layer.backward = lambda dy: identity_backward(dy, None)
    assert gradcheck.check_module(layer, x).ok
    for G in seen:
        assert G.shape == x.shape and not np.allclose(G, x)
        assert np.unique(G).size == G.size and abs(G.mean()) < 1 and 0.5 < G.std() < 2


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


@pytest.mark.parametrize("error", [1e-2, 1e-5])
def test_a_wrong_backward_inside_a_model_still_fails(error):
    """One layer's backward off by 1 % (a classic: a forgotten factor in dw) is caught, and
    so is an error of 1e-5, five times the default tolerance in relative error."""
    from tinymobilenet.models import dense
    model = dense.efficientnet(6, base_dim=8, num_classes=3, depth_multiplier=0.5).to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=3)
    model.eval()
    linear = next(m for m in model.modules() if isinstance(m, nn.Linear))
    right = linear.backward

    def wrong(dout):
        dx = right(dout)
        linear.weight.grad *= 1 + error
        return dx
    linear.backward = wrong
    x = gradcheck.dodge_kinks(model, lambda s: randn(8, 6, seed=s))
    result = gradcheck.check_module(model, x, max_elements=6)
    assert not result.ok and result.worst_name.endswith("weight")
    assert result.worst_error > error / 4


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
    assert gradcheck.kink_distance(relu, np.array([[5.0, 0.0, -7.0]])) == 0.0   # the nearest


def test_kink_distance_sees_fused_activations_and_leaves_the_model_as_it_was():
    """A BatchNorm fused with its ReLU has no ReLU of its own to cache the pre-activation:
    the distance is measured with the layers apart, then the model is fused again, with
    the running statistics its train-mode forward changed restored."""
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU()).to(np.float64)
    gradcheck.randomize_batchnorm(net, seed=1)
    x = randn(4, 2, 3, 3)
    apart = gradcheck.kink_distance(net.train(), x)
    nn.fuse_batchnorm_activation(net)
    before = net.state_dict()
    assert gradcheck.kink_distance(net, x) == apart < 1
    assert isinstance(net[1], nn.BatchNormAct2d) and isinstance(net[2], nn.Identity)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_randomize_batchnorm_moves_every_statistic_off_its_fresh_value():
    """Fresh BatchNorms (gamma 1, beta 0, mean 0, var 1) hide a backward that forgets gamma
    and an eval mode that ignores the running statistics: each of the four gets values
    of its own per channel, in the layer's dtype, with a positive variance."""
    net = nn.Sequential(nn.BatchNorm2d(4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    fresh = {name: v.copy() for name, v in net.state_dict().items()}
    gradcheck.randomize_batchnorm(net, seed=2)
    for bn in (net[0], net[2]):
        for v in (bn.weight.data, bn.bias.data, bn.running_mean, bn.running_var):
            assert v.dtype == np.float32 and np.unique(v).size == 4
        assert bn.running_var.min() > 0
    for name in ("weight", "bias", "running_mean", "running_var"):
        for layer in ("0", "2"):
            key = f"{layer}.{name}"
            assert not np.any(net.state_dict()[key] == fresh[key]), key
    np.testing.assert_array_equal(net[1].weight.data, fresh["1.weight"])   # not a BatchNorm
