"""nn layers: gradient checks, PyTorch semantics, state dicts, dtypes and error messages."""

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet import gradcheck, nn

from conftest import assert_module_grads, randn

# the chapters these tests back (select with: pytest -m ch04)
pytestmark = [pytest.mark.ch04]


CONV_LAYERS = [  # (constructor, input shape)
    (lambda: nn.Conv2d(3, 4, 3, stride=1, padding=1), (2, 3, 7, 9)),
    (lambda: nn.Conv2d(3, 5, 5, stride=2, padding=2), (2, 3, 9, 8)),
    (lambda: nn.Conv2d(4, 6, 3, stride=3, padding=0, groups=2), (2, 4, 10, 7)),
    (lambda: nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4, bias=False), (2, 4, 7, 6)),
    (lambda: nn.Conv2d(5, 5, 3, stride=2, padding=1, groups=5), (2, 5, 7, 9)),   # depthwise path
    (lambda: nn.Conv2d(4, 3, 1), (2, 4, 5, 3)),                                   # pointwise path
    (lambda: nn.DepthwiseConv2d(4, 3, stride=2, padding=1), (2, 4, 9, 7)),
    (lambda: nn.DepthwiseConv2d(3, 5, stride=1, padding=2, bias=True), (2, 3, 6, 7)),
    (lambda: nn.PointwiseConv2d(4, 6), (3, 4, 5, 3)),
]


@pytest.mark.parametrize("make, shape", CONV_LAYERS)
def test_conv_layers_gradcheck(make, shape):
    assert_module_grads(make(), shape, tol=1e-7)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("make, shape", [(lambda: nn.BatchNorm2d(3), (4, 3, 5, 7)),
                                         (lambda: nn.BatchNorm1d(5), (6, 5))])
def test_batchnorm_gradcheck(make, shape, train):
    assert_module_grads(make(), shape, train=train, tol=1e-7)


ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.HardSigmoid, nn.HardSwish, nn.SiLU]


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_gradcheck_away_from_kinks(act):
    layer = act()
    x = 4 * randn(3, 4, 5, 6, seed=1)   # spans ReLU6's 6 and h-swish's +-3
    # move points off every kink on purpose rather than hoping the draw avoids them
    for k in act.kinks:
        near = np.abs(x - k) < 1e-3
        x[near] += 2e-3
    r = gradcheck.check_module(layer, x, tol=1e-7)
    assert r.ok, str(r)


def test_activations_match_definitions():
    x = np.linspace(-8, 8, 161)
    sig = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(nn.ReLU()(x), np.maximum(x, 0))
    np.testing.assert_allclose(nn.ReLU6()(x), np.minimum(np.maximum(x, 0), 6))
    np.testing.assert_allclose(nn.Sigmoid()(x), sig, rtol=1e-14)
    np.testing.assert_allclose(nn.HardSigmoid()(x), np.minimum(np.maximum(x + 3, 0), 6) / 6)
    np.testing.assert_allclose(nn.HardSwish()(x), x * np.minimum(np.maximum(x + 3, 0), 6) / 6)
    np.testing.assert_allclose(nn.SiLU()(x), x * sig, rtol=1e-14)
    assert np.all(np.isfinite(nn.Sigmoid()(np.array([-1e4, 1e4]))))


def test_activation_gradient_at_kinks_follows_pytorch():
    """Exactly at a kink the derivative is a convention; PyTorch's: 0 at ReLU's 0 and at
    ReLU6's 0 and 6, h-sigmoid 0 at +-3, h-swish 0 at -3 and 1 at +3."""
    x = np.array([-3.0, 0.0, 3.0, 6.0])
    g = np.ones_like(x)
    for act, expected in [(nn.ReLU, [0, 0, 1, 1]), (nn.ReLU6, [0, 0, 1, 0]),
                          (nn.HardSigmoid, [0, 1 / 6, 0, 0]), (nn.HardSwish, [0, 0.5, 1, 1])]:
        layer = act()
        layer(x)
        np.testing.assert_allclose(layer.backward(g), expected, err_msg=act.__name__)


def test_linear_pool_flatten_dropout_gradcheck():
    assert_module_grads(nn.Linear(7, 4), (5, 7), tol=1e-7)
    assert_module_grads(nn.Sequential(nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(3, 2)),
                        (2, 3, 5, 4), tol=1e-7)
    assert_module_grads(nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.4)), (4, 6), tol=1e-7)


def test_dropout_semantics():
    d = nn.Dropout(0.25, seed=3)
    x = np.ones((200, 50), dtype=np.float32)
    y = d(x)
    assert y.dtype == np.float32
    kept = y != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(d.backward(x), y)          # same mask backward
    assert d.eval()(x) is x                                   # identity in eval mode
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        nn.Dropout(1.0)


def test_batchnorm_running_statistics_follow_pytorch():
    """Running mean/var: momentum 0.1 towards the batch mean and the *unbiased* variance."""
    bn = nn.BatchNorm2d(3, momentum=0.1).to(np.float64)
    x = randn(4, 3, 5, 2, seed=7) * 2 + 1
    y = bn(x)
    m = 4 * 5 * 2
    mean = x.mean(axis=(0, 2, 3))
    var_biased = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.running_mean, 0.9 * 0 + 0.1 * mean)
    np.testing.assert_allclose(bn.running_var, 0.9 * 1 + 0.1 * var_biased * m / (m - 1))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), var_biased / (var_biased + 1e-5))
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    y_eval = bn(x)
    expected = (x - bn.running_mean.reshape(1, 3, 1, 1)) / np.sqrt(bn.running_var.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y_eval, expected)
    assert int(bn.num_batches_tracked) == 1                   # eval does not count


def test_cross_entropy_values_gradient_and_stability():
    loss = nn.CrossEntropyLoss()
    logits = randn(5, 4, seed=1)
    t = np.array([0, 3, 1, 1, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert loss(logits, t) == pytest.approx(-np.mean(np.log(p[np.arange(5), t])), rel=1e-12)
    big = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    v = loss(big, np.array([0, 0]))
    assert np.isfinite(v) and v == pytest.approx((0 + 1e4 + np.log(2)) / 2, rel=1e-12)
    assert np.all(np.isfinite(loss.backward()))
    # each row is shifted by its own maximum: a row far below another one's logits
    # keeps its probabilities (a shift by the batch's maximum would underflow it to 0)
    rows = np.array([[1e4, 1e4 + 1.0, 1e4 - 2.0], [0.0, 1.0, -2.0]])
    logp = F.log_softmax(rows)
    assert np.all(np.isfinite(logp))
    np.testing.assert_allclose(logp[0], logp[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logp[1], F.log_softmax(rows[1:])[0], rtol=1e-12, atol=1e-12)
    for eps in (0.0, 0.2):
        ls = nn.CrossEntropyLoss(label_smoothing=eps)
        r = gradcheck.check_function(
            lambda z: (ls(z, t), None), lambda g, _: ls.backward() * g, {"z": logits}, tol=1e-7)
        assert r.ok, str(r)


def test_label_smoothing_definition():
    logits, t, eps = randn(3, 5, seed=2), np.array([4, 0, 2]), 0.1
    logp = F.log_softmax(logits)
    expected = np.mean((1 - eps) * -logp[np.arange(3), t] + eps * -logp.mean(axis=1))
    assert nn.CrossEntropyLoss(eps)(logits, t) == pytest.approx(expected, rel=1e-12)


# ---- Module API --------------------------------------------------------------------------

def _small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU6(),
                         nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(4, 2))


def test_named_parameters_and_state_dict_follow_pytorch_names_and_order():
    net = _small_net()
    assert [n for n, _ in net.named_parameters()] == [
        "0.weight", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert list(net.state_dict()) == [
        "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "5.weight", "5.bias"]
    assert net.state_dict()["0.weight"].shape == (4, 3, 3, 3)
    assert net.num_parameters() == 4 * 27 + 4 + 4 + 4 * 2 + 2


def test_load_state_dict_roundtrip_and_errors():
    a, b = _small_net(), _small_net()
    a[0].weight.data += 1
    sd = a.state_dict()
    b.load_state_dict(sd)
    x = randn(2, 3, 5, 5).astype(np.float32)
    np.testing.assert_array_equal(a.eval()(x), b.eval()(x))   # same weights, same computation
    sd_no_counter = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    b.load_state_dict(sd_no_counter)                                 # accepted without it
    with pytest.raises(KeyError, match="missing key '1.running_var'"):
        b.load_state_dict({k: v for k, v in sd.items() if k != "1.running_var"})
    with pytest.raises(KeyError, match="unexpected key 'extra.weight'"):
        b.load_state_dict(dict(sd, **{"extra.weight": np.zeros(1)}))
    with pytest.raises(ValueError, match=r"key '5.weight' has shape \(3, 4\), expected \(2, 4\)"):
        b.load_state_dict(dict(sd, **{"5.weight": np.zeros((3, 4))}))
    missing, unexpected = b.load_state_dict({"5.bias": np.zeros(2), "zzz": np.zeros(1)}, strict=False)
    assert "0.weight" in missing and unexpected == ["zzz"]


def test_load_state_dict_copies_every_entry_and_checks_shapes_not_sizes():
    """Every parameter *and buffer* is copied (running statistics moved by a training
    step, so they differ from the fresh ones); an entry holding the right number of
    values in another shape is refused like any wrong shape."""
    a, b = _small_net(), _small_net()
    a[0].weight.data += 1
    a[5].bias.data -= 1
    a.train()(randn(4, 3, 5, 5).astype(np.float32))             # moves the running stats
    sd = a.state_dict()
    b.load_state_dict(sd)
    for key, value in b.state_dict().items():
        np.testing.assert_array_equal(value, sd[key], err_msg=key)
    swapped = sd["0.weight"].reshape(3, 4, 3, 3)                 # (4, 3, 3, 3): same size
    with pytest.raises(ValueError, match=r"key '0.weight' has shape \(3, 4, 3, 3\), "
                                         r"expected \(4, 3, 3, 3\)"):
        b.load_state_dict(dict(sd, **{"0.weight": swapped}))


def test_state_dict_returns_copies():
    net = _small_net()
    sd = net.state_dict()
    sd["0.weight"][...] = 0
    assert np.any(net[0].weight.data != 0)


def test_to_dtype_train_eval_and_zero_grad():
    net = _small_net()
    assert net.to(np.float64) is net
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in net.parameters())
    assert net[1].running_var.dtype == np.float64
    assert net[1].num_batches_tracked.dtype == np.int64                # counters stay integers
    assert net.eval() is net and not any(m.training for m in net.modules())
    assert net.train() is net and all(m.training for m in net.modules())
    net(randn(2, 3, 4, 4))
    net.backward(np.ones((2, 2)))
    assert any(np.any(p.grad) for p in net.parameters())
    net.zero_grad()
    assert not any(np.any(p.grad) for p in net.parameters())


def test_float32_in_float32_out_no_upcast():
    net = _small_net()
    x = randn(2, 3, 6, 5).astype(np.float32)
    y = net(x)
    assert y.dtype == np.float32
    dx = net.backward(np.ones_like(y))
    assert dx.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for p in net.parameters())
    for act in ACTIVATIONS:
        layer = act()
        assert layer(x).dtype == np.float32 and layer.backward(x).dtype == np.float32


def test_backward_is_idempotent():
    net = _small_net().to(np.float64)
    x = randn(2, 3, 5, 5)
    y = net(x)
    g = randn(*y.shape, seed=5)
    dx1 = net.backward(g)
    grads1 = [p.grad.copy() for p in net.parameters()]
    dx2 = net.backward(g)
    # the same computation repeated (same process): bit for bit, or backward kept state
    np.testing.assert_array_equal(dx1, dx2)
    for a, b in zip(grads1, [p.grad for p in net.parameters()]):
        np.testing.assert_array_equal(a, b)


# ---- errors --------------------------------------------------------------------------

def test_error_messages_name_layer_and_shapes():
    conv = nn.Conv2d(32, 64, 3, padding=1)
    with pytest.raises(ValueError, match=r"Conv2d\(32->64\): expected input \(N, 32, H, W\), got \(8, 16, 28, 28\)"):
        conv(np.zeros((8, 16, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(32->64\): expected input \(N, 32, H, W\), got \(32, 28, 28\)"):
        conv(np.zeros((32, 28, 28), np.float32))
    with pytest.raises(TypeError, match=r"Conv2d\(32->64\): expected input dtype float32.*got float64"):
        conv(np.zeros((1, 32, 4, 4)))
    with pytest.raises(ValueError, match=r"Conv2d\(3->4\).*kernel size 5 is larger than the padded input"):
        nn.Conv2d(3, 4, 5)(np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv2d\(6->4\): groups=4 must divide both in_channels=6"):
        nn.Conv2d(6, 4, 3, groups=4)
    with pytest.raises(ValueError, match=r"BatchNorm2d\(4\): expected input \(N, 4, H, W\), got \(2, 3, 5, 5\)"):
        nn.BatchNorm2d(4)(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"Linear\(10->3\): expected input \(N, 10\), got \(4, 9\)"):
        nn.Linear(10, 3)(np.zeros((4, 9), np.float32))
    with pytest.raises(RuntimeError, match=r"Conv2d\(3->4\): backward called before forward"):
        nn.Conv2d(3, 4, 3).backward(np.zeros((1, 4, 3, 3), np.float32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.BatchNorm2d(3).backward(np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"target 7 out of range for 5 classes"):
        nn.CrossEntropyLoss()(np.zeros((2, 5)), np.array([1, 7]))
    with pytest.raises(ValueError, match="target -1 out of range"):
        nn.CrossEntropyLoss()(np.zeros((2, 5)), np.array([-1, 0]))
    with pytest.raises(TypeError, match="numpy array"):
        nn.ReLU()([1.0, 2.0])
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        nn.Conv2d(3, 4, 3, stride=0)


def test_seeded_layers_are_reproducible():
    a, b, c = nn.Conv2d(3, 4, 3, seed=1), nn.Conv2d(3, 4, 3, seed=1), nn.Conv2d(3, 4, 3, seed=2)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    assert a.weight.data.dtype == np.float32


AVX512_OFF = "X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"


def test_the_float32_sigmoid_formula_follows_numpy_s_loops_not_a_timing(monkeypatch):
    """The formula is fixed by the machine and NumPy (tanh under NumPy's AVX-512 loops),
    so a run and its resumed continuation, two processes, compute the same numbers: with
    the loops switched off, as on a CPU without AVX-512, exp; timings play no part."""
    import os
    import subprocess
    import sys
    import time
    from tinymobilenet.functional import activations
    monkeypatch.setattr(activations, "_tanh_faster", None)
    clock = iter(range(10 ** 6))                     # a clock that would make either look slow
    monkeypatch.setattr(time, "perf_counter", lambda: next(clock) ** 2)
    assert activations.uses_tanh(np.float32) is activations._avx512_loops()
    probe = ("from tinymobilenet.functional import activations; import numpy as np; "
             "print(activations.uses_tanh(np.float32))")
    env = {**os.environ, "NPY_DISABLE_CPU_FEATURES": AVX512_OFF}
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if out.returncode:              # NumPy refuses to switch off what this CPU does not have
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        assert out.stdout.strip() == "False", out.stderr           # no AVX-512: exp anyway
    else:
        assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize("tanh", [True, False])
def test_float32_sigmoid_and_silu_stay_within_their_stated_error(tanh, monkeypatch):
    """float32 runs sigmoid and SiLU through tanh or exp, whichever this machine's NumPy
    loops compute faster (functional.activations); both ways, against the float64 definitions:
    absolute errors at float32's rounding, and SiLU's relative error bounded where its
    output is not tiny; no warnings at the extremes."""
    import warnings
    from tinymobilenet.functional import activations
    monkeypatch.setattr(activations, "_tanh_faster", tanh)
    assert activations.uses_tanh(np.float32) is tanh and not activations.uses_tanh(np.float64)
    z = np.linspace(-40, 40, 400_001).astype(np.float32)
    z64 = z.astype(np.float64)
    sig = 1 / (1 + np.exp(-z64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = nn.Sigmoid()(z).astype(np.float64)
        y = nn.SiLU()(z).astype(np.float64)
    assert np.abs(s - sig).max() <= 1e-7
    assert np.abs(y - z64 * sig).max() <= 2e-6
    big = np.abs(z64 * sig) > 1e-3
    assert (np.abs(y - z64 * sig)[big] / np.abs(z64 * sig)[big]).max() <= 5e-4
