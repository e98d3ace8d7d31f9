"""The tiled fast kernels equal their naive twins for any tiling.

The fast kernels cut their work into cache-sized tiles run on threads; the tile sizes
depend on the machine's budgets, so the tests shrink the budgets until every tile holds
one channel (or one sample) and check the results do not change.
"""

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet.functional import conv2d, depthwise, tiling

from conftest import randn

# the chapters these tests back (select with: pytest -m ch03)
pytestmark = [pytest.mark.ch03, pytest.mark.ch09]



@pytest.fixture(params=["one channel per tile", "default tiles"])
def tiny_tiles(request, monkeypatch):
    """Budgets so small that every tile is one channel (or sample), on 2 threads."""
    if request.param == "one channel per tile":
        monkeypatch.setattr(tiling, "TILE_BYTES", 1)
        monkeypatch.setattr(conv2d, "COL_BYTES", 1)
        monkeypatch.setattr(tiling, "_MIN_PARALLEL", 0)
    old = tiling.num_threads()
    tiling.set_num_threads(2)
    yield
    tiling.set_num_threads(old)


@pytest.fixture(params=["repeated vectors", "broadcast vectors"])
def bn_rows(request, monkeypatch):
    """Both row shapes of the batch-norm tiles, whatever the map size: (N, ct*L) rows with
    repeated per-channel vectors, and (N, ct, L) rows with (ct, 1) vectors."""
    from tinymobilenet.functional import norm
    monkeypatch.setattr(norm, "LONG_ROW", 0 if request.param == "broadcast vectors" else 10**9)


@pytest.fixture(params=["scratch as left", "scratch poisoned"])
def scratch_content(request, monkeypatch):
    """Run a test twice: with the scratch buffers as the last call left them, then with
    every scratch buffer handed out without ``zero=True`` filled with NaN. A kernel must
    write what it reads from one: its old content is finite by chance, so ``0 * old`` or a
    missed reset can hide in the first run, not in the second."""
    if request.param == "scratch as left":
        return
    import sys
    real = tiling.scratch

    def poisoned(name, shape, dtype, zero=False):
        out = real(name, shape, dtype, zero=zero)
        if not zero and out.dtype.kind == "f":
            out.fill(np.nan)
        return out
    patched = [mod for mod in list(sys.modules.values())
               if getattr(mod, "__name__", "").startswith("tinymobilenet.")
               and getattr(mod, "scratch", None) is real]
    for mod in patched:
        monkeypatch.setattr(mod, "scratch", poisoned)
    assert {"conv2d", "_depthwise_direct", "_depthwise_banded", "norm"} <= {
        m.__name__.rsplit(".", 1)[1] for m in patched}


# (N, C, H, W, K, stride, padding): odd sizes, stride 1/2/3, K < stride, 1x1 images,
# "same" padding (the row layout) with images narrower than the kernel
DW_CASES = [(3, 5, 9, 7, 3, 1, 1), (4, 6, 8, 5, 3, 2, 1), (2, 3, 9, 7, 5, 2, 2),
            (2, 3, 7, 11, 3, 3, 0), (3, 7, 6, 6, 1, 1, 0), (2, 4, 4, 4, 1, 2, 0),
            (2, 2, 1, 1, 3, 2, 2), (5, 3, 16, 16, 3, 2, 1), (2, 3, 9, 7, 5, 1, 2),
            (3, 4, 2, 3, 5, 1, 2), (2, 3, 1, 1, 3, 1, 1), (2, 2, 4, 1, 7, 1, 3)]


@pytest.mark.parametrize("K", [3, 5])
@pytest.mark.parametrize("path", ["multiply-add", "tap matrices", "shifts per channel"])
def test_direct_depthwise_tiles_with_a_smaller_last_tile_match_naive(K, path, monkeypatch):
    """Tiles of several samples or channels and a smaller last one, on one thread, for
    every tile budget from one image to the whole call, through each of the direct
    kernel's stride-1 paths: a tile's windows must never read what an earlier, larger
    tile left in the scratch buffers."""
    from tinymobilenet.functional import _depthwise_direct
    monkeypatch.setattr(_depthwise_direct, "MATMUL_K", 10 ** 6 if path == "multiply-add" else 3)
    if path == "shifts per channel":
        monkeypatch.setattr(_depthwise_direct, "FLAT_SHIFTS", 0)
    N, C, H, W, p = 3, 5, 7, 6, K // 2
    x, w = randn(N, C, H, W, seed=1), randn(C, 1, K, K, seed=2)
    ref, ref_cache = F.depthwise_conv2d_forward_naive(x, w, None, 1, p)
    dout = randn(*ref.shape, seed=4)
    ref_grads = F.depthwise_conv2d_backward_naive(dout, ref_cache)
    g = _depthwise_direct.layout_for(x.shape, K, 1, p)
    monkeypatch.setattr(depthwise, "BANDED_WIDTH", 0)
    monkeypatch.setattr(depthwise, "DENSE_WASTE", 0)                # the direct kernel only
    monkeypatch.setattr(tiling, "_MIN_PARALLEL", 10 ** 9)          # one thread
    seen = set()
    for budget in [2 ** e for e in range(8, 20)]:
        monkeypatch.setattr(tiling, "TILE_BYTES", budget)
        nt, ct, tiles = g.tiles(x.itemsize, 1, 1 + 2 * K, ref.size * K * K)
        seen.add("samples" if 1 < nt < N else "channels" if nt == N and 1 < ct < C else "")
        out, cache = F.depthwise_conv2d_forward(x, w, None, 1, p)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
        dx, dw, _ = F.depthwise_conv2d_backward(dout, cache)
        np.testing.assert_allclose(dx, ref_grads[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dw, ref_grads[1], rtol=1e-12, atol=1e-12)
    assert {"samples", "channels"} <= seen


@pytest.mark.parametrize("case", DW_CASES)
def test_tiled_depthwise_and_im2col_conv_match_naive(case, tiny_tiles, depthwise_path,
                                                      scratch_content):
    N, C, H, W, K, s, p = case
    x, w, b = randn(N, C, H, W, seed=1), randn(C, 1, K, K, seed=2), randn(C, seed=3)
    out, cache = F.depthwise_conv2d_forward(x, w, b, s, p)
    ref, ref_cache = F.depthwise_conv2d_forward_naive(x, w, b, s, p)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = randn(*out.shape, seed=4)
    for a, e in zip(F.depthwise_conv2d_backward(dout, cache),
                    F.depthwise_conv2d_backward_naive(dout, ref_cache)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
    w_full = randn(4, C, K, K, seed=5)
    out, cache = F.conv2d_forward(x, w_full, None, s, p)
    ref, ref_cache = F.conv2d_forward_naive(x, w_full, None, s, p)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = randn(*out.shape, seed=6)
    for a, e in zip(F.conv2d_backward(dout, cache)[:2],
                    F.conv2d_backward_naive(dout, ref_cache)[:2]):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def _batchnorm_reference(x, gamma, beta, dout, eps=1e-5):
    """Train-mode batch norm written out directly (the textbook formulas)."""
    axes = (0, 2, 3) if x.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if x.ndim == 4 else (1, -1)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    out = gamma.reshape(shape) * xhat + beta.reshape(shape)
    dgamma, dbeta = (dout * xhat).sum(axis=axes), dout.sum(axis=axes)
    dxhat = dout * gamma.reshape(shape)
    dx = (dxhat - dxhat.mean(axis=axes, keepdims=True)
          - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))
    dx /= np.sqrt(var.reshape(shape) + eps)
    return out, dx, dgamma, dbeta


@pytest.mark.parametrize("shape", [(4, 6, 3, 5), (8, 9, 1, 1), (5, 7), (3, 4, 6, 2)])
def test_tiled_batchnorm_matches_reference(shape, tiny_tiles, bn_rows):
    x = randn(*shape, seed=1) * 3 + 2
    C = shape[1]
    gamma, beta, dout = randn(C, seed=2), randn(C, seed=3), randn(*shape, seed=4)
    out, cache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), training=True)
    dx, dgamma, dbeta = F.batchnorm_backward(dout, cache)
    for a, e in zip((out, dx, dgamma, dbeta), _batchnorm_reference(x, gamma, beta, dout)):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-10)
    # fused with a ReLU6 on the same tiles: BN then ReLU6 (another code path: round-off)
    y, act_cache = F.relu6_forward(out)
    fused, fcache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), clip=(0, 6))
    np.testing.assert_allclose(fused, y, rtol=1e-12, atol=1e-12)
    for a, e in zip(F.batchnorm_backward(dout, fcache),
                    F.batchnorm_backward(F.relu6_backward(dout, act_cache), cache)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


def test_float32_kernels_stay_float32(tiny_tiles):
    """No float64 upcast anywhere on a float32 path (python scalars, np.where, ...)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 7, 7), dtype=np.float32)
    g = rng.standard_normal(6, dtype=np.float32)
    pairs = [
        (F.depthwise_conv2d_forward(x, rng.standard_normal((6, 1, 3, 3), dtype=np.float32),
                                    g, 2, 1), F.depthwise_conv2d_backward),
        (F.conv2d_forward(x, rng.standard_normal((4, 6, 3, 3), dtype=np.float32), None, 1, 1),
         F.conv2d_backward),
        (F.pointwise_conv2d_forward(x, rng.standard_normal((4, 6, 1, 1), dtype=np.float32)),
         F.pointwise_conv2d_backward),
        (F.batchnorm_forward(x, g, g, np.zeros(6, np.float32), np.ones(6, np.float32)),
         F.batchnorm_backward),
    ]
    for name in ("relu", "relu6", "sigmoid", "hardsigmoid", "hardswish", "silu"):
        pairs.append((getattr(F, f"{name}_forward")(x), getattr(F, f"{name}_backward")))
    for (out, cache), backward in pairs:
        assert out.dtype == np.float32
        grads = backward(np.ones_like(out), cache)
        for grad in grads if isinstance(grads, tuple) else (grads,):
            assert grad is None or grad.dtype == np.float32


@pytest.mark.parametrize("shape", [(3, 5, 2, 3), (4, 6, 6, 6), (2, 3, 7, 7), (1, 4, 1, 1)])
def test_pointwise_small_and_large_maps_match_naive(shape):
    """Maps of <= SMALL_MAP pixels take the channels-first single-matmul path."""
    x, w, b = randn(*shape, seed=1), randn(7, shape[1], 1, 1, seed=2), randn(7, seed=3)
    out, cache = F.pointwise_conv2d_forward(x, w, b)
    ref, ref_cache = F.pointwise_conv2d_forward_naive(x, w, b)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert out.flags.c_contiguous
    dout = randn(*out.shape, seed=4)
    for a, e in zip(F.pointwise_conv2d_backward(dout, cache),
                    F.pointwise_conv2d_backward_naive(dout, ref_cache)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("K, s, p, groups", [(3, 1, 1, 1), (3, 1, 0, 2), (5, 1, 1, 1),
                                             (3, 2, 1, 1), (3, 3, 0, 3), (1, 2, 0, 1)])
def test_conv_batch_tiles_with_a_shorter_last_tile_match_naive(K, s, p, groups, monkeypatch):
    """Tiles of 2 samples over a batch of 5 (2 + 2 + 1): the last, shorter tile reuses
    the column buffers sized for the full ones (zeros included, where a fill skips the
    padding)."""
    N, C, H, W = 5, 6, 9, 8
    Ho = F.conv_output_size(H, K, s, p)
    Wg = F.conv_output_size(W, K, s, p) + ((K - 1) // s if s > 1 else 0)
    monkeypatch.setattr(conv2d, "COL_BYTES", 2 * C * K * K * Ho * Wg * 8)
    x, w = randn(N, C, H, W, seed=1), randn(6, C // groups, K, K, seed=2)
    out, cache = F.conv2d_forward(x, w, None, s, p, groups)
    ref, ref_cache = F.conv2d_forward_naive(x, w, None, s, p, groups)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = randn(*out.shape, seed=3)
    for a, e in zip(F.conv2d_backward(dout, cache)[:2],
                    F.conv2d_backward_naive(dout, ref_cache)[:2]):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", ["silu", "hardswish", "relu"])
def test_tiled_batchnorm_with_a_fused_activation_matches_the_layers_apart(activation, tiny_tiles,
                                                                          bn_rows, scratch_content):
    acts = {"silu": (F.silu_forward, F.silu_backward),
            "hardswish": (F.hardswish_forward, F.hardswish_backward),
            "relu": (F.relu_forward, F.relu_backward)}
    fwd, bwd = acts[activation]
    x = randn(4, 6, 3, 5, seed=1) * 3 + 1
    C = x.shape[1]
    gamma, beta, dout = randn(C, seed=2), randn(C, seed=3), randn(*x.shape, seed=4)
    for training in (True, False):
        z, cache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C), training=training)
        y, act_cache = fwd(z)
        want = (y, *F.batchnorm_backward(bwd(dout, act_cache), cache))
        fy, fcache = F.batchnorm_forward(x, gamma, beta, np.zeros(C), np.ones(C),
                                         training=training, activation=activation)
        for g, w in zip((fy, *F.batchnorm_backward(dout, fcache)), want):
            assert np.isfinite(g).all()               # (assert_allclose takes NaN == NaN)
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)   # other tiles: round-off


def test_tile_budget_follows_the_environment_and_the_l2(monkeypatch):
    import subprocess
    import sys
    code = "from tinymobilenet.functional import tiling; print(tiling.TILE_BYTES)"
    env = {**__import__("os").environ, "TINYMOBILENET_TILE_BYTES": "123456"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "123456", out.stderr
    monkeypatch.delenv("TINYMOBILENET_TILE_BYTES", raising=False)
    for l2, want in [(512 << 10, 4 << 20), (1 << 20, 4 << 20), (2 << 20, 2 << 20),
                     (3 << 20, 3 << 20), (32 << 20, 4 << 20), (0, 4 << 20)]:
        monkeypatch.setattr(tiling, "_l2_bytes", lambda: l2)
        assert tiling._default_tile_bytes() == want, l2


@pytest.mark.parametrize("stride", [1, 2])
def test_direct_depthwise_takes_the_blas_taps_exactly_when_its_tiles_run_on_one_thread(
        stride, monkeypatch):
    """The BLAS tap paths (one product per channel, tap columns) are for calls that run
    on one thread; a call runs on one thread when ``threads_for`` the size it hands to
    ``run_tiles`` says so. A stride-2 call's output is a quarter of its input: the
    choice must be made on the size the call runs with, not the input's."""
    from tinymobilenet.functional import _depthwise_direct
    N, C, H, K, p = 1, 4, 16, 5, 2
    x, w = randn(N, C, H, H, seed=1), randn(C, 1, K, K, seed=2)
    Ho = F.conv_output_size(H, K, stride, p)
    seen = []
    real = tiling.run_tiles

    def run_tiles(work, tiles, size=None):
        seen.append(size)
        return real(work, tiles, size=size)
    monkeypatch.setattr(_depthwise_direct, "run_tiles", run_tiles)
    old = tiling.num_threads()
    tiling.set_num_threads(2)
    try:
        # between the output's and the input's size: the tiles run on one thread
        monkeypatch.setattr(tiling, "_MIN_PARALLEL", N * C * Ho * Ho * K * K + 1)
        blas = (_depthwise_direct.uses_matmul if stride == 1 else _depthwise_direct.uses_columns)
        out = _depthwise_direct.forward(x, w, stride, p)
        assert tiling.threads_for(seen[-1]) == 1
        assert blas(x.shape, K, stride, p)
        # at or below the output's size: two threads, and the per-tap path
        monkeypatch.setattr(tiling, "_MIN_PARALLEL", N * C * Ho * Ho * K * K)
        assert not blas(x.shape, K, stride, p)
        out2 = _depthwise_direct.forward(x, w, stride, p)
        assert tiling.threads_for(seen[-1]) == 2
    finally:
        tiling.set_num_threads(old)
    ref, _ = F.depthwise_conv2d_forward_naive(x, w, None, stride, p)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out2, ref, rtol=1e-12, atol=1e-12)
