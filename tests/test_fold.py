"""Batch-norm folding: same eval outputs to float64 round-off, fewer parameters, the
original left untouched."""

import numpy as np
import pytest

from tinymobilenet import gradcheck, models, nn
from tinymobilenet.models import dense

from conftest import randn

# the chapters these tests back (select with: pytest -m ch04)
pytestmark = [pytest.mark.ch04]


CASES = [
    (lambda: models.mobilenet_v1(0.25, num_classes=5), (2, 3, 32, 32)),
    (lambda: models.mobilenet_v2(0.35, num_classes=5), (2, 3, 32, 32)),
    (lambda: models.mobilenet_v3_small(0.5, num_classes=5), (2, 3, 32, 32)),
    (lambda: models.EfficientNet(0.25, 0.3, num_classes=5, name="efficientnet_narrow"),
     (2, 3, 32, 32)),
    (lambda: dense.mobilenet(10, num_classes=4), (3, 10)),
    (lambda: dense.efficientnet(10, num_classes=4, depth_multiplier=0.5), (3, 10)),
]


def _bn_features(model, kinds=(nn.BatchNorm2d, nn.BatchNorm1d)):
    return sum(m.num_features for m in model.modules() if isinstance(m, kinds))


@pytest.mark.parametrize("factory,shape", CASES)
def test_fold_same_eval_outputs_fewer_params(factory, shape):
    model = factory().to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=5)
    model.eval()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = randn(*shape, seed=2)
    y = model(x)
    folded = models.fold_batchnorm(model)
    y_folded = folded(x)
    assert np.abs(y_folded - y).max() <= 1e-12 * np.abs(y).max()
    # every BN was preceded by a conv / linear layer: none is left
    assert not [m for m in folded.modules() if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d))]
    # each folded BN of C features gave up gamma and beta (2C) for a bias (C)
    assert folded.num_parameters() == model.num_parameters() - _bn_features(model)
    assert not folded.training
    after = model.state_dict()                                   # the original untouched
    assert list(after) == list(before) and all(np.array_equal(after[k], before[k]) for k in after)
    assert any(isinstance(m, nn.BatchNorm2d) or isinstance(m, nn.BatchNorm1d)
               for m in model.modules())


def test_fold_keys_and_float32():
    model = models.mobilenet_v2(0.5, num_classes=3)
    gradcheck.randomize_batchnorm(model, seed=1)
    model.eval()
    folded = models.fold_batchnorm(model)
    keys = list(folded.state_dict())
    assert "features.0.0.bias" in keys and "features.0.1.weight" not in keys
    assert keys.index("features.0.0.weight") + 1 == keys.index("features.0.0.bias")
    assert isinstance(folded.features[1].conv[1], nn.Conv2d)              # projection conv
    assert isinstance(folded.features[1].conv[2], nn.Identity)            # its BN
    assert folded.features[0][0].bias.data.dtype == np.float32
    x = randn(2, 3, 32, 32, seed=1).astype(np.float32)
    y, y_folded = model(x), folded(x)
    assert y_folded.dtype == np.float32
    assert np.allclose(y_folded, y, rtol=1e-4, atol=1e-5 * np.abs(y).max())


def test_fold_pair_arithmetic():
    """Conv with a bias, then BN: W' = s W, b' = s b + beta - s mean, s = gamma/sqrt(var+eps)."""
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=True).to(np.float64)
    bn = nn.BatchNorm2d(3, eps=1e-3).to(np.float64)
    gradcheck.randomize_batchnorm(bn, seed=0)
    seq = nn.Sequential(conv, bn).eval()
    s = bn.weight.data / np.sqrt(bn.running_var + 1e-3)
    w, b = conv.weight.data.copy(), conv.bias.data.copy()
    folded = models.fold_batchnorm(seq)
    assert np.allclose(folded[0].weight.data, w * s[:, None, None, None])
    assert np.allclose(folded[0].bias.data, s * b + bn.bias.data - s * bn.running_mean)
    x = randn(2, 2, 5, 4)
    assert np.allclose(folded(x), seq(x), rtol=1e-12, atol=1e-12)


def test_folding_a_fused_model_keeps_its_activations():
    from tinymobilenet import nn
    model = models.mobilenet_v2(0.25, num_classes=5).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = model(x)
    folded = models.fold_batchnorm(nn.fuse_batchnorm_activation(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.ReLU6) for m in folded.modules())
    np.testing.assert_allclose(folded(x), y, rtol=1e-4, atol=1e-5)   # another computation
