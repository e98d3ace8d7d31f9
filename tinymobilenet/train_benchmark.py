"""Measure the training targets: every family's recipe over seeds, the default run's
reproducibility, and a small accuracy-versus-Mult-Adds table.

    python -m tinymobilenet.train_benchmark --family all --seeds 3   # the README's table
    python -m tinymobilenet.train_benchmark --reproducibility        # bit-identical repeats, resume
    python -m tinymobilenet.train_benchmark --grid --seeds 3         # V1 alpha x resolution

``--family F`` (``all``, or a family or model name) trains each model of the family with its
recipe (``python -m tinymobilenet.train --model NAME``, nothing else) for seeds 0 .. N-1 and
records per model and seed the test accuracy and the wall time, and whether the recipe's
target holds (MobileNetV1 >= 97 % in <= 60 s; V2, V3-Small/Large, EfficientNet-B0 >= 96 % in
<= 180 s; the dense models are reported). EfficientNet-B1 .. B7 run their recipe's short run
(a few epochs): the check is that they train without diverging (finite losses, training
loss not growing, test accuracy above chance).

``--reproducibility``: the default run ``--repeats`` times (median wall time; are the weights
bit-identical?) and the same run interrupted after half its epochs and resumed (identical to
the uninterrupted one?). ``--grid``: MobileNetV1 at alpha 0.25 / 0.5 and resolution 24 / 32
(otherwise the default recipe), a small version of the MobileNet paper's accuracy versus
Mult-Adds trade-off (its Tables 6 and 7). One test image of 360 is 0.28 points, and a single
run moves by about a point with the seed, so compare means over seeds.

Wall times depend on the machine and on what else runs on it. Results go to
``OUT/benchmark.json`` (merged with what is already there) and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from . import cli
from .files import FileError, output_problem, read_json, write_json
from .train import DEFAULTS, FAMILIES, family_of, run

__all__ = ["TARGETS", "family_runs", "default_runs", "resume_check", "grid", "models_of", "main"]

#: (minimum test accuracy, maximum wall seconds) of issue 12, per model; None: reported only
TARGETS = {"mobilenet_v1": (0.97, 60), "mobilenet_v2": (0.96, 180),
           "mobilenet_v3_small": (0.96, 180), "mobilenet_v3_large": (0.96, 180),
           "efficientnet_b0": (0.96, 180)}


def _weights(out: Path):
    with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("model/")}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def models_of(family: str) -> tuple:
    """The model names ``--family`` stands for: all, a family, or one model; ValueError
    listing the three kinds of name for anything else."""
    if family == "all":
        return tuple(n for names in FAMILIES.values() for n in names)
    if family in FAMILIES:
        return FAMILIES[family]
    try:
        family_of(family)
    except ValueError:
        models = [n for names in FAMILIES.values() for n in names]
        raise ValueError(f"unknown family or model {family!r}; choose all, a family ("
                         f"{', '.join(FAMILIES)}) or a model ({', '.join(models)})") from None
    return (family,)


def _diverged(metrics) -> bool:
    """A run that did not learn: a loss that is not finite, a training loss that grew by
    half, or a test accuracy not above 1.5 x chance. (A short run's training loss can sit
    near chance for its first two epochs while the test accuracy climbs, so "the loss fell"
    alone would call those diverged.)"""
    h = metrics["history"]
    losses = [r["train_loss"] for r in h] + [r.get("test_loss", 0.0) for r in h]
    chance = 1 / len(metrics["config"].get("classes", range(10)))
    return (not all(np.isfinite(losses)) or h[-1]["train_loss"] > 1.5 * h[0]["train_loss"]
            or metrics["test_accuracy"] <= 1.5 * chance)


def family_runs(out: Path, names, seeds) -> list[dict]:
    """One row per model: its recipe run for every seed (accuracy, wall time, the check)."""
    rows = []
    for name in names:
        runs = []
        for seed in seeds:
            m = run({"model": name, "seed": seed, "out": str(out / f"{name}_seed{seed}")},
                    progress=None)
            runs.append(m)
            print(f"{name:<20} seed {seed}: test accuracy {100 * m['test_accuracy']:.2f} %, "
                  f"{m['wall_time_seconds']:.1f} s, {len(m['history'])} epochs", flush=True)
        accs = [r["test_accuracy"] for r in runs]
        walls = [r["wall_time_seconds"] for r in runs]
        row = {"model": name, "recipe": runs[0]["config"]["recipe"], "seeds": list(seeds),
               "test_accuracy": accs, "wall_time_seconds": walls,
               "epochs": runs[0]["config"]["epochs"], "params": runs[0]["params"],
               "macs": runs[0]["macs"], "config": runs[0]["config"],
               "train_loss_first_last": [[r["history"][0]["train_loss"],
                                          r["history"][-1]["train_loss"]] for r in runs],
               "diverged": any(_diverged(r) for r in runs)}
        if name in TARGETS:
            acc, seconds = TARGETS[name]
            row["target"] = {"min_accuracy": acc, "max_seconds": seconds,
                             "met": min(accs) >= acc and max(walls) <= seconds}
        rows.append(row)
    return rows


def default_runs(out: Path, repeats: int) -> dict:
    walls, accs, weights = [], [], []
    for i in range(repeats):
        m = run({"out": str(out / f"default_{i}")}, progress=None)
        walls.append(m["wall_time_seconds"])
        accs.append(m["test_accuracy"])
        weights.append(_weights(out / f"default_{i}"))
        print(f"default run {i + 1}/{repeats}: test accuracy {100 * accs[-1]:.2f} %, "
              f"{walls[-1]:.1f} s", flush=True)
    return {"test_accuracy": accs, "wall_time_seconds": walls,
            "median_wall_time_seconds": statistics.median(walls),
            "bit_identical_repeats": all(_same(weights[0], w) for w in weights[1:])}


def resume_check(out: Path, reference: Path) -> bool:
    """The default run stopped after half its epochs and resumed: the same weights as the
    uninterrupted run in ``reference`` (same machine and thread count)?"""
    half = DEFAULTS["epochs"] // 2
    part = out / "resumed"
    run({"out": str(part)}, progress=None, on_epoch_end=lambda row: row["epoch"] == half)
    run({**json.loads((part / "metrics.json").read_text())["config"]}, progress=None,
        resume=part / "checkpoint.npz")
    return _same(_weights(part), _weights(reference))


def grid(out: Path, alphas=(0.25, 0.5), resolutions=(24, 32), seeds=(0,)) -> list[dict]:
    rows = []
    for alpha in alphas:
        for res in resolutions:
            runs = [run({"alpha": alpha, "resolution": res, "seed": seed,
                         "out": str(out / f"v1_{alpha}_{res}_seed{seed}")}, progress=None)
                    for seed in seeds]
            m = runs[0]
            accs = [r["test_accuracy"] for r in runs]
            rows.append({"alpha": alpha, "resolution": res, "seeds": list(seeds),
                         "test_accuracy": accs, "mean_test_accuracy": statistics.mean(accs),
                         "macs": m["macs"], "params": m["params"],
                         "median_wall_time_seconds": statistics.median(
                             r["wall_time_seconds"] for r in runs)})
            print(f"alpha {alpha:<5} resolution {res:<3} accuracy "
                  f"{' '.join(f'{100 * a:.2f}' for a in accs)} % (mean "
                  f"{100 * rows[-1]['mean_test_accuracy']:.2f})  Mult-Adds {m['macs'] / 1e6:.2f} M  "
                  f"params {m['params']:,}  {rows[-1]['median_wall_time_seconds']:.1f} s", flush=True)
    return rows


def render(rows) -> str:
    """The family table: model, epochs, accuracy per seed, wall time range, the check."""
    lines = [f"{'model':<20} {'epochs':>6}  {'test accuracy (per seed)':<26} {'wall s':<13} check"]
    for r in rows:
        accs = " ".join(f"{100 * a:.1f}" for a in r["test_accuracy"])
        walls = f"{min(r['wall_time_seconds']):.0f}-{max(r['wall_time_seconds']):.0f}"
        if "target" in r:
            t = r["target"]
            check = (f"{'ok' if t['met'] else 'MISSED'} (>= {100 * t['min_accuracy']:g} %, "
                     f"<= {t['max_seconds']} s)")
        else:
            check = "diverged" if r["diverged"] else "trains (finite, above chance)"
        lines.append(f"{r['model']:<20} {r['epochs']:>6}  {accs:<26} {walls:<13} {check}")
    return "\n".join(lines)


def _machine() -> dict:
    from .bench.timing import _cpu_name
    return {"cpu": _cpu_name(), "cores": os.cpu_count(),
            "numpy": np.__version__, "python": platform.python_version(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d %H:%M")}


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m tinymobilenet.train_benchmark",
                   description="Train every model family with its recipe over several seeds "
                               "and check the training\ntargets (accuracy, wall time); "
                               "optionally the default run's reproducibility and the\n"
                               "MobileNetV1 width x resolution grid.")
    p.add_argument("--family", default=argparse.SUPPRESS, metavar="F",
                   help="all, a family (" + ", ".join(FAMILIES) + ") or one model name "
                        "(default: none)")
    p.add_argument("--seeds", type=cli.number(int, 1), default=3,
                   help="seeds 0 .. N-1 per model (and per grid setting)")
    p.add_argument("--reproducibility", action="store_true",
                   help="also run the default configuration --repeats times and a resumed run")
    p.add_argument("--repeats", type=cli.number(int, 1), default=3,
                   help="with --reproducibility: how many runs of the default configuration "
                        "(default: 3)")
    p.add_argument("--grid", action="store_true", help="also run the alpha x resolution grid")
    p.add_argument("--out", default="runs/benchmark", help="directory of the runs and benchmark.json")
    a = p.parse_args(argv)
    family = getattr(a, "family", None)
    if family is None and not (a.reproducibility or a.grid):
        p.error("nothing to do: give --family, --reproducibility or --grid")
    try:
        names = models_of(family) if family else ()
    except ValueError as e:
        p.error(f"--family: {e}")
    out = Path(a.out)
    path = out / "benchmark.json"
    problem = output_problem(out, folder=True) or output_problem(path)
    if problem:
        p.error(f"--out: {problem}")
    try:                                 # the results of earlier runs, merged with these
        result = read_json(path, "benchmark.json") if path.exists() else {}
    except FileError as e:
        p.error(f"{e}; move it away or choose another --out")
    if not isinstance(result, dict) or not isinstance(result.get("families", {}), dict):
        p.error(f"{path}: not a benchmark.json of this command (not a JSON object with a "
                f"\"families\" object); move it away or choose another --out")
    result["machine"] = _machine()
    seeds = tuple(range(a.seeds))
    if names:
        rows = family_runs(out, names, seeds)
        result["families"] = {**result.get("families", {}), **{r["model"]: r for r in rows}}
        print(render(rows), flush=True)
    if a.reproducibility:
        result["default"] = default_runs(out, a.repeats)
        result["resume_bit_identical"] = resume_check(out, out / "default_0")
        print(f"median wall {result['default']['median_wall_time_seconds']:.1f} s; repeats "
              f"bit-identical: {result['default']['bit_identical_repeats']}; resume "
              f"bit-identical: {result['resume_bit_identical']}", flush=True)
    if a.grid:
        result["grid"] = grid(out, seeds=seeds)
    write_json(path, result)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
