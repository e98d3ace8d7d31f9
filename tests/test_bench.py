"""The benchmark runs and reports: JSON fields, the table, the ratio figure, the CLI."""

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from tinymobilenet import bench, nn

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
                               target=None),
                          dict(name="depthwise c", kind="depthwise", fwd_ms=1.0, bwd_ms=1.0,
                               ms=2.0, gflop=0.0, gbytes=0.04, bound="memory", achieved=20.0,
                               unit="GB/s", roof_fraction=1.0, torch_ms=1.0, ratio=2.0,
                               target=2.0)],
              "memory": {"model": "net step", "model_step_peak_mb": 12.5, "rss_growth_mb": 30.5,
                         "torch_rss_growth_mb": 40.0,
                         "depthwise_peak_in_activations": {"dw x": {"forward": 1.25,
                                                                    "backward": 2.5}}}}
    table = bench.format_table(report)
    assert "peak memory of one net step: 12.5 MB (tracemalloc" in table
    assert "in a fresh process: 30.5 MB, PyTorch 40.0 MB" in table
    assert "peak allocation of dw x: forward 1.25, backward 2.50 input sizes" in table
    assert "MISS" in table and "1.50x" in table and "0.50x" in table
    assert "1.25-1.75" in table                     # the spread; "-" where a report has none
    rows = {line.split()[0]: line for line in table.splitlines() if line.split()[:1]}
    assert rows["pointwise"].endswith("<=1.2 MISS") and rows["depthwise"].endswith("<=2.0 ok")
    markdown = bench.format_markdown(report)
    assert "| 1.50x (1.25-1.75) | <= 1.2x **missed** |" in markdown
    assert "| 2.00x | <= 2.0x met |" in markdown      # a ratio at its target meets it
    path = tmp_path / "ratios.png"
    bench.plot_ratios(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ratio_is_the_median_of_per_round_ratios(monkeypatch):
    """Ours and PyTorch's rounds are paired: the ratio is the median of the per-round
    ratios (a slow spell that hits both sides of a round cancels), not the ratio of the
    two medians, and the warm-up round is left out. Timings are scripted, not measured.
    Each library's timed calls follow its own pause and warm-up, round by round."""
    from tinymobilenet.bench import timing
    # per round: our fwd, our bwd, their fwd, their bwd; round 0 is the warm-up
    rounds = [(9.0, 9.0, 1.0, 1.0),
              (3.0, 3.0, 2.0, 2.0), (4.0, 4.0, 2.0, 2.0), (6.0, 6.0, 12.0, 12.0),
              (2.0, 2.0, 4.0, 4.0), (10.0, 10.0, 2.5, 2.5)]
    script = iter(t for r in rounds for t in r)
    calls = []
    monkeypatch.setattr(timing, "_time", lambda fn: calls.append(fn.__name__) or next(script))
    monkeypatch.setattr(timing, "_settle",
                        lambda fwd, bwd: calls.append(f"warm {fwd.__name__} {bwd.__name__}"))

    def ours_fwd(): pass
    def ours_bwd(): pass
    def torch_fwd(): pass
    def torch_bwd(): pass
    case = bench.Case("scripted", "other", lambda rng: (ours_fwd, ours_bwd),
                      lambda rng: (torch_fwd, torch_bwd))
    (f, b, t), torch_t, stats = timing._measure(case, None, len(rounds) - 1, True)
    assert calls == len(rounds) * ["warm ours_fwd ours_bwd", "ours_fwd", "ours_bwd",
                                   "warm torch_fwd torch_bwd", "torch_fwd", "torch_bwd"]

    ours = np.array([r[0] + r[1] for r in rounds[1:]])
    theirs = np.array([r[2] + r[3] for r in rounds[1:]])
    assert t == np.median(ours) and torch_t == np.median(theirs)
    assert stats == pytest.approx(tuple(np.percentile(ours / theirs, [50, 25, 75])))
    assert stats[0] != pytest.approx(np.median(ours) / np.median(theirs))  # pairing matters
    assert stats[1] <= stats[0] <= stats[2]
    assert stats[0] > 1                # ours / theirs: ours is the slower in most rounds
    result = timing._result(case, f, b, t, torch_t, stats, {"threads": 1, "copy_gbs": 1.0,
                                                            "matmul_gflops": 1.0})
    assert (result.ratio, result.ratio_q1, result.ratio_q3) == stats
    assert (result.fwd_ms, result.bwd_ms, result.ms, result.torch_ms) == pytest.approx(
        (1e3 * f, 1e3 * b, 1e3 * t, 1e3 * torch_t))


@pytest.mark.parametrize("flops, nbytes, bound", [(1e9, 1e9, "memory"), (1e11, 1e8, "compute")])
def test_roofline_bound_and_fraction(flops, nbytes, bound):
    """An operation of intensity I = flops / bytes can reach min(peak GFLOP/s, I * peak
    GB/s): below the ridge it is judged against the copy probe in GB/s, above it against
    the matmul probe in GFLOP/s."""
    from tinymobilenet.bench import timing
    machine = {"threads": 1, "copy_gbs": 10.0, "matmul_gflops": 100.0}
    case = bench.Case("op", "other", None, flops=flops, bytes=nbytes)
    t = 0.5
    r = timing._result(case, t / 2, t / 2, t, None, None, machine)
    assert r.bound == bound and r.ratio is None and r.torch_ms is None
    if bound == "memory":
        assert r.unit == "GB/s" and r.achieved == pytest.approx(nbytes / 1e9 / t)
        assert r.roof_fraction == pytest.approx(r.achieved / machine["copy_gbs"])
    else:
        assert r.unit == "GFLOP/s" and r.achieved == pytest.approx(flops / 1e9 / t)
        assert r.roof_fraction == pytest.approx(r.achieved / machine["matmul_gflops"])


def test_machine_peaks_count_flops_and_bytes_both_ways(monkeypatch):
    """An n x n matrix product is 2 n^3 flops (a multiply and an add each); a copy moves
    its bytes twice (read, then written). The probe's time is scripted."""
    from tinymobilenet.bench import timing
    monkeypatch.setattr(timing, "best_time", lambda fn, repeats: 0.25)
    m = timing.machine_peaks(quick=True)
    assert m["matmul_gflops"] == pytest.approx(2 * m["matmul_n"] ** 3 / 0.25 / 1e9)
    assert m["copy_gbs"] == pytest.approx(2 * m["copy_mb"] * 2 ** 20 / 0.25 / 1e9)


def test_best_and_median_time_leave_the_first_call_out(monkeypatch):
    """One untimed call first (caches, buffers), then ``repeats`` timed ones: the best is
    their minimum, the median their median. The clock is scripted: each call of fn moves
    it by the next duration."""
    from tinymobilenet.bench import timing
    clock = [0.0]
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    for measure, expected in ((timing.best_time, 1.0), (timing.median_time, 3.0)):
        durations = iter([100.0, 3.0, 1.0, 4.0])   # the first call is the warm-up

        def fn():
            clock[0] += next(durations)
        assert measure(fn, 3) == expected
        assert next(durations, None) is None       # every call made, none more


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
    assert all(c["ms"] >= 0 for c in cats.values()), cats    # a child's time left its parent
    assert p["attributed_ms"] == pytest.approx(p["instrumented_ms"], rel=1e-9)
    assert abs(p["step_ms"] - p["attributed_ms"] - p["not_attributed_ms"]) < 1e-6
    table = P.format_profile(p)
    assert "not attributed" in table and "squeeze-excitation" in table
    P.plot_profile(p, str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_profile_of_inference_finds_the_convolutions_no_grad_runs_directly():
    """Inside no_grad() a Sequential calls a convolution's kernel and a batch norm's passes
    directly, not their forward: the timers sit on those, or the convolutions' time would
    land in "other"."""
    from tinymobilenet.bench import profile as P
    p = P.profile("mobilenet_v3_small", resolution=32, batch=1, train=False, repeats=1)
    cats = {c["category"]: c for c in p["categories"]}
    for c in ("standard conv", "depthwise conv", "pointwise conv", "squeeze-excitation",
              "batch norm"):
        assert cats[c]["ms"] > 0, c
    assert cats["loss and update"]["ms"] == 0
    assert all(c["ms"] >= 0 for c in cats.values()), cats
    assert p["attributed_ms"] == pytest.approx(p["instrumented_ms"], rel=1e-9)


def test_profile_parts_are_those_of_the_median_step(monkeypatch):
    """The parts are those of the timed step of median length (so they add up to it), the
    step's time without timers is the median of its own runs, and "not attributed" is
    their difference. The clock is scripted: only a layer's forward moves it."""
    from tinymobilenet import models
    from tinymobilenet.bench import profile as P
    clock = [0.0]
    # untimed warm-up, 3 steps without timers, warm-up with timers, 3 timed steps
    durations = iter([0.0, 7.0, 9.0, 8.0, 0.0, 5.0, 1.0, 3.0])

    class Tick(nn.Identity):
        def forward(self, x):
            clock[0] += next(durations, 0.0)
            return x

    model = nn.Sequential(Tick(), nn.GlobalAvgPool2d(), nn.Flatten(), nn.Linear(3, 1000))
    monkeypatch.setattr(models, "get_model", lambda name, **kw: model)
    monkeypatch.setattr(P, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    p = P.profile("tick", resolution=4, batch=1, train=False, repeats=3)
    ms = {c["category"]: c["ms"] for c in p["categories"]}
    assert p["instrumented_ms"] == p["attributed_ms"] == ms["other"] == 3e3
    assert p["step_ms"] == 8e3 and p["not_attributed_ms"] == 5e3
    assert sum(ms.values()) == ms["other"]


@pytest.mark.parametrize("module, inside_se, category", [
    (lambda: nn.Conv2d(4, 8, 1), False, "pointwise conv"),
    (lambda: nn.Conv2d(4, 8, 1), True, "squeeze-excitation"),
    (lambda: nn.Conv2d(4, 4, 3, groups=4), False, "depthwise conv"),
    (lambda: nn.Conv2d(4, 8, 3), False, "standard conv"),
    (lambda: nn.Conv2d(4, 8, 1, groups=2), False, "standard conv"),
    (lambda: nn.ReLU(), False, "activation"),
    (lambda: nn.HardSigmoid(), True, "squeeze-excitation"),
    (lambda: nn.BatchNorm2d(4), False, "batch norm"),
    (lambda: nn.Linear(4, 2), False, "pooling and linear"),
    (lambda: nn.Flatten(), False, "other"),
])
def test_profile_categories_of_layers(module, inside_se, category):
    """The layer types of the profile: a 1x1 convolution is pointwise, one with groups = C
    depthwise, any other standard; everything inside a squeeze-excitation block is that
    block's time."""
    from tinymobilenet.bench.profile import _category
    assert _category(module(), inside_se) == category


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


def test_peak_memory_does_not_depend_on_what_ran_before():
    """The kernels' scratch buffers are freed before a measurement, so they count: a step
    measured right after it ran (its buffers in place) peaks as high as a cold one."""
    from tinymobilenet.bench.memory import peak_memory
    from tinymobilenet.bench.cases import kernel_cases
    from tinymobilenet.functional import tiling
    case = next(c for c in kernel_cases(quick=True) if c.kind == "standard")
    fwd, bwd = case.make(np.random.default_rng(0))
    fwd(), bwd()
    warm = peak_memory(fwd, bwd)
    tiling.free_scratch()
    cold = peak_memory(fwd, bwd)
    assert warm == pytest.approx(cold, rel=0.05)


def test_memory_report_measures_forward_and_backward_apart(monkeypatch):
    """Each depthwise case's forward and backward peaks, each in units of its input's size
    (the backward measured after a forward, without it); the model step's peak in MB and
    the resident-set growths passed on. Steps that keep arrays of known sizes stand in
    for the real ones."""
    from tinymobilenet.bench import memory, networks
    kept = []
    out_values, grad_values = 100_000, 300_000          # float64: 8 bytes each

    def make(rng):
        return (lambda: kept.append(np.ones(out_values)),
                lambda: kept.append(np.ones(grad_values)))

    depthwise = bench.Case("dw fake", "depthwise", make, activation_bytes=8 * out_values)
    monkeypatch.setattr(memory, "cases", lambda quick, suite: [
        depthwise, bench.Case("pw fake", "pointwise", make)])
    monkeypatch.setattr(networks, "training_case", lambda name, N, size: bench.Case(
        "net fake", "network", make))
    monkeypatch.setattr(memory, "rss_growth",
                        lambda library, name, N, size: {"tinymobilenet": 12.5, "torch": 20.0}[library])
    out = memory.memory_report(quick=True, compare_torch=True)
    (name, peaks), = out["depthwise_peak_in_activations"].items()
    assert name == "dw fake"
    assert peaks["forward"] == pytest.approx(1.0, rel=0.02)
    assert peaks["backward"] == pytest.approx(grad_values / out_values, rel=0.02)
    assert out["model"] == "net fake"
    assert out["model_step_peak_mb"] == pytest.approx(8 * (out_values + grad_values) / 2 ** 20,
                                                      rel=0.02)
    assert out["rss_growth_mb"] == 12.5 and out["torch_rss_growth_mb"] == 20.0


@pytest.mark.parametrize("n, text", [(999, "999 B"), (1000, "1.0 kB"), (1_234_567, "1.2 MB"),
                                     (3.5e12, "3.5 TB")])
def test_format_bytes_counts_in_powers_of_1000(n, text):
    from tinymobilenet.memory import format_bytes
    assert format_bytes(n) == text


def test_memory_estimate_follows_its_formula_from_a_reference_model():
    """The estimate counts a model at width <= 1 and inputs <= 64 px exactly (values per
    parameter, buffer and activation as documented, 4 bytes each) and scales a wider,
    larger one from it: weights by width^2, buffers by width, activations by width times
    the pixels times the batch."""
    import math
    from tinymobilenet import models
    from tinymobilenet.count import summary
    from tinymobilenet.memory import estimate_bytes

    def counts(model, shape):
        s = summary(model, (1,) + shape)
        acts = sum(math.prod(r.output_shape[1:]) for r in s.rows if r.is_leaf)
        return s.total_params, s.total_buffers, acts

    P, B, A = counts(models.mobilenet_v1(alpha=0.5, num_classes=10), (3, 32, 32))
    small = {"alpha": 0.5, "num_classes": 10}
    assert estimate_bytes("mobilenet_v1", small, (3, 32, 32)) == 4 * (2 * P + B)
    assert estimate_bytes("mobilenet_v1", small, (3, 32, 32), 3, "eval") == 4 * (2 * P + B + 3 * A)
    assert estimate_bytes("mobilenet_v1", small, (3, 32, 32), 3, "train") == 4 * (
        4 * P + B + 2 * 3 * A)
    P, B, A = counts(models.mobilenet_v1(alpha=1.0, num_classes=10), (3, 64, 64))
    big = estimate_bytes("mobilenet_v1", {"alpha": 2.0, "num_classes": 10}, (3, 128, 96), 5,
                         "train")
    assert big == int(4 * (4 * P * 2 ** 2 + B * 2 + 2 * A * 2 * (128 * 96 / 64 ** 2) * 5))


def test_check_fits_counts_the_data_set_and_accepts_an_exact_fit():
    from tinymobilenet.memory import check_fits, estimate_bytes
    options = {"alpha": 0.25, "num_classes": 10}
    need = estimate_bytes("mobilenet_v1", options, (3, 32, 32), 8, "train")
    assert check_fits("mobilenet_v1", options, (3, 32, 32), 8, "train", data_bytes=100,
                      limit=need + 100) is None
    refused = check_fits("mobilenet_v1", options, (3, 32, 32), 8, "train", data_bytes=100,
                         limit=need + 99)
    assert refused.startswith("mobilenet_v1 (alpha 0.25) on inputs of 3x32x32 needs about")
    assert "to train it in batches of 8 and its data set" in refused


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


FAKE_TORCH = """
import types
import numpy as np
STEP_MB = 48
_kept = [None]

class _Loss:
    def backward(self):                    # the step's memory: STEP_MB, written, kept
        _kept[0] = None
        _kept[0] = np.ones(STEP_MB * 2 ** 20 // 8)

class _SGD:
    def __init__(self, params, lr): pass
    def zero_grad(self): pass
    def step(self): pass

class _Model:
    def __call__(self, x): return x
    def parameters(self): return []

from_numpy = lambda a: a
optim = types.SimpleNamespace(SGD=_SGD)
nn = types.SimpleNamespace(functional=types.SimpleNamespace(cross_entropy=lambda out, y: _Loss()))
"""


def test_rss_growth_is_the_step_s_own_memory(tmp_path, monkeypatch):
    """The growth is measured above the resident set the process had before the step (the
    interpreter, NumPy, the model): a step that keeps 48 MB grows it by about 48 MB, not
    by the whole process's peak. The measured "PyTorch" is a stand-in of known size."""
    import os
    from tinymobilenet.bench.memory import rss_growth
    if not (os.path.exists("/proc/self/status") and os.path.exists("/proc/self/clear_refs")):
        pytest.skip("no /proc/self/status or clear_refs here")
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(FAKE_TORCH)
    (tmp_path / "torchvision.py").write_text(
        "import types, torch\nmodels = types.SimpleNamespace(net=lambda num_classes: torch._Model())\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    mb = rss_growth("torch", "net", 1, 8)
    assert 47 < mb < 48 + 8, mb


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
