"""Each exercise checker passes the worked solution and fails a plausible wrong answer,
naming the case that exposes it."""

import numpy as np
import pytest

from tinymobilenet import exercises, solutions

NAMES = solutions.__all__


def test_every_solution_has_a_checker_and_every_checker_a_solution():
    checkers = {n[len("check_"):] for n in exercises.__all__ if n.startswith("check_")}
    assert checkers == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_checker_passes_the_solution(name):
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


def v1_macs_halving_the_size(alpha, resolution):
    """H // stride instead of the output-size formula: right while the sizes stay even."""
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    H, C = resolution // 2, int(32 * alpha)
    macs = 27 * C * H * H
    for c_out, stride in blocks:
        H, c_out = H // stride, int(c_out * alpha)
        macs += 9 * C * H * H + C * c_out * H * H
        C = c_out
    return macs + C * 1000


def inverted_residual_macs_depthwise_at_input_size(C_in, C_out, t, K, H, W, stride):
    E = int(round(C_in * t))
    return C_in * E * H * W + K * K * E * H * W + E * C_out * H * W


def hardswish_backward_middle_piece_everywhere(dout, x):
    return dout * (2 * x + 3) / 6


def se_backward_without_the_gate_path(dy, x, w1, b1, w2, b2):
    dx, dw1, db1, dw2, db2 = solutions.se_backward(dy, x, w1, b1, w2, b2)
    s = exercises.se_forward(x, w1, b1, w2, b2)[:, :, :1, :1] / x[:, :, :1, :1]
    return dy * s, dw1, db1, dw2, db2


def compound_scaling_swapped(phi):
    return 1.1 ** phi, 1.2 ** phi, int(round(224 * 1.15 ** phi))


def sgd_step_decay_after_momentum(w, grad, velocity, lr, momentum, weight_decay):
    velocity = momentum * velocity + grad
    return w - lr * (velocity + weight_decay * w), velocity


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
    ("v1_macs", v1_macs_halving_the_size, "100 px"),
    ("inverted_residual_macs", inverted_residual_macs_depthwise_at_input_size, "stride 2"),
    ("hardswish_backward", hardswish_backward_middle_piece_everywhere, "(-8, 8)"),
    ("se_backward", se_backward_without_the_gate_path, "N=2"),
    ("compound_scaling", compound_scaling_swapped, "phi=1"),
    ("sgd_step", sgd_step_decay_after_momentum, "weight decay"),
]


@pytest.mark.parametrize("name, wrong, case", WRONG, ids=[w[1].__name__ for w in WRONG])
def test_checker_fails_a_plausible_wrong_answer(name, wrong, case):
    result = getattr(exercises, f"check_{name}")(wrong)
    assert not result.ok
    assert not bool(result)
    text = str(result)
    assert "FAIL" in text and case in result.failed_case and "hint:" in text


def test_every_checker_has_a_wrong_answer_test():
    assert {w[0] for w in WRONG} == set(NAMES)


def test_the_stride_bug_is_reported_with_the_stride_hint_and_the_worst_error():
    result = exercises.check_depthwise_backward(depthwise_backward_forgetting_the_stride)
    assert result.failed_case.startswith("3x3, stride 2")
    assert "stride" in result.hint and np.isfinite(result.worst_error) and result.worst_error > 1e-3


def test_a_stub_reports_not_implemented_instead_of_raising():
    def stub(dout, x, w, stride, padding):
        raise NotImplementedError
    result = exercises.check_depthwise_backward(stub)
    assert not result.ok and "not implemented" in str(result)


def test_a_crash_is_reported_not_raised():
    result = exercises.check_conv2d_forward(lambda x, w, b, s, p: x @ w)
    assert not result.ok and "raised ValueError" in str(result)


def test_wrong_shapes_and_wrong_return_types_are_named():
    r = exercises.check_depthwise_forward(lambda x, w, s, p: x)
    assert not r.ok and "shape" in r.message
    r = exercises.check_conv2d_backward(lambda dout, x, w, s, p: x)
    assert not r.ok and "tuple (dx, dw)" in r.message


def test_the_exercises_work_without_the_solutions():
    """A teacher can hand out the checkers without tinymobilenet/solutions.py."""
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(exercises))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names} | {node.module or "" for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom)}
    assert not any("solutions" in name for name in imported)
