"""Model factories: torchvision's state-dict layout, parameter counts, forward shapes,
end-to-end gradient checks of a small instance of each family, the registry and errors.

The reference layout (``data/torchvision_state_dicts.json.gz``) was generated from
torchvision 0.29.1, so these tests need no torch.
"""

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tinymobilenet import models, nn
from tinymobilenet.models.efficientnet import EfficientNet

from conftest import check_model_gradients, randn

# the chapters these tests back (select with: pytest -m ch06)
pytestmark = [pytest.mark.ch06, pytest.mark.ch07, pytest.mark.ch08]


DATA = Path(__file__).parent / "data"

with gzip.open(DATA / "torchvision_state_dicts.json.gz", "rt") as f:
    REFERENCE = json.load(f)["models"]

# reference entry -> how to build ours
BUILD = {
    "mobilenet_v2": dict(name="mobilenet_v2"),
    "mobilenet_v2(width_mult=0.5)": dict(name="mobilenet_v2", width_mult=0.5),
    "mobilenet_v2(width_mult=1.4)": dict(name="mobilenet_v2", width_mult=1.4),
    **{n: dict(name=n) for n in REFERENCE if not n.startswith("mobilenet_v2")},
}

# BatchNorm (eps, momentum) per model in torchvision's sources: V3 and EfficientNet-B5..B7
# keep TensorFlow's defaults, everything else PyTorch's
BN_CONFIG = {"mobilenet_v2": (1e-5, 0.1), "mobilenet_v3_small": (1e-3, 0.01),
             "mobilenet_v3_large": (1e-3, 0.01),
             **{f"efficientnet_b{i}": (1e-5, 0.1) for i in range(5)},
             **{f"efficientnet_b{i}": (1e-3, 0.01) for i in range(5, 8)}}


def build(ref_name, **kwargs):
    opts = dict(BUILD[ref_name])
    return models.get_model(opts.pop("name"), **opts, **kwargs)


def test_reference_covers_every_torchvision_family():
    assert set(REFERENCE) == set(BUILD)
    # MobileNetV1 and EfficientNet-Lite have no torchvision counterpart
    not_in_torchvision = {"mobilenet_v1", *models.EFFICIENTNET_LITE_PARAMS}
    assert {o["name"] for o in BUILD.values()} == set(models.MODEL_NAMES) - not_in_torchvision


@pytest.mark.slow
@pytest.mark.parametrize("ref_name", list(REFERENCE))
def test_every_torchvision_layout_runs_forward(ref_name):
    """Each model of the reference (its layout checked by the next test) runs on a small
    image (16 px: the cost of the big models at this size is in their weights, not their
    pixels)."""
    y = build(ref_name).eval()(randn(2, 3, 16, 16).astype(np.float32))
    assert y.shape == (2, 1000) and y.dtype == np.float32 and np.isfinite(y).all()


@pytest.mark.parametrize("ref_name", list(REFERENCE))
def test_state_dict_layout_and_batchnorm_settings_match_torchvision(ref_name):
    """The structure, on each run for every width and depth of B0..B7: torchvision's keys
    in order with their shapes, its trainable-parameter count, its BatchNorm eps and
    momentum."""
    model = build(ref_name)
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    expected = [(k, s) for k, s in REFERENCE[ref_name]["state_dict"]]
    first_diff = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
    assert first_diff is None, (f"{ref_name}: entry {first_diff}: ours {got[first_diff]}, "
                                f"torchvision {expected[first_diff]}")
    assert len(got) == len(expected)
    assert model.num_parameters() == REFERENCE[ref_name]["trainable_params"]
    eps, momentum = BN_CONFIG[BUILD[ref_name]["name"]]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(b.eps == eps and b.momentum == momentum for b in bns)


def test_efficientnet_resolutions_are_those_of_torchvision_s_weights():
    """The table's input sizes are the crops torchvision evaluates each B0..B7's weights
    at (the weights registry, copied from torchvision's metadata), except B2: its weights
    are evaluated at 288 px, the table keeps the release's 260 (see EFFICIENTNET_PARAMS)."""
    for name, (_, _, resolution, _) in models.EFFICIENTNET_PARAMS.items():
        crops = {models.weights_info(name, w)["crop"] for w in models.weights_names(name)}
        assert crops == ({288} if name == "efficientnet_b2" else {resolution}), name


@pytest.mark.torch
@pytest.mark.parametrize("arch, width_mult", [("mobilenet_v3_small", 0.75),
                                              ("mobilenet_v3_large", 0.5)])
def test_v3_width_multiplier_layout_and_eval_outputs_match_torchvision(arch, width_mult):
    """Off the default width every channel count is scaled, the classifier's hidden
    width too: key for key and shape for shape what torchvision builds; and with its
    weights loaded, the eval-mode logits of a small image are torchvision's (every block's
    activation, kernel, stride and squeeze-excitation gate enter them)."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    theirs = getattr(torchvision.models, arch)(width_mult=width_mult, num_classes=10)
    theirs = theirs.double().eval()
    expected = [(k, tuple(v.shape)) for k, v in theirs.state_dict().items()]
    ours = getattr(models, arch)(width_mult=width_mult, num_classes=10)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == expected
    models.load_weights(ours.to(np.float64),
                        {k: v.numpy() for k, v in theirs.state_dict().items()})
    x = randn(2, 3, 48, 40)
    with torch.no_grad():
        y = theirs(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours.eval()(x), y, rtol=1e-7, atol=1e-9 * np.abs(y).max())


@pytest.mark.parametrize("name,size", [("mobilenet_v1", 32), ("mobilenet_v2", 40),
                                       ("mobilenet_v3_small", 33), ("efficientnet_b0", 32)])
def test_forward_shape_small_models_any_resolution(name, size):
    model = models.get_model(name, num_classes=7)
    y = model.eval()(randn(2, 3, size, size + 8).astype(np.float32))
    assert y.shape == (2, 7)
    dx = model.backward(np.ones_like(y))
    assert dx.shape == (2, 3, size, size + 8)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0"])
def test_same_seed_same_weights(name):
    a = models.get_model(name, num_classes=10, seed=3).state_dict()
    b = models.get_model(name, num_classes=10, seed=3).state_dict()
    c = models.get_model(name, num_classes=10, seed=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not all(np.array_equal(a[k], c[k]) for k in a)


def test_torchvision_initialisation():
    """kaiming normal (fan_out) convs, BN 1/0, Linear N(0, 0.01) (MobileNet) or
    U(+-1/sqrt(out)) (EfficientNet), zero biases."""
    v2 = models.mobilenet_v2()
    w = v2.features[18][0].weight.data                        # (1280, 320, 1, 1)
    assert abs(w.std() / np.sqrt(2 / 1280) - 1) < 0.02 and abs(w.mean()) < 1e-3
    dw = v2.features[17].conv[1][0].weight.data               # depthwise (960, 1, 3, 3)
    assert abs(dw.std() / np.sqrt(2 / (960 * 9)) - 1) < 0.05
    fc = v2.classifier[1]
    assert abs(fc.weight.data.std() / 0.01 - 1) < 0.02 and not fc.bias.data.any()
    b0 = models.efficientnet_b0(num_classes=100)
    fc = b0.classifier[1].weight.data
    assert np.abs(fc).max() <= 0.1 and np.abs(fc).max() > 0.099      # 1/sqrt(100)
    se = b0.features[2][0].block[2]
    assert not se.fc1.bias.data.any() and not se.fc2.bias.data.any()
    bn = b0.features[0][1]
    assert (bn.weight.data == 1).all() and not bn.bias.data.any()


def test_v2_layout_first_block_without_expansion():
    v2 = models.mobilenet_v2()
    first = v2.features[1]
    assert isinstance(first, nn.InvertedResidual) and first.expanded_channels == 32
    assert [type(m).__name__ for m in first.conv] == ["Conv2dNormActivation", "Conv2d",
                                                     "BatchNorm2d"]
    assert not first.use_res_connect and v2.features[3].use_res_connect
    assert models.mobilenet_v2(width_mult=0.5).last_channel == 1280     # never below 1280
    assert models.mobilenet_v2(width_mult=1.4).last_channel == 1792


def test_v3_squeeze_excitation_and_activations():
    large = models.mobilenet_v3_large()
    blk = large.features[4]                                  # 24 -> 72 -> 40, k5, SE, RE
    se = blk.block[2]
    assert isinstance(se, nn.SqueezeExcitation)
    assert se.squeeze_channels == nn.make_divisible(72 // 4, 8) == 24
    assert isinstance(se.scale_activation, nn.HardSigmoid)
    assert isinstance(blk.block[0][2], nn.ReLU)
    assert isinstance(large.features[7].block[0][2], nn.HardSwish)
    assert [type(m).__name__ for m in large.classifier] == ["Linear", "HardSwish", "Dropout",
                                                           "Linear"]


def test_efficientnet_stochastic_depth_schedule():
    model = models.efficientnet_b1(stochastic_depth_prob=0.2)
    blocks = [b for stage in list(model.features)[1:-1] for b in stage]
    total = sum(math.ceil(n * 1.1) for *_, n in models.EFFICIENTNET_STAGES)
    assert len(blocks) == total == 23
    probs = [b.stochastic_depth.p for b in blocks]
    assert probs == pytest.approx([0.2 * i / total for i in range(total)])
    assert all(b.block[-2].squeeze_channels == max(1, b.in_channels // 4) for b in blocks)


def test_stochastic_depth_only_in_training():
    def tiny(p):
        return EfficientNet(0.25, 0.5, num_classes=4, dropout=0.0, stochastic_depth_prob=p,
                            name="efficientnet_tiny", seed=1)
    x = randn(2, 3, 32, 32).astype(np.float32)
    # same weights, eval: stochastic depth is the identity, the computation is the same
    assert np.array_equal(tiny(0.9).eval()(x), tiny(0.0).eval()(x))
    model = tiny(0.9).train()
    assert not np.array_equal(model(x), model(x))                     # branches dropped


def test_compound_scaling_rule_and_table():
    d, w, r = models.compound_scaling(0)
    assert (d, w, r) == (1.0, 1.0, 224)
    d, w, r = models.compound_scaling(1)
    assert (d, w, r) == (pytest.approx(1.2), pytest.approx(1.1), 258)
    d, w, r = models.compound_scaling(7)
    assert d == pytest.approx(1.2 ** 7) and w == pytest.approx(1.1 ** 7) and r == 596
    assert 1.2 * 1.1 ** 2 * 1.15 ** 2 == pytest.approx(1.92, abs=0.01)   # FLOPs ~ 2^phi
    assert models.EFFICIENTNET_PARAMS["efficientnet_b1"] == (1.0, 1.1, 240, 0.2)
    assert models.EFFICIENTNET_PARAMS["efficientnet_b7"] == (2.0, 3.1, 600, 0.5)
    with pytest.raises(ValueError, match="phi"):
        models.compound_scaling(-1)


# ---- end-to-end gradient checks of a tiny instance of each family ----------------------

@pytest.mark.slow
def test_gradcheck_mobilenet_v2_tiny():
    check_model_gradients(models.mobilenet_v2(0.1, num_classes=3, dropout=0.0), (2, 3, 16, 16))


@pytest.mark.slow
def test_gradcheck_mobilenet_v3_small_tiny():
    check_model_gradients(models.mobilenet_v3_small(0.1, num_classes=3), (2, 3, 16, 16))


@pytest.mark.slow
def test_gradcheck_efficientnet_tiny():
    model = EfficientNet(width_mult=0.1, depth_mult=0.1, num_classes=3, dropout=0.0,
                         stochastic_depth_prob=0.0, name="efficientnet_tiny")
    check_model_gradients(model, (2, 3, 16, 16), h=1e-5)     # SiLU, sigmoid: no kinks


# ---- registry and errors ---------------------------------------------------------------

def test_registry_names_and_factories():
    assert models.MODEL_NAMES == (
        "mobilenet_v1", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
        *(f"efficientnet_b{i}" for i in range(8)), *(f"efficientnet_lite{i}" for i in range(5)))
    assert models.DENSE_MODEL_NAMES == ("dense_mobilenet", "dense_efficientnet")
    for name in models.MODEL_NAMES:
        assert callable(getattr(models, name))
    m = models.get_model("mobilenet_v3_small", width_mult=0.5, num_classes=4)
    assert isinstance(m, models.MobileNetV3) and m.classifier[3].out_features == 4
    d = models.get_model("dense_mobilenet", input_dim=12, num_classes=3)
    assert d(randn(4, 12).astype(np.float32)).shape == (4, 3)


def test_unknown_model_and_options_refused_by_name():
    with pytest.raises(ValueError, match="mobilenet_v4"):
        models.get_model("mobilenet_v4")
    with pytest.raises(TypeError, match="widht_mult"):
        models.get_model("mobilenet_v2", widht_mult=0.5)
    with pytest.raises(TypeError, match="width_mult"):       # EfficientNet scales by name
        models.get_model("efficientnet_b0", width_mult=0.5)
    with pytest.raises(TypeError, match="alpha"):
        models.mobilenet_v2(alpha=0.5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_classes=0), "num_classes"), (dict(dropout=1.0), "dropout"),
    (dict(width_mult=0), "width_mult"), (dict(num_classes=2.5), "num_classes")])
def test_bad_option_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.mobilenet_v3_small(**kwargs)


def test_bad_efficientnet_options():
    with pytest.raises(ValueError, match="stochastic_depth_prob"):
        models.efficientnet_b0(stochastic_depth_prob=1.5)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0"])
def test_wrong_input_channels_names_the_model(name):
    model = models.get_model(name, num_classes=5)
    with pytest.raises(ValueError, match=rf"{name}: expected input \(N, 3, H, W\), "
                                         rf"got \(2, 1, 32, 32\)"):
        model(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got \(3, 32, 32\)"):
        model(np.zeros((3, 32, 32), np.float32))
    with pytest.raises(TypeError, match="float32"):
        model(np.zeros((2, 3, 32, 32)))                       # float64 into a float32 model


def test_in_channels_option():
    model = models.mobilenet_v2(0.25, num_classes=10, in_channels=1)
    assert model.features[0][0].weight.shape == (8, 1, 3, 3)
    assert model.eval()(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 10)
