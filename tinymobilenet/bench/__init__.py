"""How fast are the kernels? ``python -m tinymobilenet.bench [--compare torch] [--quick]``

For each operation (forward + backward, float32) it prints the median time over repeated
runs after a warm-up, what that achieves, and how close it is to what *this machine* can
do, measured on the spot by two probes (the best of a few calls each: a busy machine only
ever slows a call down), a tiny roofline model:

    matmul probe   a large float32 matrix product: the peak GFLOP/s of the BLAS
    copy probe     a large array copy on the kernels' threads: the peak GB/s of memory

An operation with arithmetic intensity I = flops / bytes can reach at most
``min(peak GFLOP/s, I * peak GB/s)`` (the roofline). A large convolution does hundreds of
flops per byte and is compute-bound: its yardstick is the matmul. Depthwise convolution,
batch norm and squeeze-excitation do a few flops per byte and are memory-bound: their
yardstick is the copy. ``roof`` is the achieved fraction of that bound.

``--compare torch`` (PyTorch installed, never required) times the same operation in
PyTorch CPU with the same number of threads, interleaved with ours round by round so both
see the same machine load, and prints the ratio ours / PyTorch: the median of the
per-round ratios, with their quartiles as the ``spread`` (:func:`.timing.ratio_stats`).
``--format json`` prints the results for scripts; :func:`plot_ratios` draws them.

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
  calls queue for the GIL; 8 MB is no better than 4 MB. On a 2-core Intel Xeon with a
  2 MB L2 (AVX-512, December 2026), against 4 MB: 2 MB tiles ran EfficientNet-B0
  inference (224 px, batch 1) in 0.94x the time on 1 thread and 0.95x on 2, a
  MobileNetV2 training step (96 px, batch 8) in 0.95x and 0.92x; 1 MB tiles 0.91x and
  0.95x on 1 thread; depthwise alone at batch 1 on 112 x 112 maps 0.72x (2 MB) and 0.52x
  (1 MB). Hence tiles of the L2's size where it holds at least 2 MB.
- threads only for calls touching >= 8M values (``tiling._MIN_PARALLEL``): below that,
  a batch-8 MobileNetV2 step at 96 px ran 10-15 % faster on one thread.
- element-wise chains in chunks of ``tiling.CHUNK`` = 64k values with every pass in
  place, against whole-array NumPy expressions: SiLU forward 0.11, 0.30, 0.28 and 0.21x
  the time on (1, 32, 112, 112), (1, 96, 112, 112), (8, 144, 56, 56) and
  (1, 240, 28, 28) float32 (the old sigmoid took two branches of np.where); the same
  chain without chunks 0.31, 0.36, 0.30 and 0.19x.
"""

from __future__ import annotations

from .cases import TARGETS, Case, cases
from .memory import memory_report, peak_memory
from .report import format_markdown, format_table, plot_ratios
from .timing import SETTLE, WARMUP, Result, best_time, machine_peaks, median_time, run

__all__ = ["Case", "cases", "best_time", "machine_peaks", "median_time", "run", "format_table", "format_markdown",
           "plot_ratios", "peak_memory", "memory_report", "Result", "TARGETS", "SETTLE",
           "WARMUP", "main"]


def main(argv=None) -> int:
    """``python -m tinymobilenet.bench`` (see ``--help``)."""
    from .__main__ import main as _main
    return _main(argv)
