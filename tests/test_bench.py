"""The benchmark runs and reports: JSON fields, the table, the ratio figure, the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tinymobilenet import bench

# the chapters these tests back (select with: pytest -m ch09)
pytestmark = [pytest.mark.ch09]


RESULT_FIELDS = {"name", "kind", "fwd_ms", "bwd_ms", "ms", "gflop", "gbytes", "bound",
                 "achieved", "unit", "roof_fraction", "torch_ms", "ratio", "target",
                 "ratio_q1", "ratio_q3"}


def test_quick_bench_json_has_the_expected_fields():
    out = subprocess.run([sys.executable, "-m", "tinymobilenet.bench", "--quick", "--format",
                          "json", "--repeats", "1"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    m = report["machine"]
    assert m["threads"] >= 1 and m["matmul_gflops"] > 0 and m["copy_gbs"] > 0
    names = [r["name"] for r in report["results"]]
    for kind in ("pointwise", "standard 3x3 s1", "standard 3x3 s2", "depthwise 3x3 s1",
                 "depthwise 3x3 s2", "depthwise 5x5", "squeeze-excitation",
                 "inverted residual", "MobileNetV1 training step"):
        assert any(kind in n for n in names), (kind, names)
    for r in report["results"]:
        assert RESULT_FIELDS <= set(r), set(r) ^ RESULT_FIELDS
        assert r["ms"] > 0 and r["fwd_ms"] > 0 and r["bwd_ms"] > 0
        assert r["torch_ms"] is None and r["ratio"] is None      # no --compare
        assert r["ratio_q1"] is None and r["ratio_q3"] is None
    mem = report["memory"]
    assert mem["model_step_peak_mb"] > 0
    assert set(mem["depthwise_peak_in_activations"]) == {n for n in names if "depthwise" in n}


def test_table_and_plot(tmp_path):
    report = {"machine": {"cpu": "test", "threads": 2, "numpy": np.__version__, "blas": "-",
                          "torch": "x", "matmul_gflops": 100.0, "copy_gbs": 20.0,
                          "matmul_n": 512, "copy_mb": 4.0},
              "results": [dict(name="pointwise a", kind="pointwise", fwd_ms=1.0, bwd_ms=2.0,
                               ms=3.0, gflop=0.3, gbytes=0.0, bound="-", achieved=100.0,
                               unit="GFLOP/s", roof_fraction=1.0, torch_ms=2.0, ratio=1.5,
                               target=1.2, ratio_q1=1.25, ratio_q3=1.75),
                          dict(name="se b", kind="other", fwd_ms=1.0, bwd_ms=1.0, ms=2.0,
                               gflop=0.0, gbytes=0.04, bound="memory", achieved=20.0,
                               unit="GB/s", roof_fraction=1.0, torch_ms=4.0, ratio=0.5,
                               target=None)]}
    table = bench.format_table(report)
    assert "MISS" in table and "1.50x" in table and "0.50x" in table
    assert "1.25-1.75" in table                     # the spread; "-" where a report has none
    assert "| 1.50x (1.25-1.75) |" in bench.format_markdown(report)
    path = tmp_path / "ratios.png"
    bench.plot_ratios(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_is_the_median_of_per_round_ratios(monkeypatch):
    """Ours and PyTorch's rounds are paired: the ratio is the median of the per-round
    ratios (a slow spell that hits both sides of a round cancels), not the ratio of the
    two medians, and the warm-up round is left out. Timings are scripted, not measured."""
    from tinymobilenet.bench import timing
    # per round: our fwd, our bwd, their fwd, their bwd; round 0 is the warm-up
    rounds = [(9.0, 9.0, 1.0, 1.0),
              (1.0, 1.0, 1.0, 1.0), (4.0, 4.0, 2.0, 2.0), (6.0, 6.0, 12.0, 12.0),
              (2.0, 2.0, 4.0, 4.0), (10.0, 10.0, 2.5, 2.5)]
    script = iter(t for r in rounds for t in r)
    monkeypatch.setattr(timing, "_time", lambda fn: next(script))
    monkeypatch.setattr(timing, "_settle", lambda fwd, bwd: None)
    noop = (lambda: None, lambda: None)
    case = bench.Case("scripted", "other", lambda rng: noop, lambda rng: noop)
    (f, b, t), torch_t, stats = timing._measure(case, None, len(rounds) - 1, True)

    ours = np.array([r[0] + r[1] for r in rounds[1:]])
    theirs = np.array([r[2] + r[3] for r in rounds[1:]])
    assert t == np.median(ours) and torch_t == np.median(theirs)
    assert stats == pytest.approx(tuple(np.percentile(ours / theirs, [50, 25, 75])))
    assert stats[0] != pytest.approx(np.median(ours) / np.median(theirs))  # pairing matters
    assert stats[1] <= stats[0] <= stats[2]
    result = timing._result(case, f, b, t, torch_t, stats, {"threads": 1, "copy_gbs": 1.0,
                                                            "matmul_gflops": 1.0})
    assert (result.ratio, result.ratio_q1, result.ratio_q3) == stats


def test_profile_attributes_the_step_to_layer_types(tmp_path):
    from tinymobilenet.bench import profile as P
    p = P.profile("mobilenet_v3_small", resolution=32, batch=2, train=True, repeats=2)
    cats = {c["category"]: c for c in p["categories"]}
    assert set(cats) == set(P.CATEGORIES)
    assert abs(sum(c["time_share"] for c in cats.values()) - 1) < 1e-9
    assert abs(sum(c["mac_share"] for c in cats.values()) - 1) < 1e-9
    # V3-Small has every kind of work: each category that does MACs also takes time
    for c in ("standard conv", "depthwise conv", "pointwise conv", "squeeze-excitation",
              "pooling and linear"):
        assert cats[c]["mac_share"] > 0 and cats[c]["ms"] > 0, c
    for c in ("batch norm", "activation", "residual add", "loss and update"):
        assert cats[c]["ms"] > 0 and cats[c]["mac_share"] == 0, c
    # the parts add up to the instrumented step; what the timers cost is reported apart
    assert abs(p["attributed_ms"] - sum(c["ms"] for c in cats.values())) < 1e-6
    assert abs(p["step_ms"] - p["attributed_ms"] - p["not_attributed_ms"]) < 1e-6
    table = P.format_profile(p)
    assert "not attributed" in table and "squeeze-excitation" in table
    P.plot_profile(p, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_restores_the_model_methods():
    from tinymobilenet import models
    from tinymobilenet.bench.profile import _Timers
    model = models.mobilenet_v3_small(num_classes=10)
    from tinymobilenet.bench.profile import _timed_methods
    with _Timers(model):
        # a convolution's timer is on _run and a batch norm's on _normalize and
        # _apply_affine: their forward and no_grad()'s fused Sequential both call them
        assert all(set(_timed_methods(m)) <= set(m.__dict__) for m in model.modules())
        assert any("_run" in m.__dict__ for m in model.modules())
    assert not any({"forward", "backward", "_run", "_normalize", "_apply_affine"}
                   & set(m.__dict__) for m in model.modules())


def test_network_cases_build_and_run():
    from tinymobilenet.bench.networks import network_cases
    cases = network_cases(quick=True)
    names = [c.name for c in cases]
    assert any("training step" in n for n in names) and any("folded" in n for n in names)
    rng = np.random.default_rng(0)
    for case in cases[:1] + [c for c in cases if "folded" in c.name][:1]:
        fwd, bwd = case.make(rng)
        fwd(), bwd()


@pytest.mark.torch
def test_network_cases_match_torch_outputs(monkeypatch):
    """The PyTorch twin of a network case runs the same computation (same weights): the
    check make_torch runs compared the two outputs and found them equal to float32
    round-off, and that check does fail on outputs that differ."""
    pytest.importorskip("torchvision")
    from tinymobilenet.bench import networks
    real, worst = networks.check_same_outputs, []
    monkeypatch.setattr(networks, "check_same_outputs",
                        lambda ours, theirs, **kw: worst.append(real(ours, theirs, **kw))
                        or worst[-1])
    case = networks.inference_case("mobilenet_v3_large", N=1, size=64, fold=True)
    fwd, _ = case.make_torch(np.random.default_rng(0))
    fwd()
    assert len(worst) == 1 and worst[0] <= 1e-3, worst
    with pytest.raises(RuntimeError, match="not the same computation"):
        real(np.array([1.0, 2.0]), np.array([1.0, 2.5]))


def test_rss_growth_in_a_fresh_process():
    """The measurement works (a benchmark measures; this only checks the measuring): a
    growth above 0, and below the machine's memory and swap in MB, a physical bound rather
    than a target (a growth given in bytes by mistake would exceed it). Skipped only where
    Linux's /proc interface is missing (rss_growth gives None there); a measuring process
    that fails is an error, not a None."""
    import os
    from tinymobilenet.bench.memory import rss_growth
    if not (os.path.exists("/proc/self/status") and os.path.exists("/proc/self/clear_refs")):
        pytest.skip("no /proc/self/status or clear_refs here")
    mb = rss_growth("tinymobilenet", "mobilenet_v3_small", 2, 32)
    assert mb is not None, "the measuring process failed"
    with open("/proc/meminfo") as f:
        kib = {line.split(":")[0]: int(line.split()[1]) for line in f}
    assert 0 < mb < (kib["MemTotal"] + kib.get("SwapTotal", 0)) / 1024
    with pytest.raises(RuntimeError, match=r"the process measuring tinymobilenet's no_such_net "
                                           r"failed \(exit status 1\): ValueError"):
        rss_growth("tinymobilenet", "no_such_net", 2, 32)


def test_profile_cli_and_bad_model():
    out = subprocess.run([sys.executable, "-m", "tinymobilenet.bench", "--profile", "nope"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--profile" in out.stderr


@pytest.mark.parametrize("argv, words", [
    (["--batch", "4"], "--batch: only with --profile MODEL"),
    (["--train", "--resolution", "96"], "--resolution, --train: only with --profile MODEL"),
    (["--plot", "x.png"], "--plot draws the ratios to PyTorch: it needs --compare torch"),
    (["--only", "no such op", "--quick"], "--only: no operation of the all suite (--quick) has "
                                          "'no such op' in its name; the names: pointwise"),
    (["--only"], "expected at least one argument"),
    (["--threads", "1000"], "--threads: must be <= 256"),
])
def test_a_bad_command_line_is_one_line_and_exit_2_before_any_timing(argv, words, capsys):
    from tinymobilenet.bench.__main__ import main
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_threads_reach_blas_and_are_restored():
    """--threads 1 must put BLAS on one thread too, or a one-thread comparison would time
    our matrix products on every core; the count is read back from the library itself."""
    from tinymobilenet import blas
    from tinymobilenet.functional import tiling
    before, threads = blas.info(), tiling.num_threads()
    if "threads)" not in before:
        pytest.skip(f"no BLAS thread count readable here: {before}")
    with blas.threads(1):
        assert "(1 threads)" in blas.info() and tiling.num_threads() == 1
    assert blas.info() == before and tiling.num_threads() == threads


def test_profile_cli_runs_at_the_threads_asked(tmp_path):
    path = tmp_path / "p.json"
    out = subprocess.run([sys.executable, "-m", "tinymobilenet.bench", "--profile",
                          "mobilenet_v3_small", "--resolution", "32", "--batch", "1",
                          "--repeats", "1", "--threads", "1", "--save", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    p = json.loads(path.read_text())
    assert p["threads"] == 1 and "1 thread:" in out.stdout
    assert "threads)" not in p["blas"] or "(1 threads)" in p["blas"]
