"""Measure the training targets and a small accuracy-versus-Mult-Adds table.

    python -m tinymobilenet.train_benchmark [--repeats 3] [--grid] [--out runs/benchmark]

1. The no-option run of ``python -m tinymobilenet.train``, ``--repeats`` times: median
   wall time, test accuracy, and whether every repeat gave the same weights bit for bit.
2. The same run interrupted after half its epochs and resumed from the checkpoint:
   are the final weights identical to the uninterrupted run's?
3. With ``--grid``: MobileNetV1 at alpha 0.25 / 0.5 and resolution 24 / 32 (otherwise the
   default settings), for ``--seeds`` seeds each: test accuracy, Mult-Adds, parameters,
   wall time, a small version of the MobileNet paper's accuracy versus Mult-Adds trade-off
   (its Tables 6 and 7). One test image of 360 is 0.28 points, and a single run moves by
   about a point with the seed, so compare means over seeds.

Wall times depend on the machine and on what else runs on it; the script prints the
median of the repeats. Results go to ``OUT/benchmark.json`` and are printed as a table.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from . import cli
from .train import DEFAULTS, run


def _weights(out: Path):
    with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("model/")}


def _same(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


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
    half = DEFAULTS["epochs"] // 2
    part = out / "resumed"
    run({"out": str(part)}, progress=None, on_epoch_end=lambda row: row["epoch"] == half)
    run({"out": str(part)}, progress=None, resume=part / "checkpoint.npz")
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


def main(argv=None) -> int:
    p = cli.Parser(prog="python -m tinymobilenet.train_benchmark",
                   description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=cli.number(int, 1), default=3,
                   help="runs of the default configuration (their median wall time)")
    p.add_argument("--grid", action="store_true", help="also run the alpha x resolution grid")
    p.add_argument("--seeds", type=cli.number(int, 1), default=1,
                   help="grid: seeds 0 .. N-1 per setting")
    p.add_argument("--out", default="runs/benchmark", help="directory of the runs and benchmark.json")
    a = p.parse_args(argv)
    out = Path(a.out)
    result = {"defaults": DEFAULTS, "numpy": np.__version__}
    result["default"] = default_runs(out, a.repeats)
    result["resume_bit_identical"] = resume_check(out, out / "default_0")
    print(f"median wall {result['default']['median_wall_time_seconds']:.1f} s; repeats bit-identical: "
          f"{result['default']['bit_identical_repeats']}; resume bit-identical: "
          f"{result['resume_bit_identical']}", flush=True)
    if a.grid:
        result["grid"] = grid(out, seeds=tuple(range(a.seeds)))
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
