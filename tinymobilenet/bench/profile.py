"""Where does the *time* go? ``python -m tinymobilenet.bench --profile MODEL``.

The MobileNetV1 paper's Table 2 says where the Mult-Adds go: 95 % into the 1x1
convolutions. This measures where the time goes, per layer type, beside each type's share
of the MACs (from :mod:`tinymobilenet.count`).

How it is measured: for the duration of the profile, the forward and backward of every
module of the model are wrapped by timers (and restored afterwards). A module's
*exclusive* time is its own time minus its children's: for a convolution or an
activation all of it, for a squeeze-excitation block its pooling and gating, for an
inverted residual its residual add, for a Sequential the Python that routes arrays
between its children. Each exclusive time goes to one category:

    standard conv, depthwise conv, pointwise conv   by the convolution's shape
    batch norm                                      (with a fused ReLU/ReLU6, that too)
    activation                                      outside squeeze-excitation
    squeeze-excitation                              the whole SE block, its 1x1s included
    pooling and linear                              the head
    residual add                                    an inverted residual's own work,
                                                    with its stochastic depth
    loss and update                                 cross-entropy and the SGD step
    other                                           containers' Python, dropout, flatten

The parts are those of the timed step of median length, so they add up to that step;
their sum is compared with the median time of the same step without timers, and the
difference (the timers' own cost, and on a busy machine its noise) is reported as not
attributed. A training step runs as
the trainer runs it, each BatchNorm fused with the activation after it (its time is then
"batch norm"); inference runs as the benchmark's inference cases do, the model as built
inside ``nn.no_grad()``, where each BatchNorm's scale is folded into the convolution
before it (that multiplication counts as "other") and what is left of it runs fused with
the activation after it (its time is "batch norm"; the activations left are those
without a BatchNorm before them, e.g. in squeeze-and-excitation).
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np

from .. import nn

__all__ = ["CATEGORIES", "profile", "format_profile", "plot_profile"]

CATEGORIES = ("standard conv", "depthwise conv", "pointwise conv", "batch norm",
              "activation", "squeeze-excitation", "pooling and linear", "residual add",
              "loss and update", "other")

# count's kinds (LayerCount.kind) of the layers that have MACs -> profile category
_MAC_KIND = (("depthwise", "depthwise conv"), ("grouped", "standard conv"),
             ("pointwise", "pointwise conv"), ("conv", "standard conv"),
             ("SE", "squeeze-excitation"), ("fully connected", "pooling and linear"),
             ("grouped dense", "pointwise conv"))

_ACTIVATIONS = tuple(set(nn.ACTIVATIONS.values()))


def _category(m, inside_se):
    """The category of module ``m``'s exclusive time."""
    if inside_se or isinstance(m, (nn.SqueezeExcitation, nn.DenseSqueezeExcitation)):
        return "squeeze-excitation"
    if isinstance(m, nn.Conv2d):
        if m.groups > 1 and m.groups == m.in_channels == m.out_channels:
            return "depthwise conv"
        return "pointwise conv" if m.kernel_size == 1 and m.groups == 1 else "standard conv"
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return "batch norm"
    if isinstance(m, _ACTIVATIONS):
        return "activation"
    if isinstance(m, (nn.GlobalAvgPool2d, nn.Linear)):
        return "pooling and linear"
    if isinstance(m, (nn.InvertedResidual, nn.StochasticDepth)):
        return "residual add"
    return "other"


def _timed_methods(m):
    """The methods that do a module's work. Inside no_grad() a Sequential calls a
    convolution's kernel (``_run``) and a BatchNorm's passes (``_normalize``,
    ``_apply_affine``) directly, with a folded batch norm and fused activations, and a
    squeeze-and-excitation's gate (``_gate_no_grad``); their forward calls the same
    methods."""
    if isinstance(m, nn.Conv2d):
        return ("_run", "backward")
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        return ("_normalize", "_apply_affine", "backward")
    if isinstance(m, nn.SqueezeExcitation):             # the gate alone: folded into the
        return ("forward", "_gate_no_grad", "backward")  # next conv's weights at batch 1
    return ("forward", "backward")


class _Timers:
    """Wraps every module's forward and backward with a timer; restores them on exit."""

    def __init__(self, model):
        self.inclusive = defaultdict(float)            # module id -> seconds
        self.modules = list(model.named_modules())
        self.wrapped = []

    def _wrap(self, m, method):
        inner = getattr(m, method)
        key = id(m)
        acc = self.inclusive

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                acc[key] += time.perf_counter() - t0

        object.__setattr__(m, method, timed)            # an instance attribute, removed below
        self.wrapped.append((m, method))

    def __enter__(self):
        for _, m in self.modules:
            for method in _timed_methods(m):
                self._wrap(m, method)
        return self

    def __exit__(self, *exc):
        for m, method in self.wrapped:
            m.__dict__.pop(method, None)

    def reset(self):
        self.inclusive.clear()


def _step(model, x, y, train, lr=1e-4):
    """One training step (forward, loss, backward, SGD) or one eval forward; returns a
    function that runs it and the time spent in loss and update, per call."""
    loss = nn.CrossEntropyLoss()
    params = model.parameters()
    extra = [0.0]

    def run():
        if not train:
            with nn.no_grad():                 # as the benchmark's inference cases run
                model(x)
            return
        out = model(x)
        t0 = time.perf_counter()
        loss(out, y)
        dlogits = loss.backward()
        extra[0] += time.perf_counter() - t0
        model.backward(dlogits)
        t0 = time.perf_counter()
        for p in params:
            p.data -= lr * p.grad
        extra[0] += time.perf_counter() - t0

    return run, extra


def profile(name, resolution=None, batch=8, train=False, repeats=5, seed=0) -> dict:
    """Profile ``models.get_model(name)`` (1000 classes) on random images (batch, 3, R, R):
    a training step with ``train``, else eval inference. Returns per category the exclusive
    milliseconds of the timed step of median length (of ``repeats``), the share of that
    step and the share of the MACs; the median time of the whole step without timers, and
    the part not attributed (the difference: the timers' cost, and the machine's noise)."""
    from .. import models
    from ..count import default_resolution, summary
    R = resolution or default_resolution(name)
    model = models.get_model(name, num_classes=1000, seed=seed).train(train)
    if train:              # as the trainer and the benchmark's training step run a model
        nn.fuse_batchnorm_activation(model)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 3, R, R), dtype=np.float32)
    y = rng.integers(0, 1000, batch)
    run, extra = _step(model, x, y, train)
    run()                                              # warm-up: buffers, caches
    whole = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        whole.append(time.perf_counter() - t0)
    parent_of = {}
    named = dict(model.named_modules())
    for n in named:
        if n:
            parent_of[n] = n.rsplit(".", 1)[0] if "." in n else ""
    children = defaultdict(list)
    for n, p in parent_of.items():
        children[p].append(n)
    in_se = {n for n, m in named.items()
             if any(isinstance(named[a], (nn.SqueezeExcitation, nn.DenseSqueezeExcitation))
                    for a in _ancestors(n, parent_of))}
    per_step = []
    with _Timers(model) as timers:
        run()
        for _ in range(repeats):
            timers.reset()
            extra[0] = 0.0
            t0 = time.perf_counter()
            run()
            total = time.perf_counter() - t0
            cat = defaultdict(float)
            for n, m in named.items():
                own = timers.inclusive[id(m)] - sum(timers.inclusive[id(named[c])]
                                                    for c in children[n])
                cat[_category(m, n in in_se)] += own
            cat["loss and update"] += extra[0]
            # the step's own Python outside the model (the loop above, the loss call)
            cat["other"] += total - timers.inclusive[id(model)] - extra[0]
            per_step.append((dict(cat), total))
    # The parts of one step add up to that step. Medians taken per category would not: on a
    # busy machine a stall lands in a different category each step, and their sum can
    # exceed every step. So the parts are those of the step of median length.
    cat, total = sorted(per_step, key=lambda s: s[1])[(len(per_step) - 1) // 2]
    ms = {c: 1e3 * cat.get(c, 0.0) for c in CATEGORIES}
    instrumented = 1e3 * total
    plain = 1e3 * float(np.median(whole))
    s = summary(model, (batch, 3, R, R))
    macs = defaultdict(int)
    for r in s.rows:
        if r.is_leaf and r.macs:
            macs[next((c for k, c in _MAC_KIND if r.kind.startswith(k)), "other")] += r.macs
    total_macs = sum(macs.values()) or 1
    parts = sum(ms.values())
    from ..functional.tiling import num_threads
    from ..blas import info
    return {"model": name, "resolution": R, "batch": batch, "train": train,
            "threads": num_threads(), "blas": info(), "fused": True,
            "repeats": repeats, "step_ms": plain, "instrumented_ms": instrumented,
            "attributed_ms": parts, "not_attributed_ms": plain - parts,
            "categories": [{"category": c, "ms": ms[c], "time_share": ms[c] / parts,
                            "mac_share": macs.get(c, 0) / total_macs} for c in CATEGORIES]}


def _ancestors(n, parent_of):
    while n in parent_of:
        n = parent_of[n]
        yield n


def format_profile(p: dict) -> str:
    """The profile as a table."""
    mode = ("training step (BN + activation fused)" if p["train"]
            else "inference (eval, as built, no_grad: BN folded, activation fused)")
    threads = p.get("threads")
    lines = [f"{p['model']} {mode}, {p['resolution']}px, batch {p['batch']}"
             + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")
             + f": {p['step_ms']:.1f} ms a step (median of {p['repeats']}, no timers)", "",
             f"{'layer type':22s} {'ms':>9s} {'time':>7s} {'MACs':>7s}",
             "-" * 48]
    for c in p["categories"]:
        lines.append(f"{c['category']:22s} {c['ms']:9.2f} {100 * c['time_share']:6.1f}% "
                     f"{100 * c['mac_share']:6.1f}%")
    lines += ["-" * 48,
              f"{'sum of the parts':22s} {p['attributed_ms']:9.2f}",
              f"{'not attributed':22s} {p['not_attributed_ms']:9.2f}   (step without timers "
              f"minus the sum: the timers' cost; the parts are those of the timed step of "
              f"median length)"]
    return "\n".join(lines)


def plot_profile(p: dict, path=None, ax=None):
    """Side-by-side bars per layer type: share of the time, share of the MACs. Draws on
    ``ax`` (a new figure if None), saves to ``path`` if given, and returns the figure."""
    import matplotlib.pyplot as plt

    cats = [c for c in p["categories"] if c["time_share"] > 0.001 or c["mac_share"] > 0]
    y = np.arange(len(cats))[::-1]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(cats) + 1.6))
    else:
        fig = ax.figure
    ax.barh(y + 0.2, [100 * c["time_share"] for c in cats], 0.4, color="#dd8452",
            label="share of the time")
    ax.barh(y - 0.2, [100 * c["mac_share"] for c in cats], 0.4, color="#4c72b0",
            label="share of the MACs")
    for yi, c in zip(y, cats):
        ax.text(100 * c["time_share"] + 0.5, yi + 0.2, f"{100 * c['time_share']:.0f}%",
                va="center", fontsize=7)
        ax.text(100 * c["mac_share"] + 0.5, yi - 0.2, f"{100 * c['mac_share']:.0f}%",
                va="center", fontsize=7)
    # fused (the trainer's and no_grad()'s way), batch norm's time includes its activation's
    fused = p.get("fused")
    ax.set_yticks(y, ["batch norm\n+ activation" if fused and c["category"] == "batch norm"
                      else c["category"] for c in cats], fontsize=8)
    ax.set_xlabel("percent of the timed step, percent of the MACs")
    mode = "training step" if p["train"] else "inference"
    threads = p.get("threads")
    ax.set_title(f"{p['model']} {mode}, {p['resolution']} px, batch {p['batch']}"
                 + (f", {threads} thread{'s' * (threads != 1)}" if threads else "")
                 + f": {p['step_ms']:.0f} ms", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, 100 * max(max(c["time_share"], c["mac_share"]) for c in cats) * 1.15)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig
