"""How the benchmark times: the roofline probes, the interleaved protocol (pause, warm-up,
timed call, round by round for both libraries) and the machine's description."""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..functional import tiling
from .. import blas
from .cases import cases, target_for

__all__ = ["Result", "best_time", "machine_peaks", "median_time", "ratio_stats", "run", "SETTLE", "WARMUP"]


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
    ratio: float | None = None         # median of the per-round ratios (see ratio_stats)
    target: float | None = None
    ratio_q1: float | None = None      # their first and third quartiles: the spread
    ratio_q3: float | None = None


def _times(fn, repeats):
    fn()                                               # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_time(fn, repeats=7):
    """Median seconds of ``repeats`` calls of ``fn()`` after one untimed call."""
    return float(np.median(_times(fn, repeats)))


def best_time(fn, repeats=7):
    """Shortest seconds of ``repeats`` calls of ``fn()`` after one untimed call: a peak is
    what the machine can do, and a busy machine only ever slows a call down."""
    return float(min(_times(fn, repeats)))


def machine_peaks(quick: bool = False) -> dict:
    """Measure peak float32 GFLOP/s (a square matmul) and GB/s (a large copy, bytes read
    plus bytes written, split over the kernels' threads): the best of a few calls each."""
    n = 512 if quick else 1536
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.T.copy()
    c = np.empty_like(a)
    t = best_time(lambda: np.matmul(a, b, out=c), 3 if quick else 7)
    gflops = 2.0 * n ** 3 / t / 1e9

    size = (4 if quick else 64) * 2 ** 20 // 4          # float32 values: 4 or 64 MB
    src = np.ones(size, dtype=np.float32)
    dst = np.empty_like(src)
    step = 2 ** 18
    chunks = [(i, min(size, i + step)) for i in range(0, size, step)]

    def copy(chunk):
        for lo, hi in chunk:
            dst[lo:hi] = src[lo:hi]

    t = best_time(lambda: tiling.run_tiles(copy, chunks), 3 if quick else 7)
    gbs = 2.0 * src.nbytes / t / 1e9
    return {"matmul_gflops": gflops, "copy_gbs": gbs, "matmul_n": n,
            "copy_mb": src.nbytes / 2 ** 20}


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


def ratio_stats(ours, theirs):
    """(median, first quartile, third quartile) of the per-round ratios
    ``ours[r] / theirs[r]`` of two libraries timed in the same rounds.

    Each round's ratio compares two timings taken a fraction of a second apart, so a
    slow spell of a shared machine that lasts a round or two moves both of them and
    hardly moves the ratio; a ratio of the two medians would compare timings from
    different moments. The quartiles say how far the rounds disagree."""
    ratios = np.asarray(ours, dtype=float) / np.asarray(theirs, dtype=float)
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return float(median), float(q1), float(q3)


def _measure(case, rng, repeats, torch_on):
    """Median fwd, bwd and total seconds for ours, and PyTorch's median seconds and
    :func:`ratio_stats` (None without PyTorch), interleaved round by round (one warm-up
    round first), so a burst of load from elsewhere hits both alike."""
    fwd, bwd = case.make(rng)
    tfwd = tbwd = None
    if torch_on and case.make_torch is not None:
        pair = case.make_torch(rng)          # None: no PyTorch twin of this case
        if pair is not None:
            tfwd, tbwd = pair
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
    totals = [t for _, _, t in ours]
    stats = ratio_stats(totals, theirs) if theirs else None
    return (np.median(np.array(ours), axis=0), float(np.median(theirs)) if theirs else None,
            stats)


def run(quick=False, compare_torch=False, threads=None, repeats=None, only=None,
        progress=None, suite="all") -> dict:
    """Run the benchmark's ``suite`` ("kernels", "networks" or "all"; ``only``: names
    containing one of these strings); returns ``{"machine": ..., "results": [Result as
    dict, ...]}``."""
    threads = threads or tiling.num_threads()
    torch_version = None
    if compare_torch:
        import torch
        torch.set_num_threads(threads)
        torch_version = torch.__version__
    with blas.threads(threads):
        machine = {"threads": threads, "blas": blas.info(), "numpy": np.__version__,
                   "python": platform.python_version(), "cpu": _cpu_name(),
                   "torch": torch_version, **machine_peaks(quick)}
        repeats = repeats or (3 if quick else 7)
        results = []
        for case in cases(quick, suite):
            if only and not any(s in case.name for s in only):
                continue
            rng = np.random.default_rng(0)
            (f, b, t), torch_t, stats = _measure(case, rng, repeats, compare_torch)
            results.append(asdict(_result(case, f, b, t, torch_t, stats, machine)))
            if progress:
                progress(results[-1])
        return {"machine": machine, "results": results}


def _result(case, f, b, t, torch_t, stats, machine):
    """The Result of a case timed at f, b, t seconds (fwd, bwd, total), PyTorch at
    ``torch_t`` seconds with per-round ratio ``stats`` (:func:`ratio_stats`), or None."""
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
    target = target_for(case.kind, machine["threads"])
    ratio, q1, q3 = (None, None, None) if stats is None else stats
    return Result(case.name, case.kind, 1e3 * f, 1e3 * b, 1e3 * t, gflop, gbytes, bound,
                  achieved, unit, roof, None if torch_t is None else 1e3 * torch_t,
                  ratio, target, q1, q3)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
