"""The group-wise dense layer (functional pair, naive twin, layer) and the 1-D models."""

import math

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet import gradcheck, models, nn
from tinymobilenet.models import dense

from conftest import calibrate_batchnorm, randn


# ---- functional ------------------------------------------------------------------------

@pytest.mark.parametrize("N,D,M,G", [(3, 8, 8, 8), (2, 12, 6, 3), (4, 10, 15, 5), (1, 6, 4, 1),
                                     (5, 16, 32, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_grouped_linear_fast_equals_naive(N, D, M, G, bias):
    x, w = randn(N, D, seed=1), randn(M, D // G, seed=2)
    b = randn(M, seed=3) if bias else None
    y, cache = F.grouped_linear_forward(x, w, b, G)
    y_naive, cache_naive = F.grouped_linear_forward_naive(x, w, b, G)
    assert y.shape == (N, M) and np.allclose(y, y_naive, rtol=1e-12, atol=1e-12)
    dy = randn(N, M, seed=4)
    for fast, slow in zip(F.grouped_linear_backward(dy, cache),
                          F.grouped_linear_backward_naive(dy, cache_naive)):
        assert (fast is None) == (slow is None) == (not bias and fast is None)
        if fast is not None:
            assert np.allclose(fast, slow, rtol=1e-12, atol=1e-12)


def test_grouped_linear_independent_references():
    """G = 1 is a Linear; G = D = M is a per-feature scale; in general a block-diagonal
    matrix multiply."""
    x = randn(4, 6, seed=1)
    w = randn(6, 6, seed=2)
    assert np.allclose(F.grouped_linear_forward(x, w, None, 1)[0], F.linear_forward(x, w)[0])
    s = randn(6, 1, seed=3)
    assert np.allclose(F.grouped_linear_forward(x, s, None, 6)[0], x * s[:, 0])
    w3 = randn(9, 2, seed=4)                                     # D=6, M=9, G=3
    full = np.zeros((9, 6))
    for g in range(3):
        full[3 * g:3 * g + 3, 2 * g:2 * g + 2] = w3[3 * g:3 * g + 3]
    assert np.allclose(F.grouped_linear_forward(x, w3, None, 3)[0], x @ full.T)


def test_grouped_linear_gradcheck():
    result = gradcheck.check_function(
        F.grouped_linear_forward, F.grouped_linear_backward,
        dict(x=randn(3, 12, seed=1), w=randn(8, 3, seed=2), b=randn(8, seed=3), groups=4),
        wrt=["x", "w", "b"])
    assert result.ok, str(result)


def test_grouped_linear_errors():
    with pytest.raises(ValueError, match=r"expected input \(N, 12\)"):
        F.grouped_linear_forward(randn(2, 10), randn(8, 3), None, 4)
    with pytest.raises(ValueError, match="groups=3 must divide out_features=8"):
        F.grouped_linear_forward(randn(2, 6), randn(8, 2), None, 3)


# ---- layers and blocks -----------------------------------------------------------------

def test_grouped_linear_layer():
    layer = nn.GroupedLinear(12, 8, groups=4, seed=0)
    assert layer.weight.shape == (8, 3) and layer.bias.shape == (8,)
    assert [k for k, _ in layer.named_parameters()] == ["weight", "bias"]
    assert np.abs(layer.weight.data).max() <= 1 / np.sqrt(3)
    assert gradcheck.check_module(layer.to(np.float64), randn(5, 12)).ok
    with pytest.raises(ValueError, match=r"GroupedLinear\(12->8, groups=4\): expected input "
                                         r"\(N, 12\), got \(5, 10\)"):
        layer(randn(5, 10))
    with pytest.raises(ValueError, match="groups=5 must divide"):
        nn.GroupedLinear(12, 8, groups=5)


@pytest.mark.parametrize("features,group_size,groups", [(64, 8, 8), (8, 8, 1), (4, 8, 1),
                                                        (24, 8, 3), (20, 8, 2), (12, 1, 12)])
def test_dense_groups(features, group_size, groups):
    assert nn.dense_groups(features, group_size) == groups


@pytest.mark.parametrize("block,shape", [
    (lambda: nn.DenseSqueezeExcitation(8, 2), (4, 8)),
    (lambda: nn.DenseDepthwiseSeparable(16, 24), (5, 16)),
    (lambda: nn.DenseMBConv(8, 8, expand_ratio=6), (5, 8)),        # with residual
    (lambda: nn.DenseMBConv(8, 16, expand_ratio=2), (5, 8)),
    (lambda: nn.DenseMBConv(8, 8, expand_ratio=1), (5, 8)),        # no expansion layer
])
@pytest.mark.parametrize("train", [True, False])
def test_dense_blocks_gradcheck(block, shape, train):
    module = block().to(np.float64)
    gradcheck.randomize_batchnorm(module, seed=2)
    module.train(train)
    x = gradcheck.dodge_kinks(module, lambda s: randn(*shape, seed=s))
    result = gradcheck.check_module(module, x)
    assert result.ok, str(result)


def test_dense_squeeze_excitation_is_its_parts_composed():
    se = nn.DenseSqueezeExcitation(6, 3).to(np.float64)
    x = randn(4, 6)
    w1, b1, w2, b2 = (p.data for p in se.parameters())
    h = x @ w1.T + b1
    s = 1 / (1 + np.exp(-((h / (1 + np.exp(-h))) @ w2.T + b2)))
    assert np.allclose(se(x), x * s)


# ---- models ----------------------------------------------------------------------------

def test_dense_mobilenet_structure_and_shapes():
    model = dense.mobilenet(20, num_classes=5)
    assert model(randn(3, 20).astype(np.float32)).shape == (3, 5)
    assert [b.out_features for b in model.blocks] == [64, 128, 256]
    assert [b.groups for b in model.blocks] == [8, 8, 16]              # groups of 8 features
    assert model.blocks[1][0].weight.shape == (64, 8)                   # grouped "depthwise"
    assert model.blocks[1][1].weight.shape == (128, 64)                 # dense "pointwise"
    assert isinstance(model.stem[2], nn.ReLU6)
    features = dense.mobilenet(20)
    assert features(randn(3, 20).astype(np.float32)).shape == (3, 256)
    assert len(features.head) == 1                                      # dropout only
    half = dense.mobilenet(20, hidden_dims=(12, 100), width_multiplier=0.5, activation="hardswish")
    assert [b.out_features for b in half.blocks] == [8, 48]             # make_divisible(., 8)
    assert isinstance(half.stem[2], nn.HardSwish)


def test_dense_efficientnet_structure_and_shapes():
    model = dense.efficientnet(10, num_classes=3)
    assert model(randn(4, 10).astype(np.float32)).shape == (4, 3)
    widths = [[b.out_features for b in stage] for stage in model.blocks]
    assert widths == [[32], [64, 64], [128, 128]]
    assert [b.use_res_connect for stage in model.blocks for b in stage] == [True, False, True,
                                                                           False, True]
    first = model.blocks[0][0]
    assert first.expanded_features == 192
    assert first.block[2].squeeze_features == 8                        # 0.25 * 32
    deep = dense.efficientnet(10, base_dim=16, depth_multiplier=1.5, width_multiplier=1.25)
    assert [len(stage) for stage in deep.blocks] == [2, 3, 3]           # ceil(n * 1.5)
    assert deep(randn(4, 10).astype(np.float32)).shape == (4, 80)       # make_divisible(80)


@pytest.mark.parametrize("depth_multiplier", [0.3, 1.2, 1.7])
def test_dense_efficientnet_depth_rounds_up(depth_multiplier):
    """ceil(repeats * depth_multiplier) blocks a stage: 1.2 gives (2, 3, 3) for the
    stages' (1, 2, 2) repeats where rounding would give (1, 2, 2); at least one block."""
    model = dense.efficientnet(10, depth_multiplier=depth_multiplier)
    repeats = [n for _, n in dense.DENSE_EFFICIENTNET_STAGES]
    assert [len(stage) for stage in model.blocks] == [math.ceil(n * depth_multiplier)
                                                     for n in repeats]


@pytest.mark.parametrize("opts", [
    dict(input_dim=20), dict(input_dim=7, num_classes=4), dict(input_dim=5, hidden_dims=(30,)),
    dict(input_dim=5, hidden_dims=(64, 100), width_multiplier=0.3),
    dict(input_dim=5, hidden_dims=(12, 7), divisor=1),
    dict(input_dim=5, hidden_dims=(30,), width_multiplier=0.3, divisor=1)])
def test_mobilenet_output_size(opts):
    model = dense.mobilenet(**opts)
    y = model(randn(2, opts["input_dim"]).astype(np.float32))
    assert y.shape == (2, dense.mobilenet_output_size(**opts)) == (2, model.out_features)


@pytest.mark.parametrize("opts", [
    dict(input_dim=20), dict(input_dim=7, num_classes=4), dict(input_dim=5, base_dim=12),
    dict(input_dim=5, width_multiplier=0.6, depth_multiplier=0.5),
    dict(input_dim=5, head_dim=40), dict(input_dim=5, head_dim=40, width_multiplier=0.5),
    dict(input_dim=5, head_dim=50, divisor=1, width_multiplier=0.3),
    dict(input_dim=5, base_dim=10, divisor=1), dict(input_dim=5, expand_ratio=2, se_ratio=0)])
def test_efficientnet_output_size(opts):
    model = dense.efficientnet(**opts)
    y = model(randn(2, opts["input_dim"]).astype(np.float32))
    assert y.shape == (2, dense.efficientnet_output_size(**opts)) == (2, model.out_features)


@pytest.mark.slow
@pytest.mark.parametrize("factory,modes", [
    (lambda: dense.mobilenet(6, hidden_dims=(8, 16), num_classes=3), (True, False)),
    # train mode left out: a train-mode BN right after a block's linear layers cancels any
    # constant shift of its input, so the projection betas before it have a gradient of
    # exactly 0 and their relative check compares round-off (the blocks above are checked
    # in train mode one by one); eval mode with calibrated statistics instead
    (lambda: dense.efficientnet(6, base_dim=8, num_classes=3, depth_multiplier=0.5), ("eval",))])
def test_dense_models_gradcheck(factory, modes):
    for train in modes:
        model = factory().to(np.float64)
        gradcheck.randomize_batchnorm(model, seed=3)
        if train == "eval":
            calibrate_batchnorm(model, randn(32, 6, seed=99))
        else:
            model.train(train)
        x = gradcheck.dodge_kinks(model, lambda s: randn(8, 6, seed=s))
        result = gradcheck.check_module(model, x, max_elements=4)
        assert result.ok, f"train={train}: {result}"


def test_dense_models_seeded():
    a = dense.efficientnet(6, seed=1).state_dict()
    b = dense.efficientnet(6, seed=1).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = dense.mobilenet(6, seed=1).state_dict()
    d = dense.mobilenet(6, seed=2).state_dict()
    assert not all(np.array_equal(c[k], d[k]) for k in c)


def test_dense_errors():
    model = dense.mobilenet(10, num_classes=2)
    with pytest.raises(ValueError, match=r"dense.mobilenet: expected input \(N, 10\), "
                                         r"got \(4, 9\)"):
        model(np.zeros((4, 9), np.float32))
    with pytest.raises(TypeError, match="hiden_dims"):
        dense.mobilenet_output_size(input_dim=3, hiden_dims=(8,))
    with pytest.raises(TypeError, match="input_dim"):
        dense.efficientnet_output_size(base_dim=8)
    with pytest.raises(ValueError, match="activation"):
        dense.mobilenet(4, activation="tanh")
    with pytest.raises(ValueError, match="hidden_dims"):
        dense.mobilenet(4, hidden_dims=())
    with pytest.raises(ValueError, match="input_dim"):
        dense.efficientnet(0)
    with pytest.raises(ValueError, match="depth_multiplier"):
        dense.efficientnet(4, depth_multiplier=0)
    with pytest.raises(TypeError, match="width_mult"):
        models.get_model("dense_efficientnet", input_dim=4, width_mult=2)


# ---- the builders' options closer to the seed descriptions -----------------------------

def test_divisor_1_keeps_the_seeds_own_width_rounding():
    model = dense.mobilenet(10, hidden_dims=(12, 100, 30), width_multiplier=0.5, divisor=1)
    assert [b.out_features for b in model.blocks] == [max(1, round(h * 0.5)) for h in
                                                      (12, 100, 30)] == [6, 50, 15]
    assert [b.groups for b in model.blocks] == [1, 1, 5]   # dense_groups of the inputs 6, 6, 50
    tiny = dense.mobilenet(4, hidden_dims=(1, 3), width_multiplier=0.1, divisor=1)
    assert [b.out_features for b in tiny.blocks] == [1, 1]      # never below 1
    eff = dense.efficientnet(7, base_dim=12, width_multiplier=0.75, divisor=1)
    assert [[b.out_features for b in stage] for stage in eff.blocks] == [[9], [18, 18],
                                                                         [36, 36]]
    assert eff(randn(3, 7).astype(np.float32)).shape == (3, 36)
    default = dense.mobilenet(10, hidden_dims=(12, 100), width_multiplier=0.5)
    assert [b.out_features for b in default.blocks] == [8, 48]   # multiples of 8 by default


def test_efficientnet_head_dense_expand_and_se_ratio():
    model = dense.efficientnet(10, base_dim=8, num_classes=3, head_dim=64, expand_ratio=4,
                               se_ratio=0.5)
    assert isinstance(model.head_dense[0], nn.Linear) and model.head_dense[0].out_features == 64
    assert isinstance(model.head_dense[1], nn.BatchNorm1d) and isinstance(model.head_dense[2],
                                                                          nn.SiLU)
    assert model.head[-1].in_features == 64
    first = model.blocks[0][0]
    assert first.expanded_features == 32 and first.block[2].squeeze_features == 4   # 8 * 0.5
    keys = list(model.state_dict())
    assert "head_dense.0.weight" in keys and keys.index("head_dense.0.weight") < keys.index(
        "head.1.weight")
    plain = dense.efficientnet(10, base_dim=8, se_ratio=0)
    assert not any(isinstance(m, nn.DenseSqueezeExcitation) for m in plain.modules())
    assert isinstance(dense.efficientnet(10).head_dense, nn.Identity)   # default unchanged
    with pytest.raises(ValueError, match="head_dim"):
        dense.efficientnet(10, head_dim=0)
    with pytest.raises(ValueError, match="expand_ratio"):
        dense.efficientnet(10, expand_ratio=0.5)
    with pytest.raises(ValueError, match="se_ratio"):
        dense.efficientnet(10, se_ratio=2)
    with pytest.raises(ValueError, match="divisor"):
        dense.mobilenet(10, divisor=0)


@pytest.mark.slow
@pytest.mark.parametrize("factory", [
    # odd widths (divisor 1): groups that are not 8, a width-1-per-group layer
    lambda: dense.mobilenet(6, hidden_dims=(6, 10), num_classes=3, divisor=1),
    # the head dense layer, another expansion, no squeeze-excitation
    lambda: dense.efficientnet(6, base_dim=6, num_classes=3, depth_multiplier=0.5, divisor=1,
                               head_dim=20, expand_ratio=2, se_ratio=0),
    lambda: dense.efficientnet(6, base_dim=8, num_classes=3, depth_multiplier=0.5,
                               head_dim=16, se_ratio=0.5)])
def test_new_dense_options_gradcheck(factory):
    # eval mode with calibrated statistics (see test_dense_models_gradcheck for why)
    model = factory().to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=3)
    calibrate_batchnorm(model, randn(32, 6, seed=99))
    x = gradcheck.dodge_kinks(model, lambda s: randn(8, 6, seed=s))
    result = gradcheck.check_module(model, x, max_elements=4)
    assert result.ok, str(result)
    if isinstance(model.head_dense, nn.Sequential):          # the new layer itself, train mode
        layer = model.head_dense
        layer.train()
        x = gradcheck.dodge_kinks(layer, lambda s: randn(8, layer[0].in_features, seed=s))
        assert gradcheck.check_module(layer, x).ok
