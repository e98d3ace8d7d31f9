"""Parity with PyTorch autograd in float64: forward, dx and every parameter gradient.

Optional oracle: skipped cleanly when torch is not installed. Shapes are drawn at random
(seeded) rather than picked, so the kernels are exercised on sizes nobody tuned them for.
"""

import numpy as np
import pytest

from tinymobilenet import gradcheck, nn

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.ch02, pytest.mark.ch04, pytest.mark.ch07]

RTOL = 1e-8
# PyTorch's hardsigmoid backward multiplies by 1/6 rounded to float32 (0.1666666716...)
# even for float64 tensors, so any module with an h-sigmoid gate agrees to ~3e-8 only.
RTOL_HARDSIGMOID = 1e-7


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)


def _copy_params_to_torch(ours, theirs):
    sd = {k: torch.from_numpy(np.array(v)) for k, v in ours.state_dict().items()}
    missing, unexpected = theirs.load_state_dict(sd, strict=False)
    assert not [k for k in missing if not k.endswith("num_batches_tracked")], missing
    assert not unexpected, unexpected


def compare(ours, theirs, x, train=True, rtol=RTOL):
    """Run both on x with the same random upstream gradient; assert forward, dx and every
    parameter gradient agree to RTOL (relative to each array's largest entry)."""
    ours.to(np.float64)
    gradcheck.randomize_batchnorm(ours, seed=1)
    theirs.double()
    _copy_params_to_torch(ours, theirs)
    ours.train(train)
    theirs.train(train)
    y = ours(x)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    yt = theirs(xt)
    assert y.shape == tuple(yt.shape)
    assert _rel(y, yt.detach().numpy()) < rtol
    G = np.random.default_rng(9).standard_normal(y.shape)
    dx = ours.backward(G)
    yt.backward(torch.from_numpy(G))
    assert _rel(dx, xt.grad.numpy()) < rtol, "dx"
    tparams = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert _rel(p.grad, tparams[name].grad.numpy()) < rtol, name
    if train:   # running statistics updated the same way
        tsd = theirs.state_dict()
        for k, v in ours.state_dict().items():
            if "running" in k:
                assert _rel(v, tsd[k].numpy()) < rtol, k


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_random_configs(seed):
    rng = np.random.default_rng(100 + seed)
    g = int(rng.choice([1, 2, 3]))
    cin, cout = g * int(rng.integers(1, 4)), g * int(rng.integers(1, 4))
    k = int(rng.choice([1, 3, 5]))
    s, p = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    h, w = int(rng.integers(k, 12)), int(rng.integers(k, 12))
    bias = bool(rng.integers(0, 2))
    ours = nn.Conv2d(cin, cout, k, s, p, groups=g, bias=bias, seed=seed)
    theirs = torch.nn.Conv2d(cin, cout, k, s, p, groups=g, bias=bias)
    compare(ours, theirs, rng.standard_normal((int(rng.integers(1, 4)), cin, h, w)))


@pytest.mark.parametrize("seed", range(4))
def test_depthwise_and_pointwise_random_configs(seed):
    rng = np.random.default_rng(200 + seed)
    c, k = int(rng.integers(1, 7)), int(rng.choice([3, 5]))
    s, p = int(rng.integers(1, 3)), int(rng.integers(0, 3))
    x = rng.standard_normal((2, c, int(rng.integers(k, 13)), int(rng.integers(k, 13))))
    compare(nn.DepthwiseConv2d(c, k, s, p), torch.nn.Conv2d(c, c, k, s, p, groups=c, bias=False), x)
    co = int(rng.integers(1, 9))
    compare(nn.PointwiseConv2d(c, co), torch.nn.Conv2d(c, co, 1, bias=False), x)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm(train):
    x = np.random.default_rng(3).standard_normal((3, 5, 4, 7)) * 3 + 1
    compare(nn.BatchNorm2d(5, eps=1e-3, momentum=0.01), torch.nn.BatchNorm2d(5, eps=1e-3, momentum=0.01),
            x, train)
    compare(nn.BatchNorm1d(4), torch.nn.BatchNorm1d(4), x[:, :4, 0, 0].copy(), train)


@pytest.mark.parametrize("name", ["ReLU", "ReLU6", "Sigmoid", "Hardsigmoid", "Hardswish", "SiLU"])
def test_activations(name):
    x = np.random.default_rng(4).standard_normal((3, 4, 5, 6)) * 4
    compare(getattr(nn, name)(), getattr(torch.nn, name)(), x,
            rtol=RTOL_HARDSIGMOID if name == "Hardsigmoid" else RTOL)


def test_linear_pool_flatten():
    x = np.random.default_rng(5).standard_normal((3, 6, 5, 4))
    ours = nn.Sequential(nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(6, 3))
    theirs = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    compare(ours, theirs, x)


@pytest.mark.parametrize("smoothing", [0.0, 0.15])
def test_cross_entropy(smoothing):
    rng = np.random.default_rng(6)
    logits, t = rng.standard_normal((7, 5)) * 3, rng.integers(0, 5, 7)
    ours = nn.CrossEntropyLoss(label_smoothing=smoothing)
    lt = torch.from_numpy(logits).requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(lt, torch.from_numpy(t), label_smoothing=smoothing)
    ref.backward()
    assert abs(ours(logits, t) - ref.item()) < 1e-12 * abs(ref.item())
    assert _rel(ours.backward(), lt.grad.numpy()) < RTOL


def _tv():
    return pytest.importorskip("torchvision")


@pytest.mark.parametrize("train", [True, False])
def test_squeeze_excitation(train):
    ops = _tv().ops
    x = np.random.default_rng(7).standard_normal((2, 12, 5, 6))
    compare(nn.SqueezeExcitation(12, 4, nn.ReLU, nn.HardSigmoid),
            ops.SqueezeExcitation(12, 4, torch.nn.ReLU, torch.nn.Hardsigmoid), x, train,
            rtol=RTOL_HARDSIGMOID)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("cin, cout, stride, t", [(16, 16, 1, 6), (16, 24, 2, 6), (32, 16, 1, 1)])
def test_inverted_residual_v2(cin, cout, stride, t, train):
    _tv()
    from torchvision.models.mobilenetv2 import InvertedResidual
    x = np.random.default_rng(8).standard_normal((2, cin, 7, 9))
    compare(nn.InvertedResidual(cin, cout, stride, expand_ratio=t), InvertedResidual(cin, cout, stride, t),
            x, train)


@pytest.mark.parametrize("train", [True, False])
def test_inverted_residual_v3(train):
    _tv()
    from functools import partial

    from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
    cnf = InvertedResidualConfig(24, 5, 72, 24, True, "HS", 1, 1, 1.0)
    theirs = InvertedResidual(cnf, partial(torch.nn.BatchNorm2d, eps=0.001, momentum=0.01))
    ours = nn.InvertedResidual(24, 24, 1, kernel_size=5, expanded_channels=72, activation=nn.HardSwish,
                               se_channels=24, se_gate=nn.HardSigmoid, norm_eps=1e-3, norm_momentum=0.01,
                               layout="v3")
    compare(ours, theirs, np.random.default_rng(9).standard_normal((2, 24, 6, 7)), train,
            rtol=RTOL_HARDSIGMOID)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels, expand_ratio", [(16, 6), (10, 3)])
def test_mbconv(train, channels, expand_ratio):
    """(10, 3): 30 expanded channels, which both round to the nearest multiple of 8, 32.
    torchvision's config rounds its channel counts to multiples of 8 too, so C_in = 10 is
    set on the config after it is built."""
    _tv()
    from functools import partial

    from torchvision.models.efficientnet import MBConv, MBConvConfig
    cnf = MBConvConfig(expand_ratio, 3, 1, 16, 16, 1)
    cnf.input_channels = cnf.out_channels = channels
    theirs = MBConv(cnf, 0.0, partial(torch.nn.BatchNorm2d, eps=1e-3))
    ours = nn.MBConv(channels, channels, 1, expand_ratio=expand_ratio, kernel_size=3,
                     stochastic_depth_prob=0.0, norm_eps=1e-3)
    compare(ours, theirs, np.random.default_rng(10).standard_normal((2, channels, 6, 5)), train)


def test_depthwise_separable_against_torch_composition():
    x = np.random.default_rng(11).standard_normal((2, 6, 9, 8))
    ours = nn.DepthwiseSeparable(6, 10, stride=2)
    theirs = torch.nn.Module()
    theirs.depthwise = torch.nn.Sequential(torch.nn.Conv2d(6, 6, 3, 2, 1, groups=6, bias=False),
                                           torch.nn.BatchNorm2d(6), torch.nn.ReLU())
    theirs.pointwise = torch.nn.Sequential(torch.nn.Conv2d(6, 10, 1, bias=False),
                                           torch.nn.BatchNorm2d(10), torch.nn.ReLU())
    theirs.forward = lambda t: theirs.pointwise(theirs.depthwise(t))
    compare(ours, theirs, x)
