"""Blocks: gradient checks in train and eval mode, structure, and SE == its parts composed."""

import numpy as np
import pytest

from tinymobilenet import nn

from conftest import assert_module_grads, randn

# the chapters these tests back (select with: pytest -m ch06)
pytestmark = [pytest.mark.ch06, pytest.mark.ch07, pytest.mark.ch08]



@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("make, shape", [
    (lambda: nn.DepthwiseSeparable(3, 5, stride=1), (2, 3, 7, 6)),
    (lambda: nn.DepthwiseSeparable(4, 6, stride=2, kernel_size=5), (2, 4, 9, 7)),
    (lambda: nn.SqueezeExcitation(6, 3), (2, 6, 5, 3)),
    (lambda: nn.SqueezeExcitation(6, 4, nn.ReLU, nn.HardSigmoid), (2, 6, 3, 5)),
    (lambda: nn.InvertedResidual(4, 4, 1, expand_ratio=3), (2, 4, 5, 7)),           # residual
    (lambda: nn.InvertedResidual(4, 6, 2, expand_ratio=2), (2, 4, 7, 5)),           # no residual
    (lambda: nn.InvertedResidual(5, 5, 1, expand_ratio=1), (2, 5, 5, 5)),           # no expansion
    (lambda: nn.InvertedResidual(4, 4, 1, expanded_channels=12, kernel_size=5, activation=nn.HardSwish,
                                 se_channels=8, layout="v3"), (2, 4, 6, 5)),
    (lambda: nn.MBConv(4, 4, 1, expand_ratio=4, kernel_size=3, stochastic_depth_prob=0.5), (4, 4, 5, 5)),
    (lambda: nn.MBConv(4, 8, 2, expand_ratio=6, kernel_size=5), (2, 4, 7, 6)),
])
def test_block_gradcheck(make, shape, train):
    assert_module_grads(make(), shape, train=train)


def test_se_equals_its_parts_composed():
    se = nn.SqueezeExcitation(6, 3, nn.ReLU, nn.HardSigmoid).to(np.float64)
    x = randn(2, 6, 4, 5)
    pooled = nn.GlobalAvgPool2d()(x)
    scale = nn.HardSigmoid()(se.fc2(nn.ReLU()(se.fc1(pooled))))
    np.testing.assert_allclose(se(x), x * scale, rtol=1e-14)
    # and the gradient of the fused backward equals the chain of the parts' backwards
    g = randn(2, 6, 4, 5, seed=3)
    dx = se.backward(g)
    fc1, relu, fc2, gate = se.fc1, nn.ReLU(), se.fc2, nn.HardSigmoid()
    pool = nn.GlobalAvgPool2d()
    s = gate(fc2(relu(fc1(pool(x)))))
    ds = (g * x).sum(axis=(2, 3), keepdims=True)
    dx_parts = g * s + pool.backward(fc1.backward(relu.backward(fc2.backward(gate.backward(ds)))))
    np.testing.assert_allclose(dx, dx_parts, rtol=1e-12)


def test_inverted_residual_structure():
    v2 = nn.InvertedResidual(16, 24, 2, expand_ratio=6)
    assert not v2.use_res_connect and v2.expanded_channels == 96
    assert [k for k in v2.state_dict() if k.endswith("weight")] == [
        "conv.0.0.weight", "conv.0.1.weight", "conv.1.0.weight", "conv.1.1.weight",
        "conv.2.weight", "conv.3.weight"]
    assert v2.state_dict()["conv.1.0.weight"].shape == (96, 1, 3, 3)        # depthwise
    assert nn.InvertedResidual(24, 24, 1).use_res_connect
    assert not nn.InvertedResidual(24, 24, 2).use_res_connect
    no_expand = nn.InvertedResidual(32, 16, 1, expand_ratio=1)
    assert list(no_expand.state_dict())[0] == "conv.0.0.weight"
    assert no_expand.state_dict()["conv.0.0.weight"].shape == (32, 1, 3, 3)
    # the projection has no activation: a linear bottleneck
    assert not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in list(v2.conv)[2:])
    v3 = nn.InvertedResidual(16, 16, 1, expanded_channels=64, se_channels=16, layout="v3",
                             activation=nn.HardSwish)
    assert "block.2.fc1.weight" in v3.state_dict() and "block.3.0.weight" in v3.state_dict()


def test_residual_adds_identity_and_stochastic_depth_is_train_only():
    blk = nn.MBConv(4, 4, 1, expand_ratio=2, stochastic_depth_prob=1.0).to(np.float64)
    x = randn(3, 4, 5, 5)
    np.testing.assert_array_equal(blk(x), x)          # every branch dropped: identity
    np.testing.assert_array_equal(blk.backward(x), x)
    blk.eval()
    assert not np.allclose(blk(x), x)                 # eval keeps the branch


def test_blocks_refuse_bad_input():
    with pytest.raises(ValueError, match=r"InvertedResidual\(4->24->8, s=1\): expected input \(N, 4, H, W\)"):
        nn.InvertedResidual(4, 8, 1)(np.zeros((1, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"SqueezeExcitation\(8->2\): expected input \(N, 8, H, W\), got \(1, 4, 3, 3\)"):
        nn.SqueezeExcitation(8, 2)(np.zeros((1, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        nn.InvertedResidual(4, 4, 3)


def test_stochastic_depth_gradcheck_and_semantics():
    """Alone, not only inside MBConv: whole samples dropped, survivors scaled by 1/(1-p),
    the same mask in backward, identity in eval mode."""
    sd = nn.StochasticDepth(0.4, seed=2)
    x = randn(16, 3, 2, 2)
    y = sd(x)
    kept = np.array([np.any(y[n] != 0) for n in range(16)])
    assert 0 < kept.sum() < 16                                          # some of each
    np.testing.assert_allclose(y[kept], x[kept] / 0.6, rtol=1e-12)
    np.testing.assert_array_equal(y[~kept], 0)
    np.testing.assert_array_equal(sd.backward(np.ones_like(x))[~kept], 0)
    assert_module_grads(nn.StochasticDepth(0.4, seed=2), (8, 3, 2, 2), tol=1e-7)
    assert sd.eval()(x) is x and sd.backward(x) is x
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.StochasticDepth(0.2).backward(x)
