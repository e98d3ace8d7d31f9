"""Recompute every number of the answer key in TEACHERS.md from the library.

    python notebooks/solutions/verify_guide.py          # prints each claim
    python notebooks/solutions/verify_guide.py --all    # also EfficientNet-B7's count (~15 s)

``claims()`` returns {question: [the strings TEACHERS.md quotes]}; a test checks that the
guide contains every one of them, so the key cannot drift from the library unnoticed. The
training runs of 5.2 and the chapter times are measurements, not recomputed here (the
guide says when and how they were taken).
"""

from __future__ import annotations

import sys

import numpy as np

from tinymobilenet import count, figures, gradcheck, models, nn, optim
from tinymobilenet import functional as F
from tinymobilenet.bench.cases import kernel_cases


def _macs(model, shape):
    return count.summary(model, shape).total_macs


def _im2col_growth():                                                   # 1.4
    rng = np.random.default_rng(0)
    x, odd = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((2, 3, 7, 7))
    return [f"{F.im2col(x, 3, 1, 1).size / x.size:g}x", f"{F.im2col(x, 3, 2, 1).size / x.size:g}x",
            f"{F.im2col(odd, 3, 2, 1).size / odd.size:.2f}x"]


def _col2im_with_assignment():                                          # 2.2
    """(K, stride) pairs for which col2im with '=' fails the gradient check."""
    rng = np.random.default_rng(0)
    failing = []
    for K in (1, 2, 3):
        for s in (1, 2, 3):
            x, w = rng.standard_normal((1, 2, 7, 7)), rng.standard_normal((3, 2, K, K))
            out = F.conv2d_forward(x, w, None, s, 1)[0]
            G = rng.standard_normal(out.shape)
            dcol = np.einsum("ocij,nohw->ncijhw", w, G)
            Ho, Wo = out.shape[2:]
            dxp = np.zeros((1, 2, 9, 9))
            for i in range(K):
                for j in range(K):
                    dxp[:, :, i:i + s * Ho:s, j:j + s * Wo:s] = dcol[:, :, i, j]   # '=' not '+='
            numeric = gradcheck.numerical_gradient(
                lambda: F.conv2d_forward(x, w, None, s, 1)[0], x, G=G)
            if gradcheck.relative_error(dxp[:, :, 1:8, 1:8], numeric)[0] > 1e-6:
                failing.append(f"(K={K}, stride={s})")
    return [", ".join(failing)]


def _linear_gradcheck():                                                # 2.3
    """Worst relative error of central differences of a linear f at h = 0.1 and 1e-5."""
    rng = np.random.default_rng(0)
    x, w, G = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 2, 3, 3)), \
        rng.standard_normal((1, 2, 5, 5))
    exact = F.conv2d_backward(G, F.conv2d_forward(x, w, None, 1, 1)[1])[0]
    f = lambda: F.conv2d_forward(x, w, None, 1, 1)[0]          # noqa: E731
    errors = [gradcheck.relative_error(exact, gradcheck.numerical_gradient(f, x, h=h, G=G))[0]
              for h in (0.1, 1e-5)]
    return [f"{'below' if max(errors) < 1e-9 else 'ABOVE'} 1e-9 at h = 0.1 and 1e-5"]


def _worst_v1_block():                                                  # 3.4
    return [f"1/64 + 1/9 = {1 / 64 + 1 / 9:.4f}", f"1/1024 + 1/9 = {1 / 1024 + 1 / 9:.4f}"]


def _same_padding():                                                    # 3.5
    return [f"H = {H}, K = {K}: {F.same_padding(H, K, 2)}"
            for H, K in ((112, 5), (28, 5), (7, 3), (56, 5), (14, 5))]


def _fold_before_padding():                                             # 4.3
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(0, 1, 3)
    mean, var, eps = rng.normal(0, 1, 3), rng.uniform(0.5, 2, 3), 1e-5
    y = F.batchnorm_forward(x, gamma, beta, mean.copy(), var.copy(), training=False, eps=eps)[0]
    s = gamma / np.sqrt(var + eps)
    folded_w, folded_b = w * s[None, :, None, None], np.einsum("ocij,c->o", w, beta - mean * s)
    out = []
    for pad in (1, 0):
        diff = np.abs(F.conv2d_forward(y, w, None, 1, pad)[0]
                      - F.conv2d_forward(x, folded_w, folded_b, 1, pad)[0])
        inside = diff[:, :, pad:diff.shape[2] - pad, pad:diff.shape[3] - pad]
        out.append("round-off" if diff.max() < 1e-12 else
                   f"{'round-off' if inside.max() < 1e-12 else 'wrong'} inside, wrong at the border")
    return [f"padding 1: {out[0]}", f"padding 0: {out[1]}"]


def _v1_width():                                                        # 5.1
    full = count.summary(models.mobilenet_v1(1.0), (1, 3, 224, 224))
    half = count.summary(models.mobilenet_v1(0.5), (1, 3, 224, 224))
    per = {k: m for k, _, m, _ in full.by_kind()}
    shares = [f"{kind} x{m / per[kind]:.2f}" for kind, _, m, _ in half.by_kind()]
    pointwise = per["pointwise 1x1"] / full.total_macs
    return [f"{half.total_macs / full.total_macs:.4f}", *shares, f"{100 * pointwise:.0f} %"]


def _break_even_expansion():                                            # 6.2
    C, t = 36, 4
    block = _macs(nn.InvertedResidual(C, C, 1, expand_ratio=t), (1, C, 14, 14))
    full = _macs(nn.Conv2d(C, C, 3, padding=1, bias=False), (1, C, 14, 14))
    six = _macs(nn.InvertedResidual(24, 24, 1, expand_ratio=6), (1, 24, 14, 14)) / \
        _macs(nn.Conv2d(24, 24, 3, padding=1, bias=False), (1, 24, 14, 14))
    return [f"C = 36, t = 4: {block:,} MACs both" if block == full else "C = 36 MISMATCH",
            f"t* = {9 * 24 / (2 * 24 + 9):.2f} for C = 24", f"{six:.2f}x"]


def _relu_on_the_projection():                                          # 6.3
    points, _ = figures.spiral()
    both = []
    for seed in range(20):
        T = np.random.default_rng((seed, 30)).standard_normal((30, 2))
        P = np.random.default_rng((seed, 2)).standard_normal((2, 30))
        z = np.maximum(points @ T.T, 0) @ P.T                   # expand + ReLU, project
        both.append(np.mean((z > 0).all(axis=1)))               # what a ReLU there keeps
    return [f"{100 * np.mean(both):.0f} %", f"{100 * min(both):.0f} to {100 * max(both):.0f} %"]


def _se_share():                                                        # 7.3
    s = count.summary(models.mobilenet_v3_small(), (1, 3, 224, 224))
    (se,) = [(m, w) for kind, _, m, w in s.by_kind() if kind.startswith("SE")]
    return [f"{100 * se[0] / s.total_macs:.1f} % of the MACs",
            f"{100 * se[1] / s.total_weights:.1f} % of the weights", f"{se[1]:,}"]


def _b7_against_b0(with_count):                                         # 8.2
    P = models.EFFICIENTNET_PARAMS
    (w0, d0, r0, _), (w7, d7, r7, _) = P["efficientnet_b0"], P["efficientnet_b7"]
    d, w2, r2 = d7 / d0, (w7 / w0) ** 2, (r7 / r0) ** 2
    out = [f"{1.2 * 1.1 ** 2 * 1.15 ** 2:.3f}", f"{d:.1f} x {w2:.1f} x {r2:.2f} = {d * w2 * r2:.0f}",
           f"1.2^7 = {1.2 ** 7:.2f}"]
    if with_count:
        b0, b7 = models.get_model("efficientnet_b0"), models.get_model("efficientnet_b7")
        blocks = [sum(isinstance(m, nn.MBConv) for _, m in net.named_modules()) for net in (b0, b7)]
        ratio = _macs(b7, (1, 3, r7, r7)) / _macs(b0, (1, 3, r0, r0))
        out += [f"{ratio:.0f}x B0", f"{blocks[1]} blocks in B7 where {d7:g} x {blocks[0]} = "
                f"{d7 * blocks[0]:.1f}"]
    return out


def _v2_as_costly_as_b1():                                              # 8.3
    r1 = models.EFFICIENTNET_PARAMS["efficientnet_b1"][2]
    b1 = _macs(models.get_model("efficientnet_b1"), (1, 3, r1, r1))
    v2 = models.mobilenet_v2()
    lo, hi = 224, 448                    # the cost never falls as R grows: bisect for the first R
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if _macs(v2, (1, 3, mid, mid)) < b1 else (lo, mid)
    R = lo
    v2_224 = _macs(v2, (1, 3, 224, 224))
    return [f"{b1 / 1e6:.0f} M", f"{v2_224 / 1e6:.1f} M at 224 px", f"{R} px",
            f"{224 * np.sqrt(b1 / v2_224):.0f} px"]


def _largest_stable_lr():                                               # 9.2
    def distance(momentum, lr, steps=400):
        p = nn.Parameter(np.array([-9.0, 1.5]))
        opt = optim.SGD([p], lr=lr, momentum=momentum)
        for _ in range(steps):
            p.grad = np.array([1.0, 25.0]) * p.data             # dL/dw of (x^2 + 25 y^2) / 2
            opt.step()
        return np.linalg.norm(p.data)
    out = []
    for mom, bound in ((0.0, 2 / 25), (0.8, 2 * 1.8 / 25)):
        ok = distance(mom, 0.99 * bound) < 1.5 < distance(mom, 1.01 * bound)
        out.append(f"lr < {bound:.3f}" + ("" if ok else " MISMATCH"))
    return out


def _intensities():                                                     # 9.3
    by_name = {c.name: c for c in kernel_cases()}
    dw5, se = by_name["depthwise 5x5 s1 480 14x14"], by_name["squeeze-excitation 480->120 14x14"]
    lowest = min((c for c in by_name.values() if c.bytes), key=lambda c: c.flops / c.bytes)
    return [f"{50 / 8:.2f} flop/B", f"{1 / 8:.3f} flop/B", f"{dw5.flops / dw5.bytes:.1f}",
            f"{se.flops / se.bytes:.1f} flop/B", lowest.name]


def claims(with_b7=False) -> dict:
    """{question: [strings quoted in TEACHERS.md]}, all recomputed now."""
    return {"1.4": _im2col_growth(), "2.2": _col2im_with_assignment(),
            "2.3": _linear_gradcheck(), "3.4": _worst_v1_block(), "3.5": _same_padding(),
            "4.3": _fold_before_padding(),
            "5.1": _v1_width(), "6.2": _break_even_expansion(), "6.3": _relu_on_the_projection(),
            "7.3": _se_share(), "8.2": _b7_against_b0(with_b7), "8.3": _v2_as_costly_as_b1(),
            "9.2": _largest_stable_lr(), "9.3": _intensities()}


if __name__ == "__main__":
    for question, values in claims(with_b7="--all" in sys.argv).items():
        print(f"{question}: " + " | ".join(values))
