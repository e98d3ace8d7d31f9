"""Regenerate the figures in ``figures/``: ``python -m tinymobilenet.figures [--out DIR]``.

Each ``plot_*`` function returns a matplotlib Figure built only from the library (the counter,
the functional activations, the models, a training history), so the notebooks draw the same
pictures by calling it; the last figure is drawn by the benchmark's own plotting function.
``main`` saves every figure as ``<name>.png`` with the Agg backend:

    cost_ratio         depthwise separable / full convolution Mult-Adds over C_out and K
    alpha_rho          MobileNetV1 width and resolution multipliers: the counter's Mult-Adds
                       beside the paper's ImageNet accuracies (Tables 6 and 7)
    v1_layer_costs     MobileNetV1 Mult-Adds and weights per layer type (the paper's Table 2)
    relu_manifold      MobileNetV2's ReLU information-loss experiment (a spiral through
                       n-dimensional ReLU and back)
    activations        h-swish vs swish, h-sigmoid vs sigmoid
    training_curves    loss and accuracy of the default training run on the digits, drawn by
                       plot_history (--train-metrics: from a saved run)
    bench_ratios       kernel time against PyTorch CPU, drawn by tinymobilenet.bench.plot_ratios
                       (--bench-report: from a saved report; else a quick run, needs torch)
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict

import numpy as np

from . import cli
from . import functional as F
from .files import FileError, output_problem, save_figure

__all__ = ["V1_WIDTH_ACCURACY", "V1_RESOLUTION_ACCURACY", "V1_TABLE2", "spiral",
           "relu_roundtrip", "relu_collapsed_fraction", "v1_costs_by_type", "plot_cost_ratio",
           "plot_alpha_rho", "plot_v1_layer_costs", "plot_relu_manifold", "plot_activations",
           "plot_history", "read_history", "save_training_curves", "read_bench_report",
           "save_bench_ratios", "FIGURES", "main"]

# MobileNetV1 paper (Howard et al., 2017), ImageNet top-1 accuracy in %.
V1_WIDTH_ACCURACY = {1.0: 70.6, 0.75: 68.4, 0.5: 63.7, 0.25: 50.6}        # Table 6, 224 px
V1_RESOLUTION_ACCURACY = {224: 70.6, 192: 69.1, 160: 67.2, 128: 64.4}     # Table 7, alpha 1
# Table 2: share of Mult-Adds and of parameters per layer type, in %.
V1_TABLE2 = {"Conv 1x1": (94.86, 74.59), "Conv DW 3x3": (3.06, 1.06),
             "Conv 3x3": (1.19, 0.02), "Fully connected": (0.18, 24.33)}

_DPI = 120


def _plt():
    import matplotlib.pyplot as plt
    return plt


# ---- cost ratio -----------------------------------------------------------------------------

def plot_cost_ratio(kernel_sizes=(3, 5, 7), channels=(8, 16, 32, 64, 128, 256, 512, 1024)):
    """Mult-Adds of a depthwise separable convolution divided by those of a full K x K
    convolution, 1/C_out + 1/K^2, with the counter's measured ratio as markers."""
    from . import count, nn
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=_DPI)
    c_out = np.logspace(np.log2(channels[0]), np.log2(channels[-1]), 100, base=2)
    for K, color in zip(kernel_sizes, ("C0", "C1", "C2")):
        ax.plot(c_out, 1 / c_out + 1 / K ** 2, color=color, label=f"1/C_out + 1/K², K={K}")
        ax.axhline(1 / K ** 2, color=color, lw=0.8, ls=":")
        measured = []
        for Co in channels:
            sep = nn.Sequential(nn.DepthwiseConv2d(8, K, padding=K // 2), nn.PointwiseConv2d(8, Co))
            full = nn.Conv2d(8, Co, K, padding=K // 2, bias=False)
            shape = (1, 8, 8, 8)
            measured.append(count.summary(sep, shape).total_macs / count.summary(full, shape).total_macs)
        ax.plot(channels, measured, "o", color=color, ms=5, mfc="none")
    ax.plot([], [], "ko", mfc="none", label="counter (measured)")
    ax.plot([], [], "k:", lw=0.8, label="limit 1/K² (C_out → ∞)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(channels, [str(c) for c in channels])
    ax.set_yscale("log")
    ax.set_xlabel("output channels C_out")
    ax.set_ylabel("Mult-Adds, separable / full conv")
    ax.set_yticks([0.02, 0.05, 0.1, 0.2], ["0.02", "0.05", "0.1", "0.2"])
    ax.yaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_title("Depthwise separable vs full K×K convolution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- MobileNetV1 multipliers and per-layer-type cost ----------------------------------------

def _v1_summary(alpha=1.0, resolution=224):
    from . import count, models
    return count.summary(models.mobilenet_v1(alpha=alpha), (1, 3, resolution, resolution))


def plot_alpha_rho():
    """ImageNet accuracy (the paper's Tables 6 and 7) against the counter's Mult-Adds for the
    width multiplier alpha and the resolution multiplier rho."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=_DPI)
    series = (("width multiplier α (224 px)", [(a, 224) for a in V1_WIDTH_ACCURACY], "o-",
               (-8, 8), "right"),
              ("resolution (α = 1)", [(1.0, r) for r in V1_RESOLUTION_ACCURACY], "s-",
               (8, -12), "left"))
    for label, points, marker, offset, align in series:
        macs = [_v1_summary(a, r).total_macs / 1e6 for a, r in points]
        accs = [V1_WIDTH_ACCURACY[a] if r == 224 else V1_RESOLUTION_ACCURACY[r] for a, r in points]
        ax.plot(macs, accs, marker, label=label)
        for (a, r), m, acc in zip(points, macs, accs):
            if a == 1.0 and r == 224 and align == "left":
                continue                            # the shared point is labelled once
            name = f"α={a:g}, 224 px" if a == 1.0 and r == 224 else (
                f"α={a:g}" if align == "right" else f"{r} px")
            ax.annotate(f"{name}: {m:.0f}M", (m, acc), textcoords="offset points",
                        xytext=offset, ha=align, fontsize=8)
    ax.set_xscale("log")
    ticks = [25, 50, 100, 200, 400, 800]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_xlim(25, 900)
    ax.set_ylim(49, 72.5)
    ax.set_xlabel("Mult-Adds (millions, counted by tinymobilenet.count; log scale)")
    ax.set_ylabel("ImageNet top-1 accuracy (%, paper)")
    ax.set_title("MobileNetV1: accuracy vs Mult-Adds (Tables 6 and 7)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def v1_costs_by_type(alpha=1.0, resolution=224):
    """MobileNetV1's Mult-Adds and *weights* (no biases or BN, as in the paper's Table 2)
    per layer type, from the counter: ``{Table 2 type: (macs, weights)}``."""
    names = {"pointwise 1x1": "Conv 1x1", "depthwise 3x3": "Conv DW 3x3",
             "conv 3x3": "Conv 3x3", "fully connected": "Fully connected"}
    kinds = {kind: (macs, weights) for kind, _, macs, weights in _v1_summary(alpha, resolution).by_kind()}
    return OrderedDict((name, kinds[kind]) for kind, name in names.items())


def plot_v1_layer_costs():
    """Share of Mult-Adds and of weights per layer type in MobileNetV1 (Table 2), counted,
    with the paper's printed shares beside them."""
    plt = _plt()
    costs = v1_costs_by_type()
    total_macs = sum(m for m, _ in costs.values())
    total_w = sum(w for _, w in costs.values())
    types = list(costs)
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.6), dpi=_DPI, sharey=True)
    y = np.arange(len(types))
    for ax, col, total, title in ((axes[0], 0, total_macs, "Mult-Adds"),
                                  (axes[1], 1, total_w, "weights (parameters)")):
        counted = [100 * costs[t][col] / total for t in types]
        paper = [V1_TABLE2[t][col] for t in types]
        ax.barh(y + 0.2, counted, 0.4, label="counted", color="C0")
        ax.barh(y - 0.2, paper, 0.4, label="paper, Table 2", color="C7")
        for yi, c in zip(y, counted):
            ax.text(c + 1, yi + 0.2, f"{c:.2f} %", va="center", fontsize=7)
        for yi, p in zip(y, paper):
            ax.text(p + 1, yi - 0.2, f"{p:.2f} %", va="center", fontsize=7, color="0.35")
        ax.set_xlim(0, 125)
        ax.set_xlabel(f"share of {title} (%)")
        ax.set_title(f"{title}: total {total / 1e6:.1f} M", fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y, types)
    axes[0].invert_yaxis()
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("MobileNetV1 (α=1, 224 px): where the cost goes", fontsize=11)
    fig.tight_layout()
    return fig


# ---- the ReLU information-loss experiment (MobileNetV2, Figure 1) ---------------------------

def spiral(num=600, turns=2.0):
    """A 2-D spiral, the low-dimensional "manifold of interest": points (num, 2) and their
    position along the curve t in [0, 1] (num,) for colouring."""
    t = np.linspace(0.0, 1.0, num)
    angle = 2 * np.pi * turns * t
    radius = 0.2 + 2.8 * t
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1), t


def _embedding(n, seed):
    """The random n x 2 matrix T of the experiment (one per n and seed)."""
    return np.random.default_rng((seed, n)).standard_normal((n, 2))


def relu_roundtrip(points, n, seed=0):
    """Embed 2-D ``points`` (M, 2) into n dimensions with a random matrix T (n, 2), apply
    ReLU, and map back with the pseudo-inverse of T: ``pinv(T) @ relu(T @ p)``, shape (M, 2).

    With n small, ReLU clips most coordinates of most points and the spiral collapses onto
    lines and corners; with n large enough the surviving coordinates still span the plane
    and the spiral comes back (bent and shrunk, but every point distinguishable).
    """
    T = _embedding(n, seed)
    hidden, _ = F.relu_forward(points @ T.T)       # (M, 2) @ (2, n) -> (M, n)
    return hidden @ np.linalg.pinv(T).T            # (M, n) @ (n, 2) -> (M, 2)


def relu_collapsed_fraction(points, n, seed=0):
    """Fraction of ``points`` where ReLU(T x) keeps fewer than 2 independent directions of T
    (the rows of T with T x > 0 have rank < 2): there the map squashes a neighbourhood of the
    spiral onto a line or a point, and no inverse can bring it back."""
    T = _embedding(n, seed)
    active = (points @ T.T) > 0                     # (M, n): which ReLUs pass
    return float(np.mean([np.linalg.matrix_rank(T[a]) < 2 for a in active]))


def plot_relu_manifold(dims=(2, 3, 5, 15, 30), seed=0):
    """The spiral, then pinv(T) relu(T x) for each n in ``dims`` (each panel scaled to fit),
    titled with the fraction of the spiral that ReLU collapsed."""
    plt = _plt()
    pts, t = spiral()
    fig, axes = plt.subplots(1, len(dims) + 1, figsize=(2.0 * (len(dims) + 1), 2.45), dpi=_DPI)
    axes[0].scatter(pts[:, 0], pts[:, 1], c=t, cmap="viridis", s=2)
    axes[0].set_title("input: 2-D spiral", fontsize=9)
    for ax, n in zip(axes[1:], dims):
        p = relu_roundtrip(pts, n, seed)
        ax.scatter(p[:, 0], p[:, 1], c=t, cmap="viridis", s=2)
        lost = relu_collapsed_fraction(pts, n, seed)
        ax.set_title(f"n = {n}\ncollapsed: {100 * lost:.0f} %", fontsize=9)
    for ax in axes:
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("2-D spiral → random n-D embedding T → ReLU → back with pinv(T)  "
                 "(MobileNetV2, Fig. 1)", fontsize=10, y=0.98)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.76, wspace=0.08)
    return fig


# ---- activations ----------------------------------------------------------------------------

def plot_activations():
    """h-swish vs swish (SiLU) and h-sigmoid vs sigmoid, and their differences."""
    plt = _plt()
    x = np.linspace(-6, 6, 601)
    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.4), dpi=_DPI)
    pairs = ((axes[0], "swish  x·σ(x)", F.silu_forward(x)[0], "h-swish  x·ReLU6(x+3)/6",
              F.hardswish_forward(x)[0]),
             (axes[1], "sigmoid  σ(x)", F.sigmoid_forward(x)[0], "h-sigmoid  ReLU6(x+3)/6",
              F.hardsigmoid_forward(x)[0]))
    for ax, name_s, smooth, name_h, hard in pairs:
        ax.plot(x, smooth, color="C0", label=name_s)
        ax.plot(x, hard, color="C3", ls="--", label=name_h)
        ax.plot(x, hard - smooth, color="0.5", lw=0.8, label="difference (hard − smooth)")
        for k in (-3, 3):
            ax.axvline(k, color="0.8", lw=0.6)
        ax.set_xlabel("x")
        ax.set_ylabel("f(x)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_title("h-swish vs swish", fontsize=10)
    axes[1].set_title("h-sigmoid vs sigmoid", fontsize=10)
    fig.tight_layout()
    return fig


# ---- figures whose plotting lives with the code they show -----------------------------------

def plot_history(history, path=None, title="MobileNetV1 on the 8x8 digits"):
    """Loss and accuracy per epoch of a training history (``train.fit``'s rows), train and
    test, side by side ("train (running)": the mean over the epoch's batches while the weights
    changed, on augmented images if the run augments); saved to ``path`` if given (atomically, and then closed outside
    Jupyter, so scripts do not pile up open figures). Returns the matplotlib Figure.
    Also ``tinymobilenet.train.plot_history``."""
    plt = _plt()
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3,
                 label="train (running)")
    ax_acc.plot(epochs, [100 * r["train_accuracy"] for r in history], "o-", ms=3,
                label="train (running)")
    if history and "test_loss" in history[0]:
        ax_loss.plot(epochs, [r["test_loss"] for r in history], "s-", ms=3, label="test")
        ax_acc.plot(epochs, [100 * r["test_accuracy"] for r in history], "s-", ms=3,
                    label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss (nats, log scale)", yscale="log",
                title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path, dpi=_DPI)
        # Jupyter's inline backends show the returned figure; elsewhere it is done with
        import matplotlib
        if not any(b in matplotlib.get_backend().lower() for b in ("inline", "ipympl", "widget")):
            plt.close(fig)
    return fig


def read_history(metrics) -> list:
    """The ``history`` of a ``metrics.json`` written by ``python -m tinymobilenet.train``;
    :class:`~tinymobilenet.files.FileError` naming the file for one that is missing, not
    JSON, or has no history of epochs (rows with a number for ``epoch``, ``train_loss``
    and ``train_accuracy``, and for ``test_loss`` and ``test_accuracy`` when the first
    row has them)."""
    from .files import FileError, read_json
    data = read_json(metrics, "metrics.json")
    history = data.get("history") if isinstance(data, dict) else None
    keys = ["epoch", "train_loss", "train_accuracy"]
    if isinstance(history, list) and history and isinstance(history[0], dict) \
            and "test_loss" in history[0]:
        keys += ["test_loss", "test_accuracy"]
    ok = isinstance(history, list) and history and all(
        isinstance(r, dict) and all(isinstance(r.get(k), (int, float))
                                    and not isinstance(r.get(k), bool) for k in keys)
        for r in history)
    if not ok:
        raise FileError(f"{metrics}: not a metrics.json of python -m tinymobilenet.train "
                        f"(no \"history\" list of epochs with {', '.join(keys)})")
    return history


def save_training_curves(path, metrics=None):
    """:func:`plot_history` of the default training run: read from a ``metrics.json``
    written by ``python -m tinymobilenet.train`` if given (:func:`read_history`), else
    trained now (the default run, under a minute on two cores)."""
    import tempfile
    if metrics is not None:
        history = read_history(metrics)
    else:
        from .train import run      # the only reason to import the trainer: to train
        with tempfile.TemporaryDirectory() as out:
            history = run({"out": out}, progress=None)["history"]
    return plot_history(
        history, path,
        title="MobileNetV1 (alpha 0.25, 32x32) on the 8x8 digits: python -m tinymobilenet.train")


def read_bench_report(report):
    """A report saved by ``python -m tinymobilenet.bench --compare torch --format json``
    (one, or a list of them), checked for what :func:`tinymobilenet.bench.plot_ratios`
    reads; :class:`~tinymobilenet.files.FileError` naming the file otherwise."""
    from .files import FileError, read_json
    data = read_json(report, "benchmark report")
    number = lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    def ok(r):
        return (isinstance(r, dict) and isinstance(r.get("machine"), dict)
                and isinstance(r["machine"].get("threads"), int)
                and isinstance(r.get("results"), list) and r["results"]
                and all(isinstance(x, dict) and isinstance(x.get("name"), str)
                        and "target" in x and all(number(x.get(k)) for k in ("target", "ratio", "ratio_q1",
                                                           "ratio_q3"))
                        for x in r["results"]))
    reports = data if isinstance(data, list) else [data]
    if not reports or not all(map(ok, reports)):
        raise FileError(f"{report}: not a report of python -m tinymobilenet.bench --compare "
                        f"torch --format json (no \"results\" with names and ratios, or no "
                        f"\"machine\" with threads)")
    if not any(x.get("ratio") is not None for x in reports[0]["results"]):
        raise FileError(f"{report}: the report has no ratios (run the benchmark with "
                        f"--compare torch)")
    return data


def save_bench_ratios(path, report=None):
    """``tinymobilenet.bench.plot_ratios``: from a report saved by ``python -m
    tinymobilenet.bench --compare torch --format json`` if given (:func:`read_bench_report`),
    else a ``--quick`` comparison run now (needs PyTorch)."""
    from . import bench
    if report is not None:
        data = read_bench_report(report)
    else:
        data = bench.run(quick=True, compare_torch=True)
    bench.plot_ratios(data, path)


FIGURES = OrderedDict([
    ("cost_ratio", plot_cost_ratio),
    ("alpha_rho", plot_alpha_rho),
    ("v1_layer_costs", plot_v1_layer_costs),
    ("relu_manifold", plot_relu_manifold),
    ("activations", plot_activations),
    ("training_curves", save_training_curves),
    ("bench_ratios", save_bench_ratios),
])


def main(argv=None):
    p = cli.Parser(
        prog="python -m tinymobilenet.figures",
        description="Regenerate the PNG figures of figures/ (each NAME.png):",
        epilog=__doc__.split("Agg backend:\n", 1)[1])
    p.add_argument("--out", default="figures", help="output directory")
    p.add_argument("--only", nargs="+", choices=list(FIGURES), metavar="NAME",
                   help=f"only these figures: {', '.join(FIGURES)}")
    p.add_argument("--train-metrics", metavar="JSON", help="metrics.json of a training run "
                   "for training_curves (default: run the default training now)")
    p.add_argument("--bench-report", metavar="JSON", help="output of `python -m "
                   "tinymobilenet.bench --compare torch --format json` for bench_ratios "
                   "(default: a quick comparison run now)")
    a = p.parse_args(argv)
    names = a.only or list(FIGURES)
    problem = output_problem(a.out, folder=True)
    if problem:
        p.error(f"--out: {problem}")
    for option, file, read, figure in (
            ("--train-metrics", a.train_metrics, read_history, "training_curves"),
            ("--bench-report", a.bench_report, read_bench_report, "bench_ratios")):
        if file is not None and figure in names:     # checked before any work
            try:
                read(file)
            except FileError as e:
                p.error(f"{option}: {e}")
    import matplotlib
    matplotlib.use("Agg")
    plt = _plt()
    os.makedirs(a.out, exist_ok=True)
    written = []
    for name in names:
        path = os.path.join(a.out, f"{name}.png")
        if name == "training_curves":
            save_training_curves(path, a.train_metrics)
        elif name == "bench_ratios":
            try:
                save_bench_ratios(path, a.bench_report)
            except ImportError as e:
                print(f"{name}: skipped ({e})")
                continue
        else:
            fig = FIGURES[name]()
            save_figure(fig, path, dpi=_DPI)
            plt.close(fig)
        plt.close("all")
        written.append(path)
        print(path)
    return written


if __name__ == "__main__":
    sys.exit(cli.run(lambda argv: main(argv) and 0))
