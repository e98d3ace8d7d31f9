"""The errors a student meets at the public entry points say what was expected and what was
given: dtypes, bias lengths, stride/padding types, non-arrays, dout shapes, state dicts.

The dtype rule of the functional API (tinymobilenet/functional/_checks.py): every array
argument is a NumPy array of float32 or float64 (TypeError otherwise, naming the function,
the argument, the dtype and the fix); the computation runs in x's dtype (weights, bias and
dout of the other float dtype are cast to it). The nn layers are stricter: input and dy
must have the dtype of the layer's parameters.
"""

import re

import numpy as np
import pytest

from tinymobilenet import models, nn
from tinymobilenet import functional as F


def randn(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ---- every public forward/backward pair, built for a dtype ------------------------------
# name -> (forward, backward, inputs(dtype) -> (args, kwargs))

def _conv_inputs(dt):
    return (randn(2, 3, 6, 6, dtype=dt), randn(4, 3, 3, 3, seed=1, dtype=dt),
            randn(4, seed=2, dtype=dt), 1, 1), {}


def _dw_inputs(dt):
    return (randn(2, 3, 6, 6, dtype=dt), randn(3, 1, 3, 3, seed=1, dtype=dt),
            randn(3, seed=2, dtype=dt), 2, 1), {}


def _pw_inputs(dt):
    return (randn(2, 3, 6, 6, dtype=dt), randn(4, 3, 1, 1, seed=1, dtype=dt),
            randn(4, seed=2, dtype=dt)), {}


def _bn_inputs(dt):
    return (randn(4, 3, 5, 5, dtype=dt), 1 + randn(3, seed=1, dtype=dt) ** 2,
            randn(3, seed=2, dtype=dt), np.zeros(3, dt), np.ones(3, dt)), {"training": True}


PAIRS = {
    "conv2d": (F.conv2d_forward, F.conv2d_backward, _conv_inputs),
    "conv2d_naive": (F.conv2d_forward_naive, F.conv2d_backward_naive, _conv_inputs),
    "conv2d_same": (F.conv2d_same_forward, F.conv2d_same_backward,
                    lambda dt: ((randn(2, 3, 6, 6, dtype=dt), randn(4, 3, 3, 3, seed=1, dtype=dt),
                                 randn(4, seed=2, dtype=dt), 2), {})),
    "depthwise": (F.depthwise_conv2d_forward, F.depthwise_conv2d_backward, _dw_inputs),
    "depthwise_naive": (F.depthwise_conv2d_forward_naive, F.depthwise_conv2d_backward_naive,
                        _dw_inputs),
    "depthwise_same": (F.depthwise_conv2d_same_forward, F.depthwise_conv2d_same_backward,
                       lambda dt: ((randn(2, 3, 6, 6, dtype=dt),
                                    randn(3, 1, 3, 3, seed=1, dtype=dt), None, 2), {})),
    "pointwise": (F.pointwise_conv2d_forward, F.pointwise_conv2d_backward, _pw_inputs),
    "pointwise_naive": (F.pointwise_conv2d_forward_naive, F.pointwise_conv2d_backward_naive,
                        _pw_inputs),
    "linear": (F.linear_forward, F.linear_backward,
               lambda dt: ((randn(5, 6, dtype=dt), randn(3, 6, seed=1, dtype=dt),
                            randn(3, seed=2, dtype=dt)), {})),
    "grouped_linear": (F.grouped_linear_forward, F.grouped_linear_backward,
                       lambda dt: ((randn(5, 6, dtype=dt), randn(4, 3, seed=1, dtype=dt),
                                    randn(4, seed=2, dtype=dt), 2), {})),
    "grouped_linear_naive": (F.grouped_linear_forward_naive, F.grouped_linear_backward_naive,
                             lambda dt: ((randn(5, 6, dtype=dt), randn(4, 3, seed=1, dtype=dt),
                                          randn(4, seed=2, dtype=dt), 2), {})),
    "batchnorm": (F.batchnorm_forward, F.batchnorm_backward, _bn_inputs),
    "batchnorm_relu6": (F.batchnorm_forward, F.batchnorm_backward,
                        lambda dt: (_bn_inputs(dt)[0], {"training": True, "activation": "relu6"})),
    "global_avg_pool": (F.global_avg_pool_forward, F.global_avg_pool_backward,
                        lambda dt: ((randn(2, 3, 4, 5, dtype=dt),), {"keepdims": True})),
    "excite": (F.excite_forward, F.excite_backward,
               lambda dt: ((randn(2, 3, 4, 4, dtype=dt), randn(2, 3, 1, 1, seed=1, dtype=dt)),
                           {})),
    "dropout": (F.dropout_forward, F.dropout_backward,
                lambda dt: ((randn(4, 5, dtype=dt), 0.5, True, np.random.default_rng(0)), {})),
    "stochastic_depth": (F.stochastic_depth_forward, F.stochastic_depth_backward,
                         lambda dt: ((randn(4, 3, 2, 2, dtype=dt), 0.5, True,
                                      np.random.default_rng(0)), {})),
}
for _name in ("relu", "relu6", "sigmoid", "hardsigmoid", "hardswish", "silu"):
    PAIRS[_name] = (getattr(F, f"{_name}_forward"), getattr(F, f"{_name}_backward"),
                    lambda dt: ((4 * randn(3, 4, 5, dtype=dt),), {}))


def _run(name, dtype):
    forward, backward, make = PAIRS[name]
    args, kwargs = make(dtype)
    out, cache = forward(*args, **kwargs)
    dout = randn(*out.shape, seed=7, dtype=dtype)
    grads = backward(dout, cache)
    return out, grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_float32_and_float64_still_work(name):
    """Every checked pair runs in both dtypes, keeps the dtype, and float32 agrees with
    float64 to float32's precision."""
    out64, grads64 = _run(name, np.float64)
    out32, grads32 = _run(name, np.float32)
    assert out64.dtype == np.float64 and out32.dtype == np.float32
    for g32, g64 in zip(grads32, grads64):
        if g64 is None:
            assert g32 is None
            continue
        assert g64.dtype == np.float64 and g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=2e-4, atol=2e-4 * (1 + np.abs(g64).max()))
    np.testing.assert_allclose(out32, out64, rtol=2e-4, atol=2e-4 * (1 + np.abs(out64).max()))


# ---- 1. dtypes --------------------------------------------------------------------------

FORWARDS_4D = [  # (forward, message prefix, weight)
    (F.conv2d_forward, "conv2d", randn(4, 3, 3, 3)),
    (F.conv2d_forward_naive, "conv2d", randn(4, 3, 3, 3)),
    (F.depthwise_conv2d_forward, "depthwise_conv2d", randn(3, 1, 3, 3)),
    (F.depthwise_conv2d_forward_naive, "depthwise_conv2d", randn(3, 1, 3, 3)),
    (F.pointwise_conv2d_forward, "pointwise_conv2d", randn(4, 3, 1, 1)),
    (F.pointwise_conv2d_forward_naive, "pointwise_conv2d", randn(4, 3, 1, 1)),
]
IDS_4D = ["conv2d", "conv2d_naive", "depthwise", "depthwise_naive", "pointwise",
          "pointwise_naive"]


@pytest.mark.parametrize("forward, prefix, w", FORWARDS_4D, ids=IDS_4D)
@pytest.mark.parametrize("bad", [np.int64, np.int32, np.float16, np.bool_])
def test_non_float_input_is_refused_with_the_fix(forward, prefix, w, bad):
    """An int input no longer gives int64 results cut towards zero (the naive twins) or a
    raw UFuncTypeError (the fast paths): the same TypeError from both."""
    x = (4 * randn(2, 3, 5, 5)).astype(bad)
    with pytest.raises(TypeError, match=rf"^{prefix}: x must be float32 or float64, got "
                                        rf"{np.dtype(bad).name}; cast with "
                                        rf"x\.astype\(np\.float32\)"):
        forward(x, w.astype(np.float32))
    with pytest.raises(TypeError, match=rf"^{prefix}: w must be float32 or float64, got "
                                        rf"{np.dtype(bad).name}"):
        forward(randn(2, 3, 5, 5), w.astype(bad))


@pytest.mark.parametrize("forward, prefix, w", FORWARDS_4D, ids=IDS_4D)
@pytest.mark.parametrize("x_dtype, w_dtype", [(np.float32, np.float64),
                                              (np.float64, np.float32)])
def test_mixed_float_dtypes_compute_in_x_dtype(forward, prefix, w, x_dtype, w_dtype):
    """float32 x with float64 weights (as notebook 02 does) or the reverse: the output
    has x's dtype on every path, equal to the all-x-dtype result."""
    x = randn(2, 3, 5, 5).astype(x_dtype)
    out, _ = forward(x, w.astype(w_dtype))
    ref, _ = forward(x, w.astype(w_dtype).astype(x_dtype))
    assert out.dtype == x_dtype
    # the weights are cast to x's dtype first, so both calls run the very same computation
    # on the same values (same machine, same process): bit for bit, or the cast is missing
    np.testing.assert_array_equal(out, ref)


def test_other_functions_refuse_non_float_arrays():
    xi = np.ones((2, 3, 4, 4), np.int64)
    with pytest.raises(TypeError, match=r"^linear: x must be float32 or float64, got int64"):
        F.linear_forward(np.ones((2, 3), np.int64), randn(4, 3))
    with pytest.raises(TypeError, match=r"^batchnorm: x must be float32 or float64, got int64"):
        F.batchnorm_forward(xi, np.ones(3), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(TypeError, match=r"^batchnorm: running_var must be float32 or float64, "
                                        r"got int64"):
        F.batchnorm_forward(randn(2, 3, 4, 4), np.ones(3), np.zeros(3), np.zeros(3),
                            np.ones(3, np.int64))
    with pytest.raises(ValueError, match=r"^batchnorm: gamma must have shape \(3,\) \(one per "
                                         r"channel\) for input \(2, 3, 4, 4\), got \(4,\)"):
        F.batchnorm_forward(randn(2, 3, 4, 4), np.ones(4), np.zeros(3), np.zeros(3), np.ones(3))
    with pytest.raises(TypeError, match=r"^relu_forward: x must be float32 or float64, got int64"):
        F.relu_forward(xi)
    with pytest.raises(TypeError, match=r"^silu_forward: x must be float32 or float64, "
                                        r"got float16"):
        F.silu_forward(xi.astype(np.float16))
    with pytest.raises(TypeError, match=r"^global_avg_pool: x must be float32 or float64"):
        F.global_avg_pool_forward(xi)
    with pytest.raises(TypeError, match=r"^grouped_linear: x must be float32 or float64"):
        F.grouped_linear_forward(np.ones((2, 4), np.int64), randn(4, 2), None, 2)
    with pytest.raises(TypeError, match=r"^cross_entropy: logits must be float32 or float64"):
        F.softmax_cross_entropy_forward(np.ones((2, 3), np.int64), np.array([0, 1]))


@pytest.mark.parametrize("name", ["conv2d", "depthwise", "pointwise", "linear", "batchnorm",
                                  "relu6", "silu", "excite"])
def test_backward_dout_dtype(name):
    """int dout: a TypeError naming the function; dout of the other float dtype: cast, so
    the gradients have the forward's dtype."""
    forward, backward, make = PAIRS[name]
    args, kwargs = make(np.float32)
    out, cache = forward(*args, **kwargs)
    with pytest.raises(TypeError, match=r"_backward: dout must be float32 or float64 \(the "
                                        r"forward's output is float32\), got int64; cast with "
                                        r"dout\.astype\(np\.float32\)"):
        backward(np.ones(out.shape, np.int64), cache)
    grads = backward(np.ones(out.shape, np.float64), cache)
    for g in grads if isinstance(grads, tuple) else (grads,):
        assert g is None or g.dtype == np.float32


def test_layers_check_dy_dtype_like_their_input():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    y = conv(randn(2, 3, 8, 8, dtype=np.float32))
    with pytest.raises(TypeError, match=r"^Conv2d\(3->4\): dy must be float32, the dtype of "
                                        r"the forward's output, got int64; cast with "
                                        r"dy\.astype\(np\.float32\)"):
        conv.backward(np.ones(y.shape, np.int64))
    with pytest.raises(TypeError, match=r"^Conv2d\(3->4\): dy must be float32.*got float64"):
        conv.backward(np.ones(y.shape))
    with pytest.raises(TypeError, match=r"^Conv2d\(3->4\): dy must be a NumPy array"):
        conv.backward(y.tolist())
    conv.backward(np.ones(y.shape, np.float32))                     # the right one works
    conv.to(np.float64)
    y = conv(randn(2, 3, 8, 8))
    with pytest.raises(TypeError, match=r"dy must be float64.*got float32"):
        conv.backward(y.astype(np.float32))


# ---- 2. bias of the wrong length --------------------------------------------------------

def test_bias_of_the_wrong_length():
    x = randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"^conv2d: bias b must have shape \(4,\) \(one per "
                                         r"output channel\), got \(7,\)"):
        F.conv2d_forward(x, randn(4, 3, 3, 3), np.zeros(7), 1, 1)
    with pytest.raises(ValueError, match=r"^conv2d: bias b must have shape \(4,\)"):
        F.conv2d_forward_naive(x, randn(4, 3, 3, 3), np.zeros(7), 1, 1)
    with pytest.raises(ValueError, match=r"^depthwise_conv2d: bias b must have shape \(3,\) "
                                         r"\(one per channel\), got \(4,\)"):
        F.depthwise_conv2d_forward(x, randn(3, 1, 3, 3), np.zeros(4), 1, 1)
    with pytest.raises(ValueError, match=r"^pointwise_conv2d: bias b must have shape \(4,\)"):
        F.pointwise_conv2d_forward(x, randn(4, 3, 1, 1), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"^linear: bias b must have shape \(4,\)"):
        F.linear_forward(randn(2, 3), randn(4, 3), np.zeros(3))
    with pytest.raises(TypeError, match=r"^conv2d: b must be a NumPy array"):
        F.conv2d_forward(x, randn(4, 3, 3, 3), [0.0] * 4, 1, 1)


# ---- 3. stride, padding, groups ---------------------------------------------------------

@pytest.mark.parametrize("forward, prefix, w", FORWARDS_4D[:4], ids=IDS_4D[:4])
@pytest.mark.parametrize("stride", [1.5, float("nan"), 2.0, "2", None, True])
def test_stride_must_be_an_integer(forward, prefix, w, stride):
    with pytest.raises(TypeError, match=rf"^{prefix}: stride must be an integer >= 1, got "
                                        rf"{re.escape(repr(stride))}"):
        forward(randn(1, 3, 6, 6), w, None, stride, 1)


@pytest.mark.parametrize("forward, prefix, w", FORWARDS_4D[:4], ids=IDS_4D[:4])
def test_padding_must_be_an_integer(forward, prefix, w):
    x = randn(1, 3, 6, 6)
    with pytest.raises(TypeError, match=rf"^{prefix}: padding must be an integer >= 0, got 1\.5"):
        forward(x, w, None, 1, 1.5)
    with pytest.raises(ValueError, match=rf"^{prefix}: padding must be an integer >= 0, got -1"):
        forward(x, w, None, 1, -1)
    with pytest.raises(ValueError, match=rf"^{prefix}: stride must be an integer >= 1, got 0"):
        forward(x, w, None, 0, 1)
    # the strings nn.Conv2d accepts are not the kernels': the message says where SAME is
    with pytest.raises(TypeError, match=rf"^{prefix}: padding must be an integer >= 0, got "
                                        rf"'same'; for TensorFlow's SAME padding call "
                                        rf"{prefix}_same_forward"):
        forward(x, w, None, 1, "same")
    out, _ = forward(x, w, None, np.int64(1), np.int32(1))        # NumPy integers are fine
    assert out.shape[2:] == (6, 6)


def test_groups_and_output_size_arguments_must_be_integers():
    with pytest.raises(TypeError, match=r"^conv2d: groups must be an integer >= 1, got 1\.0"):
        F.conv2d_forward(randn(1, 4, 6, 6), randn(4, 4, 3, 3), None, 1, 1, 1.0)
    with pytest.raises(ValueError, match=r"^conv2d: groups must be an integer >= 1, got 0"):
        F.conv2d_forward(randn(1, 4, 6, 6), randn(4, 4, 3, 3), None, 1, 1, 0)
    with pytest.raises(TypeError, match=r"^conv_output_size: stride must be an integer >= 1, "
                                        r"got 1\.5"):
        F.conv_output_size(8, 3, 1.5, 1)


# ---- 4. lists instead of arrays ---------------------------------------------------------

def test_lists_are_refused_with_the_conversion_to_use():
    x, w = randn(1, 3, 5, 5), randn(4, 3, 3, 3)
    for forward in (F.conv2d_forward, F.conv2d_forward_naive):
        with pytest.raises(TypeError, match=r"^conv2d: x must be a NumPy array of float32 or "
                                            r"float64, got list; convert it with "
                                            r"np\.asarray\(x, dtype=np\.float32\)"):
            forward(x.tolist(), w, None, 1, 1)
        with pytest.raises(TypeError, match=r"^conv2d: w must be a NumPy array"):
            forward(x, w.tolist(), None, 1, 1)
    with pytest.raises(TypeError, match=r"^depthwise_conv2d: x must be a NumPy array"):
        F.depthwise_conv2d_forward(x.tolist(), randn(3, 1, 3, 3))
    with pytest.raises(TypeError, match=r"^pointwise_conv2d: x must be a NumPy array"):
        F.pointwise_conv2d_forward(x.tolist(), randn(4, 3, 1, 1))
    with pytest.raises(TypeError, match=r"^linear: x must be a NumPy array"):
        F.linear_forward([[1.0, 2.0]], randn(3, 2))
    with pytest.raises(TypeError, match=r"^relu_forward: x must be a NumPy array"):
        F.relu_forward([1.0, -1.0])
    with pytest.raises(TypeError, match=r"^conv2d_same: x must be a NumPy array"):
        F.conv2d_same_forward(x.tolist(), w)


# ---- 5. dout of the wrong shape ---------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PAIRS))
def test_every_backward_checks_the_dout_shape(name):
    forward, backward, make = PAIRS[name]
    args, kwargs = make(np.float64)
    out, cache = forward(*args, **kwargs)
    bad = out[..., :1] if out.shape[-1] > 1 else np.concatenate([out, out], axis=-1)
    shape = re.escape(str(tuple(out.shape)))
    expected = (rf"dout must have the shape of the forward's output {shape}, got "
                rf"{re.escape(str(bad.shape))}")
    if name == "stochastic_depth":               # its mask knows only N and the rank
        bad = out[:1]
        expected = r"dout must have the shape of the forward's output \(4, \.\.\.\)"
    with pytest.raises(ValueError, match=expected):
        backward(np.ascontiguousarray(bad), cache)
    with pytest.raises(TypeError, match=r"dout must be a NumPy array"):
        backward(out.tolist(), cache)


def test_conv_backward_names_the_function_and_both_shapes():
    x = randn(2, 4, 8, 8)
    out, cache = F.conv2d_forward(x, randn(4, 4, 3, 3), None, 1, 1)
    with pytest.raises(ValueError, match=r"^conv2d_backward: dout must have the shape of the "
                                         r"forward's output \(2, 4, 8, 8\), got \(2, 4, 4, 4\)$"):
        F.conv2d_backward(randn(2, 4, 4, 4), cache)
    _, cache = F.conv2d_forward_naive(x, randn(4, 4, 3, 3), None, 1, 1)
    with pytest.raises(ValueError, match=r"^conv2d_backward_naive: dout must have the shape"):
        F.conv2d_backward_naive(randn(2, 4, 4, 4), cache)
    _, cache = F.depthwise_conv2d_forward(x, randn(4, 1, 3, 3), None, 1, 1)
    with pytest.raises(ValueError, match=r"^depthwise_conv2d_backward: dout must have the "
                                         r"shape of the forward's output \(2, 4, 8, 8\)"):
        F.depthwise_conv2d_backward(randn(2, 4, 4, 4), cache)


LAYERS = [  # (layer, input shape)
    (lambda: nn.Conv2d(3, 4, 3, padding=1), (2, 3, 8, 8)),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), (2, 3, 8, 8)),
    (lambda: nn.DepthwiseConv2d(4, 3, padding=1), (2, 4, 8, 8)),
    (lambda: nn.PointwiseConv2d(3, 4), (2, 3, 8, 8)),
    (lambda: nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (lambda: nn.BatchNorm1d(3), (4, 3)),
    (lambda: nn.Linear(5, 3), (2, 5)),
    (lambda: nn.GroupedLinear(6, 4, groups=2), (2, 6)),
    (lambda: nn.GlobalAvgPool2d(), (2, 3, 4, 4)),
    (lambda: nn.GlobalAvgPool2d(flatten=True), (2, 3, 4, 4)),
    (lambda: nn.Flatten(), (2, 3, 4, 4)),
    (lambda: nn.Dropout(0.5), (2, 3, 4, 4)),
    (lambda: nn.Dropout(0.5).eval(), (2, 3, 4, 4)),
    (lambda: nn.ReLU(), (2, 3, 4, 4)),
    (lambda: nn.ReLU6(), (2, 3)),
    (lambda: nn.Sigmoid(), (2, 3)),
    (lambda: nn.HardSigmoid(), (2, 3)),
    (lambda: nn.HardSwish(), (2, 3)),
    (lambda: nn.SiLU(), (2, 3)),
    (lambda: nn.SqueezeExcitation(4, 2), (2, 4, 5, 5)),
    (lambda: nn.DenseSqueezeExcitation(4, 2), (2, 4)),
    (lambda: nn.StochasticDepth(0.5), (4, 3, 2, 2)),
    (lambda: nn.BatchNormAct2d(3), (2, 3, 4, 4)),
]


@pytest.mark.parametrize("make, shape", LAYERS, ids=lambda v: "" if callable(v) else str(v))
def test_every_layer_backward_checks_dy(make, shape):
    layer = make()
    y = layer(randn(*shape, dtype=np.float32))
    bad = np.ones(y.shape[:-1] + (y.shape[-1] + 1,), np.float32)
    with pytest.raises(ValueError, match=rf"^{re.escape(layer._label())}: dy must have the "
                                         rf"shape of the forward's output "
                                         rf"{re.escape(str(y.shape))}, got "
                                         rf"{re.escape(str(bad.shape))}$"):
        layer.backward(bad)
    with pytest.raises(TypeError, match=rf"^{re.escape(layer._label())}: dy must be float32"):
        layer.backward(np.ones(y.shape, np.int64))
    dx = layer.backward(np.ones(y.shape, np.float32))
    assert dx.shape == shape and dx.dtype == np.float32


def test_model_backward_with_the_wrong_number_of_classes():
    model = models.mobilenet_v1(alpha=0.25, num_classes=10)
    model(randn(2, 3, 32, 32, dtype=np.float32))
    with pytest.raises(ValueError, match=r"Linear\(256->10\): dy must have the shape of the "
                                         r"forward's output \(2, 10\), got \(2, 7\)"):
        model.backward(np.ones((2, 7), np.float32))


# ---- 6. load_state_dict -----------------------------------------------------------------

def _net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.GlobalAvgPool2d(flatten=True), nn.Linear(4, 2))


def test_load_state_dict_names_the_key_of_a_bad_entry():
    m = _net()
    sd = m.state_dict()
    before = {k: v.copy() for k, v in sd.items()}
    for value, what in ((np.full((4, 3, 3, 3), "a"), "strings"),
                        (np.full((4, 3, 3, 3), None), r"Python objects \(e\.g\. None\)"),
                        (np.ones((4, 3, 3, 3), np.complex64), "values of dtype complex64"),
                        ([[1, 2], [3]], "not an array of numbers")):
        with pytest.raises(nn.StateDictError, match=rf"^load_state_dict: key '0\.weight' .*"
                                                    rf"{what}"):
            m.load_state_dict({**sd, "0.weight": value, "4.bias": np.ones(2)})
        # nothing was loaded: not even the good entry before the bad one
        for k, v in m.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    with pytest.raises(ValueError, match=r"^load_state_dict: key '4\.weight' has shape "
                                         r"\(3, 4\), expected \(2, 4\)$"):
        m.load_state_dict({**sd, "4.weight": np.zeros((3, 4))})


def test_load_state_dict_wants_a_mapping_of_names():
    m = _net()
    with pytest.raises(TypeError, match=r"^load_state_dict: expected a mapping \{name: array\} "
                                        r"such as model\.state_dict\(\), got list$"):
        m.load_state_dict([1, 2])
    with pytest.raises(TypeError, match=r"^load_state_dict: keys must be parameter names "
                                        r"\(str\), got 3 \(int\)$"):
        m.load_state_dict({**m.state_dict(), 3: np.zeros(1)})
    with pytest.raises(TypeError, match=r"keys must be parameter names \(str\), got None"):
        m.load_state_dict({None: np.zeros(1), **m.state_dict()})


def test_missing_key_error_is_a_key_error_printed_without_quotes():
    m = _net()
    sd = m.state_dict()
    del sd["1.running_var"]
    with pytest.raises(KeyError) as info:                      # still catchable as KeyError
        m.load_state_dict(sd)
    assert isinstance(info.value, ValueError) and isinstance(info.value, nn.StateDictError)
    assert str(info.value) == "load_state_dict: missing key '1.running_var'"
    with pytest.raises(KeyError, match=r"^load_state_dict: unexpected key 'x'$"):
        m.load_state_dict({**m.state_dict(), "x": np.zeros(1)})
    m.load_state_dict({k: v.astype(np.float64) for k, v in m.state_dict().items()})  # casts


# ---- 7. model factory arguments -------------------------------------------------------

def test_width_multiplier_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"alpha must be a number.*got 'x' \(str\)"):
        models.mobilenet_v1(alpha="x")
    with pytest.raises(TypeError, match=r"alpha must be a number > 0, got True \(bool\)"):
        models.mobilenet_v1(alpha=True)
    with pytest.raises(ValueError, match=r"alpha must be > 0, got nan"):
        models.mobilenet_v1(alpha=float("nan"))
    with pytest.raises(TypeError, match=r"depth_mult must be a number > 0, got None"):
        models.efficientnet.EfficientNet(depth_mult=None)



# ---- 8. im2col / col2im, the loss's dy ---------------------------------------------------

def test_im2col_and_col2im_say_what_they_expected():
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6))
    col = F.im2col(x, 3, 2, 1)                                 # (2, 3, 3, 3, 4, 3)
    assert F.col2im(col, 7, 6, 2, 1).shape == x.shape
    with pytest.raises(TypeError, match=r"im2col: x must be a NumPy array of float32 or float64, got list"):
        F.im2col(x.tolist(), 3)
    with pytest.raises(TypeError, match=r"im2col: x must be float32 or float64, got int64"):
        F.im2col(x.astype(np.int64), 3)
    with pytest.raises(ValueError, match=r"im2col: expected x \(N, C, H, W\), got shape \(3, 7, 6\)"):
        F.im2col(x[0], 3)
    with pytest.raises(TypeError, match=r"im2col: K must be an integer >= 1, got 3.0 \(float\)"):
        F.im2col(x, 3.0)
    with pytest.raises(TypeError, match=r"im2col: padding must be an integer >= 0, got 'same'"):
        F.im2col(x, 3, 1, "same")
    with pytest.raises(ValueError, match=r"col2im: expected col \(N, C, K, K, Ho, Wo\)"):
        F.col2im(col[0], 7, 6, 2, 1)
    with pytest.raises(ValueError, match=r"col2im: col \(2, 3, 3, 3, 4, 3\) has 4x3 patches, "
                                         r"but a 9x6 image .* has 5x3"):
        F.col2im(col, 9, 6, 2, 1)


def test_the_loss_backward_takes_a_number_and_keeps_the_logits_dtype():
    loss = nn.CrossEntropyLoss()
    logits = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    loss(logits, [0, 1, 2, 3])
    d = loss.backward()
    assert d.dtype == np.float32
    twice = loss.backward(np.float64(2.0))                     # a float64 scalar: still float32
    assert twice.dtype == np.float32 and np.allclose(twice, 2 * d)
    with pytest.raises(TypeError, match=r"dy must be a number \(the loss is a scalar\), "
                                        r"got ndarray of shape \(4,\)"):
        loss.backward(np.ones(4))


def test_same_pad_backward_and_log_softmax_say_what_they_expected():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    xp, p, cache = F.same_pad_forward(x, 3, 2)                 # SAME at stride 2: (0, 1) rows
    assert F.same_pad_backward(np.ones_like(xp), cache).shape == x.shape
    with pytest.raises(ValueError, match=r"same_pad_backward: dxp must have the shape of the "
                                         r"padded input \(2, 3, >= \d+, >= \d+\), got \(2, 3, 4, 4\)"):
        F.same_pad_backward(np.ones((2, 3, 4, 4)), cache)
    with pytest.raises(TypeError, match=r"same_pad_backward: dxp must be a NumPy array"):
        F.same_pad_backward(xp.tolist(), cache)
    with pytest.raises(TypeError, match=r"log_softmax: logits must be float32 or float64, got int64"):
        F.log_softmax(np.ones((2, 3), dtype=np.int64))


def test_same_padding_sigmoid_and_an_unknown_weights_file_say_what_they_expected(tmp_path):
    with pytest.raises(TypeError, match=r"same padding: size must be an integer >= 1, got 7.0"):
        F.same_padding(7.0, 3, 1)
    with pytest.raises(TypeError, match=r"same padding: stride must be an integer >= 1, got True"):
        F.same_output_size(7, True)
    with pytest.raises(ValueError, match=r"same padding: stride must be an integer >= 1, got 0"):
        F.same_padding(8, 3, 0)
    with pytest.raises(TypeError, match=r"sigmoid: x must be float32 or float64, got int64"):
        F.sigmoid(np.arange(3))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"expected .npz or one of .pth, .pt, .pth.tar, .ckpt"):
        models.load_weights(models.mobilenet_v1(0.25), str(path))
