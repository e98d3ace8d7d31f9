"""Cache-sized tiles and the threads that work on them.

Memory-bound kernels (depthwise convolution, batch norm) do a few flops per value they
touch, so their speed is set by where the data lives: a pass over an array in DRAM costs
~10x a pass over the same bytes in L2. They therefore cut their arrays into *tiles* whose
working set fits in L2 and make all their passes over one tile before moving to the next.

NumPy's element-wise ufuncs run on one core but release the GIL inside their loops, so
tiles can be handed to a few Python threads and run in parallel; BLAS matmuls are already
multithreaded by the BLAS library. The number of threads is ``num_threads()``: the
``TINYMOBILENET_NUM_THREADS`` environment variable, else the number of cores this process
may use; ``set_num_threads(n)`` changes it at run time (1 turns the threads off).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

__all__ = ["TILE_BYTES", "CHUNK", "num_threads", "set_num_threads", "split_rows", "threads_for",
           "tile_budget", "run_tiles", "elementwise", "scratch", "free_scratch", "serial"]

# Working-set budget of one tile, in bytes. A tile should stay in cache across its
# passes, but each NumPy call on it also has a fixed cost (~1-2 us, plus a GIL hand-off
# when threads take turns), so tiles must not be too small either. Measured (the numbers:
# tinymobilenet.bench's documentation): with a 512 KB L2 (AMD EPYC) 4 MB tiles, in the
# shared L3, beat 1 MB ones by 1.2-2x; with a 2 MB L2 (Intel Xeon) 2 MB tiles beat 4 MB
# by 5-9 % on whole networks; with a 1 MB L2 (AMD EPYC, Zen 5) 4 MB tiles beat 1 MB and
# 2 MB ones (MobileNetV2's training step 1.105x and 1.016x the time with those), and
# batch norm alone with 16 MB tiles was 0.94x alone but 0.99-1.01x inside that step. So:
# the L2's size where it holds at least 2 MB, else 4 MB; TINYMOBILENET_TILE_BYTES overrides.
def _l2_bytes() -> int:
    """Size of one core's L2 cache (Linux sysfs), 0 where it cannot be read."""
    import glob
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(f"{index}/level") as f:
                if f.read().strip() != "2":
                    continue
            with open(f"{index}/size") as f:
                size = f.read().strip().upper()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        if size and size[-1] in units and size[:-1].isdigit():
            return int(size[:-1]) * units[size[-1]]
        if size.isdigit():
            return int(size)
    return 0


def _default_tile_bytes() -> int:
    env = os.environ.get("TINYMOBILENET_TILE_BYTES")
    if env:
        return max(1, int(env))
    l2 = _l2_bytes()
    return min(l2, 4 << 20) if l2 >= 2 << 20 else 4 << 20


TILE_BYTES = _default_tile_bytes()

# Below this many values (touched by one call, all passes counted) an operation runs in
# the calling thread. Each NumPy call on a tile costs ~1-2 us of Python, serial under the
# GIL, and threads add hand-offs: threads pay off for batch-16 layers (tens of millions of
# values) but slow down a batch-8 MobileNetV2 at 96 px, whose largest layer touches ~6M.
_MIN_PARALLEL = 1 << 23


def _default_threads() -> int:
    env = os.environ.get("TINYMOBILENET_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:                       # macOS, Windows
        return max(1, os.cpu_count() or 1)


_threads = _default_threads()
_pool: ThreadPoolExecutor | None = None
_local = threading.local()
_all_buffers: list[dict] = []           # every thread's scratch buffers, for free_scratch


def num_threads() -> int:
    """Threads used by the tiled element-wise kernels."""
    return _threads


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for the tiled kernels (BLAS has its own setting: OPENBLAS_NUM_THREADS,
    or ``tinymobilenet.bench.blas.limit``)."""
    global _threads, _pool
    if int(n) < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    if _pool is not None and int(n) != _threads:
        _pool.shutdown(wait=True)
        _pool = None
    _threads = int(n)


def split_rows(rows: int, bytes_per_row: int, budget: int | None = None,
               balance: bool = False) -> int:
    """How many rows (channels, samples, ...) of ``bytes_per_row`` fit in ``budget``
    bytes (default TILE_BYTES); at least 1.

    With ``balance`` the rows per tile are lowered so that the number of tiles is a
    multiple of the thread count: 5 tiles on 2 threads would leave one thread idle for
    a fifth of the time.
    """
    budget = TILE_BYTES if budget is None else budget
    per_tile = max(1, min(rows, budget // max(1, bytes_per_row)))
    if balance and _threads > 1:
        tiles = -(-rows // per_tile)
        tiles = -(-tiles // _threads) * _threads
        per_tile = max(1, -(-rows // tiles))
    return per_tile


def threads_for(size=None) -> int:
    """Threads :func:`run_tiles` will use for a call touching ``size`` values: 1 below
    ``_MIN_PARALLEL`` (the threads would cost more than they save) or inside
    :func:`serial`, else ``num_threads()``."""
    if (size is not None and size < _MIN_PARALLEL) or getattr(_local, "serial", False):
        return 1
    return _threads


@contextmanager
def serial():
    """Inside the block, this thread's tiled calls run in this thread only (for work that
    is already spread over the threads at a coarser grain, e.g. one share of a batch per
    thread: :func:`tinymobilenet.nn.grad_mode.split_forward`)."""
    previous = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = previous


def tile_budget(x_bytes: int, size=None) -> tuple[int, int]:
    """(threads, bytes per tile) of a tiled call touching ``size`` values whose input has
    ``x_bytes`` bytes: TILE_BYTES, and on threads at most ``x_bytes / threads``, so that
    all threads' tile buffers together stay below the size of the input (one activation)."""
    threads = threads_for(size)
    budget = TILE_BYTES
    if threads > 1:
        budget = min(budget, x_bytes // threads)
    return threads, budget


def run_tiles(work, tiles, size=None):
    """Call ``work(chunk)`` on contiguous chunks of the list ``tiles``, one chunk per
    thread, and return the list of results in chunk order.

    ``work`` allocates its scratch buffers once per chunk and must write only to the parts
    of shared arrays its tiles own. ``size`` (number of values the whole call touches)
    below ``_MIN_PARALLEL`` runs everything in the calling thread.
    """
    global _pool
    workers = min(threads_for(size), len(tiles))
    if workers <= 1:
        return [work(tiles)]
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_threads, thread_name_prefix="tinymobilenet")
    bounds = [len(tiles) * k // workers for k in range(workers + 1)]
    chunks = [tiles[bounds[k]:bounds[k + 1]] for k in range(workers)]
    futures = [_pool.submit(work, chunk) for chunk in chunks[1:]]
    first = work(chunks[0])                      # the calling thread takes a share too
    return [first] + [f.result() for f in futures]


# Values per chunk of a multi-pass element-wise chain (see elementwise): 64k float32 values
# are 256 KB, inside L2, so the chain's passes after the first read from cache; a NumPy
# call costs ~1-2 us, small next to the ~20 us each pass over a chunk takes.
CHUNK = 1 << 16


def elementwise(fn, out, *arrays, chunk=None):
    """Compute an element-wise ``fn(out, *arrays)`` chunk by chunk, on the threads for
    large arrays.

    ``fn(out_chunk, *chunks)`` must write its result into ``out_chunk``; the arrays are
    seen flat (C-contiguous ``out`` required; inputs of another layout are copied).
    ``chunk``: values per call of ``fn``, e.g. :data:`CHUNK` for a chain of several
    passes (each pass after the first then reads from cache); None: one call per thread.
    Arrays of at least ``_MIN_PARALLEL`` (8M) values are split over the threads; smaller
    ones run in the calling thread. Returns ``out``.
    """
    if not out.flags.c_contiguous:
        raise ValueError("elementwise: out must be C-contiguous")
    flat = [out.reshape(-1)] + [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    n = out.size
    if n < _MIN_PARALLEL and (chunk is None or n <= chunk):
        fn(*flat)       # one call, no tiles to hand out: a sigmoid of 1152 values 4.5, not 6.6 us
        return out
    step = max(_MIN_PARALLEL, -(-n // _threads))
    sub = step if chunk is None else chunk

    def work(ranges):
        for a, b in ranges:
            for c in range(a, b, sub):
                fn(*(f[c:min(b, c + sub)] for f in flat))

    run_tiles(work, [(a, min(n, a + step)) for a in range(0, n, step)], size=n)
    return out


def scratch(name, shape, dtype, zero=False):
    """A tile buffer of ``shape`` owned by the calling thread and reused by its next
    calls under the same ``name`` (zero-filled with ``zero``).

    Tile buffers are a few MB; allocating them afresh for every layer costs page faults
    (the allocator hands large blocks back to the OS on free) that add up to ~10 % of a
    training step. Each thread keeps its largest buffer per name: a few MB per thread.
    The buffer must not outlive the call that asked for it.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize       # (np.prod: ~6 us a call, 50x slower)
    buffers = _local.__dict__.get("buffers")
    if buffers is None:
        buffers = _local.buffers = {}
        _all_buffers.append(buffers)
    buf = buffers.get(name)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[name] = np.empty(max(nbytes, 1), dtype=np.uint8)
    out = buf[:nbytes].view(dtype).reshape(shape)
    if zero:
        out.fill(0)
    return out


def free_scratch() -> None:
    """Release every thread's scratch buffers (they are re-allocated on demand)."""
    for buffers in _all_buffers:
        buffers.clear()
