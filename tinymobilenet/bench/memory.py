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


def memory_report(quick=False, compare_torch=False) -> dict:
    """Peak memory of a MobileNetV2 training step (96 px, batch 8; tracemalloc above the
    model and its input, and the growth of the peak resident set in a fresh process, for
    PyTorch too with ``compare_torch``) and, for each depthwise case, the peak allocation
    of its forward and backward in units of its input's size."""
    from .networks import training_case
    rng = np.random.default_rng(0)
    N, size = (2, 32) if quick else (8, 96)
    case = training_case("mobilenet_v2", N, size)
    fwd, bwd = case.make(rng)
    fwd(), bwd()                                   # steady state: grads exist
    out = {"model": case.name, "model_step_peak_mb": peak_memory(fwd, bwd) / 2 ** 20,
           "rss_growth_mb": rss_growth("tinymobilenet", "mobilenet_v2", N, size)}
    if compare_torch:
        out["torch_rss_growth_mb"] = rss_growth("torch", "mobilenet_v2", N, size)
    dw = {}
    for case in cases(quick, "kernels"):
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


# A fresh process builds the model and its batch, notes its resident set, runs three
# training steps and reports how far the peak resident set (VmHWM) rose above that: the
# memory a training step needs beyond the model, measured the same way for both libraries.
_RSS_SCRIPT = r"""
import json, sys
import numpy as np
lib, name, N, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
rng = np.random.default_rng(0)
x = rng.standard_normal((N, 3, size, size), dtype=np.float32)
y = rng.integers(0, 1000, N)
if lib == "torch":
    import torch, torchvision
    model = getattr(torchvision.models, name)(num_classes=1000)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
else:
    from tinymobilenet import models, nn
    model = models.get_model(name, num_classes=1000)
    loss = nn.CrossEntropyLoss()
    params = model.parameters()
    def step():
        loss(model(x), y)
        model.backward(loss.backward())
        for p in params:
            p.data -= 1e-4 * p.grad
base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:      # reset VmHWM to the current RSS
    f.write("5")
for _ in range(3):
    step()
print(json.dumps({"growth": status("VmHWM") - base}))
"""


def rss_growth(library: str, name: str, N: int, size: int):
    """MB by which a training step of ``name`` raises the peak resident set of a fresh
    process over the resident set with the model and batch built (None where the kernel
    does not report it: /proc/self/status and clear_refs are Linux's). A measuring
    process that fails raises RuntimeError with the end of its error output: a failure
    is not reported as "not available"."""
    import json
    import os
    import subprocess
    import sys
    if not (os.path.exists("/proc/self/status") and os.path.exists("/proc/self/clear_refs")):
        return None
    try:
        done = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, library, name, str(N),
                               str(size)], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"rss_growth: measuring {library}'s {name} took over 600 s") from None
    try:
        return json.loads(done.stdout)["growth"] / 2 ** 20
    except (ValueError, KeyError, TypeError):
        tail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise RuntimeError(f"rss_growth: the process measuring {library}'s {name} failed "
                           f"(exit status {done.returncode}): {tail}") from None
