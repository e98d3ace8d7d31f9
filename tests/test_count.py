"""The counter: hand-derived formulas for single layers, the papers' tables recomputed from
the models, and the command line.

The expectations are either formulas written out here from the layer's geometry or numbers
printed in the papers (and torchvision's documented parameter counts); never numbers copied
from the counter's own output.

Where a paper's printed number is not the exact count rounded to its last digit, the test
says so and checks what the paper's number can be explained by:

* MobileNetV1 Table 7 prints 290 M for 160 x 160; the count is 290.68 M, which the paper
  truncated (every other entry of Tables 6 and 7 is rounded: 569 from 568.74).
  :func:`printed` accepts either rounding or truncation to the printed digit.
* MobileNetV1 Table 2 gives the 3x3 conv 1.19 % of the Mult-Adds; the count is 1.91 %
  (10.84 M of 568.74 M), the same two digits swapped. With 1.19 the four shares add up to
  99.29 %, with 1.91 to 100.01 % (four roundings): the Mult-Add column does not add up as
  printed.
  Its parameter column (74.59 + 1.06 + 0.02 + 24.33) does add up to 100.00 %, and matches
  the conv/FC *weights* (no biases, no BatchNorm) to the last digit.
* MobileNetV1 Table 4 prints 4866 M for "Conv MobileNet"; the count is 4867.29 M. The
  paper's number matches the count without the 1.02 M of the fully connected layer
  (4866.27 M), although the 569 M beside it includes that layer.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymobilenet import cli, count, models, nn
from tinymobilenet.models import mobilenet_v1
from tinymobilenet.models.mobilenet_v1 import V1_BLOCKS

from conftest import v1_table1_counts

# the chapters these tests back (select with: pytest -m ch03)
pytestmark = [pytest.mark.ch03, pytest.mark.ch05]



def printed(paper, exact):
    """True if ``paper`` is ``exact`` rounded or truncated to the paper's last digit."""
    return paper in (round(exact), math.floor(exact))


def leaf(s, kind):
    return [r for r in s.rows if r.kind == kind]


# ---------------------------------------------------------------------------------------
# single layers against hand-derived formulas
# ---------------------------------------------------------------------------------------

def out_size(size, K, stride, pad):
    return (size + 2 * pad - K) // stride + 1


@pytest.mark.parametrize("N,C_in,C_out,K,stride,pad,groups,H,W", [
    (2, 6, 10, 3, 2, 1, 1, 9, 7),       # stride 2, odd non-square input
    (1, 6, 12, 3, 2, 0, 3, 11, 8),      # grouped, stride 2, no padding
    (3, 4, 8, 5, 1, 2, 2, 6, 6),        # grouped 5x5
    (1, 8, 8, 3, 2, 1, 8, 10, 9),       # depthwise through Conv2d(groups=C)
    (2, 5, 7, 1, 1, 0, 1, 4, 3),        # pointwise
])
def test_conv_macs_params_other_ops(N, C_in, C_out, K, stride, pad, groups, H, W):
    conv = nn.Conv2d(C_in, C_out, K, stride, pad, groups=groups, bias=True)
    s = count.summary(conv, (N, C_in, H, W))
    Ho, Wo = out_size(H, K, stride, pad), out_size(W, K, stride, pad)
    (r,) = s.rows
    assert r.output_shape == (N, C_out, Ho, Wo)
    assert r.macs == N * (C_in // groups) * K * K * C_out * Ho * Wo
    assert r.params == C_out * (C_in // groups) * K * K + C_out
    assert r.weights == C_out * (C_in // groups) * K * K
    assert r.other_ops == N * C_out * Ho * Wo            # one bias add per output
    assert s.total_flops == 2 * s.total_macs


@settings(max_examples=30, deadline=None)
@given(N=st.integers(1, 2), g=st.integers(1, 3), cin=st.integers(1, 3), cout=st.integers(1, 3),
       K=st.sampled_from([1, 2, 3, 5]), stride=st.integers(1, 3), pad=st.integers(0, 2),
       H=st.integers(5, 12), W=st.integers(5, 12))
def test_conv_counts_from_shapes_match_a_real_forward(N, g, cin, cout, K, stride, pad, H, W):
    conv = nn.Conv2d(g * cin, g * cout, K, stride, pad, groups=g, bias=False)
    fast = count.summary(conv, (N, g * cin, H, W)).rows[0]
    real = conv(np.zeros((N, g * cin, H, W), np.float32)).shape
    Ho, Wo = out_size(H, K, stride, pad), out_size(W, K, stride, pad)
    assert fast.output_shape == real == (N, g * cout, Ho, Wo)
    assert fast.macs == N * cin * K * K * g * cout * Ho * Wo


def test_depthwise_layer_counts_kxk_c_hout_wout():
    N, C, K, stride, pad, H, W = 3, 8, 5, 2, 2, 10, 11
    s = count.summary(nn.DepthwiseConv2d(C, K, stride, pad), (N, C, H, W))
    Ho, Wo = out_size(H, K, stride, pad), out_size(W, K, stride, pad)
    (r,) = s.rows
    assert r.kind == "depthwise 5x5"
    assert r.macs == K * K * C * Ho * Wo * N
    assert r.params == C * K * K and r.other_ops == 0


def test_depthwise_is_the_grouped_formula_with_groups_c():
    a = count.summary(nn.DepthwiseConv2d(6, 3, 2, 1), (1, 6, 9, 9)).rows[0]
    b = count.summary(nn.Conv2d(6, 6, 3, 2, 1, groups=6, bias=False), (1, 6, 9, 9)).rows[0]
    assert (a.macs, a.params, a.kind) == (b.macs, b.params, b.kind)


def test_kinds_of_convolutions():
    rows = [count.summary(m, shape).rows[0] for m, shape in [
        (nn.Conv2d(3, 8, 3, 2, 1), (1, 3, 8, 8)), (nn.PointwiseConv2d(3, 8), (1, 3, 8, 8)),
        (nn.Conv2d(4, 8, 3, groups=2), (1, 4, 8, 8)), (nn.DepthwiseConv2d(4, 3), (1, 4, 8, 8)),
        (nn.Linear(5, 2), (1, 5))]]
    assert [r.kind for r in rows] == ["conv 3x3", "pointwise 1x1", "grouped 3x3",
                                      "depthwise 3x3", "fully connected"]


def test_linear_batchnorm_activation_pooling():
    N, C, H, W, K = 2, 6, 5, 4, 3
    net = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU6(), nn.GlobalAvgPool2d(), nn.Flatten(),
                        nn.Linear(C, K))
    s = count.summary(net, (N, C, H, W))
    bn, act, pool, flat, fc = [r for r in s.rows if r.is_leaf]
    assert (bn.params, bn.buffers, bn.macs, bn.other_ops) == (2 * C, 2 * C + 1, 0, N * C * H * W)
    assert (act.params, act.macs, act.other_ops) == (0, 0, N * C * H * W)
    assert pool.output_shape == (N, C, 1, 1) and pool.other_ops == N * C * H * W
    assert flat.output_shape == (N, C) and flat.other_ops == 0
    assert fc.macs == N * C * K and fc.params == C * K + K and fc.other_ops == N * K
    assert s.total_macs == N * C * K


@pytest.mark.parametrize("groups", [1, 4, 24])
def test_grouped_linear_counts_only_its_groups(groups):
    """A group-wise dense layer (the 1-D "depthwise") does (D / groups) * M multiply-adds a
    sample, one per weight, as a grouped convolution with 1 x 1 kernels would."""
    N, D, M = 3, 24, 48
    layer = nn.GroupedLinear(D, M, groups=groups)
    (row,) = [r for r in count.summary(nn.Sequential(layer), (N, D)).rows if r.is_leaf]
    assert row.macs == N * (D // groups) * M == N * layer.weight.data.size
    conv = nn.Conv2d(D, M, 1, groups=groups)
    (conv_row,) = [r for r in count.summary(nn.Sequential(conv), (N, D, 1, 1)).rows
                   if r.is_leaf]
    assert row.macs == conv_row.macs


def test_squeeze_excitation_counts_its_fcs_and_its_own_pool_and_scale():
    N, C, S, H, W = 2, 8, 3, 5, 6
    s = count.summary(nn.SqueezeExcitation(C, S), (N, C, H, W))
    se = s.rows[0]
    fc1, fc2 = leaf(s, "SE 1x1")
    assert se.other_ops == 2 * N * C * H * W and se.other_kind == "SE pool + scale"
    assert fc1.macs == N * C * S and fc2.macs == N * S * C      # 1x1 convs on (N, C, 1, 1)
    assert s.total_params == C * S + S + S * C + C


@pytest.mark.parametrize("stride,C_out,adds", [(1, 8, True), (2, 8, False), (1, 16, False)])
def test_inverted_residual_adds_only_with_a_skip(stride, C_out, adds):
    N, C, H, W, t = 1, 8, 7, 7, 4
    s = count.summary(nn.InvertedResidual(C, C_out, stride, expand_ratio=t), (N, C, H, W))
    Ho = out_size(H, 3, stride, 1)
    assert s.rows[0].other_ops == (N * C_out * Ho * Ho if adds else 0)
    E = C * t
    assert s.total_macs == N * (C * E * H * W + 9 * E * Ho * Ho + E * C_out * Ho * Ho)


def test_shapes_without_kernels_equal_a_real_forward():
    model = mobilenet_v1(alpha=0.25, num_classes=10)
    blocks = nn.Sequential(nn.InvertedResidual(8, 8, 1, 3.0, se_channels=4, layout="v3"),
                           nn.MBConv(8, 16, 2, 4.0, kernel_size=5))
    dense = models.dense.efficientnet(16, base_dim=8, num_classes=3)
    for m, shape in [(model, (2, 3, 33, 31)), (blocks, (1, 8, 9, 9)), (dense, (4, 16))]:
        rows = count.summary(m, shape).rows
        real = _real_output_shapes(m, shape)
        # every module, in the order forward calls it, with the shape forward gives it
        assert [(r.name, r.output_shape) for r in rows] == real


def _real_output_shapes(model, shape):
    """(name, output shape) of every module in the order a real forward calls them: the
    test wraps each forward to record it (the counter itself never does)."""
    names = {id(m): (n or type(m).__name__) for n, m in model.named_modules()}
    seen = []

    def wrap(m):
        inner = m.forward

        def recorded(x):
            i = len(seen)
            seen.append(None)
            y = inner(x)
            seen[i] = (names[id(m)], tuple(y.shape))   # entry order, as the counter's rows
            return y
        object.__setattr__(m, "forward", recorded)

    for m in model.modules():
        wrap(m)
    try:
        model.eval()(np.zeros(shape, np.float32))
    finally:
        for m in model.modules():
            m.__dict__.pop("forward", None)
    return seen


def test_totals_agree_with_the_model_and_its_state_dict():
    model = mobilenet_v1(alpha=0.5)
    s = count.summary(model)
    assert s.total_params == model.num_parameters()
    assert s.total_params + s.total_buffers == sum(v.size for v in model.state_dict().values())
    split = s.param_split()
    assert split["weights"] + split["biases"] + split["batch norm"] == s.total_params


def test_parameters_of_modules_forward_never_calls_are_still_counted():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.unused = nn.Conv2d(3, 4, 3), nn.Linear(5, 6)

        def forward(self, x):
            return self.conv(x)

    s = count.summary(Net(), (1, 3, 8, 8))
    assert s.total_params == 3 * 4 * 9 + 4 + 5 * 6 + 6
    assert s.rows[-1].name == "(not called by forward)"
    # they hold no counted layer's weights or biases: the split puts them apart
    assert s.param_split() == {"weights": 3 * 4 * 9, "biases": 4, "batch norm": 0,
                               "other": 5 * 6 + 6}


def test_summary_leaves_the_model_as_it_was():
    model = mobilenet_v1(alpha=0.25, num_classes=10).train()
    before = model.state_dict()
    count.summary(model, (1, 3, 32, 32))
    assert model.training and "forward" not in vars(model.features[1])
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_bad_input_size_is_a_clear_error():
    with pytest.raises(ValueError, match="input_size"):
        count.summary(mobilenet_v1(alpha=0.25), (1, 3, 0, 224))
    with pytest.raises(ValueError, match=r"expected input \(N, 3, H, W\), got \(1, 4, 32, 32\)"):
        count.summary(mobilenet_v1(alpha=0.25), (1, 4, 32, 32))


# ---------------------------------------------------------------------------------------
# depthwise separable vs full convolution: 1/C_out + 1/K^2
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_separable_mac_ratio_is_exactly_the_formula(alpha):
    blocks = count.summary(mobilenet_v1(alpha=alpha)).separable_blocks()
    assert len(blocks) == len(V1_BLOCKS)
    c_in = int(32 * alpha)
    for b, (c, s) in zip(blocks, V1_BLOCKS):
        assert (b.in_channels, b.out_channels, b.stride) == (c_in, int(c * alpha), s)
        assert Fraction(b.macs, b.full_macs) == Fraction(1, b.out_channels) + Fraction(1, 9)
        # weights alone: the same ratio; with the depthwise BatchNorm, 2/(9 C_out) more
        assert Fraction(b.weights, b.full_weights) == Fraction(1, b.out_channels) + Fraction(1, 9)
        assert Fraction(b.params, b.full_params) == (
            Fraction(1, b.out_channels) + Fraction(1, 9) + Fraction(2, 9 * b.out_channels))
        c_in = b.out_channels


def test_separable_pairs_in_inverted_residuals_skip_the_squeeze_excitation():
    block = nn.InvertedResidual(8, 12, 2, 6.0, kernel_size=5, se_channels=4, layout="v3")
    s = count.summary(block, (1, 8, 10, 10))
    (b,) = s.separable_blocks()
    assert (b.in_channels, b.out_channels, b.kernel_size) == (48, 12, 5)
    assert b.ratio == Fraction(1, 12) + Fraction(1, 25)
    # the baseline replaces the pair with one full 5x5 conv 48 -> 12 on the 5x5 output
    kinds = {k: (n, m, w) for k, n, m, w in count.standard_baseline(s).by_kind()}
    assert kinds["conv 5x5"] == (1, 48 * 25 * 12 * 5 * 5, 48 * 25 * 12)


# ---------------------------------------------------------------------------------------
# MobileNetV1 paper (Howard et al., 2017)
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("alpha,mult_adds_m,params_m", [
    (1.0, 569, 4.2), (0.75, 325, 2.6), (0.5, 149, 1.3), (0.25, 41, 0.5)])
def test_v1_table6_width_multiplier(alpha, mult_adds_m, params_m):
    s = count.summary(mobilenet_v1(alpha=alpha))
    assert round(s.total_macs / 1e6) == mult_adds_m
    assert round(s.total_params / 1e6, 1) == params_m


@pytest.mark.parametrize("resolution,mult_adds_m", [(224, 569), (192, 418), (160, 290),
                                                    (128, 186)])
def test_v1_table7_resolution_multiplier(resolution, mult_adds_m):
    s = count.summary(mobilenet_v1(), (1, 3, resolution, resolution))
    assert printed(mult_adds_m, s.total_macs / 1e6)       # 160: 290.68 M printed 290
    assert round(s.total_params / 1e6, 1) == 4.2          # resolution leaves params alone


def test_v1_table7_160_is_truncated_not_rounded():
    s = count.summary(mobilenet_v1(), (1, 3, 160, 160))
    exact = v1_table1_counts(resolution=160)["macs"]        # Table 1 counted by hand
    assert s.total_macs == exact
    # the paper's 290 M is the count truncated; rounding would have printed another number
    assert math.floor(exact / 1e6) == 290 != round(exact / 1e6)


def test_v1_table2_shares_per_layer_type():
    s = count.summary(mobilenet_v1())
    kinds = {k: (m, w) for k, _, m, w in s.by_kind()}
    M, W = s.total_macs, s.total_weights
    share = {k: (round(100 * m / M, 2), round(100 * w / W, 2)) for k, (m, w) in kinds.items()}
    assert share["pointwise 1x1"] == (94.86, 74.59)
    assert share["depthwise 3x3"] == (3.06, 1.06)
    assert share["fully connected"] == (0.18, 24.33)
    # the paper prints 1.19 % for the 3x3 conv's Mult-Adds; the count is the share of the
    # first layer counted by hand from Table 1 (1.91 %: the same two digits swapped)
    hand = v1_table1_counts()
    assert (M, kinds["conv 3x3"][0]) == (hand["macs"], hand["first_conv_macs"])
    assert share["conv 3x3"] == (round(100 * hand["first_conv_macs"] / hand["macs"], 2), 0.02)
    assert sorted(f"{share['conv 3x3'][0]:.2f}") == sorted("1.19")
    # the printed Mult-Add column adds up to 99.29 % (94.86 + 3.06 + 1.19 + 0.18); with the
    # count's share of the 3x3 conv the four rounded shares add up to 100 % within rounding
    ours = sum(mac for mac, _ in share.values())
    assert abs(ours - 100) <= 0.02                        # four roundings to 0.01 %
    assert abs(sum(w for _, w in share.values()) - 100) <= 0.02


def test_v1_table4_conv_mobilenet():
    s = count.summary(mobilenet_v1())
    base = count.standard_baseline(s)
    assert round(base.total_params / 1e6, 1) == 29.3
    assert round(s.total_macs / 1e6) == 569
    # 4867.29 M counted; the paper's 4866 M is the count without the FC layer
    fc = sum(m for k, _, m, _ in base.by_kind() if k == "fully connected")
    assert round((base.total_macs - fc) / 1e6) == 4866
    assert abs(base.total_macs / 1e6 - 4866) / 4866 < 3e-4
    # every depthwise separable block became one full 3x3 conv
    assert sum(n for k, n, _, _ in base.by_kind() if k == "conv 3x3") == 1 + len(V1_BLOCKS)
    assert not any(k.startswith(("depthwise", "pointwise")) for k, *_ in base.by_kind())


def test_baseline_drops_only_the_depthwise_convs_per_element_work():
    """With BatchNorm folded every conv adds a bias: the full convolutions keep the bias
    adds and activations of the 1x1 convs they replace and lose those of the depthwise
    convs, C_in * H_out * W_out each."""
    s = count.summary(mobilenet_v1(alpha=0.25), (1, 3, 64, 64), fold_bn=True)
    base = count.standard_baseline(s)
    dropped = sum(b.in_channels * b.output_shape[2] * b.output_shape[3]
                  for b in s.separable_blocks())
    ops, base_ops = dict(s.other_by_kind()), dict(base.other_by_kind())
    assert base_ops == {k: v - dropped if k in ("bias add", "activation") else v
                        for k, v in ops.items()}


# ---------------------------------------------------------------------------------------
# MobileNetV2, V3, EfficientNet: papers and torchvision's documented parameter counts
# ---------------------------------------------------------------------------------------

def test_v2_paper_and_torchvision():
    """V2 paper (Table 4): 300 M Mult-Adds, 3.4 M params. The count is 300.77 M (printed
    truncated) and 3,504,872 params (torchvision's number); the paper's 3.4 M is the conv/FC
    weights, 3.47 M, truncated: with biases and BatchNorm the count rounds to 3.5 M."""
    s = count.summary(models.mobilenet_v2())
    assert printed(300, s.total_macs / 1e6)
    assert s.total_params == 3_504_872
    assert printed(34, s.total_weights / 1e5) and round(s.total_params / 1e5) == 35


def test_v3_large_torchvision_and_release():
    """torchvision: 5,483,032 params; the TensorFlow release table: 217 M MACs, 5.4 M
    params (5.48 M, printed truncated)."""
    s = count.summary(models.mobilenet_v3_large())
    assert s.total_params == 5_483_032
    assert round(s.total_macs / 1e6) == 217 and printed(54, s.total_params / 1e5)


def test_v3_small_torchvision_and_paper():
    """torchvision: 2,542,856 params. The final paper revision prints 56 M Mult-Adds and
    2.5 M params for this architecture (56.51 M counted, printed truncated). The first
    revision printed 66 M and 2.9 M (so does the TensorFlow release table): numbers that
    this network, torchvision's, does not have."""
    s = count.summary(models.mobilenet_v3_small())
    assert s.total_params == 2_542_856
    assert printed(56, s.total_macs / 1e6) and round(s.total_params / 1e6, 1) == 2.5
    assert abs(s.total_macs / 1e6 - 66) > 5


def test_efficientnet_b0_paper_and_torchvision():
    """EfficientNet paper (Table 2): B0 5.3 M params, 0.39 B "FLOPs", which are MACs (the
    count is 0.386 B MACs; 2 x MACs would be 0.77 B). torchvision: 5,288,548 params."""
    s = count.summary(models.efficientnet_b0())
    assert s.total_params == 5_288_548
    assert round(s.total_macs / 1e9, 2) == 0.39 and round(s.total_params / 1e6, 1) == 5.3


@pytest.mark.slow
def test_efficientnet_b7_at_600_is_counted_without_running_a_kernel(monkeypatch):
    """Paper: B7 66 M params, 37 B FLOPs (MACs); counted 66.35 M and 37.75 B (printed
    truncated). Counting walks shapes only: no 600 x 600 convolution is run (every
    functional kernel is replaced by one that fails, rather than timing the count)."""
    from tinymobilenet import functional as F
    model = models.efficientnet_b7()

    def ran(*args, **kwargs):
        pytest.fail("count.summary ran a kernel")
    kernels = [n for n in dir(F) if n.endswith(("_forward", "_backward"))]
    assert "conv2d_forward" in kernels and "depthwise_conv2d_forward" in kernels
    for name in kernels:
        monkeypatch.setattr(F, name, ran)
    res = count.default_resolution("efficientnet_b7")
    s = count.summary(model, (1, 3, res, res))
    assert s.input_size == (1, 3, 600, 600)
    assert round(s.total_params / 1e6) == 66 and printed(37, s.total_macs / 1e9)


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
                                  "efficientnet_b0"])
def test_flops_and_params_agree_with_torch_flop_counter(name):
    """PyTorch's own counter (torch.utils.flop_counter, 2 FLOPs per multiply-accumulate of
    convolutions and matmuls) on torchvision's model, built on the meta device so nothing
    is computed."""
    torch = pytest.importorskip("torch")
    tv_models = pytest.importorskip("torchvision.models")
    from torch.utils.flop_counter import FlopCounterMode
    with torch.device("meta"):
        ref = getattr(tv_models, name)().eval()
        x = torch.zeros(1, 3, 224, 224)
    with FlopCounterMode(display=False) as flops:
        ref(x)
    s = count.summary(models.get_model(name))
    assert s.total_flops == flops.get_total_flops()
    assert s.total_params == sum(p.numel() for p in ref.parameters())


# ---------------------------------------------------------------------------------------
# BatchNorm folded
# ---------------------------------------------------------------------------------------

def test_fold_bn_switch():
    model = mobilenet_v1(alpha=0.25, num_classes=10)
    s = count.summary(model, (1, 3, 64, 64))
    f = count.summary(model, (1, 3, 64, 64), fold_bn=True)
    bn = s.param_split()["batch norm"]
    assert f.total_macs == s.total_macs
    assert f.param_split()["batch norm"] == 0 and f.total_buffers == 0
    assert f.total_params == s.total_params - bn // 2     # gamma, beta -> one bias
    other = dict(s.other_by_kind())
    assert dict(f.other_by_kind())["bias add"] == other["bias add"] + other["batch norm"]


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------

def run_cli(capsys, *argv):
    code = count.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv,message", [
    (["--alpha", "0"], "--alpha must be in"),
    (["--alpha", "-1"], "--alpha must be in"),
    (["--alpha", "nan"], "--alpha"),
    (["--alpha", "abc"], "--alpha"),
    (["--model", "resnet50"], "--model"),
    (["--resolution", "0"], "--resolution must be in"),
    (["--rho", "0"], "--rho must be > 0"),
    (["--resolution", "192", "--rho", "0.5"], "not allowed with"),
    (["--num-classes", "0"], "--num-classes must be in"),
    (["--in-channels", "0"], "--in-channels must be in"),
    (["--alpha", "1e6"], "--alpha must be in"),
    (["--resolution", "100000"], "--resolution must be in"),
    (["--format", "xml"], "--format"),
])
def test_cli_bad_arguments_print_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        count.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,kwargs,input_size", [
    (["--alpha", "4", "--num-classes", "10", "--resolution", "32"],
     dict(width_mult=4.0, num_classes=10), [1, 3, 32, 32]),
    (["--resolution", "2048", "--num-classes", "1"], dict(num_classes=1), [1, 3, 2048, 2048]),
    (["--in-channels", "1", "--resolution", "32"], dict(in_channels=1), [1, 1, 32, 32]),
])
def test_cli_accepts_the_bounds_it_states(capsys, argv, kwargs, input_size):
    """The largest alpha and resolution and the smallest class and channel counts the help
    states are allowed and counted; the title names only the width multiplier."""
    code, out, _ = run_cli(capsys, "--model", "mobilenet_v3_small", *argv, "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["input_size"] == input_size
    assert d["total_params"] == models.mobilenet_v3_small(**kwargs).num_parameters()
    width = [f"width_mult={v:g}" for k, v in kwargs.items() if k == "width_mult"]
    assert d["title"] == "mobilenet_v3_small" + "".join(f" ({w})" for w in width)


def test_cli_json(capsys):
    code, out, _ = run_cli(capsys, "--alpha", "0.25", "--rho", "0.5714", "--format", "json")
    d = json.loads(out)
    assert code == 0 and d["input_size"] == [1, 3, 128, 128]
    model = mobilenet_v1(alpha=0.25)
    assert d["total_params"] == model.num_parameters()
    for total in ("params", "buffers", "macs", "other_ops"):
        assert d[f"total_{total}"] == sum(layer[total] for layer in d["layers"])
    assert d["total_flops"] == 2 * d["total_macs"]
    assert {"name", "type", "output_shape", "params", "macs", "other_ops"} <= set(d["layers"][0])


def test_cli_default_output_teaches_where_the_cost_goes(capsys):
    _, out, _ = run_cli(capsys, "--alpha", "0.5")
    for text in ("Where the cost goes", "depthwise 3x3", "pointwise 1x1", "fully connected",
                 "FLOPs = 2 x MACs", "buffers", "other ops", "1/32 + 1/9",
                 "exactly for every block", "all 13 blocks"):
        assert text in out
    assert "Layer (type:depth-idx)" not in out           # the per-layer table is opt-in


def test_cli_per_layer_markdown_csv(capsys):
    _, out, _ = run_cli(capsys, "--alpha", "0.25", "--resolution", "32", "--per-layer")
    assert "Layer (type:depth-idx)" in out and "│    └─DepthwiseConv2d: " in out
    _, md, _ = run_cli(capsys, "--alpha", "0.25", "--resolution", "32", "--format", "markdown")
    assert "| layer type |" in md
    _, text, _ = run_cli(capsys, "--alpha", "0.25", "--resolution", "32", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sum(int(r["macs"]) for r in rows) == count.summary(
        mobilenet_v1(alpha=0.25), (1, 3, 32, 32)).total_macs


def write_checkpoint(path, **config):
    """A checkpoint of an untrained MobileNetV1 (alpha 0.25, 10 classes, grayscale) whose
    config holds ``config``, as the trainer's save_checkpoint writes it."""
    from tinymobilenet.optim import SGD
    from tinymobilenet.train import save_checkpoint
    model = mobilenet_v1(alpha=0.25, num_classes=10, in_channels=1)
    return save_checkpoint(path, model, SGD(model.parameters(), lr=0.1), 1, [], config)


def test_cli_checkpoint_gives_the_model_and_its_input(tmp_path, capsys):
    """--checkpoint counts the model its config names, at its input size; an option that
    would change the model is refused, and so is a config without an input size; what the
    model refuses in the file's options is reported as the file's fault."""
    options = {"alpha": 0.25, "num_classes": 10, "in_channels": 1}
    good = write_checkpoint(tmp_path / "good.npz", model="mobilenet_v1",
                            model_options=options, input_shape=[1, 8, 8])
    _, out, _ = run_cli(capsys, "--checkpoint", str(good), "--format", "json")
    d = json.loads(out)
    assert d["input_size"] == [1, 1, 8, 8]
    assert d["title"] == f"mobilenet_v1 (alpha=0.25) from {good}"
    assert d["total_params"] == mobilenet_v1(**options).num_parameters()
    no_shape = write_checkpoint(tmp_path / "no_shape.npz", model="mobilenet_v1",
                                model_options=options)
    bad = write_checkpoint(tmp_path / "bad.npz", model="mobilenet_v1",
                           model_options=dict(options, dropout=1.5), input_shape=[1, 8, 8])
    for argv, message in [
            *[([str(good), option, value], f"{option} cannot change them") for option, value in
              [("--model", "mobilenet_v1"), ("--alpha", "0.25"), ("--resolution", "8"),
               ("--rho", "1"), ("--num-classes", "10"), ("--in-channels", "1")]],
            ([str(no_shape)], f"{no_shape}: its config lacks 'input_shape'"),
            ([str(bad)], f"{bad}: meta data config.model_options: mobilenet_v1: dropout")]:
        with pytest.raises(SystemExit) as e:
            count.main(["--checkpoint", *argv])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.count("\n") == 1 and message in err, err


def test_cli_baseline_standard(capsys):
    _, out, _ = run_cli(capsys, "--baseline", "standard", "--format", "json")
    b = json.loads(out)["baseline"]
    assert round(b["total_params"] / 1e6, 1) == 29.3
    assert abs(b["total_macs"] / 1e6 - 4866) < 1.5
    _, text, _ = run_cli(capsys, "--baseline", "standard")
    assert "Full convolutions / depthwise separable" in text


def test_cli_alpha_is_each_models_width_multiplier(capsys):
    _, out, _ = run_cli(capsys, "--model", "mobilenet_v3_small", "--alpha", "0.75",
                        "--format", "json")
    d = json.loads(out)
    want = count.summary(models.mobilenet_v3_small(width_mult=0.75))
    assert (d["total_macs"], d["total_params"]) == (want.total_macs, want.total_params)
    assert "width_mult=0.75" in d["title"]


def test_cli_efficientnet_refuses_alpha_and_uses_its_own_resolution(capsys):
    with pytest.raises(SystemExit) as e:
        count.main(["--model", "efficientnet_b0", "--alpha", "0.5"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "compound scaling" in err
    _, out, _ = run_cli(capsys, "--model", "efficientnet_b3", "--rho", "0.5", "--format", "json")
    assert json.loads(out)["input_size"] == [1, 3, 150, 150]     # B3 is meant for 300 px


SMALL = ("--alpha", "0.25", "--resolution", "64")      # pointwise leads MACs, the FC weights


def small_summary(**kwargs):
    return count.summary(mobilenet_v1(alpha=0.25), (1, 3, 64, 64), **kwargs)


def row_of(out, label):
    """The cells after ``label`` of the one line of ``out`` that starts with it."""
    (line,) = [line for line in out.splitlines() if line.startswith(label + " ")]
    return line[len(label):].split()


def test_cli_breakdown_and_headline_give_each_layer_types_share(capsys):
    """Each layer type's row: its layers, MACs and weights and their shares of the totals;
    the total row adds up the layers; the headline names the type with the most MACs and
    the one with the most weights (different ones here) with their shares."""
    _, out, _ = run_cli(capsys, *SMALL)
    s = small_summary()
    kinds = s.by_kind()
    M, W = s.total_macs, s.total_weights
    for kind, n, m, w in kinds:
        assert row_of(out, kind) == [str(n), f"{m:,}", f"{100 * m / M:.2f}%", f"{w:,}",
                                     f"{100 * w / W:.2f}%"]
    assert row_of(out, "total") == [str(sum(n for _, n, _, _ in kinds)), f"{M:,}", "100.00%",
                                    f"{W:,}", "100.00%"]
    by_macs, by_weights = max(kinds, key=lambda k: k[2]), max(kinds, key=lambda k: k[3])
    assert by_macs[0] != by_weights[0]
    assert (f"{by_macs[0]} layers do {100 * by_macs[2] / M:.2f}% of the MACs, {by_weights[0]} "
            f"layers hold {100 * by_weights[3] / W:.2f}% of the weights.") in out
    P, classes = mobilenet_v1(alpha=0.25).num_parameters(), 1000     # biases: the FC's
    assert (f"params (trainable): {P:,} = weights {W:,} + biases {classes:,} + BatchNorm "
            f"gamma/beta {P - W - classes:,}\n") in out
    other = " + ".join(f"{k} {v:,}" for k, v in s.other_by_kind())
    assert f"other ops (not in MACs): {sum(r.other_ops for r in s.rows):,} = {other}" in out


def test_cli_separable_table_derives_each_blocks_ratio(capsys):
    """Every block's row: C_in->C_out and its MAC ratio written as 1/C_out + 1/K^2, its
    params ratio (with the depthwise BatchNorm's 2/(K*K*C_out)); the all-blocks row and the
    whole-network sentence: the summed MACs and the full convolutions' multiple."""
    _, out, _ = run_cli(capsys, *SMALL)
    s = small_summary()
    blocks = s.separable_blocks()
    for b in blocks:
        C_in, C_out = b.in_channels, b.out_channels
        cells = row_of(out, b.name)
        assert cells[0] == f"{C_in}->{C_out}" and cells[1:3] == ["3", str(b.stride)]
        ratio = 1 / C_out + 1 / 9
        assert cells[-8:] == [f"{ratio:.4f}", "=", f"1/{C_out}", "+", "1/9", "=",
                              f"{ratio:.4f}", f"{ratio + 2 / (9 * C_out):.4f}"]
    macs = sum(b.macs for b in blocks)
    full = sum(9 * b.in_channels * b.out_channels * b.output_shape[2] * b.output_shape[3]
               for b in blocks)
    assert row_of(out, f"all {len(blocks)} blocks")[:3] == [f"{macs:,}", f"{full:,}",
                                                            f"{macs / full:.4f}"]
    base = count.standard_baseline(s)
    text = " ".join(out.split())
    assert (f"({base.total_macs / s.total_macs:.2f}x the MACs, "
            f"{base.total_params / s.total_params:.2f}x the params)") in text


def test_cli_baseline_ratios_in_text_json_and_csv(capsys):
    """--baseline standard: the full network's multiple of the MACs and params in the text,
    its totals, ratios and breakdown in JSON, its own rows (named apart) in CSV."""
    s = small_summary()
    base = count.standard_baseline(s)
    _, out, _ = run_cli(capsys, *SMALL, "--baseline", "standard")
    assert f"MACs:   {base.total_macs / s.total_macs:.2f}x  ({base.total_macs:,} vs " in out
    assert f"params: {base.total_params / s.total_params:.2f}x  ({base.total_params:,} vs " in out
    _, out, _ = run_cli(capsys, *SMALL, "--baseline", "standard", "--format", "json")
    b = json.loads(out)["baseline"]
    assert b["mac_ratio"] == pytest.approx(base.total_macs / s.total_macs, rel=1e-12)
    assert b["params_ratio"] == pytest.approx(base.total_params / s.total_params, rel=1e-12)
    assert sum(k["macs"] for k in b["by_kind"]) == b["total_macs"] == base.total_macs
    assert not any(k["kind"].startswith(("depthwise", "pointwise")) for k in b["by_kind"])
    _, text, _ = run_cli(capsys, *SMALL, "--baseline", "standard", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    networks = list(dict.fromkeys(r["network"] for r in rows))
    assert len(networks) == 2 and networks[1] == networks[0] + ", full convolutions"
    for name, want in zip(networks, (s, base)):
        assert sum(int(r["macs"]) for r in rows if r["network"] == name) == want.total_macs


def test_cli_fold_bn_counts_the_folded_network(capsys):
    """--fold-bn counts the network with BatchNorm folded (and says so in the title)."""
    _, out, _ = run_cli(capsys, *SMALL, "--fold-bn", "--format", "json")
    d = json.loads(out)
    folded, plain = small_summary(fold_bn=True), small_summary()
    assert (d["total_params"], d["total_buffers"]) == (folded.total_params, 0)
    assert d["total_params"] != plain.total_params and d["total_macs"] == plain.total_macs
    assert d["title"].endswith("BatchNorm folded")


def test_cli_per_layer_footer_and_markdown_alignment(capsys):
    """The per-layer table numbers each depth from 1 (torchinfo's depth-idx) and closes with
    the totals; Markdown tables align names left and numbers right."""
    s = small_summary()
    _, out, _ = run_cli(capsys, *SMALL, "--per-layer")
    assert "├─Sequential: 1-1 " in out and "│    └─Conv2dNormActivation: 2-1 " in out
    assert f"Total mult-adds (M): {s.total_macs / 1e6:,.2f}\n" in out
    assert f"Non-trainable params: 0  (buffers apart: {s.total_buffers:,})\n" in out
    _, md, _ = run_cli(capsys, *SMALL, "--format", "markdown")
    assert "| layer type | layers | MACs | share | weights | share |\n" \
           "| :--- | ---: | ---: | ---: | ---: | ---: |\n" in md


def test_cli_help_gives_the_defaults_of_options_not_of_flags(capsys):
    """--help appends "(default: ...)" to an option with a default, never "False" to a flag
    or "None" to an option without one."""
    with pytest.raises(SystemExit) as e:
        count.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert e.value.code == 0 and "(default: table)" in out
    assert "default: False" not in out and "default: None" not in out


@pytest.mark.parametrize("kind,bounds,text,accepted", [
    (float, dict(lo=0, lo_open=True), "0", False),
    (float, dict(lo=0, lo_open=True), "1e-9", True),
    (float, dict(lo=0), "0", True),
    (float, dict(lo=0), "-1e-9", False),
    (int, dict(lo=1, hi=3), "3", True),
    (int, dict(lo=1, hi=3), "4", False),
    (float, dict(hi=2.5), "2.5", True),
    (float, {}, "inf", False),
    (float, {}, "-inf", False),
    (float, {}, "nan", False),
    (int, {}, "1.5", False),
])
def test_cli_number_checks_its_bounds_as_it_parses(kind, bounds, text, accepted):
    """The shared option type: the bounds themselves are allowed (lo only without lo_open);
    beyond them, infinity, NaN and a non-integer for an int are refused."""
    parse = cli.number(kind, **bounds)
    if accepted:
        assert parse(text) == kind(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


def test_cli_run_ends_an_interrupt_with_130_and_a_closed_pipe_quietly(monkeypatch):
    """Ctrl-C: one line, exit 130; a closed pipe: nothing written, a failure status (1, as
    Python's documentation advises), stderr closed so that Python's exit stays silent."""
    def raising(exc):
        def main(argv):
            raise exc
        return main
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert cli.run(lambda argv: argv[0], [7]) == 7
    assert cli.run(raising(KeyboardInterrupt), []) == 130
    assert err.getvalue() == "interrupted\n"
    assert cli.run(raising(BrokenPipeError), []) == 1 and err.closed


@pytest.mark.slow
def test_python_dash_m_runs():
    r = subprocess.run([sys.executable, "-m", "tinymobilenet.count", "--alpha", "0.5"],
                       capture_output=True, text=True, timeout=60)
    macs = count.summary(mobilenet_v1(alpha=0.5)).total_macs
    assert r.returncode == 0 and f"{macs:,}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tinymobilenet.count", "--alpha", "-1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    help_ = subprocess.run([sys.executable, "-m", "tinymobilenet.count", "--help"],
                           capture_output=True, text=True, timeout=60).stdout
    for tool in ("fvcore", "ptflops", "thop", "torchinfo", "FLOPs"):
        assert tool in help_
