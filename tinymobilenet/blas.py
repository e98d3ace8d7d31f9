"""The BLAS library's own thread count: set, read back and described.

NumPy's matrix products run in the BLAS library it was built with (OpenBLAS in the PyPI
wheels), which keeps its own thread pool: ``tiling.set_num_threads`` does not reach it.
Two users of :func:`limit`:

- the benchmark's ``--threads``: a one-thread benchmark that left BLAS on two threads
  would time our pointwise layers on two cores and PyTorch's on one, so it sets the
  count and :func:`info` reports the count actually in effect;
- a batch split over threads (:func:`tinymobilenet.nn.grad_mode.split_forward`): each
  thread calls BLAS, which must then run on one thread, or the cores are oversubscribed.

The OpenBLAS shared libraries already loaded into this process (NumPy's, SciPy's) are
found in ``/proc/self/maps`` and their ``openblas_set_num_threads`` is called through
ctypes (the symbol carries a prefix and suffix in the wheels' build:
``scipy_openblas_set_num_threads64_``): ~1 us a call. Where there is none (another BLAS,
another OS), threadpoolctl is used if installed (~1 ms a call); otherwise the limit is not
applied, :func:`controllable` says so and :func:`info` says why.
"""

from __future__ import annotations

import ctypes
from contextlib import contextmanager

__all__ = ["limit", "info", "threads", "controllable"]

_SYMBOL_FORMS = ("scipy_{}64_", "{}64_", "scipy_{}", "{}")


def _openblas_libraries():
    """ctypes handles of the OpenBLAS libraries loaded in this process (Linux only)."""
    import numpy  # noqa: F401  (loads NumPy's BLAS)
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return []
    libs = []
    for path in sorted(p for p in paths if p.startswith("/") and ".so" in p):
        try:
            libs.append(ctypes.CDLL(path))
        except OSError:
            continue
    return libs


def _function(lib, name, restype=ctypes.c_int):
    for form in _SYMBOL_FORMS:
        fn = getattr(lib, form.format(name), None)
        if fn is not None:
            fn.restype = restype
            return fn
    return None


def _ctypes_get():
    return [(lib, _function(lib, "openblas_get_num_threads")) for lib in _openblas_libraries()]


_setters = None        # [(set, get)] of the loaded OpenBLAS libraries, found once


def _ctypes_setters():
    """(openblas_set_num_threads, openblas_get_num_threads) of each loaded OpenBLAS that
    has both, looked up once per process (NumPy's BLAS is loaded with NumPy)."""
    global _setters
    if _setters is None:
        found = []
        for lib, get in _ctypes_get():
            set_ = _function(lib, "openblas_set_num_threads", restype=None)
            if get is not None and set_ is not None:
                found.append((set_, get))
        _setters = found
    return _setters


def _threadpoolctl():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits


def controllable() -> bool:
    """Can :func:`limit` set this process's BLAS thread count?"""
    return bool(_ctypes_setters()) or _threadpoolctl() is not None


@contextmanager
def limit(threads: int):
    """Inside the block, BLAS runs on ``threads`` threads (restored after)."""
    setters = _ctypes_setters()
    threadpool_limits = None if setters else _threadpoolctl()
    if threadpool_limits is not None:
        with threadpool_limits(limits=threads, user_api="blas"):
            yield
        return
    restore = []
    for set_, get in setters:
        restore.append((set_, get()))
        set_(ctypes.c_int(threads))
    try:
        yield
    finally:
        for set_, old in restore:
            set_(ctypes.c_int(old))


def info() -> str:
    """The BLAS libraries, their versions and kernels, and their thread counts now."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return "; ".join(f"{i.get('internal_api')} {i.get('version')} "
                         f"{i.get('architecture', '')} ({i.get('num_threads')} threads)"
                         for i in infos) or "unknown"
    parts = []
    for lib, get in _ctypes_get():
        config = _function(lib, "openblas_get_config", restype=ctypes.c_char_p)
        core = _function(lib, "openblas_get_corename", restype=ctypes.c_char_p)
        words = (config().decode().split() if config else ["OpenBLAS"])[:2]
        if core:
            words.append(core().decode())
        if get:
            words.append(f"({get()} threads)")
        parts.append(" ".join(words))
    return "; ".join(parts) or "unknown (not OpenBLAS, or not Linux: threads not limited)"


@contextmanager
def threads(n: int):
    """Inside the block, ours (``tiling``) and BLAS both run on ``n`` threads."""
    from .functional import tiling
    global _setters
    _setters = None                      # look again: SciPy's BLAS may be loaded by now
    old = tiling.num_threads()
    tiling.set_num_threads(n)
    try:
        with limit(n):
            yield
    finally:
        tiling.set_num_threads(old)
