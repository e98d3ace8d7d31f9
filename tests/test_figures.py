"""The figure functions run headless and write PNGs; the numbers they draw are right."""

from fractions import Fraction

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tinymobilenet import figures  # noqa: E402

from conftest import v1_table1_counts  # noqa: E402

CHEAP = ["cost_ratio", "relu_manifold", "activations", "v1_layer_costs"]


def test_main_writes_the_cheap_figures(tmp_path):
    written = figures.main(["--out", str(tmp_path), "--only", *CHEAP])
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == sorted(f"{n}.png" for n in CHEAP)
    for name in CHEAP:
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_every_figure_is_listed_in_the_module_docstring():
    for name in figures.FIGURES:
        assert f"\n    {name} " in figures.__doc__


def test_unknown_figure_name_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        figures.main(["--out", str(tmp_path), "--only", "nope"])
    assert e.value.code == 2


def test_relu_information_loss_shrinks_with_the_dimension():
    pts, _ = figures.spiral()
    lost = [figures.relu_collapsed_fraction(pts, n) for n in (2, 3, 5, 15, 30)]
    # n = 2 by hand: both ReLUs pass only inside the cone where both rows of T give x a
    # positive product, (pi - angle between the rows) of the 2 pi the spiral's two turns
    # sweep evenly, so at least half of the points collapse, whatever T is
    assert lost[0] >= 0.45 and lost[-1] == 0.0
    assert all(a >= b for a, b in zip(lost, lost[1:]))
    assert figures.relu_roundtrip(pts, 30).shape == pts.shape


def test_v1_costs_by_type_reproduce_table_2():
    costs = figures.v1_costs_by_type()
    macs = sum(m for m, _ in costs.values())
    weights = sum(w for _, w in costs.values())
    hand = v1_table1_counts()                   # Table 1 counted by hand (conftest.py)
    # Table 2 of the paper (Howard et al., 2017), typed here, not taken from the library
    paper = {"Conv 1x1": (94.86, 74.59), "Conv DW 3x3": (3.06, 1.06),
             "Conv 3x3": (1.19, 0.02), "Fully connected": (0.18, 24.33)}
    assert figures.V1_TABLE2 == paper                 # what the figure draws beside the count
    for kind, (paper_macs, paper_weights) in paper.items():
        assert 100 * costs[kind][1] / weights == pytest.approx(paper_weights, abs=0.005)
        if kind == "Conv 3x3":
            # the paper prints 1.19 %; the network gives 1.91 % (and only then do the
            # four Mult-Adds shares add up to 100 %): the share counted by hand
            assert costs[kind][0] == hand["first_conv_macs"]
            assert 100 * costs[kind][0] / macs == pytest.approx(
                100 * hand["first_conv_macs"] / hand["macs"], abs=1e-9)
        else:
            assert 100 * costs[kind][0] / macs == pytest.approx(paper_macs, abs=0.005)
    assert macs == hand["macs"] and round(macs / 1e6) == 569       # Table 1's 569 M


def test_training_curves_and_bench_ratios_from_saved_results(tmp_path):
    import json
    history = [{"epoch": e, "lr": 0.1, "train_loss": 2.0 / e, "train_accuracy": 0.3 * e,
                "test_loss": 2.2 / e, "test_accuracy": 0.28 * e, "seconds": 1.0}
               for e in (1, 2, 3)]
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"test_accuracy": 0.84, "history": history}))
    report = tmp_path / "bench.json"
    report.write_text(json.dumps({"machine": {"threads": 2}, "results": [
        {"name": "depthwise 3x3 s1 144 56x56", "ratio": 1.6, "target": 2.0},
        {"name": "pointwise 144->24 56x56", "ratio": 1.1, "target": 1.2}]}))
    written = figures.main(["--out", str(tmp_path), "--only", "training_curves", "bench_ratios",
                            "--train-metrics", str(metrics), "--bench-report", str(report)])
    assert len(written) == 2
    for name in ("training_curves", "bench_ratios"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_cost_ratio_draws_the_formula_and_the_counted_ratio():
    """Each K: the curve 1/C_out + 1/K^2, the dotted limit 1/K^2, and the counter's ratio
    of a separable pair to a full "same"-padded K x K conv as markers on the curve."""
    channels = (8, 16, 32)
    fig = figures.plot_cost_ratio(kernel_sizes=(3, 5), channels=channels)
    lines = [line for line in fig.axes[0].lines if len(line.get_xdata())]
    for K, (curve, limit, markers) in zip((3, 5), zip(*[iter(lines)] * 3)):
        x = np.asarray(curve.get_xdata())
        assert np.allclose(curve.get_ydata(), 1 / x + 1 / K ** 2, rtol=1e-12)
        assert np.allclose(limit.get_ydata(), 1 / K ** 2, rtol=1e-12)
        assert list(markers.get_xdata()) == list(channels)
        want = [Fraction(1, c) + Fraction(1, K * K) for c in channels]
        assert np.allclose(markers.get_ydata(), [float(w) for w in want], rtol=1e-12)
    plt.close(fig)


def test_alpha_rho_and_layer_costs_draw_the_counted_and_the_paper_numbers():
    """alpha_rho: the counter's Mult-Adds against the paper's accuracy of the same setting;
    v1_layer_costs: each bar of a panel is its type's share of that panel's total."""
    fig = figures.plot_alpha_rho()
    width, resolution = fig.axes[0].lines[:2]
    assert list(width.get_ydata()) == list(figures.V1_WIDTH_ACCURACY.values())
    assert list(resolution.get_ydata()) == list(figures.V1_RESOLUTION_ACCURACY.values())
    hand = v1_table1_counts()
    assert width.get_xdata()[0] == resolution.get_xdata()[0] == hand["macs"] / 1e6
    assert resolution.get_xdata()[2] == v1_table1_counts(resolution=160)["macs"] / 1e6
    plt.close(fig)
    fig = figures.plot_v1_layer_costs()
    costs = figures.v1_costs_by_type()
    for ax, col in zip(fig.axes, (0, 1)):
        total = sum(c[col] for c in costs.values())
        counted = [bar.get_width() for bar in ax.patches[:len(costs)]]
        assert np.allclose(counted, [100 * c[col] / total for c in costs.values()])
    plt.close(fig)


def test_plot_history_draws_percentages_and_closes_a_saved_figure(tmp_path):
    """Loss and accuracy (in %) of train and test; saved outside Jupyter, the figure is
    closed so scripts do not pile up open figures."""
    history = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 0.3 * e,
                "test_loss": 2.2 / e, "test_accuracy": 0.28 * e} for e in (1, 2, 3)]
    fig = figures.plot_history(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(fig.number)
    loss, acc = fig.axes
    assert [list(line.get_ydata()) for line in acc.lines] == [
        [100 * r[k] for r in history] for k in ("train_accuracy", "test_accuracy")]
    assert [list(line.get_ydata()) for line in loss.lines] == [
        [r[k] for r in history] for k in ("train_loss", "test_loss")]


def test_a_figure_that_cannot_be_drawn_is_skipped_not_listed(tmp_path, monkeypatch, capsys):
    """Without PyTorch the benchmark figure is skipped: said so, and not among the files
    written."""
    def no_torch(path, report=None):
        raise ImportError("No module named 'torch'")
    monkeypatch.setattr(figures, "save_bench_ratios", no_torch)
    written = figures.main(["--out", str(tmp_path), "--only", "activations", "bench_ratios"])
    assert [p.rsplit("/", 1)[-1] for p in written] == ["activations.png"]
    assert "bench_ratios: skipped" in capsys.readouterr().out
    assert not (tmp_path / "bench_ratios.png").exists()


HISTORY_ROW = {"epoch": 1, "train_loss": 2.0, "train_accuracy": 0.3, "test_loss": 2.1,
               "test_accuracy": 0.28}
REPORT = {"machine": {"threads": 2}, "results": [{"name": "pointwise", "target": 1.2,
                                                  "ratio": 1.1}]}


@pytest.mark.parametrize("read,data,needle", [
    (figures.read_history, {"history": [HISTORY_ROW]}, None),
    (figures.read_history, {"history": [dict(HISTORY_ROW, train_accuracy=True)]}, "history"),
    (figures.read_history, {"history": [HISTORY_ROW, dict(HISTORY_ROW, test_loss=None)]},
     "test_loss"),
    (figures.read_bench_report, REPORT, None),
    (figures.read_bench_report, [REPORT, REPORT], None),
    (figures.read_bench_report, {**REPORT, "results": [{"name": "pointwise", "target": 1.2,
                                                        "ratio": None}]}, "no ratios"),
    (figures.read_bench_report, {**REPORT, "machine": {"threads": "2"}}, "threads"),
])
def test_saved_results_are_checked_for_what_the_figures_draw(tmp_path, read, data, needle):
    """A saved history is a list of epochs with numbers (a boolean is not one, and test
    columns go on to the last row); a benchmark report needs some ratio to draw."""
    import json
    from tinymobilenet.files import FileError
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(data))
    if needle is None:
        assert read(path) == (data["history"] if read is figures.read_history else data)
    else:
        with pytest.raises(FileError, match=needle) as e:
            read(path)
        assert str(path) in str(e.value)
