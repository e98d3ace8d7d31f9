"""Peak memory of a training step and of the depthwise kernels (``tracemalloc``)."""

from __future__ import annotations

import tracemalloc

import numpy as np

from ..functional import tiling
from .cases import cases

__all__ = ["peak_memory", "memory_report"]


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
