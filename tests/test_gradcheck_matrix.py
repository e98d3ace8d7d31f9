"""The gradient-check coverage matrix, and the checks that fill its gaps.

The promise: every layer is gradient-checked in float64 (central differences of
``sum(f(x) * G)``, random G; dx and every parameter), on odd and non-square shapes, stride
1 and 2, padding 0/1/2/"same", K 1/3/5, groups 1/g/C, train and eval BatchNorm, with kinks
avoided on purpose. This file holds the matrix of where each axis is checked and the
checks no other file had. It also makes sure every fast path of the kernels is
*actually run*: each case states which path its shape reaches with the library's default
thresholds, asserts that the dispatcher picks it and records the helpers that really run,
so a future change of a threshold fails here loudly instead of silently dropping a path.

Coverage matrix (after this file). Cells name the files that check the axis:
conv = test_conv.py, lay = test_layers.py, same = test_same_padding.py, blk =
test_blocks.py, den = test_dense.py, fus = test_fusion.py, gc = test_gradcheck.py,
mdl = the slow model checks (test_models.py, test_lite.py, test_mobilenet_v1.py: sampled
entries), M = this file (new). "-" = not applicable. Every row: float64, random G,
dx and every parameter (``check_module`` / ``check_function``; this file also asserts
the set of checked arrays, since ``check_function`` skips a gradient returned as None).

| layer / kernel path          | H!=W, odd  | stride 1/2      | pad 0/1/2/same       | K 1/3/5          | groups 1/g/C     | BN train/eval | kinks avoided        |
|------------------------------|------------|-----------------|----------------------|------------------|------------------|---------------|----------------------|
| F.conv2d im2col (stride 1)   | conv M     | conv same M     | conv same M          | conv M           | conv M           | -             | -                    |
| F.conv2d strided phases      | conv M     | conv same M     | conv same M          | conv M           | conv M           | -             | -                    |
| F.conv2d batch tiles, threads| M          | M               | M (0/1/2/same)       | M                | M                | -             | -                    |
| F.depthwise dense            | conv* M    | conv* same* M   | conv* M (1/2/same)   | conv* M (3/5)    | - (groups=C)     | -             | -                    |
| F.depthwise banded           | conv* M    | conv* same* M   | conv* M (0/1/2/same) | conv* M (3/5)    | -                | -             | -                    |
| direct pitched, BLAS taps    | conv* M    | s1 only         | "same" only          | conv* M (3/5)    | -                | -             | -                    |
|   shifts flat / per channel  | conv* M    | s1              | same                 | M (3, flat 3/5)  | -                | -             | -                    |
| direct pitched, multiply-add | conv* M    | s1              | same                 | conv* M (3/5)    | -                | -             | -                    |
| direct phase, tap columns    | conv* M    | conv* M (1/2)   | conv* M (0/1/2/same) | conv* M (3/5)    | -                | -             | -                    |
| direct phase, multiply-add   | conv* M    | conv* M (1/2)   | conv* M (0/1/same)   | conv* M (1/3/5)  | -                | -             | -                    |
| depthwise tiles, threads     | M          | M               | M                    | M                | -                | -             | -                    |
| F.pointwise small / big map  | conv / M   | -               | -                    | 1                | 1                | -             | -                    |
| F.batchnorm (+ fused act)    | gc fus M   | -               | -                    | -                | -                | fus M         | fus M (construction) |
|   rows short/BLAS/broadcast  | M          | -               | -                    | -                | -                | M             | M                    |
|   channel tiles, threads     | M          | -               | -                    | -                | -                | M             | M                    |
| nn.Conv2d / Depthwise / Pw   | lay same M | lay same        | lay same             | lay same         | lay same         | -             | -                    |
| nn.BatchNorm2d / 1d          | lay M      | -               | -                    | -                | -                | lay M         | -                    |
| nn.BatchNormAct2d / 1d (4x)  | M          | -               | -                    | -                | -                | M             | M (construction)     |
| the six activations          | lay M      | -               | -                    | -                | -                | -             | lay (nudged) M       |
|   elementwise chunks/threads | M          | -               | -                    | -                | -                | -             | M (construction)     |
| Linear (bias / no bias)      | lay / M    | -               | -                    | -                | -                | -             | -                    |
| GlobalAvgPool2d, Flatten     | lay M      | -               | -                    | -                | -                | -             | -                    |
| Dropout train / eval         | lay / M    | -               | -                    | -                | -                | -             | -                    |
| StochasticDepth train / eval | blk / M    | -               | -                    | -                | -                | -             | -                    |
| CrossEntropyLoss, smoothing  | lay        | -               | -                    | -                | -                | -             | -                    |
| Conv2dNormActivation         | blk M      | blk M           | blk M (0/1/2/same)   | blk M (1/3/5)    | blk M (1/g/C)    | blk M         | blk M (dodge_kinks)  |
| DepthwiseSeparable           | blk M      | blk M           | blk                  | blk (3/5)        | C                | blk M         | blk M (dodge_kinks)  |
| SqueezeExcitation            | blk M      | -               | -                    | 1                | -                | -             | blk M                |
| InvertedResidual v2 / v3     | blk M      | blk M           | blk M (same)         | blk M (3/5)      | C                | blk M         | blk M                |
| MBConv (+ Lite, SD)          | blk mdl M  | blk M           | mdl M (same)         | blk M            | C                | blk M         | blk M                |
| GroupedLinear, dense blocks  | den M      | -               | -                    | -                | den M (1/g)      | den           | den                  |
| models (V1 V2 V3 B0 Lite)    | mdl        | mdl             | mdl                  | mdl              | mdl              | mdl           | mdl (dodge_kinks)    |

``conv*`` / ``same*``: test_conv.py and test_same_padding.py force every depthwise path
with the ``depthwise_path`` fixture (thresholds monkeypatched), without asserting which
helper ran; here the shapes reach each path with the *default* thresholds and the helpers
that ran are recorded. "before" this file, the M-only cells were gaps: the depthwise paths
at default dispatch (none asserted), every tiled or threaded kernel call (tests ran one
tile on one thread), conv2d's batch tiles, pointwise on maps over SMALL_MAP pixels
(functional), batch norm's BLAS and broadcast row shapes, the fused BatchNormAct2d/1d
layers (ReLU/ReLU6 fused never in eval mode, no 1-D fusion), chunked and threaded
activations, Conv2dNormActivation with groups g or padding 0/"same", Linear and
GroupedLinear without bias, Dropout and StochasticDepth in eval mode, SE with SiLU,
InvertedResidual v2 with K=5 and "same" blocks at stride 2 on even sizes.

Kinks (ReLU 0, ReLU6 0/6, h-sigmoid and h-swish +-3) are avoided by construction: single
activations get inputs moved to at least ``MARGIN`` from every kink, fused batch norms get
per-channel betas that keep every pre-activation ``MARGIN`` away, blocks use
``gradcheck.dodge_kinks`` with that margin. ``MARGIN`` = 1e-3 is 100 times the
finite-difference step h = 1e-5, which moves a pre-activation by at most a few h here.
"""

import itertools

import numpy as np
import pytest

from tinymobilenet import functional as F
from tinymobilenet import gradcheck, nn
from tinymobilenet.functional import (_depthwise_banded, _depthwise_dense, _depthwise_direct,
                                      _im2col_fast, conv2d, depthwise, norm, pointwise,
                                      reductions, tiling)
from tinymobilenet.functional import activations as act_mod
from tinymobilenet.functional.conv_geometry import is_same_stride1

from conftest import randn

pytestmark = [pytest.mark.ch02]

H_STEP = 1e-5          # the checker's default central-difference step
MARGIN = 1e-3          # distance kept from every kink: 100 x H_STEP
TOL = 1e-7             # single layers (as test_layers.py); blocks use the checker's 1e-6


# ---- helpers ---------------------------------------------------------------------------

def _assert_all_checked(result, names):
    """The check ran on exactly these arrays (check_function skips None gradients)."""
    assert set(result.errors) == set(names), (sorted(result.errors), sorted(names))
    assert result.ok, str(result)


def check_layer(module, x, *, tol=TOL, max_elements=None):
    """float64 check_module of dx and every parameter, all of them asserted present."""
    r = gradcheck.check_module(module, x, tol=tol, max_elements=max_elements)
    _assert_all_checked(r, {"x"} | {name for name, _ in module.named_parameters()})
    return r


def check_block(module, shape, train, *, tol=1e-6, seed=0, max_elements=60):
    """A block with activations: float64, random BN statistics, kinks dodged by MARGIN;
    every array checked on up to ``max_elements`` random entries (all of smaller ones)."""
    module.to(np.float64)
    gradcheck.randomize_batchnorm(module, seed)
    module.train(train)
    x = gradcheck.dodge_kinks(module, lambda s: randn(*shape, seed=100 + s), margin=MARGIN)
    assert gradcheck.kink_distance(module, x) >= MARGIN
    return check_layer(module, x, tol=tol, max_elements=max_elements)


def clear_of_kinks(x, kinks, margin=MARGIN):
    """x with every entry closer than ``margin`` to a kink moved out to ``kink +- margin``
    (the side it was on; exactly on the kink: above). Kinks are >= 3 apart, so a moved
    entry cannot land near another one."""
    x = np.array(x, dtype=np.float64, copy=True)
    for k in kinks:
        near = np.abs(x - k) < margin
        x[near] = k + np.where(x[near] >= k, margin, -margin)
    return x


def kink_gap(z, kinks):
    return min((float(np.min(np.abs(z - k))) for k in kinks), default=np.inf)


class Spy:
    """Records which kernel helpers run, by wrapping module attributes (test-only
    instrumentation through monkeypatch; the library code is untouched)."""

    def __init__(self, monkeypatch):
        self.mp, self.calls = monkeypatch, []

    def watch(self, module, name, label):
        """``label``: a string, or ``label(result, *args)`` -> a string or a tuple of them."""
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            got = label(result, *args, **kwargs) if callable(label) else label
            self.calls.extend([got] if isinstance(got, str) else got)
            return result
        self.mp.setattr(module, name, wrapper)

    def take(self):
        calls, self.calls = set(self.calls), []
        return calls


@pytest.fixture
def spy(monkeypatch):
    s = Spy(monkeypatch)
    D = _depthwise_direct
    s.watch(_depthwise_dense, "forward", "dense")
    s.watch(_depthwise_dense, "backward", "dense")
    s.watch(_depthwise_banded, "BandedGeometry",
            lambda g, *a: "banded:flipped" if g.same else "banded:scatter")
    s.watch(D, "layout_for", lambda g, *a: type(g).__name__)        # PitchedLayout / PhaseLayout
    s.watch(D, "_correlate", "blas-taps")
    s.watch(D, "_tap_grad", "blas-taps-dw")
    s.watch(D, "_tap_columns", "tap-columns")
    s.watch(D, "_multiply_add", "multiply-add")
    s.watch(D, "_column_shifts",
            lambda r, src, K, pitch, L, buf: "shifts:flat" if L <= D.FLAT_SHIFTS
            else "shifts:per-channel")
    for mod in (_depthwise_dense, _depthwise_banded, D, conv2d, norm, tiling):
        s.watch(mod, "run_tiles", _tile_labels)
    s.watch(conv2d._Columns, "fill", lambda r, self, n0, n1: "conv-batch-tile")
    s.watch(_im2col_fast, "_flat_padded", "im2col:flat-shifts")
    s.watch(_im2col_fast, "im2col_into", "im2col:plain")
    s.watch(_im2col_fast.StridedColumns, "fill", "im2col:phases")
    return s


def _tile_labels(result, work, tiles, size=None):
    """How a ``run_tiles`` call ran: one tile or several, in this thread or on threads
    (the workers run_tiles itself uses: min(threads_for(size), len(tiles)))."""
    workers = min(tiling.threads_for(size), len(tiles))
    return ("tiles>1" if len(tiles) > 1 else "tiles=1", "threads" if workers > 1 else "serial")


@pytest.fixture
def small_tiles(monkeypatch):
    """Tile budgets of a few bytes: every tiled kernel cuts its call into one-row tiles
    (channels, samples), and conv2d its batch into one-sample column tiles."""
    monkeypatch.setattr(tiling, "TILE_BYTES", 1)
    monkeypatch.setattr(conv2d, "COL_BYTES", 1)


@pytest.fixture
def two_threads(monkeypatch, small_tiles):
    """Small tiles on two threads: what a large layer does on a 2-core machine."""
    previous = tiling.num_threads()
    tiling.set_num_threads(2)
    monkeypatch.setattr(tiling, "_MIN_PARALLEL", 0)
    yield
    tiling.set_num_threads(previous)


# ---- depthwise: every fast path at the default thresholds --------------------------------

PITCHED, PHASE = "PitchedLayout", "PhaseLayout"
# name: (N, C, H, W, K, stride, padding), the module _path picks, helpers that must run
# in forward, in backward (sets; "same" is TensorFlow's SAME through F.*_same_*)
DW_PATHS = {
    "dense K3 s1 p1": ((4, 3, 5, 6, 3, 1, 1), _depthwise_dense, {"dense"}, {"dense"}),
    "dense K5 s2 p2": ((4, 2, 5, 7, 5, 2, 2), _depthwise_dense, {"dense"}, {"dense"}),
    "dense K3 s2 same": ((8, 2, 6, 4, 3, 2, "same"), _depthwise_dense, {"dense"}, {"dense"}),
    "banded K3 s2 p1": ((2, 3, 7, 9, 3, 2, 1), _depthwise_banded,
                        {"banded:scatter"}, {"banded:scatter"}),
    "banded K5 s1 p2 (same)": ((2, 3, 6, 11, 5, 1, 2), _depthwise_banded,
                               {"banded:flipped"}, {"banded:flipped"}),
    "banded K3 s1 p0": ((2, 2, 7, 10, 3, 1, 0), _depthwise_banded,
                        {"banded:scatter"}, {"banded:scatter"}),
    "banded K3 s2 same": ((2, 3, 8, 10, 3, 2, "same"), _depthwise_banded,
                          {"banded:scatter"}, {"banded:scatter"}),
    "direct BLAS taps, one image": ((1, 3, 7, 9, 3, 1, 1), _depthwise_direct,
                                    {PITCHED, "blas-taps", "shifts:flat"},
                                    {PITCHED, "blas-taps", "blas-taps-dw", "shifts:flat"}),
    "direct BLAS taps, K5 batch, wide": ((2, 2, 5, 21, 5, 1, 2), _depthwise_direct,
                                         {PITCHED, "blas-taps", "shifts:flat"},
                                         {PITCHED, "blas-taps", "blas-taps-dw", "shifts:flat"}),
    "direct BLAS taps, K3 batch, wide": ((2, 2, 5, 20, 3, 1, 1), _depthwise_direct,
                                         {PITCHED, "blas-taps", "shifts:flat"},
                                         {PITCHED, "blas-taps", "blas-taps-dw", "shifts:flat"}),
    "direct BLAS taps, K5 beyond banded width": ((1, 2, 5, 31, 5, 1, 2), _depthwise_direct,
                                                 {PITCHED, "blas-taps", "shifts:flat"},
                                                 {PITCHED, "blas-taps-dw", "shifts:flat"}),
    "direct BLAS taps, K5 same": ((1, 2, 6, 7, 5, 1, "same"), _depthwise_direct,
                                  {PITCHED, "blas-taps"}, {PITCHED, "blas-taps-dw"}),
    "direct BLAS taps, shifts per channel": ((1, 2, 31, 33, 3, 1, 1), _depthwise_direct,
                                             {PITCHED, "blas-taps", "shifts:per-channel"},
                                             {PITCHED, "blas-taps-dw", "shifts:per-channel"}),
    "direct tap columns K3 s2 p1": ((1, 2, 5, 21, 3, 2, 1), _depthwise_direct,
                                    {PHASE, "tap-columns"}, {PHASE}),
    "direct tap columns K3 s1 p0": ((2, 2, 6, 19, 3, 1, 0), _depthwise_direct,
                                    {PHASE, "tap-columns"}, {PHASE}),
    "direct tap columns K3 s1 p2": ((1, 2, 5, 20, 3, 1, 2), _depthwise_direct,
                                    {PHASE, "tap-columns"}, {PHASE}),
    "direct tap columns K5 s2 same": ((1, 2, 8, 32, 5, 2, "same"), _depthwise_direct,
                                      {PHASE, "tap-columns"}, {PHASE}),
    "direct multiply-add K1 s2 p0": ((2, 3, 5, 7, 1, 2, 0), _depthwise_direct,
                                     {PHASE, "multiply-add"}, {PHASE}),
    "direct multiply-add K1 s1 p1": ((2, 3, 5, 6, 1, 1, 1), _depthwise_direct,
                                     {PHASE, "multiply-add"}, {PHASE}),
}
# helpers of the other direct branches, which must NOT run where a case names one branch
_EXCLUSIVE = [{"blas-taps", "tap-columns", "multiply-add"}, {"dense"},
              {"banded:flipped", "banded:scatter"}]


def _dw_inputs(case, seed=1):
    N, C, H, W, K, s, p = case
    return randn(N, C, H, W, seed=seed), randn(C, 1, K, K, seed=seed + 1), randn(C, seed=seed + 2)


def _dw_functions(s, p):
    """(forward(x, w, b), backward) of the depthwise kernel for stride s and padding p."""
    if p == "same":
        return (lambda x, w, b: F.depthwise_conv2d_same_forward(x, w, b, s),
                F.depthwise_conv2d_same_backward)
    return (lambda x, w, b: F.depthwise_conv2d_forward(x, w, b, s, p),
            F.depthwise_conv2d_backward)


def _kernel_view(x, K, s, p):
    """(input shape, padding) the depthwise kernel itself sees (SAME pads first)."""
    if p == "same":
        xp, p, _ = F.same_pad_forward(x, K, s)
        return xp, p
    return x, p


def _max_elements(x):
    return None if x.size <= 600 else 120     # sample the entries of larger inputs


def _run_dw_case(case, spy, expect_fwd=None, expect_bwd=None):
    N, C, H, W, K, s, p = case
    x, w, b = _dw_inputs(case)
    fwd, bwd = _dw_functions(s, p)
    spy.take()
    out, cache = fwd(x, w, b)
    got_fwd = spy.take()
    grads = bwd(randn(*out.shape, seed=9), cache)
    got_bwd = spy.take()
    if expect_fwd is not None:
        for got, want in ((got_fwd, expect_fwd), (got_bwd, expect_bwd)):
            assert want <= got, f"expected {sorted(want)} to run, ran {sorted(got)}"
            for group in _EXCLUSIVE:
                if want & group:
                    assert not (got & group) - want, f"other branch ran too: {sorted(got)}"
    # oracle: the naive loop twin on the input the kernel sees
    xk, pk = _kernel_view(x, K, s, p)
    ref, ref_cache = F.depthwise_conv2d_forward_naive(xk, w, b, s, pk)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    ref_dx, ref_dw, ref_db = F.depthwise_conv2d_backward_naive(randn(*out.shape, seed=9), ref_cache)
    if p == "same":
        ref_dx = F.same_pad_backward(ref_dx, F.same_pad_forward(x, K, s)[2])
    for a, e in zip(grads, (ref_dx, ref_dw, ref_db)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
    r = gradcheck.check_function(fwd, bwd, {"x": x, "w": w, "b": b}, tol=TOL,
                                 max_elements=_max_elements(x))
    _assert_all_checked(r, {"x", "w", "b"})
    return got_fwd | got_bwd


@pytest.mark.parametrize("name", list(DW_PATHS))
def test_depthwise_path_at_default_thresholds(name, spy):
    """The shape reaches its path with the library's thresholds (if a threshold moves,
    this fails: pick a new shape), the helpers of that path run, fast == naive twin, and
    the central differences agree for dx, dw and db."""
    case, module, expect_fwd, expect_bwd = DW_PATHS[name]
    N, C, H, W, K, s, p = case
    xk, pk = _kernel_view(randn(N, C, H, W), K, s, p)
    assert depthwise._path(xk.shape, K, s, pk) is module, \
        f"{name}: _path now picks {depthwise._path(xk.shape, K, s, pk).__name__}"
    _run_dw_case(case, spy, expect_fwd, expect_bwd)


# one case per path and branch, run again on one-row tiles, then on tiles over two
# threads; direct cases wider than BANDED_WIDTH * K, so that they stay direct on threads
# (narrower ones that take BLAS taps on one thread go banded on two)
DW_TILED = ["dense K3 s1 p1", "banded K3 s2 p1", "banded K5 s1 p2 (same)",
            "direct BLAS taps, K3 batch, wide", "direct BLAS taps, K5 beyond banded width",
            "direct BLAS taps, shifts per channel",
            "direct tap columns K3 s2 p1", "direct tap columns K5 s2 same",
            "direct multiply-add K1 s2 p0"]


@pytest.mark.parametrize("name", DW_TILED)
def test_depthwise_paths_on_many_tiles(name, spy, small_tiles):
    case, module, expect_fwd, expect_bwd = DW_PATHS[name]
    ran = _run_dw_case(case, spy, expect_fwd, expect_bwd)
    assert "tiles>1" in ran and "threads" not in ran


@pytest.mark.parametrize("name", DW_TILED)
def test_depthwise_paths_on_two_threads(name, spy, two_threads):
    """On threads the direct kernels sum the taps with a product and an add each (BLAS
    would oversubscribe the cores): the pitched multiply-add branch, which no small
    single-thread call reaches, runs here."""
    case, module, _, _ = DW_PATHS[name]
    N, C, H, W, K, s, p = case
    xk, pk = _kernel_view(randn(N, C, H, W), K, s, p)
    assert depthwise._path(xk.shape, K, s, pk) is module       # the same path on threads
    ran = _run_dw_case(case, spy)
    assert "tiles>1" in ran and "threads" in ran
    if module is _depthwise_direct:
        assert "multiply-add" in ran and not ran & {"blas-taps", "tap-columns"}, sorted(ran)
        assert (PITCHED in ran) == is_same_stride1(K, s, pk), sorted(ran)


# ---- conv2d: every column builder, on batch tiles and threads ----------------------------

# (N, C, H, W, Co, K, stride, padding, groups), the column builder that must run
CONV_CASES = [
    ((3, 4, 7, 6, 6, 3, 1, 1, 2), "im2col:flat-shifts"),       # stride-1 "same" shifts, g
    ((3, 3, 6, 8, 6, 5, 1, 2, 3), "im2col:flat-shifts"),       # K5, groups = C, Co = 2C
    ((2, 4, 7, 5, 4, 3, 1, 2, 1), "im2col:plain"),             # padding 2 with K3
    ((3, 2, 6, 7, 4, 3, 1, 0, 1), "im2col:plain"),             # padding 0
    ((3, 4, 9, 6, 4, 3, 2, 1, 2), "im2col:phases"),            # stride 2, groups g
    ((2, 3, 7, 8, 6, 5, 2, 2, 3), "im2col:phases"),            # K5 stride 2, groups C
    ((3, 4, 8, 6, 4, 3, 2, "same", 4), "im2col:phases"),       # SAME stride 2 even sizes
    ((2, 4, 7, 5, 2, 1, 2, 0, 2), "im2col:phases"),            # K1 stride 2, groups g
]


@pytest.mark.parametrize("tiles", ["one tile", "batch tiles", "two threads"])
@pytest.mark.parametrize("case, builder", CONV_CASES, ids=[str(c[0]) for c in CONV_CASES])
def test_conv2d_builders_tiles_and_threads(case, builder, tiles, spy, request):
    if tiles != "one tile":
        request.getfixturevalue("small_tiles" if tiles == "batch tiles" else "two_threads")
    N, C, H, W, Co, K, s, p, g = case
    x, w, b = randn(N, C, H, W, seed=1), randn(Co, C // g, K, K, seed=2), randn(Co, seed=3)
    if p == "same":
        fwd = lambda x, w, b: F.conv2d_same_forward(x, w, b, s, g)
        bwd = F.conv2d_same_backward
    else:
        fwd = lambda x, w, b: F.conv2d_forward(x, w, b, s, p, g)
        bwd = F.conv2d_backward
    spy.take()
    out, cache = fwd(x, w, b)
    bwd(randn(*out.shape, seed=4), cache)
    ran = spy.take()
    assert builder in ran, sorted(ran)
    assert not (ran & {"im2col:flat-shifts", "im2col:plain", "im2col:phases"}) - {builder}
    if tiles != "one tile":
        # count the batch tiles: one column fill per tile and pass
        spy.take()
        fwd(x, w, b)
        assert spy.calls.count("conv-batch-tile") == N
    if tiles == "two threads":
        assert "threads" in ran
    # the tiled variants check the tile bookkeeping: 40 sampled entries of each array
    r = gradcheck.check_function(fwd, bwd, {"x": x, "w": w, "b": b}, tol=TOL,
                                 max_elements=None if tiles == "one tile" else 40)
    _assert_all_checked(r, {"x", "w", "b"})


# ---- pointwise: the per-sample matmuls of maps over SMALL_MAP pixels -----------------------

@pytest.mark.parametrize("shape, small", [((3, 4, 7, 6), False), ((2, 5, 9, 5), False),
                                          ((2, 4, 5, 7), True)])
def test_pointwise_both_map_sizes(shape, small):
    N, C, H, W = shape
    assert (H * W <= pointwise.SMALL_MAP) == small        # which branch this shape takes
    x, w, b = randn(*shape, seed=1), randn(6, C, 1, 1, seed=2), randn(6, seed=3)
    out, cache = F.pointwise_conv2d_forward(x, w, b)
    ref, ref_cache = F.pointwise_conv2d_forward_naive(x, w, b)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = randn(*out.shape, seed=4)
    for a, e in zip(F.pointwise_conv2d_backward(dout, cache),
                    F.pointwise_conv2d_backward_naive(dout, ref_cache)):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)
    r = gradcheck.check_function(F.pointwise_conv2d_forward, F.pointwise_conv2d_backward,
                                 {"x": x, "w": w, "b": b}, tol=TOL)
    _assert_all_checked(r, {"x", "w", "b"})
    layer = nn.PointwiseConv2d(C, 6, bias=True).to(np.float64)
    check_layer(layer, x)


# ---- batch norm: row shapes, fused activations, tiles and threads -------------------------

FUSED_KINKS = {None: (), "relu": (0.0,), "relu6": (0.0, 6.0), "silu": (),
               "hardswish": (-3.0, 3.0)}
FUSED_CLASS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "silu": nn.SiLU, "hardswish": nn.HardSwish}
# (N, C, H, W): rows of 35 values (< SHORT_ROW: einsum sums), 135 (BLAS row dots), and
# one image of 1056 (>= LONG_ROW * N: per-channel vectors broadcast, not repeated)
BN_SHAPES = {"short rows": (4, 3, 5, 7), "BLAS rows": (2, 3, 9, 15), "broadcast": (1, 2, 32, 33)}


def test_batchnorm_shapes_reach_their_row_branches():
    for name, (N, C, H, W) in BN_SHAPES.items():
        L = H * W
        assert (L >= reductions.SHORT_ROW) == (name != "short rows"), name
        assert norm._broadcast(N, L) == (name == "broadcast"), name


def _batchnorm_layer(C, activation, train, dims=2, seed=0):
    """BatchNorm2d/1d, or the fused BatchNormAct2d/1d, float64, random gamma, beta and
    running statistics, in train or eval mode."""
    plain = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(C)
    if activation is not None:
        fused = (nn.BatchNormAct2d if dims == 2 else nn.BatchNormAct1d)
        layer = fused.of(plain, FUSED_CLASS[activation])
    else:
        layer = plain
    layer.to(np.float64)
    gradcheck.randomize_batchnorm(layer, seed)
    return layer.train(train)


def _betas_clear_of_kinks(layer, x, kinks):
    """Set each channel's beta so that every pre-activation z = bn(x) stays MARGIN away
    from the kinks, by construction: z = (bn(x) with beta 0) + beta exactly, in both
    modes, so beta is chosen from a fixed list of shifts as the first that clears them."""
    if not kinks:
        return
    saved = layer.state_dict()
    layer.bias.data[:] = 0
    plain, _ = layer.apart() if hasattr(layer, "apart") else (layer, None)
    z0 = plain.forward(x)
    layer.load_state_dict(saved)
    C = x.shape[1]
    channels = np.moveaxis(z0, 1, 0).reshape(C, -1)
    for c in range(C):
        for beta in layer.bias.data[c] + np.linspace(0, 1, 101):
            if kink_gap(channels[c] + beta, kinks) >= 2 * MARGIN:
                layer.bias.data[c] = beta
                break
        else:
            raise AssertionError(f"no beta clears the kinks of channel {c}")
    z = np.moveaxis(z0, 1, 0).reshape(C, -1) + layer.bias.data[:, None]
    assert kink_gap(z, kinks) >= 2 * MARGIN


def _check_batchnorm(shape, activation, train, dims=2):
    C = shape[1]
    layer = _batchnorm_layer(C, activation, train, dims)
    x = 1.5 * randn(*shape, seed=3) + 0.5
    _betas_clear_of_kinks(layer, x, FUSED_KINKS[activation])
    big = x.size > 600
    r = check_layer(layer, x, max_elements=120 if big else None)
    return r


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", list(FUSED_KINKS), ids=str)
@pytest.mark.parametrize("rows", ["short rows", "BLAS rows"])
def test_batchnorm2d_fused_and_plain(rows, activation, train):
    """BatchNorm2d and the fused BatchNormAct2d (ReLU, ReLU6, SiLU, h-swish): gamma, beta
    and dx, train and eval, on rows below and above SHORT_ROW."""
    _check_batchnorm(BN_SHAPES[rows], activation, train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", [None, "relu6", "silu"], ids=str)
def test_batchnorm2d_broadcast_rows(activation, train):
    _check_batchnorm(BN_SHAPES["broadcast"], activation, train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", list(FUSED_KINKS), ids=str)
def test_batchnorm1d_fused_and_plain(activation, train):
    _check_batchnorm((7, 5), activation, train, dims=1)


@pytest.mark.parametrize("threads", [False, True], ids=["tiles", "two threads"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("activation", [None, "hardswish"], ids=str)
def test_batchnorm_channel_tiles(activation, train, threads, spy, request):
    request.getfixturevalue("two_threads" if threads else "small_tiles")
    layer = _batchnorm_layer(4, activation, train)
    x = randn(2, 4, 5, 6, seed=5)
    spy.take()
    layer.backward(layer.forward(x))
    ran = spy.take()
    assert "tiles>1" in ran and ("threads" in ran) == threads, sorted(ran)
    _check_batchnorm((2, 4, 5, 6), activation, train)


# ---- activations: kinks avoided by construction, chunked and threaded passes --------------

ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.HardSigmoid, nn.HardSwish, nn.SiLU]


@pytest.mark.parametrize("chunks", [False, True], ids=["one pass", "chunks on threads"])
@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda a: a.__name__)
def test_activation_away_from_kinks_by_construction(act, chunks, monkeypatch, request, spy):
    if chunks:                       # 8-value chunks, the array split over two threads
        request.getfixturevalue("two_threads")
        monkeypatch.setattr(act_mod, "CHUNK", 8)
        spy.take()
        layer = act()
        layer.backward(layer(randn(2, 3, 5, 7)))
        assert "threads" in spy.take()
    x = clear_of_kinks(4 * randn(2, 3, 5, 7, seed=1) + 1, act.kinks)   # spans -3, 0, 3, 6
    assert kink_gap(x, act.kinks) >= MARGIN
    for k in act.kinks:               # the input reaches both sides of every kink
        assert np.any(x < k) and np.any(x > k)
    check_layer(act(), x)


# ---- layers and options no other file checks -------------------------------------------

SIMPLE_LAYERS = {
    "Linear without bias": (lambda: nn.Linear(7, 4, bias=False), (5, 7), True),
    "GroupedLinear without bias": (lambda: nn.GroupedLinear(12, 6, groups=3, bias=False),
                                   (5, 12), True),
    "Dropout eval": (lambda: nn.Sequential(nn.Linear(6, 5), nn.Dropout(0.4)), (4, 6), False),
    "StochasticDepth eval": (lambda: nn.Sequential(nn.Conv2d(3, 3, 3, padding=1),
                                                   nn.StochasticDepth(0.5)), (3, 3, 5, 4), False),
    "StochasticDepth p=0 train": (lambda: nn.Sequential(nn.Conv2d(3, 3, 1, stride=2),
                                                        nn.StochasticDepth(0.0)),
                                  (3, 3, 5, 4), True),
    "pool, flatten, identity": (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2), nn.Identity(),
                                                      nn.GlobalAvgPool2d(), nn.Flatten(),
                                                      nn.Linear(3, 2)), (2, 2, 7, 6), True),
    "Conv2d K5 s2 same g": (lambda: nn.Conv2d(4, 6, 5, stride=2, padding="same", groups=2),
                            (2, 4, 7, 8), True),
    "DepthwiseConv2d K5 s2 same, bias": (lambda: nn.DepthwiseConv2d(3, 5, stride=2,
                                                                    padding="same", bias=True),
                                         (2, 3, 8, 9), True),
}


@pytest.mark.parametrize("name", list(SIMPLE_LAYERS))
def test_layer_options(name):
    make, shape, train = SIMPLE_LAYERS[name]
    layer = make().to(np.float64).train(train)
    check_layer(layer, randn(*shape, seed=2))


BLOCKS = {
    "Conv2dNormActivation K3 s2 g same HSwish": (
        lambda: nn.Conv2dNormActivation(6, 6, 3, stride=2, groups=3,
                                        activation_layer=nn.HardSwish, padding="same"),
        (2, 6, 8, 7)),
    "Conv2dNormActivation K5 s1 g p0 ReLU6": (
        lambda: nn.Conv2dNormActivation(4, 6, 5, groups=2, activation_layer=nn.ReLU6, padding=0),
        (2, 4, 7, 9)),
    "Conv2dNormActivation K1 s2 ReLU": (
        lambda: nn.Conv2dNormActivation(3, 5, 1, stride=2, activation_layer=nn.ReLU),
        (2, 3, 7, 6)),
    "Conv2dNormActivation K3 s1 depthwise p2 no act": (
        lambda: nn.Conv2dNormActivation(4, 4, 3, groups=4, activation_layer=None, padding=2),
        (2, 4, 5, 6)),
    "DepthwiseSeparable s2 ReLU6": (
        lambda: nn.DepthwiseSeparable(3, 5, stride=2, activation_layer=nn.ReLU6), (2, 3, 9, 8)),
    "SqueezeExcitation SiLU": (
        lambda: nn.SqueezeExcitation(6, 2, nn.SiLU, nn.Sigmoid), (2, 6, 3, 7)),
    "InvertedResidual v2 K5 s2": (
        lambda: nn.InvertedResidual(4, 6, 2, expand_ratio=2, kernel_size=5), (2, 4, 7, 6)),
    "InvertedResidual v3 s2 SE HSwish same": (
        lambda: nn.InvertedResidual(4, 6, 2, expanded_channels=8, activation=nn.HardSwish,
                                    se_channels=4, layout="v3", padding="same"), (2, 4, 6, 5)),
    "MBConv Lite s2 same ReLU6": (
        lambda: nn.MBConv(4, 6, 2, expand_ratio=2, kernel_size=5, se_ratio=None,
                          activation=nn.ReLU6, padding="same"), (2, 4, 6, 5)),
    "MBConv K5 same residual, stochastic depth": (
        lambda: nn.MBConv(4, 4, 1, expand_ratio=2, kernel_size=5, stochastic_depth_prob=0.3,
                          padding="same"), (4, 4, 5, 4)),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(BLOCKS))
def test_block_options(name, train):
    make, shape = BLOCKS[name]
    check_block(make(), shape, train)


# ---- an independent oracle for the depthwise paths ---------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("name", list(DW_PATHS))
def test_depthwise_paths_against_torch(name):
    """PyTorch's grouped convolution (zero-padded by hand for SAME) on the same inputs:
    out, dx, dw and db of every path."""
    torch = pytest.importorskip("torch")
    case = DW_PATHS[name][0]
    N, C, H, W, K, s, p = case
    x, w, b = _dw_inputs(case)
    fwd, bwd = _dw_functions(s, p)
    out, cache = fwd(x, w, b)
    G = randn(*out.shape, seed=9)
    dx, dw, db = bwd(G, cache)
    xk, pk = _kernel_view(x, K, s, p)
    xt = torch.tensor(x, requires_grad=True)
    wt, bt = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    pad = (0, 0, 0, 0)
    if p == "same":                  # SAME's leftover zeros (left, right, top, bottom)
        _, t, l = F.same_pad_forward(x, K, s)[2]
        pad = (l, xk.shape[3] - W - l, t, xk.shape[2] - H - t)
    yt = torch.nn.functional.conv2d(torch.nn.functional.pad(xt, pad) if p == "same" else xt,
                                    wt, bt, stride=s, padding=pk, groups=C)
    yt.backward(torch.tensor(G))
    for ours, theirs in ((out, yt), (dx, xt.grad), (dw, wt.grad), (db, bt.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-10, atol=1e-10)
