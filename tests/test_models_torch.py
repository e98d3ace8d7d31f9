"""Whole-model parity with torchvision in float64: load torchvision's weights into our model
and compare outputs (eval and train mode), dx and every parameter gradient for the same
random upstream gradient, and the running statistics after a training step.

Optional oracle: skipped cleanly when torchvision is not installed. Dropout and stochastic
depth are off (their random masks come from different generators); everything else,
including BatchNorm's batch statistics and running-statistics update, is compared.
"""

from functools import partial

import numpy as np
import pytest

from tinymobilenet import models, nn

torchvision = pytest.importorskip("torchvision")
torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.slow, pytest.mark.ch06, pytest.mark.ch07, pytest.mark.ch08]


@pytest.fixture(scope="module", autouse=True)
def torch_one_thread():
    """One torch thread while this module runs (tiny float64 tensors: threads only contend
    on shared cores); the count restored afterwards, so no other module inherits it (set at
    import time it held for the whole session, even with this module deselected)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# PyTorch's hardsigmoid backward multiplies by 1/6 rounded to float32 even for float64
# tensors, so MobileNetV3 (h-sigmoid SE gates) agrees to ~1e-8 only; the rest to ~1e-13.
RTOL = 1e-7


def _randomize_torch_batchnorm(model, seed=0):
    """Random gamma, beta and running statistics (fresh BN would hide eval-mode bugs)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            C = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.5)
                m.running_mean.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.5)
                m.running_var.copy_(torch.rand(C, generator=g, dtype=torch.float64) * 1.5 + 0.5)


def _relative_errors(ours, theirs):
    """{name: error} for every parameter gradient, each relative to the largest gradient
    entry of the whole model.

    A per-array scale would fail on arrays whose exact gradient is 0: the beta of a BN that
    feeds, through a conv and no residual, a train-mode BN cancels in the next batch mean,
    so both sides hold round-off (1e-16) that agrees in nothing but size.
    """
    tparams = dict(theirs.named_parameters())
    pairs = [(name, p.grad, tparams[name].grad.numpy()) for name, p in ours.named_parameters()]
    scale = max(np.abs(t).max() for _, _, t in pairs)
    return {name: float(np.abs(a - t).max() / scale) for name, a, t in pairs}


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def compare_with_torchvision(ours, theirs, x, worst):
    """Copy torchvision's (randomised) weights into ours and compare eval and train mode."""
    theirs.double()
    _randomize_torch_batchnorm(theirs)
    models.load_weights(ours.to(np.float64),
                        {k: v.numpy() for k, v in theirs.state_dict().items()})
    G = np.random.default_rng(1).standard_normal((x.shape[0], ours.num_classes))
    for train in (False, True):
        ours.train(train)
        theirs.train(train)
        y = ours(x)
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.from_numpy(G))
        dx = ours.backward(G)
        errors = {"y": _rel(y, yt.detach().numpy()), "dx": _rel(dx, xt.grad.numpy()),
                  **_relative_errors(ours, theirs)}
        if train:       # the running statistics moved the same way
            tsd = theirs.state_dict()
            errors.update({k: _rel(v, tsd[k].numpy()) for k, v in ours.state_dict().items()
                           if "running" in k})
        name = max(errors, key=errors.get)
        worst[(ours.name, train)] = errors[name]
        assert errors[name] < RTOL, f"{'train' if train else 'eval'}: {name} {errors[name]:.2e}"


@pytest.fixture(scope="module")
def worst():
    """Worst relative error per model and mode (printed with ``pytest -s``)."""
    table = {}
    yield table
    print("\nworst relative error vs torchvision:",
          ", ".join(f"{k[0]} {'train' if k[1] else 'eval'} {v:.1e}" for k, v in table.items()))


# 40 x 48 leaves a 2 x 2 map after the 32x downsampling: with a 1 x 1 map and 2 images a
# train-mode BatchNorm normalises 2 numbers to exactly -1 and +1 whatever they were, so
# every gradient before it is 0 and a comparison would only compare round-off
X = np.random.default_rng(0).standard_normal((2, 3, 40, 48))


def test_mobilenet_v2_matches_torchvision(worst):
    theirs = torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=10, dropout=0.0)
    compare_with_torchvision(models.mobilenet_v2(0.5, num_classes=10, dropout=0.0), theirs,
                             X, worst)


@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_mobilenet_v3_matches_torchvision(arch, worst):
    theirs = getattr(torchvision.models, arch)(num_classes=10, dropout=0.0)
    compare_with_torchvision(getattr(models, arch)(num_classes=10, dropout=0.0), theirs,
                             X, worst)


@pytest.mark.parametrize("arch", ["efficientnet_b0", "efficientnet_b1"])
def test_efficientnet_matches_torchvision(arch, worst):
    theirs = getattr(torchvision.models, arch)(num_classes=10, dropout=0.0,
                                               stochastic_depth_prob=0.0)
    ours = getattr(models, arch)(num_classes=10, dropout=0.0, stochastic_depth_prob=0.0)
    compare_with_torchvision(ours, theirs, X, worst)


def test_efficientnet_b5_batchnorm_settings_match_torchvision(worst):
    """B5..B7 use BatchNorm(eps=1e-3, momentum=0.01): a narrow network with the same
    settings, built by torchvision's own EfficientNet class, matches ours."""
    from torchvision.models.efficientnet import EfficientNet as TVEfficientNet
    from torchvision.models.efficientnet import _efficientnet_conf

    setting, _ = _efficientnet_conf("efficientnet_b5", width_mult=0.25, depth_mult=0.4)
    theirs = TVEfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=10,
                            norm_layer=partial(torch.nn.BatchNorm2d, eps=1e-3, momentum=0.01))
    ours = models.EfficientNet(0.25, 0.4, num_classes=10, dropout=0.0,
                               stochastic_depth_prob=0.0, norm_eps=1e-3, norm_momentum=0.01,
                               name="efficientnet_b5_narrow")
    assert all(b.eps == 1e-3 and b.momentum == 0.01
               for b in ours.modules() if isinstance(b, nn.BatchNorm2d))
    compare_with_torchvision(ours, theirs, X, worst)


def test_torchvision_pth_file_loads(tmp_path):
    """A state dict saved by torch (``.pth``) loads as it is and gives the same outputs."""
    theirs = torchvision.models.mobilenet_v3_small(num_classes=5).eval()
    _randomize_torch_batchnorm(theirs)
    path = tmp_path / "v3s.pth"
    torch.save(theirs.state_dict(), path)
    ours = models.load_weights(models.mobilenet_v3_small(num_classes=5, seed=7), path).eval()
    x = X[:, :, :32, :32].astype(np.float32)
    with torch.no_grad():
        expected = theirs.float()(torch.from_numpy(x)).numpy()
    assert np.allclose(ours(x), expected, rtol=1e-4, atol=1e-5)
