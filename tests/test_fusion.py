"""BatchNorm + ReLU/ReLU6 fused in one pass (``F.batchnorm_forward(..., clip=...)``, and the
explicit model transformation ``nn.fuse_batchnorm_activation``) must give the numbers of the
two layers run apart (to round-off: another code path) and keep the state-dict keys."""

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet import gradcheck, models, nn

from conftest import randn

# the chapters these tests back (select with: pytest -m ch04)
pytestmark = [pytest.mark.ch04]


CLIPS = [("relu", (0.0, None), F.relu_forward, F.relu_backward),
         ("relu6", (0.0, 6.0), F.relu6_forward, F.relu6_backward)]


@pytest.mark.parametrize("name, clip, act_fwd, act_bwd", CLIPS)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 5, 3, 7), (6, 3)])
def test_fused_batchnorm_activation_equals_the_two_layers(name, clip, act_fwd, act_bwd,
                                                          training, shape):
    C = shape[1]
    x = 4 * randn(*shape, seed=1) + 2            # outputs on both sides of 0 and of 6
    gamma, beta, dout = 4 + np.abs(randn(C, seed=2)), 2 + randn(C, seed=3), randn(*shape, seed=4)
    stats = [randn(C, seed=5), 1 + np.abs(randn(C, seed=6))]
    rm, rv = stats[0].copy(), stats[1].copy()
    z, bn_cache = F.batchnorm_forward(x, gamma, beta, rm, rv, training=training)
    y, act_cache = act_fwd(z)
    dx, dgamma, dbeta = F.batchnorm_backward(act_bwd(dout, act_cache), bn_cache)

    frm, frv = stats[0].copy(), stats[1].copy()
    fy, cache = F.batchnorm_forward(x, gamma, beta, frm, frv, training=training, clip=clip)
    assert 0 < np.mean(fy == 0) < 1                           # the clip did something
    if clip[1] is not None:
        assert np.any(fy == clip[1])
    # fused and unfused are two code paths: compared to round-off (float64 here), not bits
    for got, want in zip((fy, frm, frv, *F.batchnorm_backward(dout, cache)),
                         (y, rm, rv, dx, dgamma, dbeta)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name, clip, act_fwd, act_bwd", CLIPS)
def test_fused_batchnorm_activation_gradcheck(name, clip, act_fwd, act_bwd):
    x = 3 * randn(4, 3, 5, 6, seed=1) + 1
    gamma, beta = 2 * randn(3, seed=2), 3 + randn(3, seed=3)

    def fwd(x, gamma, beta):
        return F.batchnorm_forward(x, gamma, beta, np.zeros(3), np.ones(3), clip=clip)

    out = fwd(x, gamma, beta)[0]
    kinks = [clip[0]] + ([clip[1]] if clip[1] is not None else [])
    z = out[(out > clip[0]) & (out < (clip[1] or np.inf))]
    assert min(np.min(np.abs(z - k)) for k in kinks) > 1e-4      # no output on a kink
    r = gradcheck.check_function(fwd, F.batchnorm_backward,
                                 {"x": x, "gamma": gamma, "beta": beta}, tol=1e-7)
    assert r.ok, str(r)


def test_clip_must_be_an_interval():
    x = randn(4, 3)
    with pytest.raises(ValueError, match="clip"):
        F.batchnorm_forward(x, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3), clip=(6, 0))


def _run(model, x, fuse):
    if fuse:
        nn.fuse_batchnorm_activation(model)
    y = model(x)
    dx = model.backward(randn(*y.shape, seed=7))
    return [y, dx] + [p.grad.copy() for p in model.parameters()] + \
        [b.copy() for _, b in model.named_buffers()]


@pytest.mark.parametrize("build", [
    lambda: models.mobilenet_v1(alpha=0.25, num_classes=10),
    lambda: models.mobilenet_v2(width_mult=0.25, num_classes=10),
    lambda: models.mobilenet_v3_small(num_classes=10),
    lambda: models.efficientnet_b0(num_classes=10, dropout=0.0, stochastic_depth_prob=0.0)])
@pytest.mark.parametrize("train", [True, False])
def test_models_fused_and_unfused_agree(build, train):
    # float64, and maps no smaller than 2x2 at the end: train-mode batch norm over the
    # 2 values of a 1x1 map in a batch of 2 turns any round-off difference (the two paths
    # compute SiLU in other orders) into a different sign, in float32 and even float64
    x = randn(2, 3, 64, 64, seed=1)
    runs = []
    for fuse in (True, False):
        model = build().to(np.float64)
        gradcheck.randomize_batchnorm(model, seed=3)
        model.train(train)
        runs.append(_run(model, x, fuse))
    assert len(runs[0]) == len(runs[1])
    # two code paths: equal to round-off through a whole network (some gradients are
    # zero up to round-off, ~1e-14: hence an absolute floor, not one relative to each)
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10 * max(1.0, np.abs(b).max()))


def test_fusion_is_explicit_and_reversible():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6(),
                        nn.BatchNorm2d(4), nn.HardSigmoid(), nn.BatchNorm2d(4), nn.ReLU())
    keys = list(seq.state_dict())
    kinds = lambda: [type(m).__name__ for m in seq]
    assert kinds() == ["Conv2d", "BatchNorm2d", "ReLU6", "BatchNorm2d", "HardSigmoid",
                       "BatchNorm2d", "ReLU"]                  # built apart, as torchvision
    bn = seq[1]
    nn.fuse_batchnorm_activation(seq)
    # only BN -> ReLU/ReLU6/SiLU/h-swish pairs fuse; the activation's place holds an Identity
    assert kinds() == ["Conv2d", "BatchNormAct2d", "Identity", "BatchNorm2d", "HardSigmoid",
                       "BatchNormAct2d", "Identity"]
    assert list(seq.state_dict()) == keys                     # the same keys: weights load
    assert seq[1].weight is bn.weight and seq[1].running_mean is bn.running_mean
    assert seq[1].activation_class is nn.ReLU6 and seq[5].activation_class is nn.ReLU
    nn.fuse_batchnorm_activation(seq)                         # fusing twice changes nothing
    assert kinds()[1:3] == ["BatchNormAct2d", "Identity"]
    with nn.unfused(seq):
        assert kinds()[1:3] == ["BatchNorm2d", "ReLU6"]
    assert kinds()[1:3] == ["BatchNormAct2d", "Identity"]    # fused again after the block
    nn.unfuse_batchnorm_activation(seq)
    assert kinds() == ["Conv2d", "BatchNorm2d", "ReLU6", "BatchNorm2d", "HardSigmoid",
                       "BatchNorm2d", "ReLU"]
    with nn.fused(seq):
        assert kinds()[1] == "BatchNormAct2d"
    assert kinds()[1] == "BatchNorm2d"                        # apart again, as before


def test_fused_dense_batchnorm1d():
    """The 1-D models' BatchNorm1d -> ReLU6 pairs fuse too."""
    model = models.dense.mobilenet(6, hidden_dims=(8, 16), num_classes=3).eval()
    x = randn(4, 6).astype(np.float32)
    y = model(x)
    with nn.fused(model):
        assert any(isinstance(m, nn.BatchNormAct1d) for m in model.modules())
        np.testing.assert_allclose(model(x), y, rtol=1e-5, atol=1e-6)


def test_unfused_modules_cache_their_activations():
    """Tools that read an activation's input (gradcheck.kink_distance) run unfused."""
    seq = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU6())
    x = randn(2, 2, 5, 5).astype(np.float32)
    nn.fuse_batchnorm_activation(seq)
    seq(x)
    assert isinstance(seq[2], nn.Identity)                    # fused: no ReLU6 module ran
    with nn.unfused(seq):
        seq(x)
        assert seq[2]._cache is not None
    assert 0 < gradcheck.kink_distance(seq, x) < np.inf   # reads the ReLU6 input, unfused


SMOOTH = [("silu", F.silu_forward, F.silu_backward),
          ("hardswish", F.hardswish_forward, F.hardswish_backward)]


@pytest.mark.parametrize("name, act_fwd, act_bwd", SMOOTH)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(4, 5, 3, 7), (6, 3)])
def test_fused_batchnorm_silu_hardswish_equal_the_two_layers(name, act_fwd, act_bwd,
                                                             training, shape):
    C = shape[1]
    x = 4 * randn(*shape, seed=1)                 # both sides of h-swish's -3 and 3
    gamma, beta, dout = 2 + np.abs(randn(C, seed=2)), randn(C, seed=3), randn(*shape, seed=4)
    z, bn_cache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), training=training)
    y, act_cache = act_fwd(z)
    want = (y, *F.batchnorm_backward(act_bwd(dout, act_cache), bn_cache))
    fy, cache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), training=training,
                                    activation=name)
    got = (fy, *F.batchnorm_backward(dout, cache))
    for g, w in zip(got, want):                   # another code path: round-off
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["silu", "hardswish"])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batchnorm_silu_hardswish_gradcheck(name, training):
    """Train mode keeps what the activation's backward needs; eval mode keeps nothing and
    rebuilds z from x in the backward pass: both checked against central differences."""
    x = 3 * randn(4, 3, 5, 6, seed=1) + 1
    gamma, beta = 2 * randn(3, seed=2), 1 + randn(3, seed=3)
    mean, var = randn(3, seed=4), 0.5 + np.abs(randn(3, seed=5))   # eval's statistics

    def fwd(x, gamma, beta):
        return F.batchnorm_forward(x, gamma, beta, mean.copy(), var.copy(), training=training,
                                   activation=name)

    z = F.batchnorm_forward(x, gamma, beta, mean.copy(), var.copy(), training=training)[0]
    assert np.min(np.abs(np.abs(z) - 3)) > 1e-4                   # no point on h-swish's kinks
    r = gradcheck.check_function(fwd, F.batchnorm_backward,
                                 {"x": x, "gamma": gamma, "beta": beta}, tol=1e-7)
    assert r.ok, str(r)


@pytest.mark.parametrize("training", [True, False])
def test_fused_hardswish_gradient_at_its_kinks_follows_the_layers_apart(training):
    """Pre-activations exactly at -3 and 3, where the derivative is a convention (PyTorch's:
    0 at -3, 1 at 3, as hardswish_backward): the fused backward must take the same one.
    With eps = 0 both modes reach the kinks exactly: in train mode every channel holds
    +-2 in equal numbers (mean 0, variance 4, xhat = +-1) and gamma = 3; in eval mode the
    statistics make batch norm the identity and x holds +-3 itself."""
    N, C, H, W = 4, 3, 2, 3
    rng = np.random.default_rng(0)
    if training:
        signs = np.stack([rng.permutation(np.repeat([1.0, -1.0], N * H * W // 2))
                          for _ in range(C)])                        # (C, N*H*W)
        x = np.ascontiguousarray((2 * signs).reshape(C, N, H, W).transpose(1, 0, 2, 3))
        gamma = np.full(C, 3.0)
    else:
        x = 4 * randn(N, C, H, W, seed=1)
        x.flat[::3] = 3.0
        x.flat[1::3] = -3.0
        gamma = np.ones(C)
    beta, dout = np.zeros(C), randn(N, C, H, W, seed=4)
    z, bn_cache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C),
                                      training=training, eps=0.0)
    assert np.any(z == 3.0) and np.any(z == -3.0)                 # really on both kinks
    y, act_cache = F.hardswish_forward(z)
    want = (y, *F.batchnorm_backward(F.hardswish_backward(dout, act_cache), bn_cache))
    fy, cache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C),
                                    training=training, eps=0.0, activation="hardswish")
    got = (fy, *F.batchnorm_backward(dout, cache))
    for g, w in zip(got, want):                   # another code path: round-off
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_unknown_fused_activation_is_refused():
    with pytest.raises(ValueError, match="activation"):
        F.batchnorm_forward(randn(4, 3), np.ones(3), np.zeros(3), np.zeros(3), np.ones(3),
                            activation="tanh")


ACTS = {None: lambda z: (z, None), "relu": F.relu_forward, "relu6": F.relu6_forward,
        "silu": F.silu_forward, "hardswish": F.hardswish_forward}


@pytest.mark.parametrize("activation", list(ACTS))
@pytest.mark.parametrize("with_scale", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 3, 7), (1, 4, 40, 33), (6, 3)])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_affine_activation_is_the_affine_map_then_the_activation(activation, with_scale, shape,
                                                                  dtype, tol):
    """F.affine_activation (no_grad's folded batch norm, a folded conv's bias) with its
    shortened chains equals x * scale + shift and then the activation layer; the shapes
    cover short rows (per-channel vectors repeated), long ones (broadcast) and (N, C)."""
    C = shape[1]
    x = (4 * randn(*shape, seed=1)).astype(dtype)           # both sides of every kink
    scale = (0.5 + np.abs(randn(C, seed=2))).astype(dtype) if with_scale else None
    shift = randn(C, seed=3).astype(dtype)
    per_channel = (1, C) + (1,) * (len(shape) - 2)
    z = x * (1 if scale is None else scale.reshape(per_channel)) + shift.reshape(per_channel)
    want = ACTS[activation](z)[0]
    got = F.affine_activation(x, scale, shift, activation)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_affine_silu_overflow_gives_the_rounded_limits_without_warnings():
    import warnings
    x = np.array([[-1000.0, -90.0, 0.0, 90.0, 1000.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = F.affine_activation(x, None, np.zeros(5, np.float32), "silu")
    np.testing.assert_array_equal(y, [[0.0, 0.0, 0.0, 90.0, 1000.0]])
    assert np.signbit(y[0, 0]) and np.signbit(y[0, 1])   # -0: the limit from below


@pytest.mark.parametrize("tanh", [True, False])
@pytest.mark.parametrize("shape", [(3, 5, 3, 7), (1, 4, 40, 33), (6, 3)])
def test_affine_silu_on_halved_inputs_is_silu_of_twice_them(shape, tanh, monkeypatch):
    """halved=True (no_grad's folded convolution before SiLU's tanh chain, the chain's 1/2
    folded into the weights): silu(2 * (x + shift)), where the tanh chain runs; refused
    where it does not. Which chain float32 takes depends on the machine (tanh where NumPy
    runs its AVX-512 loops), so both are set here instead of taking this machine's."""
    from tinymobilenet.functional import activations
    monkeypatch.setattr(activations, "_tanh_faster", tanh)
    assert activations.uses_tanh(np.float32) is tanh
    if not tanh:
        with pytest.raises(ValueError, match="halved"):
            F.affine_activation(randn(*shape).astype(np.float32), None,
                                np.zeros(shape[1], np.float32), "silu", halved=True)
        return
    x = (2 * randn(*shape, seed=1)).astype(np.float32)
    shift = randn(shape[1], seed=3).astype(np.float32)
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    want = F.silu_forward((2 * (x.astype(np.float64) + shift.reshape(per_channel))))[0]
    got = F.affine_activation(x, None, shift, "silu", halved=True)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    for bad in [dict(activation="relu"), dict(scale=np.ones(shape[1], np.float32))]:
        kw = {"scale": None, "activation": "silu", **bad}
        with pytest.raises(ValueError, match="halved"):
            F.affine_activation(x, kw["scale"], shift, kw["activation"], halved=True)
    with pytest.raises(ValueError, match="halved"):                 # float64 takes exp
        F.affine_activation(x.astype(np.float64), None, shift, "silu", halved=True)


def test_affine_activation_checks_its_vectors():
    with pytest.raises(ValueError, match=r"shift must have shape \(3,\)"):
        F.affine_activation(randn(2, 3, 4, 4), None, np.zeros(4))
    with pytest.raises(TypeError, match="affine_activation: shift must be a NumPy array"):
        F.affine_activation(randn(2, 3), None, [0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="affine_activation: scale must be float32 or float64"):
        F.affine_activation(randn(2, 3), np.ones(3, dtype=np.int64), np.zeros(3))
    x = randn(2, 3).astype(np.float32)                 # vectors of the other float dtype: cast
    y = F.affine_activation(x, np.full(3, 2.0), np.ones(3), "relu")
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, np.maximum(2 * x + 1, 0), rtol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        F.affine_activation(randn(2, 3), None, np.zeros(3), "tanh")
