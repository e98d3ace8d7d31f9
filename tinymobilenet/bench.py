"""How fast are the kernels? ``python -m tinymobilenet.bench [--compare torch] [--quick]``

For each operation (forward + backward, float32) it prints the median time over repeated
runs after a warm-up, what that achieves, and how close it is to what *this machine* can
do, measured on the spot by two probes, a tiny roofline model:

    matmul probe   a large float32 matrix product: the peak GFLOP/s of the BLAS
    copy probe     a large array copy on the kernels' threads: the peak GB/s of memory

An operation with arithmetic intensity I = flops / bytes can reach at most
``min(peak GFLOP/s, I * peak GB/s)`` (the roofline). A large convolution does hundreds of
flops per byte and is compute-bound: its yardstick is the matmul. Depthwise convolution,
batch norm and squeeze-excitation do a few flops per byte and are memory-bound: their
yardstick is the copy. ``roof`` is the achieved fraction of that bound.

``--compare torch`` (PyTorch installed, never required) times the same operation in
PyTorch CPU with the same number of threads, interleaved with ours round by round so both
see the same machine load, and prints the ratio ours / PyTorch. ``--format json`` prints
the results for scripts; :func:`plot_ratios` draws them.

BLAS libraries read some environment variables at start-up (OPENBLAS_CORETYPE,
OPENBLAS_L2_SIZE, ...) that can select a slower kernel; the header prints which BLAS
kernel runs so a surprising result can be traced.

Measured choices of the kernels (2-core AMD EPYC, 2026; interleaved A/B timings, ratios
new / old, forward + backward; they go stale with machines, which is why they live here
and not in the kernels' docstrings):

- depthwise, banded products vs K*K multiply-adds (``functional.depthwise.BANDED_WIDTH``):
  3x3 stride 1 at 3, 6, 12, 14, 16 px 0.57-0.89, at 20 and 24 px 1.14 and 1.34; 5x5
  stride 1 at 7, 14, 28 px 0.41-0.71, at 56 px 1.53; stride 2: 3x3 at 7, 12, 14 px
  0.83-0.88 (at 6 px 1.15), 5x5 at 10, 24, 28 px 0.72-0.78. Hence banded up to 6K px.
- tile size (``functional.tiling.TILE_BYTES``): 1 MB tiles (inside L2) are 1.2-1.5x
  slower on 1 thread and up to 2x slower on 2 threads than 4 MB, where the many short
  calls queue for the GIL; 8 MB is no better than 4 MB.
- threads only for calls touching >= 8M values (``tiling._MIN_PARALLEL``): below that,
  a batch-8 MobileNetV2 step at 96 px ran 10-15 % faster on one thread.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np

from . import cli, nn
from .cli import Parser, number
from .functional import conv_output_size, tiling

__all__ = ["Case", "cases", "machine_peaks", "run", "format_table", "format_markdown",
           "plot_ratios",
           "peak_memory", "main", "TARGETS"]

# Ratio targets ours / PyTorch CPU (forward + backward), per kind of operation
TARGETS = {"pointwise": 1.2, "standard": 1.5, "depthwise": 2.0, "mobilenet_v2": 2.0}


@dataclass
class Case:
    """One benchmarked operation.

    ``make()`` builds fresh inputs and returns ``(forward, backward)`` closures for
    tinymobilenet; ``make_torch()`` the same for PyTorch (``None`` when not comparable).
    ``flops`` and ``bytes`` are per forward + backward; ``bytes`` is the least memory
    traffic (each input, output and gradient read or written once), 0 when not counted.
    """

    name: str
    kind: str                  # a key of TARGETS, or "other"
    make: object
    make_torch: object = None
    flops: float = 0.0
    bytes: float = 0.0
    activation_bytes: float = 0.0    # size of the op's input, for the memory check


@dataclass
class Result:
    name: str
    kind: str
    fwd_ms: float
    bwd_ms: float
    ms: float
    gflop: float
    gbytes: float
    bound: str                 # "compute" or "memory" (roofline), "-" when not counted
    achieved: float            # GFLOP/s (compute-bound) or GB/s (memory-bound)
    unit: str
    roof_fraction: float | None
    torch_ms: float | None = None
    ratio: float | None = None
    target: float | None = None


# ----------------------------------------------------------------------------------------
# the operations
# ----------------------------------------------------------------------------------------

def _randn(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _layer_pair(module, x, rng):
    """fwd/bwd closures for a tinymobilenet module on input x (float32, train mode)."""
    y = module(x)
    dy = _randn(rng, *y.shape)

    def forward():
        module(x)

    def backward():
        module.backward(dy)

    return forward, backward


def _torch_pair(fn, tensors, out_shape, rng):
    """fwd/bwd closures for PyTorch: ``fn()`` builds the graph, ``backward`` runs it.

    Every input in ``tensors`` requires a gradient, as in a training step."""
    import torch
    dy = torch.from_numpy(_randn(rng, *out_shape))
    state = {}

    def forward():
        for t in tensors:
            t.grad = None
        state["y"] = fn()

    def backward():
        state["y"].backward(dy)

    return forward, backward


def _conv_case(name, kind, N, C, Co, H, K, stride, groups=1):
    pad = (K - 1) // 2
    Ho = conv_output_size(H, K, stride, pad)
    macs = N * Co * Ho * Ho * (C // groups) * K * K
    x_bytes, y_bytes = 4 * N * C * H * H, 4 * N * Co * Ho * Ho
    w_bytes = 4 * Co * C // groups * K * K

    def make(rng):
        conv = nn.Conv2d(C, Co, K, stride, pad, groups=groups, bias=False,
                         rng=np.random.default_rng(0))
        return _layer_pair(conv, _randn(rng, N, C, H, H), rng)

    def make_torch(rng):
        import torch
        x = torch.from_numpy(_randn(rng, N, C, H, H)).requires_grad_()
        w = torch.from_numpy(_randn(rng, Co, C // groups, K, K)).requires_grad_()
        return _torch_pair(lambda: torch.nn.functional.conv2d(x, w, None, stride, pad, 1, groups),
                           [x, w], (N, Co, Ho, Ho), rng)

    # forward: 2 flops per MAC; backward: the same again for dx and for dw
    return Case(name, kind, make, make_torch, flops=6.0 * macs,
                bytes=3.0 * x_bytes + 2.0 * y_bytes + 3.0 * w_bytes, activation_bytes=x_bytes)


def _se_case(name, N, C, S, H):
    def make(rng):
        se = nn.SqueezeExcitation(C, S, rng=np.random.default_rng(0))
        return _layer_pair(se, _randn(rng, N, C, H, H), rng)

    def make_torch(rng):
        import torch
        from torchvision.ops import SqueezeExcitation
        se = SqueezeExcitation(C, S)
        x = torch.from_numpy(_randn(rng, N, C, H, H)).requires_grad_()
        return _torch_pair(lambda: se(x), [x], (N, C, H, H), rng)

    xb = 4 * N * C * H * H
    # mean + gate multiply forward, gate gradient + dx backward: ~6 flops per value
    return Case(name, "other", make, make_torch, flops=6.0 * N * C * H * H,
                bytes=5.0 * xb, activation_bytes=xb)


def _inverted_residual_case(name, N, C, E, H):
    def make(rng):
        block = nn.InvertedResidual(C, C, 1, expanded_channels=E, rng=np.random.default_rng(0))
        return _layer_pair(block, _randn(rng, N, C, H, H), rng)

    def make_torch(rng):
        import torch
        from torchvision.models.mobilenetv2 import InvertedResidual
        block = InvertedResidual(C, C, 1, E // C)
        x = torch.from_numpy(_randn(rng, N, C, H, H)).requires_grad_()
        return _torch_pair(lambda: block(x), [x], (N, C, H, H), rng)

    macs = N * H * H * (2 * C * E + 9 * E)
    return Case(name, "other", make, make_torch, flops=6.0 * macs)


def _torch_mobilenet_v1(num_classes):
    """MobileNetV1 in PyTorch, laid out like :mod:`tinymobilenet.models.mobilenet_v1`."""
    import torch.nn as tnn
    from .models.mobilenet_v1 import V1_BLOCKS

    def cbr(ci, co, k, s, g):
        return [tnn.Conv2d(ci, co, k, s, (k - 1) // 2, groups=g, bias=False),
                tnn.BatchNorm2d(co), tnn.ReLU()]

    layers, c = cbr(3, 32, 3, 2, 1), 32
    for co, s in V1_BLOCKS:
        layers += cbr(c, c, 3, s, c) + cbr(c, co, 1, 1, 1)
        c = co
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(),
                          tnn.Linear(c, num_classes))


def _model_case(name, kind, build, build_torch, N, size, num_classes=1000, lr=1e-4):
    """A full training step: forward, cross-entropy, backward, SGD update."""

    def make(rng):
        model = build()
        loss = nn.CrossEntropyLoss()
        x = _randn(rng, N, 3, size, size)
        y = rng.integers(0, num_classes, N)
        params = model.parameters()
        state = {}

        def forward():
            state["loss"] = loss(model(x), y)

        def backward():
            model.backward(loss.backward())
            for p in params:
                p.data -= lr * p.grad

        return forward, backward

    def make_torch(rng):
        import torch
        model = build_torch()
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        x = torch.from_numpy(_randn(rng, N, 3, size, size))
        y = torch.from_numpy(rng.integers(0, num_classes, N))
        state = {}

        def forward():
            opt.zero_grad()
            state["loss"] = torch.nn.functional.cross_entropy(model(x), y)

        def backward():
            state["loss"].backward()
            opt.step()

        return forward, backward

    flops = 0.0
    try:
        from .count import summary
        flops = 3.0 * 2.0 * summary(build(), (N, 3, size, size)).total_macs
    except Exception:                                  # counting is a bonus, not a need
        pass
    return Case(name, kind, make, make_torch, flops=flops)


def _torchvision_mobilenet_v2(num_classes):
    import torchvision
    return torchvision.models.mobilenet_v2(num_classes=num_classes)


def _models():
    """(name, target kind, factory, PyTorch factory) of the models the benchmark trains;
    MobileNetV2 when this version of the package has it."""
    from . import models
    out = [("MobileNetV1", "other", models.mobilenet_v1, _torch_mobilenet_v1)]
    if hasattr(models, "mobilenet_v2"):
        out.insert(0, ("MobileNetV2", "mobilenet_v2", models.mobilenet_v2,
                       _torchvision_mobilenet_v2))
    return out


def cases(quick: bool = False) -> list[Case]:
    """The benchmarked operations: MobileNet-typical shapes (batch 16, 56x56 and 14x14
    activations, 32-512 channels), or tiny ones with ``quick``."""
    if quick:
        N, big, small, model_n, model_size = 2, 16, 8, 2, 32
    else:
        N, big, small, model_n, model_size = 16, 56, 14, 8, 96
    out = [
        _conv_case(f"pointwise 144->24 {big}x{big}", "pointwise", N, 144, 24, big, 1, 1),
        _conv_case(f"pointwise 512->512 {small}x{small}", "pointwise", N, 512, 512, small, 1, 1),
        _conv_case(f"standard 3x3 s1 32->64 {big}x{big}", "standard", N, 32, 64, big, 3, 1),
        _conv_case(f"standard 3x3 s2 32->64 {big}x{big}", "standard", N, 32, 64, big, 3, 2),
        _conv_case(f"depthwise 3x3 s1 144 {big}x{big}", "depthwise", N, 144, 144, big, 3, 1, 144),
        _conv_case(f"depthwise 3x3 s2 144 {big}x{big}", "depthwise", N, 144, 144, big, 3, 2, 144),
        _conv_case(f"depthwise 3x3 s1 512 {small}x{small}", "depthwise", N, 512, 512, small, 3, 1,
                   512),
        _conv_case(f"depthwise 5x5 s1 480 {small}x{small}", "depthwise", N, 480, 480, small, 5, 1,
                   480),
        _conv_case(f"depthwise 5x5 s2 240 {2 * small}x{2 * small}", "depthwise", N, 240, 240,
                   2 * small, 5, 2, 240),
        _se_case(f"squeeze-excitation 480->120 {small}x{small}", N, 480, 120, small),
        _inverted_residual_case(f"inverted residual 24->144->24 {big}x{big}", N, 24, 144, big),
    ]
    for name, kind, factory, torch_factory in _models():
        out.append(_model_case(
            f"{name} training step {model_size}px batch {model_n}", kind,
            lambda f=factory: f(num_classes=1000), lambda f=torch_factory: f(1000),
            model_n, model_size))
    return out


# ----------------------------------------------------------------------------------------
# the roofline probes
# ----------------------------------------------------------------------------------------

def _median_time(fn, repeats):
    fn()                                               # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def machine_peaks(quick: bool = False) -> dict:
    """Measure peak float32 GFLOP/s (a square matmul) and GB/s (a large copy, bytes read
    plus bytes written, split over the kernels' threads)."""
    n = 512 if quick else 1536
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    c = np.empty_like(a)
    t = _median_time(lambda: np.matmul(a, b, out=c), 3 if quick else 7)
    gflops = 2.0 * n ** 3 / t / 1e9

    size = (4 if quick else 64) * 2 ** 20 // 4          # float32 values: 4 or 64 MB
    src = np.ones(size, dtype=np.float32)
    dst = np.empty_like(src)
    step = 2 ** 18
    chunks = [(i, min(size, i + step)) for i in range(0, size, step)]

    def copy(chunk):
        for lo, hi in chunk:
            dst[lo:hi] = src[lo:hi]

    t = _median_time(lambda: tiling.run_tiles(copy, chunks), 3 if quick else 7)
    gbs = 2.0 * src.nbytes / t / 1e9
    return {"matmul_gflops": gflops, "copy_gbs": gbs, "matmul_n": n,
            "copy_mb": src.nbytes / 2 ** 20}


# ----------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------

def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# Seconds to wait before switching library. After a call, OpenBLAS's worker threads and
# PyTorch's OpenMP threads keep spinning for a while, waiting for more work; timed right
# after the other library, an operation finds its cores taken and its 2-thread matmuls
# can be 10-50x slower. Measured here: 0.05 s is enough; 0.1 s leaves a margin.
SETTLE = 0.1


# Seconds of untimed calls after the pause, before the timed one. A training loop runs
# its layers back to back; right after a pause the cores are cold (on a virtual machine
# an idle core takes tens of microseconds to wake for each thread hand-off, and the
# caches and page tables of the op are gone). Measured here for depthwise 3x3 512@14x14
# fwd + bwd, the calls right after a 0.1 s pause: 15.1, 13.3, 11.9, 11.1, 10.6, 10.4 ms;
# steady after ~0.1 s of work. Both libraries get the same warm-up.
WARMUP = 0.1


def _settle(fwd, bwd):
    """Let the other library's threads go idle (SETTLE), then run this library's op
    untimed for WARMUP seconds (at least once), so the timed run sees the steady state
    of a training loop instead of paying for the pause."""
    time.sleep(SETTLE)
    t0 = time.perf_counter()
    fwd()
    bwd()
    while time.perf_counter() - t0 < WARMUP:
        fwd()
        bwd()


def _measure(case, rng, repeats, torch_on):
    """Median fwd, bwd and total seconds for ours and PyTorch, interleaved round by round
    (one warm-up round first), so a burst of load from elsewhere hits both alike."""
    fwd, bwd = case.make(rng)
    tfwd = tbwd = None
    if torch_on and case.make_torch is not None:
        tfwd, tbwd = case.make_torch(rng)
    ours, theirs = [], []
    for r in range(repeats + 1):
        if tfwd is not None:
            _settle(fwd, bwd)
        a, b = _time(fwd), _time(bwd)
        if tfwd is not None:
            _settle(tfwd, tbwd)
            c, d = _time(tfwd), _time(tbwd)
            if r:
                theirs.append(c + d)
        if r:
            ours.append((a, b, a + b))
    ours = np.median(np.array(ours), axis=0)
    return ours, (float(np.median(theirs)) if theirs else None)


def run(quick=False, compare_torch=False, threads=None, repeats=None, only=None,
        progress=None) -> dict:
    """Run the benchmark; returns ``{"machine": ..., "results": [Result as dict, ...]}``."""
    threads = threads or tiling.num_threads()
    old_threads = tiling.num_threads()
    tiling.set_num_threads(threads)
    limiter = _limit_blas(threads)
    torch_version = None
    if compare_torch:
        import torch
        torch.set_num_threads(threads)
        torch_version = torch.__version__
    try:
        machine = {"threads": threads, "blas": _blas_info(), "numpy": np.__version__,
                   "python": platform.python_version(), "cpu": _cpu_name(),
                   "torch": torch_version, **machine_peaks(quick)}
        repeats = repeats or (3 if quick else 7)
        results = []
        for case in cases(quick):
            if only and not any(s in case.name for s in only):
                continue
            rng = np.random.default_rng(0)
            (f, b, t), torch_t = _measure(case, rng, repeats, compare_torch)
            results.append(asdict(_result(case, f, b, t, torch_t, machine)))
            if progress:
                progress(results[-1])
        return {"machine": machine, "results": results}
    finally:
        tiling.set_num_threads(old_threads)
        if limiter is not None:
            limiter.restore_original_limits()


def _result(case, f, b, t, torch_t, machine):
    gflop, gbytes = case.flops / 1e9, case.bytes / 1e9
    bound, achieved, unit, roof = "-", gflop / t if gflop else 0.0, "GFLOP/s", None
    if gflop and gbytes:
        intensity = case.flops / case.bytes
        if intensity * machine["copy_gbs"] < machine["matmul_gflops"]:
            bound, achieved, unit = "memory", gbytes / t, "GB/s"
            roof = achieved / machine["copy_gbs"]
        else:
            bound = "compute"
            roof = achieved / machine["matmul_gflops"]
    elif gflop:
        roof = achieved / machine["matmul_gflops"]
    target = TARGETS.get(case.kind)
    return Result(case.name, case.kind, 1e3 * f, 1e3 * b, 1e3 * t, gflop, gbytes, bound,
                  achieved, unit, roof, None if torch_t is None else 1e3 * torch_t,
                  None if torch_t is None else t / torch_t, target)


def _limit_blas(threads):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (install threadpoolctl to see it)"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')} "
                     f"({i.get('num_threads')} threads)" for i in infos) or "unknown"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ----------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------

def peak_memory(step_forward, step_backward) -> int:
    """Peak bytes NumPy allocates during one forward + backward (``tracemalloc``), over
    what was allocated before it started (the model, its inputs). The kernels' per-thread
    scratch buffers are freed first, so they count."""
    tiling.free_scratch()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step_forward()
        step_backward()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def memory_report(quick=False) -> dict:
    """Peak memory of a MobileNetV2 (else V1) training step and, for each depthwise case,
    the peak allocation of its forward and backward in units of its input's size."""
    rng = np.random.default_rng(0)
    out = {}
    model_cases = [c for c in cases(quick) if "training step" in c.name]
    if model_cases:
        case = model_cases[0]
        fwd, bwd = case.make(rng)
        fwd(), bwd()                                   # steady state: grads exist
        out["model"] = case.name
        out["model_step_peak_mb"] = peak_memory(fwd, bwd) / 2 ** 20
    dw = {}
    for case in cases(quick):
        if case.kind == "depthwise":
            fwd, bwd = case.make(rng)
            peak_f = peak_memory(fwd, lambda: None)
            fwd()
            peak_b = peak_memory(lambda: None, bwd)
            # forward allocates its output, backward dx: one activation each is necessary
            dw[case.name] = {"forward": peak_f / case.activation_bytes,
                             "backward": peak_b / case.activation_bytes}
    out["depthwise_peak_in_activations"] = dw
    return out


# ----------------------------------------------------------------------------------------
# printing and plotting
# ----------------------------------------------------------------------------------------

def format_table(report: dict) -> str:
    m = report["machine"]
    lines = [
        "tinymobilenet benchmark: float32, forward + backward, median of repeated runs",
        f"cpu: {m['cpu']}, {m['threads']} threads; numpy {m['numpy']}; BLAS: {m['blas']}"
        + (f"; torch {m['torch']}" if m.get("torch") else ""),
        f"roofline probes: matmul {m['matmul_gflops']:.1f} GFLOP/s "
        f"({m['matmul_n']}^3 float32), copy {m['copy_gbs']:.1f} GB/s ({m['copy_mb']:.0f} MB)",
        "",
    ]
    has_torch = any(r["torch_ms"] is not None for r in report["results"])
    head = (f"{'operation':44s} {'fwd ms':>8s} {'bwd ms':>8s} {'total':>8s} "
            f"{'achieved':>14s} {'roof':>5s}")
    if has_torch:
        head += f" {'torch ms':>9s} {'ratio':>6s} {'target':>7s}"
    lines += [head, "-" * len(head)]
    for r in report["results"]:
        ach = f"{r['achieved']:.1f} {r['unit']}" if r["achieved"] else "-"
        roof = f"{100 * r['roof_fraction']:.0f}%" if r["roof_fraction"] is not None else "-"
        line = (f"{r['name']:44s} {r['fwd_ms']:8.2f} {r['bwd_ms']:8.2f} {r['ms']:8.2f} "
                f"{ach:>14s} {roof:>5s}")
        if has_torch:
            if r["torch_ms"] is not None:
                ok = "" if r["target"] is None else (
                    " ok" if r["ratio"] <= r["target"] else " MISS")
                tgt = "" if r["target"] is None else f"<={r['target']:.1f}"
                line += f" {r['torch_ms']:9.2f} {r['ratio']:5.2f}x {tgt:>7s}{ok}"
            else:
                line += f" {'-':>9s}"
        lines.append(line)
    mem = report.get("memory")
    if mem:
        lines.append("")
        if "model_step_peak_mb" in mem:
            lines.append(f"peak memory of one {mem['model']}: "
                         f"{mem['model_step_peak_mb']:.1f} MB (tracemalloc, above model and input)")
        for name, v in mem["depthwise_peak_in_activations"].items():
            lines.append(f"peak allocation of {name}: forward {v['forward']:.2f}, backward "
                         f"{v['backward']:.2f} input sizes (output / dx included)")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The results as a Markdown table (for the README)."""
    lines = ["| operation | fwd + bwd ms | achieved | roof | PyTorch ms | ratio | target |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in report["results"]:
        ach = f"{r['achieved']:.1f} {r['unit']}" if r["achieved"] else "-"
        roof = f"{100 * r['roof_fraction']:.0f} %" if r["roof_fraction"] is not None else "-"
        torch_ms = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.1f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        target = "" if r["target"] is None else f"<= {r['target']:.1f}x" + (
            "" if r["ratio"] is None else (" met" if r["ratio"] <= r["target"] else " **missed**"))
        lines.append(f"| {r['name']} | {r['ms']:.1f} | {ach} | {roof} | {torch_ms} | {ratio} "
                     f"| {target} |")
    return "\n".join(lines)


def plot_ratios(reports, path: str) -> None:
    """Bar chart of the ratios ours / PyTorch per operation, with each target marked.

    ``reports``: one report of :func:`run` (with ``compare_torch``) or a list of them,
    e.g. a 1-thread and a 2-thread run, drawn as grouped bars labelled by thread count.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [reports] if isinstance(reports, dict) else list(reports)
    names = [r["name"] for r in reports[0]["results"] if r.get("ratio") is not None]
    if not names:
        raise ValueError("plot_ratios: the report has no ratios (run with --compare torch)")
    targets = {r["name"]: r["target"] for r in reports[0]["results"]}
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(names) * max(1, len(reports) * 0.6) + 1.6))
    y = np.arange(len(names))[::-1]
    height = 0.8 / len(reports)
    shades = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"]
    top = max(t or 0 for t in targets.values())
    for k, report in enumerate(reports):
        ratio = {r["name"]: r["ratio"] for r in report["results"]}
        values = [ratio.get(n) or 0.0 for n in names]
        top = max(top, max(values))
        yk = y + 0.4 - height * (k + 0.5)
        ax.barh(yk, values, height=height * 0.9, color=shades[k % len(shades)],
                label=f"{report['machine']['threads']} thread"
                + ("s" if report["machine"]["threads"] > 1 else ""))
        for yi, v in zip(yk, values):
            ax.text(v + 0.02, yi, f"{v:.2f}", va="center", fontsize=7)
    for yi, n in zip(y, names):
        if targets.get(n) is not None:
            ax.plot([targets[n]] * 2, [yi - 0.45, yi + 0.45], color="#c0392b", lw=2)
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, top * 1.12)
    ax.set_xlabel("time tinymobilenet / time PyTorch CPU, forward + backward (lower is better)")
    ax.set_title("tinymobilenet vs PyTorch CPU, same threads (red tick: target)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = Parser(prog="python -m tinymobilenet.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--compare", choices=["torch"], help="time PyTorch CPU side by side")
    parser.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, few repeats (smoke test)")
    parser.add_argument("--threads", type=number(int, 1), help="threads for ours, BLAS and torch "
                        "(default: tinymobilenet.functional.tiling.num_threads())")
    parser.add_argument("--repeats", type=number(int, 1), help="timed rounds per operation")
    parser.add_argument("--only", nargs="*",
                        help="run only operations whose name contains one of these")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc report")
    parser.add_argument("--plot", metavar="PNG", help="also draw the ratios (needs --compare)")
    parser.add_argument("--save", metavar="JSON", help="also save the report as JSON")
    args = parser.parse_args(argv)
    if args.compare == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            parser.error("--compare torch needs PyTorch installed (pip install torch torchvision)")
    progress = None
    if args.format == "table":
        def progress(r):
            print(f"  {r['name']}: {r['ms']:.1f} ms", file=sys.stderr, flush=True)
    report = run(args.quick, args.compare == "torch", args.threads, args.repeats, args.only,
                 progress)
    if not args.no_memory:
        report["memory"] = memory_report(args.quick)
    if args.plot:
        plot_ratios(report, args.plot)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(report, f, indent=2)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "markdown":
        print(format_markdown(report))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
