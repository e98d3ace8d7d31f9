"""Each exercise checker passes the worked answer and fails a plausible wrong answer, naming
the case that exposes it; it names what is wrong with the *form* of an answer before any
number, never crashes on a wrong type, and refuses the library's own functions."""

import ast
import importlib.util
import pydoc
import re
from pathlib import Path

import numpy as np
import pytest

from tinymobilenet import exercises
from tinymobilenet import functional as F
from tinymobilenet import gradcheck
from tinymobilenet.exercises import blocks, registry

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions" / "solutions.py"


def _load(path, name):
    """The worked answers live in the repository, not in the package: load them by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


solutions = _load(SOLUTIONS, "worked_answers")
NAMES = [e.name for e in registry.EXERCISES]


def check(name, fn):
    return registry.get(name).checker(fn)


def test_every_exercise_has_a_worked_answer_and_every_answer_an_exercise():
    assert sorted(solutions.__all__) == sorted(NAMES)
    checkers = {n[len("check_"):] for n in exercises.__all__ if n.startswith("check_")}
    assert checkers == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_checker_passes_the_worked_answer(name):
    result = getattr(exercises, f"check_{name}")(getattr(solutions, name))
    assert result.ok, str(result)
    assert bool(result) and "PASS" in str(result)


# ---- plausible wrong answers ----------------------------------------------------------------

def conv_output_size_without_padding(size, kernel_size, stride, padding):
    return (size - kernel_size) // stride + 1


def conv_output_size_true_division(size, kernel_size, stride, padding):
    return int((size + 2 * padding - kernel_size) / stride) + 1 if stride == 1 else \
        round((size + 2 * padding - kernel_size) / stride + 1)


def im2col_ignoring_stride(x, K, stride, padding):
    Ho = solutions.conv_output_size(x.shape[2], K, stride, padding)
    Wo = solutions.conv_output_size(x.shape[3], K, stride, padding)
    return solutions.im2col(x, K, 1, padding)[..., :Ho, :Wo]


def conv2d_forward_without_bias(x, w, b, stride, padding):
    return solutions.conv2d_forward(x, w, np.zeros_like(b), stride, padding)


def conv2d_backward_assigning_instead_of_adding(dout, x, w, stride, padding):
    """col2im with '=' instead of '+=': overlapping windows overwrite each other."""
    N, C, H, W = x.shape
    Co, _, K, _ = w.shape
    Ho, Wo = dout.shape[-2:]
    _, dw = solutions.conv2d_backward(dout, x, w, stride, padding)
    dcol = np.matmul(w.reshape(Co, -1).T, dout.reshape(N, Co, -1)).reshape(N, C, K, K, Ho, Wo)
    dxp = np.zeros((N, C, H + 2 * padding, W + 2 * padding))
    for p in range(K):
        for q in range(K):
            dxp[:, :, p:p + stride * Ho:stride, q:q + stride * Wo:stride] = dcol[:, :, p, q]
    return dxp[:, :, padding:padding + H, padding:padding + W], dw


def depthwise_forward_summing_channels(x, w, stride, padding):
    out = solutions.depthwise_forward(x, w, stride, padding)
    return np.broadcast_to(out.sum(axis=1, keepdims=True), out.shape).copy()


def depthwise_backward_forgetting_the_stride(dout, x, w, stride, padding):
    """Steps through the input by 1 whatever the stride (a classic)."""
    N, C, H, W = x.shape
    K = w.shape[2]
    Ho, Wo = dout.shape[-2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for p in range(K):
        for q in range(K):
            win = (slice(None), slice(None), slice(p, p + Ho), slice(q, q + Wo))
            dw[:, 0, p, q] = np.sum(dout * xp[win], axis=(0, 2, 3))
            dxp[win] += w[:, 0, p, q].reshape(1, C, 1, 1) * dout
    return dxp[:, :, padding:padding + H, padding:padding + W], dw


def cost_ratio_without_square(C_out, K):
    return 1.0 / C_out + 1.0 / K


def batchnorm_backward_eval_formula(dout, x, gamma, eps):
    """Treats the batch statistics as constants: right in eval mode, wrong in training."""
    axes = (0, 2, 3)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat = (x - x.mean(axis=axes, keepdims=True)) * inv_std
    return (gamma.reshape(1, -1, 1, 1) * inv_std * dout, (dout * xhat).sum(axis=axes),
            dout.sum(axis=axes))


def fold_batchnorm_ignoring_the_conv_bias(w, b, gamma, beta, mean, var, eps):
    return solutions.fold_batchnorm(w, None, gamma, beta, mean, var, eps)


def relu6_backward_with_closed_interval(dout, x):
    """dout where 0 <= x <= 6: right between the kinks, wrong at them."""
    return dout * ((x >= 0) & (x <= 6))


def relu6_backward_forgetting_the_cap(dout, x):
    """ReLU's derivative: also passes the gradient above 6."""
    return dout * (x > 0)


def v1_macs_halving_the_size(alpha, resolution):
    """H // stride instead of the output-size formula: right while the sizes stay even."""
    blocks_ = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
               (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    H, C = resolution // 2, int(32 * alpha)
    macs = 27 * C * H * H
    for c_out, stride in blocks_:
        H, c_out = H // stride, int(c_out * alpha)
        macs += 9 * C * H * H + C * c_out * H * H
        C = c_out
    return macs + C * 1000


def v1_macs_rounding_the_channels(alpha, resolution):
    """round(C * alpha) instead of int(C * alpha): right for alpha = 1, 0.5, 0.75."""
    blocks_ = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
               (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    H = solutions.conv_output_size(resolution, 3, 2, 1)
    C = round(32 * alpha)
    macs = 27 * C * H * H
    for c_out, stride in blocks_:
        H, c_out = solutions.conv_output_size(H, 3, stride, 1), round(c_out * alpha)
        macs += 9 * C * H * H + C * c_out * H * H
        C = c_out
    return macs + C * 1000


def inverted_residual_macs_depthwise_at_input_size(C_in, C_out, t, K, H, W, stride):
    E = int(round(C_in * t))
    return C_in * E * H * W + K * K * E * H * W + E * C_out * H * W


def inverted_residual_backward_without_the_shortcut(dy, x, w_expand, w_dw, w_project, stride):
    dx, *grads = solutions.inverted_residual_backward(dy, x, w_expand, w_dw, w_project, stride)
    if stride == 1 and w_project.shape[0] == x.shape[1]:
        dx = dx - dy                                 # the gradient of the shortcut left out
    return (dx, *grads)


def inverted_residual_backward_with_relu_masks(dy, x, w_expand, w_dw, w_project, stride):
    """The masks of ReLU (z > 0) instead of ReLU6 (0 < z < 6)."""
    pad = w_dw.shape[2] // 2
    z1 = np.einsum("ec,nchw->nehw", w_expand, x)
    h = np.clip(z1, 0, 6)
    z2 = solutions.depthwise_forward(h, w_dw, stride, pad)
    dw_project = np.einsum("nohw,nehw->oe", dy, np.clip(z2, 0, 6))
    dz2 = np.einsum("oe,nohw->nehw", w_project, dy) * (z2 > 0)
    dh, dw_dw = solutions.depthwise_backward(dz2, h, w_dw, stride, pad)
    dz1 = dh * (z1 > 0)
    dx = np.einsum("ec,nehw->nchw", w_expand, dz1)
    if stride == 1 and w_project.shape[0] == x.shape[1]:
        dx = dx + dy
    return dx, np.einsum("nehw,nchw->ec", dz1, x), dw_dw, dw_project


def hardswish_backward_middle_piece_everywhere(dout, x):
    return dout * (2 * x + 3) / 6


def se_backward_without_the_gate_path(dy, x, w1, b1, w2, b2):
    dx, dw1, db1, dw2, db2 = solutions.se_backward(dy, x, w1, b1, w2, b2)
    s = exercises.se_forward(x, w1, b1, w2, b2)[:, :, :1, :1] / x[:, :, :1, :1]
    return dy * s, dw1, db1, dw2, db2


def compound_scaling_swapped(phi):
    return 1.1 ** phi, 1.2 ** phi, int(round(224 * 1.15 ** phi))


def stochastic_depth_forward_without_scaling(x, p, keep, training):
    return x * keep[:, None, None, None] if training else x


def stochastic_depth_forward_also_in_eval_mode(x, p, keep, training):
    return x * keep[:, None, None, None] / (1 - p) if p < 1 else x * 0


def stochastic_depth_forward_dividing_by_zero(x, p, keep, training):
    with np.errstate(divide="ignore", invalid="ignore"):     # 0 / 0 at p = 1 is the bug
        return x * keep[:, None, None, None] / (1 - p) if training else x


def stochastic_depth_backward_without_scaling(dout, p, keep, training):
    return dout * keep[:, None, None, None] if training else dout


def mbconv_macs_without_the_se(C_in, C_out, expand_ratio, K, H, W, stride):
    """Only the inverted residual's three convolutions (6.1): SE's two 1x1 layers forgotten."""
    return solutions.inverted_residual_macs(C_in, C_out, expand_ratio, K, H, W, stride)


def mbconv_macs_expanding_without_rounding(C_in, C_out, expand_ratio, K, H, W, stride):
    """E = C_in * expand_ratio exactly: right whenever it is a multiple of 8."""
    E = int(C_in * expand_ratio)
    Ho = solutions.conv_output_size(H, K, stride, K // 2)
    Wo = solutions.conv_output_size(W, K, stride, K // 2)
    expand = C_in * E * H * W if E != C_in else 0
    return expand + K * K * E * Ho * Wo + 2 * E * max(1, C_in // 4) + E * C_out * Ho * Wo


def sgd_step_decay_after_momentum(w, grad, velocity, lr, momentum, weight_decay):
    velocity = momentum * velocity + grad
    return w - lr * (velocity + weight_decay * w), velocity


def same_padding_symmetric(size, kernel_size, stride):
    """PyTorch's padding=K // 2 on both sides: right for stride 1 and an odd K."""
    return kernel_size // 2, kernel_size // 2


def same_padding_extra_zero_before(size, kernel_size, stride):
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total - total // 2, total // 2


def same_padding_without_the_clamp(size, kernel_size, stride):
    """A negative total when the windows end before the edge gives negative padding."""
    total = (-(-size // stride) - 1) * stride + kernel_size - size
    return total // 2, total - total // 2


def lite_crop_box_rounding_the_margin_down(width, height, size):
    _, _, side = solutions.lite_crop_box(width, height, size)
    return (width - side) // 2, (height - side) // 2, side


def lite_crop_box_at_a_fixed_875(width, height, size):
    """The 87.5 % of 224 px for every size: Lite1-4 keep size / (size + round(size / 7))."""
    side = int(0.875 * min(width, height))
    return (width - side + 1) // 2, (height - side + 1) // 2, side


def saliency_without_the_relu_mask(x, V, W, labels):
    """The linear model's saliency (W @ V)[label]: right only while every unit is active."""
    return (W[labels] @ V).reshape(x.shape)


def saliency_of_the_sum_of_logits(x, V, W, labels):
    """An upstream gradient of ones: every class's logit added up, not the label's."""
    h = x.reshape(len(x), -1) @ V.T
    return ((W.sum(axis=0) * (h > 0)) @ V).reshape(x.shape)


def batchnorm_backward_with_a_fixed_eps(dout, x, gamma, eps):
    """Ignores the eps it is given: right only when eps is the usual 1e-5."""
    return solutions.batchnorm_backward(dout, x, gamma, 1e-5)


def batchnorm_backward_overwriting_dout(dout, x, gamma, eps):
    """The right numbers, computed in dout's own memory: the caller's dout is gone."""
    axes = (0, 2, 3)
    inv_std = 1.0 / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    xhat = (x - x.mean(axis=axes, keepdims=True)) * inv_std
    dbeta, dgamma = dout.sum(axis=axes), (dout * xhat).sum(axis=axes)
    dout -= (dout.mean(axis=axes, keepdims=True)
             + xhat * (dout * xhat).mean(axis=axes, keepdims=True))
    dout *= gamma.reshape(1, -1, 1, 1) * inv_std
    return dout, dgamma, dbeta


def fold_batchnorm_with_a_fixed_eps(w, b, gamma, beta, mean, var, eps):
    return solutions.fold_batchnorm(w, b, gamma, beta, mean, var, 1e-5)


def fold_batchnorm_adding_eps_to_var_in_place(w, b, gamma, beta, mean, var, eps):
    """var += eps changes the running variance of the layer being folded."""
    var += eps
    return solutions.fold_batchnorm(w, b, gamma, beta, mean, var, 0.0)


def relu6_backward_zeroing_dout_in_place(dout, x):
    dout[(x <= 0) | (x >= 6)] = 0
    return dout


def v1_macs_halving_the_input_in_the_stem(alpha, resolution):
    """resolution // 2 rows after the stem: right for every even input size."""
    return solutions.v1_macs(alpha, resolution - resolution % 2)


def inverted_residual_backward_shortcut_whenever_stride_1(dy, x, w_expand, w_dw, w_project, stride):
    """Adds dy for every stride-1 block, also when the channels change."""
    dx, *grads = solutions.inverted_residual_backward(dy, x, w_expand, w_dw, w_project, stride)
    if stride == 1 and w_project.shape[0] != x.shape[1]:
        dx = dx + dy
    return (dx, *grads)


def se_backward_mean_over_h_squared(dy, x, w1, b1, w2, b2):
    """The pooling's gradient divided by H * H: right for square maps only."""
    N, C, H, W = x.shape
    pooled = x.mean(axis=(2, 3))
    z1 = pooled @ w1.T + b1
    z2 = np.maximum(z1, 0) @ w2.T + b2
    dz2 = np.einsum("nchw,nchw->nc", dy, x) * ((z2 > -3) & (z2 < 3)) / 6
    dz1 = (dz2 @ w2) * (z1 > 0)
    s = np.clip(z2 + 3, 0, 6) / 6
    dx = dy * s[:, :, None, None] + (dz1 @ w1)[:, :, None, None] / (H * H)
    return dx, dz1.T @ pooled, dz1.sum(axis=0), dz2.T @ np.maximum(z1, 0), dz2.sum(axis=0)


def stochastic_depth_forward_dropping_everything_at_p_0(x, p, keep, training):
    """Guards the division with 0 < p < 1, and drops every sample outside it."""
    if not training:
        return x
    return x * keep[:, None, None, None] / (1 - p) if 0 < p < 1 else x * 0


def stochastic_depth_backward_in_place(dout, p, keep, training):
    """The right numbers, written over the caller's dout (which the shortcut also needs)."""
    if training:
        dout[~keep] = 0
        dout *= 1 / (1 - p) if p < 1 else 0.0
    return dout


def _mbconv_macs(C_in, C_out, E, S, K, H, W, stride):
    Ho = solutions.conv_output_size(H, K, stride, K // 2)
    Wo = solutions.conv_output_size(W, K, stride, K // 2)
    expand = C_in * E * H * W if E != C_in else 0
    return expand + K * K * E * Ho * Wo + 2 * E * S + E * C_out * Ho * Wo


def mbconv_macs_rounding_E_up(C_in, C_out, expand_ratio, K, H, W, stride):
    """E = the next multiple of 8 up: right whenever that is also the nearest one."""
    E = -(-C_in * expand_ratio // 8) * 8
    return _mbconv_macs(C_in, C_out, E, max(1, C_in // 4), K, H, W, stride)


def mbconv_macs_with_python_round(C_in, C_out, expand_ratio, K, H, W, stride):
    """round(v / 8) * 8: Python rounds a half to even, 36 -> 32 where MBConv has 40."""
    E = max(8, round(C_in * expand_ratio / 8) * 8)
    return _mbconv_macs(C_in, C_out, E, max(1, C_in // 4), K, H, W, stride)


def mbconv_macs_without_the_10_percent_rule(C_in, C_out, expand_ratio, K, H, W, stride):
    E = max(8, int(C_in * expand_ratio + 4) // 8 * 8)
    return _mbconv_macs(C_in, C_out, E, max(1, C_in // 4), K, H, W, stride)


def mbconv_macs_squeezing_to_zero(C_in, C_out, expand_ratio, K, H, W, stride):
    """S = C_in // 4 without max(1, ...): no SE at all below 4 input channels."""
    from tinymobilenet.nn import make_divisible
    return _mbconv_macs(C_in, C_out, make_divisible(C_in * expand_ratio, 8), C_in // 4,
                        K, H, W, stride)


def mbconv_macs_skipping_the_expansion_when_t_is_1(C_in, C_out, expand_ratio, K, H, W, stride):
    from tinymobilenet.nn import make_divisible
    E = make_divisible(C_in * expand_ratio, 8)
    macs = _mbconv_macs(C_in, C_out, E, max(1, C_in // 4), K, H, W, stride)
    return macs - C_in * E * H * W if expand_ratio == 1 and E != C_in else macs


def sgd_step_with_lr_in_the_velocity(w, grad, velocity, lr, momentum, weight_decay):
    """v = momentum * v + lr * g, w = w - v: the same w while lr is constant, but the
    velocity is lr times the formula's."""
    velocity = momentum * velocity + lr * (grad + weight_decay * w)
    return w - velocity, velocity


def sgd_step_adding_the_decay_to_grad_in_place(w, grad, velocity, lr, momentum, weight_decay):
    grad += weight_decay * w
    velocity = momentum * velocity + grad
    return w - lr * velocity, velocity


WRONG = [
    ("conv_output_size", conv_output_size_without_padding, "padding"),
    ("conv_output_size", conv_output_size_true_division, "stride 2"),
    ("im2col", im2col_ignoring_stride, "stride 2"),
    ("conv2d_forward", conv2d_forward_without_bias, "3x3, stride 1"),
    ("conv2d_backward", conv2d_backward_assigning_instead_of_adding, "3x3, stride 1"),
    ("depthwise_forward", depthwise_forward_summing_channels, "3x3, stride 1"),
    ("depthwise_backward", depthwise_backward_forgetting_the_stride, "stride 2"),
    ("cost_ratio", cost_ratio_without_square, "C_out=16, K=3"),
    ("batchnorm_backward", batchnorm_backward_eval_formula, "(4, 3, 2, 2)"),
    ("fold_batchnorm", fold_batchnorm_ignoring_the_conv_bias, "with bias"),
    ("relu6_backward", relu6_backward_with_closed_interval, "exactly 0 and 6"),
    ("relu6_backward", relu6_backward_forgetting_the_cap, "(-4, 10)"),
    ("v1_macs", v1_macs_halving_the_size, "100 px"),
    ("v1_macs", v1_macs_rounding_the_channels, "round and int differ"),
    ("inverted_residual_macs", inverted_residual_macs_depthwise_at_input_size, "stride 2"),
    ("inverted_residual_backward", inverted_residual_backward_without_the_shortcut,
     "with the shortcut"),
    ("inverted_residual_backward", inverted_residual_backward_with_relu_masks, "stride 1"),
    ("hardswish_backward", hardswish_backward_middle_piece_everywhere, "(-8, 8)"),
    ("se_backward", se_backward_without_the_gate_path, "N=2"),
    ("compound_scaling", compound_scaling_swapped, "phi=1"),
    ("stochastic_depth_forward", stochastic_depth_forward_without_scaling, "p = 0.5"),
    ("stochastic_depth_forward", stochastic_depth_forward_also_in_eval_mode, "eval mode"),
    ("stochastic_depth_forward", stochastic_depth_forward_dividing_by_zero, "p = 1"),
    ("stochastic_depth_backward", stochastic_depth_backward_without_scaling, "p = 0.5"),
    ("mbconv_macs", mbconv_macs_without_the_se, "C_in=16, C_out=16"),
    ("mbconv_macs", mbconv_macs_expanding_without_rounding, "multiple of 8"),
    ("sgd_step", sgd_step_decay_after_momentum, "weight decay"),
    ("same_padding", same_padding_symmetric, "an even size at stride 2"),
    ("same_padding", same_padding_extra_zero_before, "an even size at stride 2"),
    ("same_padding", same_padding_without_the_clamp, "no padding needed"),
    ("lite_crop_box", lite_crop_box_rounding_the_margin_down, "an odd margin"),
    ("lite_crop_box", lite_crop_box_at_a_fixed_875, "Lite4"),
    ("saliency", saliency_without_the_relu_mask, "some hidden units off"),
    ("saliency", saliency_of_the_sum_of_logits, "a linear model"),
    ("batchnorm_backward", batchnorm_backward_with_a_fixed_eps, "eps = 1e-3"),
    ("batchnorm_backward", batchnorm_backward_overwriting_dout, "(4, 3, 2, 2)"),
    ("fold_batchnorm", fold_batchnorm_with_a_fixed_eps, "eps = 1e-3"),
    ("fold_batchnorm", fold_batchnorm_adding_eps_to_var_in_place, "without bias"),
    ("relu6_backward", relu6_backward_zeroing_dout_in_place, "(-4, 10)"),
    ("v1_macs", v1_macs_halving_the_input_in_the_stem, "an odd input size"),
    ("inverted_residual_backward", inverted_residual_backward_shortcut_whenever_stride_1,
     "the channels change"),
    ("se_backward", se_backward_mean_over_h_squared, "4x2"),
    ("stochastic_depth_forward", stochastic_depth_forward_dropping_everything_at_p_0, "p = 0 "),
    ("stochastic_depth_backward", stochastic_depth_backward_in_place, "p = 0.5"),
    ("mbconv_macs", mbconv_macs_rounding_E_up, "nearest multiple of 8"),
    ("mbconv_macs", mbconv_macs_with_python_round, "halfway"),
    ("mbconv_macs", mbconv_macs_without_the_10_percent_rule, "over 10 %"),
    ("mbconv_macs", mbconv_macs_squeezing_to_zero, "over 10 %"),
    ("mbconv_macs", mbconv_macs_skipping_the_expansion_when_t_is_1, "yet an expansion layer"),
    ("sgd_step", sgd_step_with_lr_in_the_velocity, "plain SGD"),
    ("sgd_step", sgd_step_adding_the_decay_to_grad_in_place, "weight decay"),
]


@pytest.mark.parametrize("name, wrong, case", WRONG, ids=[w[1].__name__ for w in WRONG])
def test_checker_fails_a_plausible_wrong_answer(name, wrong, case):
    result = check(name, wrong)
    assert not result.ok and not bool(result)
    text = str(result)
    assert "FAIL" in text and case in result.failed_case and "hint:" in text, text
    assert not result.library, "a wrong answer of its own is not the library's"


def test_every_exercise_has_a_wrong_answer_test():
    assert {w[0] for w in WRONG} == set(NAMES)


def test_the_stride_bug_is_reported_with_the_stride_hint_and_the_worst_error():
    result = exercises.check_depthwise_backward(depthwise_backward_forgetting_the_stride)
    assert result.failed_case.startswith("3x3, stride 2")
    assert "stride" in result.hint and np.isfinite(result.worst_error) and result.worst_error > 1e-3


def test_division_by_zero_at_p_1_is_reported_as_nan():
    result = check("stochastic_depth_forward", stochastic_depth_forward_dividing_by_zero)
    assert "NaN" in result.message and "1 - p = 0" in result.hint


def test_an_answer_that_changes_its_inputs_in_place_is_told_which_one():
    result = check("relu6_backward", relu6_backward_zeroing_dout_in_place)
    assert "changed its input `dout` in place" in result.message
    assert "dout = dout.copy()" in result.hint
    result = check("fold_batchnorm", fold_batchnorm_adding_eps_to_var_in_place)
    assert "changed its input `var` in place" in result.message


def test_an_optimizer_step_may_update_w_and_the_velocity_in_place_but_not_grad():
    def my_sgd_step(w, grad, velocity, lr, momentum, weight_decay):
        velocity *= momentum
        velocity += grad + weight_decay * w
        w -= lr * velocity
        return w, velocity
    assert exercises.check_sgd_step(my_sgd_step).ok
    result = check("sgd_step", sgd_step_adding_the_decay_to_grad_in_place)
    assert "changed its input `grad` in place" in result.message


def test_a_velocity_holding_lr_is_told_why_w_alone_is_not_enough():
    result = check("sgd_step", sgd_step_with_lr_in_the_velocity)
    assert "velocity after the last step" in result.message
    assert "without lr" in result.hint and "w is right" in result.hint


def test_the_se_cases_use_every_piece_of_the_gate():
    """A ReLU that is never off (or never on) or an h-sigmoid that never saturates lets an
    answer without that mask pass."""
    for N, C, S, H, W, seed in ((2, 4, 2, 3, 3, 0), (3, 6, 3, 4, 2, 1)):
        (x, w1, b1, w2, b2), _ = blocks._se_case(N, C, S, H, W, seed)
        z1 = x.mean(axis=(2, 3)) @ w1.T + b1
        z2 = np.maximum(z1, 0) @ w2.T + b2
        assert (z1 > 0).any() and (z1 < 0).any()
        assert (np.abs(z2) < 3).any() and (np.abs(z2) > 3).any()


# ---- the form of the answer, before the numbers ---------------------------------------------

def test_a_forward_returning_out_and_cache_is_told_to_return_only_out():
    r = exercises.check_conv2d_forward(
        lambda x, w, b, s, p: (solutions.conv2d_forward(x, w, b, s, p), {"x": x}))
    assert "expected an array `out`, got a tuple of 2: return only `out`" in r.message


def test_returning_none_is_named_not_a_crash_of_the_checker():
    r = exercises.check_v1_macs(lambda alpha, resolution: None)
    assert not r.ok and "is None" in r.message and "return" in r.message
    assert "TypeError" not in r.message


def test_returning_one_value_where_a_tuple_is_expected():
    r = exercises.check_sgd_step(lambda w, g, v, lr, m, wd: w - lr * g)
    assert "expected a tuple (w, velocity), got an array of shape (7,)" in r.message
    r = exercises.check_conv2d_backward(lambda dout, x, w, s, p: x)
    assert "expected a tuple (dx, dw)" in r.message
    r = exercises.check_batchnorm_backward(lambda dout, x, gamma, eps: (dout, gamma))
    assert "expected a tuple of 3 (dx, dgamma, dbeta), got a tuple of 2" in r.message


def test_float32_for_float64_inputs_is_named_before_the_numbers():
    r = exercises.check_im2col(lambda x, K, s, p: solutions.im2col(x, K, s, p).astype(np.float32))
    assert "col: float32 returned for float64 inputs" in r.message
    assert "relative error" not in r.message


def test_a_wrong_shape_is_named_with_the_layout():
    r = exercises.check_depthwise_forward(lambda x, w, s, p: x)
    assert not r.ok and "out has shape" in r.message and "(N, C, Ho, Wo)" in r.message
    r = exercises.check_fold_batchnorm(lambda w, b, g, be, m, v, e: (w, np.zeros(3)))
    assert "b_folded has shape (3,), expected (4,)" in r.message


def test_a_shape_in_another_order_says_so_in_the_hint():
    def transposed_im2col(x, K, stride, padding):       # (N, C, Ho, Wo, K, K)
        return np.ascontiguousarray(solutions.im2col(x, K, stride, padding)
                                    .transpose(0, 1, 4, 5, 2, 3))
    r = exercises.check_im2col(transposed_im2col)
    assert not r.ok and "col has shape" in r.message
    assert r.hint.startswith("the sizes are right but in another order") and "(N, C, K, K, Ho, Wo)" in r.hint


def test_integers_are_expected_where_the_answer_is_a_count():
    r = exercises.check_conv_output_size(lambda size, k, s, p: (size + 2 * p - k) / s + 1)
    assert "expected an integer, got the float" in r.message and "//" in r.message
    r = exercises.check_v1_macs(lambda alpha, resolution: float(solutions.v1_macs(alpha, resolution)))
    assert "expected an integer, got the float" in r.message
    r = exercises.check_compound_scaling(lambda phi: (1.2 ** phi, 1.1 ** phi, 224 * 1.15 ** phi))
    assert "resolution: expected an integer" in r.message


def test_a_function_with_the_wrong_parameters_is_named_before_it_is_called():
    r = exercises.check_conv2d_forward(lambda x, w, stride, padding: x)
    assert "parameters are (x, w, stride, padding)" in r.message
    assert "5 arguments (x, w, b, stride, padding)" in r.message
    # the exercise's own names in another order would be called with the wrong values
    r = exercises.check_conv_output_size(lambda size, stride, kernel_size, padding:
                                         (size + 2 * padding - kernel_size) // stride + 1)
    assert not r.ok and "the exercise's names in another order" in r.message
    assert "(size, kernel_size, stride, padding)" in r.message
    r = exercises.check_conv_output_size(lambda size, k, s, p: (size + 2 * p - k) // s + 1)
    assert r.ok                                       # other names, the right order: fine


def test_something_that_is_not_a_function():
    r = exercises.check_cost_ratio(0.25)
    assert not r.ok and "expected a function, got the float 0.25" in r.message


JUNK = [None, "a string", (None, None), (None, None, None, None, None), np.zeros(3), 1.5,
        [1, 2], {"out": 1}, np.float32(2.0), True]


@pytest.mark.parametrize("name", NAMES)
def test_no_checker_crashes_or_blames_itself_on_a_wrong_type(name):
    for junk in JUNK:
        result = check(name, lambda *args, junk=junk: junk)
        assert isinstance(result, exercises.ExerciseResult)
        assert not result.ok, f"{name} passed {junk!r}"
        assert result.message and "checker could not use" not in result.message, \
            f"{name} on {junk!r}: {result.message}"


def test_an_exception_in_the_answer_is_reported_with_its_line():
    def my_conv2d_forward(x, w, b, stride, padding):
        return x @ w                     # (N, C, H, W) @ (Co, C, K, K): a ValueError here
    r = exercises.check_conv2d_forward(my_conv2d_forward)
    line = my_conv2d_forward.__code__.co_firstlineno + 1
    assert f"your function raised ValueError" in r.message and f"line {line}" in r.message


def test_a_stub_reports_not_implemented_instead_of_raising():
    def stub(dout, x, w, stride, padding):
        raise NotImplementedError
    result = exercises.check_depthwise_backward(stub)
    assert not result.ok and "not implemented" in str(result)


# ---- the library's own functions are not answers --------------------------------------------

def test_the_library_kernel_itself_fails_its_exercise():
    for checker, kernel in ((exercises.check_im2col, F.im2col),
                            (exercises.check_conv_output_size, F.conv_output_size)):
        r = checker(kernel)
        assert not r.ok and "library's own" in r.message and r.library


def test_a_thin_wrapper_around_the_library_kernel_fails():
    r = exercises.check_conv2d_forward(lambda x, w, b, s, p: F.conv2d_forward(x, w, b, s, p)[0])
    assert not r.ok and r.library == "F.conv2d_forward"
    import tinymobilenet
    r = exercises.check_relu6_backward(
        lambda dout, x: tinymobilenet.functional.relu6_backward(dout, x))
    assert r.library == "tinymobilenet.functional.relu6_backward"


def test_the_library_is_found_through_the_answer_s_own_helpers():
    def helper(x, K, stride, padding):
        return F.im2col(x, K, stride, padding)

    def my_conv2d_forward(x, w, b, stride, padding):
        col = helper(x, w.shape[2], stride, padding)
        return np.einsum("ockl,nckl...->no...", w, col) + b[:, None, None]
    assert exercises.check_conv2d_forward(my_conv2d_forward).library == "F.im2col"


def test_the_library_s_same_padding_and_lite_crop_fail_their_exercises():
    from tinymobilenet import data
    r = exercises.check_same_padding(F.same_padding)
    assert not r.ok and "library's own" in r.message and r.library
    r = exercises.check_lite_crop_box(lambda w, h, size: data.LiteTransform(size).crop_box(w, h))
    assert not r.ok and r.library == "data.LiteTransform"


def test_a_saliency_map_where_the_gradient_is_asked_is_named_by_its_shape():
    r = exercises.check_saliency(
        lambda x, V, W, labels: np.abs(solutions.saliency(x, V, W, labels)).max(axis=1))
    assert not r.ok and "dx has shape (2, 3, 3), expected (2, 1, 3, 3)" in r.message
    assert "(N, C, H, W)" in r.message


def test_the_output_size_formula_of_the_library_may_be_reused_in_later_exercises():
    def my_v1_macs(alpha, resolution):
        return solutions.v1_macs(alpha, F.conv_output_size(resolution, 1, 1, 0))
    assert exercises.check_v1_macs(my_v1_macs).ok


# ---- the oracles and the package ------------------------------------------------------------

def test_the_inverted_residual_oracle_agrees_with_central_differences():
    r = np.random.default_rng(3)
    for C, E, Co, K, s in ((3, 6, 3, 3, 1), (3, 6, 4, 3, 2), (2, 4, 2, 5, 1)):
        x = 2 * r.standard_normal((2, C, 6, 5))
        weights = [r.standard_normal((E, C)), r.standard_normal((E, 1, K, K)),
                   r.standard_normal((Co, E))]
        dy = r.standard_normal(exercises.inverted_residual_forward(x, *weights, s).shape)
        got = blocks._inverted_residual_grads(dy, x, *weights, s)
        for array, grad in zip([x, *weights], got):
            want = gradcheck.numerical_gradient(
                lambda: exercises.inverted_residual_forward(x, *weights, s), array, G=dy)
            assert gradcheck.relative_error(grad, want)[0] < 1e-6


def test_stochastic_depth_cases_keep_some_samples_and_drop_others():
    for _, p, N, training, _ in blocks._SD_CASES:
        x, y, _, keep = blocks._stochastic_depth(p, N, training, seed=0)
        if 0 < p < 1:
            assert 0 < keep.sum() < N


def test_help_lists_every_exercise_with_its_signature():
    text = pydoc.render_doc(exercises, renderer=pydoc.plaintext)
    for e in registry.EXERCISES:
        assert e.signature in text and e.checker.__name__ in text


def test_the_exercises_do_not_import_the_worked_answers():
    """A teacher can hand out the checkers: nothing in the package imports the answers."""
    package = ROOT / "tinymobilenet"
    for path in (package / "exercises").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any("solutions" in n for n in names), path.name
    assert not list(package.rglob("solutions*")), "worked answers inside the installed package"


def test_the_teachers_guide_answers_every_question_without_a_checker():
    guide = (SOLUTIONS.parent / "TEACHERS.md").read_text()
    questions = set()
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        questions |= set(re.findall(r"\*\*(\d+\.\d+)\*\* \(no checker\)", nb.read_text()))
    assert len(questions) >= 14
    for q in sorted(questions):
        assert f"\n### {q} " in guide, f"TEACHERS.md has no answer for {q}"


@pytest.mark.slow
def test_the_teachers_guide_quotes_the_numbers_the_library_gives():
    verify = _load(SOLUTIONS.parent / "verify_guide.py", "verify_guide")
    guide = (SOLUTIONS.parent / "TEACHERS.md").read_text()
    for question, values in verify.claims().items():
        section = guide.split(f"\n### {question} ", 1)[1].split("\n### ", 1)[0]
        section = " ".join(section.split())           # quotes may wrap across lines
        for value in values:
            assert f'"{value}"' in section, f"TEACHERS.md {question} does not quote {value!r}"
