"""The benchmark runs and reports: JSON fields, the table, the ratio figure, the CLI."""

import json
import subprocess
import sys

import numpy as np

from tinymobilenet import bench

RESULT_FIELDS = {"name", "kind", "fwd_ms", "bwd_ms", "ms", "gflop", "gbytes", "bound",
                 "achieved", "unit", "roof_fraction", "torch_ms", "ratio", "target"}


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
                               target=1.2),
                          dict(name="se b", kind="other", fwd_ms=1.0, bwd_ms=1.0, ms=2.0,
                               gflop=0.0, gbytes=0.04, bound="memory", achieved=20.0,
                               unit="GB/s", roof_fraction=1.0, torch_ms=4.0, ratio=0.5,
                               target=None)]}
    table = bench.format_table(report)
    assert "MISS" in table and "1.50x" in table and "0.50x" in table
    path = tmp_path / "ratios.png"
    bench.plot_ratios(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
