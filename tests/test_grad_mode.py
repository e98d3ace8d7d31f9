"""nn.no_grad(): forward passes that keep nothing for backward, fuse BatchNorm with its
activation on the fly and split a batch of images over the threads; the same outputs as
a plain forward pass (to float round-off), and a clear error for a backward after it."""

import copy
import threading

import numpy as np
import pytest

from conftest import calibrate_batchnorm
from tinymobilenet import blas, gradcheck, models, nn
from tinymobilenet.functional import tiling
from tinymobilenet.nn import grad_mode


@pytest.fixture
def two_threads(monkeypatch):
    """Two tile threads and no minimum image size: every eligible batch is split (the CI's
    one-thread pass would otherwise never split)."""
    old = tiling.num_threads()
    tiling.set_num_threads(2)
    monkeypatch.setattr(grad_mode, "SPLIT_MIN_PIXELS", 1)
    yield
    tiling.set_num_threads(old)


def _calibrated(name, x, **kw):
    model = models.get_model(name, seed=3, **kw)
    gradcheck.randomize_batchnorm(model, seed=1)
    return calibrate_batchnorm(model, x)


def _threads_seen(model):
    """Record the thread and the batch size of each run of ``model.forward`` (a split runs
    it once per share)."""
    seen, inner = [], model.forward

    def forward(x):
        seen.append((threading.get_ident(), x.shape[0]))
        return inner(x)

    object.__setattr__(model, "forward", forward)
    return seen


def test_grad_mode_is_per_thread_nestable_and_restored():
    assert nn.is_grad_enabled()
    other = []
    with nn.no_grad():
        assert not nn.is_grad_enabled()
        t = threading.Thread(target=lambda: other.append(nn.is_grad_enabled()))
        t.start(), t.join()
        with nn.no_grad():
            assert not nn.is_grad_enabled()
        assert not nn.is_grad_enabled()
    assert nn.is_grad_enabled() and other == [True]
    with pytest.raises(ZeroDivisionError):
        with nn.no_grad():
            1 / 0
    assert nn.is_grad_enabled()


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small",
                                  "efficientnet_b0", "efficientnet_lite0"])
@pytest.mark.parametrize("split", [False, True])
def test_no_grad_forward_equals_the_plain_one(name, split, request):
    """Fused BatchNorm + activation and (with ``split``) the batch over two threads: the
    same logits to float32 round-off, and the split really ran on two threads."""
    if split:
        request.getfixturevalue("two_threads")
    x = np.random.default_rng(0).standard_normal((3, 3, 40, 40)).astype(np.float32)
    model = _calibrated(name, x, num_classes=7)
    expected = model(x)
    seen = _threads_seen(model)
    with nn.no_grad():
        y = model(x)
    np.testing.assert_allclose(y, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
    assert np.abs(expected).max() > 1e-2            # the comparison is not of round-off
    if split:
        assert sorted(n for _, n in seen) == [1, 2] and len({t for t, _ in seen}) == 2
    else:
        assert seen == [(threading.get_ident(), 3)]


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v3_small", "efficientnet_b0",
                                  "efficientnet_lite0"])
@pytest.mark.parametrize("variant", ["folded", "fused"])
def test_no_grad_on_folded_and_fused_models(name, variant):
    """A model after models.fold_batchnorm (convolutions with a bias, then the activation:
    the bias goes into the activation's pass) and after nn.fuse_batchnorm_activation (a
    fused BatchNorm after the convolution: its scale is folded all the same)."""
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 40)).astype(np.float32)
    model = _calibrated(name, x, num_classes=7)
    if variant == "folded":
        model = models.fold_batchnorm(model)
    else:
        nn.fuse_batchnorm_activation(model)
    expected = model(x)
    with nn.no_grad():
        y = model(x)
    np.testing.assert_allclose(y, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
    assert np.abs(expected).max() > 1e-2


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])   # V3: SE blocks
def test_no_grad_keeps_no_cache_and_backward_says_why(name):
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    model = _calibrated(name, x, num_classes=5)
    model(x)
    with nn.no_grad():
        model(x)
    caches = [m._cache for m in model.modules() if "_cache" in m.__dict__]
    assert caches and all(c is None for c in caches)
    with pytest.raises(RuntimeError, match="no_grad"):
        model.backward(np.ones((2, 5), dtype=np.float32))
    model(x)                                     # a plain forward caches again
    assert model.backward(np.ones((2, 5), dtype=np.float32)).shape == x.shape


def test_dropout_backward_after_no_grad_says_why():
    d = nn.Dropout(0.5)
    with nn.no_grad():
        d(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(RuntimeError, match="no_grad"):
        d.backward(np.ones((2, 3), dtype=np.float32))


def test_training_mode_is_never_split(two_threads):
    """Train-mode batch norm normalises over the whole batch: a split would change the
    outputs, so a model in training mode runs whole (and updates its statistics once)."""
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    model = models.mobilenet_v3_small(num_classes=5, seed=1)
    twin = copy.deepcopy(model)
    expected = twin(x)
    seen = _threads_seen(model)
    with nn.no_grad():
        y = model(x)
    assert [n for _, n in seen] == [4]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    for a, b in zip(model.modules(), twin.modules()):
        if isinstance(a, nn.BatchNorm2d):
            np.testing.assert_allclose(a.running_mean, b.running_mean, rtol=1e-4, atol=1e-6)


def test_a_module_of_your_own_is_never_split(two_threads):
    """The library cannot know that a module of yours treats each sample on its own."""

    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = models.mobilenet_v3_small(num_classes=5)
            self.batches = []

        def forward(self, x):
            self.batches.append(x.shape[0])
            return self.net(x)

    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    mine = Mine().eval()
    with nn.no_grad():
        mine(x)
        mine.net(x)                               # the library's model alone is split
    assert mine.batches == [4]


def test_a_split_restores_the_blas_threads(two_threads):
    before = blas.info()
    if "threads)" not in before:
        pytest.skip(f"no BLAS thread count readable here: {before}")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    model = models.mobilenet_v3_small(num_classes=5).eval()
    seen = _threads_seen(model)
    with nn.no_grad():
        model(x)
    assert len({t for t, _ in seen}) == 2 and blas.info() == before


def test_small_images_or_one_thread_are_not_split():
    model = models.mobilenet_v3_small(num_classes=5).eval()
    seen = _threads_seen(model)
    old = tiling.num_threads()
    try:
        tiling.set_num_threads(2)
        with nn.no_grad():
            model(np.zeros((4, 3, 32, 32), dtype=np.float32))        # < SPLIT_MIN_PIXELS
        tiling.set_num_threads(1)
        with nn.no_grad():
            model(np.zeros((2, 3, 112, 112), dtype=np.float32))      # one thread
    finally:
        tiling.set_num_threads(old)
    assert [n for _, n in seen] == [4, 2]


def test_no_grad_runs_the_forward_of_a_subclass_of_yours():
    """A conv or batch norm subclass with its own forward is called, not fused past."""
    calls = []

    class LoggedConv(nn.Conv2d):
        def forward(self, x):
            calls.append("conv")
            return super().forward(x)

    class LoggedBN(nn.BatchNorm2d):
        def forward(self, x):
            calls.append("bn")
            return super().forward(x)

    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    for seq in (nn.Sequential(LoggedConv(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
                nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), LoggedBN(4), nn.ReLU())):
        seq.eval()
        expected = seq(x)
        calls.clear()
        with nn.no_grad():
            y = seq(x)
        assert calls, "the subclass's forward was skipped"
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", [None, nn.ReLU6, nn.SiLU])
def test_no_grad_scales_a_convolution_s_bias_by_the_batch_norm_after_it(activation):
    """A Conv2d with a bias before an eval-mode BatchNorm (the models have none, a model
    of yours may): folded, the batch norm's scale applies to the bias too,
    bn(conv + b) = conv * s + (t + s * b), and the outputs are those of the layers apart."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    conv = nn.Conv2d(3, 4, 3, padding=1, seed=1)
    conv.bias.data = np.random.default_rng(2).standard_normal(4).astype(np.float32)
    layers = [conv, nn.BatchNorm2d(4)] + ([activation()] if activation else [])
    seq = gradcheck.randomize_batchnorm(nn.Sequential(*layers), seed=3).eval()
    expected = seq(x)
    with nn.no_grad():
        y = seq(x)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("activation, gate", [(nn.SiLU, nn.Sigmoid), (nn.ReLU, nn.HardSigmoid)])
def test_no_grad_squeeze_excitation_gate_equals_its_layers(activation, gate):
    """Under no_grad the SE gate runs its layers' arithmetic directly (EfficientNet's and
    MobileNetV3's pairs of activations): the same output as the layers called one by
    one, and a subclass of one of them is called, not run past."""
    x = np.random.default_rng(0).standard_normal((3, 12, 5, 7)).astype(np.float32)
    se = nn.SqueezeExcitation(12, 4, activation=activation, scale_activation=gate, seed=2)
    expected = se(x)
    with nn.no_grad():
        y = se(x)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert np.abs(y - x).max() > 1e-2                 # the gate is not all ones

    calls = []

    class LoggedGate(gate):
        def forward(self, x):
            calls.append("gate")
            return super().forward(x)

    se.scale_activation = LoggedGate()
    with nn.no_grad():
        y = se(x)
    assert calls == ["gate"]
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenet_v3_small"])
@pytest.mark.parametrize("variant", ["built", "folded", "fused"])
def test_no_grad_folds_the_se_gate_into_the_projection_for_one_image(name, variant,
                                                                      monkeypatch):
    """At batch 1 the squeeze-and-excitation gate goes into the next 1x1 convolution's
    weights instead of into x: the same logits, and the fold really ran."""
    from tinymobilenet.nn import fusion
    x = np.random.default_rng(0).standard_normal((1, 3, 48, 48)).astype(np.float32)
    model = _calibrated(name, np.concatenate([x, x[:, :, ::-1]]), num_classes=7)
    if variant == "folded":
        model = models.fold_batchnorm(model)
    elif variant == "fused":
        nn.fuse_batchnorm_activation(model)
    expected = model(x)
    calls = []
    inner = fusion._excite_conv
    monkeypatch.setattr(fusion, "_excite_conv", lambda *a: calls.append(1) or inner(*a))
    with nn.no_grad():
        y = model(x)
    np.testing.assert_allclose(y, expected, rtol=2e-4, atol=2e-4 * np.abs(expected).max())
    assert np.abs(expected).max() > 1e-2
    assert calls, "no gate was folded"
