"""The benchmark's report as a table, as Markdown, and as a figure of the ratios."""

from __future__ import annotations

import numpy as np

__all__ = ["format_table", "format_markdown", "plot_ratios"]


def format_table(report: dict) -> str:
    m = report["machine"]
    lines = [
        "tinymobilenet benchmark: float32, forward + backward (inference: forward only), "
        "median of repeated runs"
        + ("; ratio: median of the per-round ratios, spread: their quartiles"
           if any(r["torch_ms"] is not None for r in report["results"]) else ""),
        f"cpu: {m['cpu']}, {m['threads']} threads; numpy {m['numpy']}; BLAS: {m['blas']}"
        + (f"; torch {m['torch']}" if m.get("torch") else ""),
        f"roofline probes: matmul {m['matmul_gflops']:.1f} GFLOP/s "
        f"({m['matmul_n']}^3 float32), copy {m['copy_gbs']:.1f} GB/s ({m['copy_mb']:.0f} MB)",
        "",
    ]
    has_torch = any(r["torch_ms"] is not None for r in report["results"])
    w = max([44] + [len(r["name"]) for r in report["results"]])
    head = (f"{'operation':{w}s} {'fwd ms':>8s} {'bwd ms':>8s} {'total':>8s} "
            f"{'achieved':>14s} {'roof':>5s}")
    if has_torch:
        head += f" {'torch ms':>9s} {'ratio':>6s} {'spread':>9s} {'target':>7s}"
    lines += [head, "-" * len(head)]
    for r in report["results"]:
        ach = f"{r['achieved']:.1f} {r['unit']}" if r["achieved"] else "-"
        roof = f"{100 * r['roof_fraction']:.0f}%" if r["roof_fraction"] is not None else "-"
        line = (f"{r['name']:{w}s} {r['fwd_ms']:8.2f} {r['bwd_ms']:8.2f} {r['ms']:8.2f} "
                f"{ach:>14s} {roof:>5s}")
        if has_torch:
            if r["torch_ms"] is not None:
                ok = "" if r["target"] is None else (
                    " ok" if r["ratio"] <= r["target"] else " MISS")
                tgt = "" if r["target"] is None else f"<={r['target']:.1f}"
                line += f" {r['torch_ms']:9.2f} {r['ratio']:5.2f}x {_spread(r):>9s} {tgt:>7s}{ok}"
            else:
                line += f" {'-':>9s}"
        lines.append(line)
    mem = report.get("memory")
    if mem:
        lines.append("")
        if "model_step_peak_mb" in mem:
            lines.append(f"peak memory of one {mem['model']}: "
                         f"{mem['model_step_peak_mb']:.1f} MB (tracemalloc, above model and input)")
        if mem.get("rss_growth_mb") is not None:
            theirs = mem.get("torch_rss_growth_mb")
            lines.append(f"peak resident set growth of that step in a fresh process: "
                         f"{mem['rss_growth_mb']:.1f} MB"
                         + (f", PyTorch {theirs:.1f} MB" if theirs is not None else ""))
        for name, v in mem["depthwise_peak_in_activations"].items():
            lines.append(f"peak allocation of {name}: forward {v['forward']:.2f}, backward "
                         f"{v['backward']:.2f} input sizes (output / dx included)")
    return "\n".join(lines)


def _spread(r) -> str:
    """The quartiles of a result's per-round ratios, "1.10-1.25", or "-" (older reports)."""
    if r.get("ratio_q1") is None or r.get("ratio_q3") is None:
        return "-"
    return f"{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}"


def format_markdown(report: dict) -> str:
    """The results as a Markdown table (for the README)."""
    lines = ["| operation | fwd + bwd ms | achieved | roof | PyTorch ms | ratio | target |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in report["results"]:
        ach = f"{r['achieved']:.1f} {r['unit']}" if r["achieved"] else "-"
        roof = f"{100 * r['roof_fraction']:.0f} %" if r["roof_fraction"] is not None else "-"
        torch_ms = "-" if r["torch_ms"] is None else f"{r['torch_ms']:.1f}"
        spread = _spread(r)
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x" + (
            "" if spread == "-" else f" ({spread})")
        target = "" if r["target"] is None else f"<= {r['target']:.1f}x" + (
            "" if r["ratio"] is None else (" met" if r["ratio"] <= r["target"] else " **missed**"))
        lines.append(f"| {r['name']} | {r['ms']:.1f} | {ach} | {roof} | {torch_ms} | {ratio} "
                     f"| {target} |")
    return "\n".join(lines)


def plot_ratios(reports, path: str) -> None:
    """Bar chart of the ratios ours / PyTorch per operation, with each target marked and
    the quartiles of the per-round ratios as whiskers.

    ``reports``: one report of :func:`run` (with ``compare_torch``) or a list of them,
    e.g. a 1-thread and a 2-thread run, drawn as grouped bars labelled by thread count.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = [reports] if isinstance(reports, dict) else list(reports)
    names = [r["name"] for r in reports[0]["results"] if r.get("ratio") is not None]
    if not names:
        raise ValueError("plot_ratios: the report has no ratios (run with --compare torch)")
    targets = {r["name"]: r["target"] for r in reports[0]["results"]}
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(names) * max(1, len(reports) * 0.6) + 1.6))
    y = np.arange(len(names))[::-1]
    height = 0.8 / len(reports)
    shades = ["#4c72b0", "#dd8452", "#55a868", "#8172b3"]
    top = max(t or 0 for t in targets.values())
    for k, report in enumerate(reports):
        by_name = {r["name"]: r for r in report["results"]}
        values = [(by_name.get(n) or {}).get("ratio") or 0.0 for n in names]
        # the quartiles of the per-round ratios as whiskers (reports that have them)
        lo = [(by_name.get(n) or {}).get("ratio_q1") for n in names]
        hi = [(by_name.get(n) or {}).get("ratio_q3") for n in names]
        yk = y + 0.4 - height * (k + 0.5)
        ax.barh(yk, values, height=height * 0.9, color=shades[k % len(shades)],
                label=f"{report['machine']['threads']} thread"
                + ("s" if report["machine"]["threads"] > 1 else ""))
        ends = []
        for yi, v, a, b in zip(yk, values, lo, hi):
            if a is not None and b is not None:
                ax.plot([a, b], [yi, yi], color="black", lw=1)
            ends.append(max(v, b or 0.0))
            ax.text(ends[-1] + 0.02, yi, f"{v:.2f}", va="center", fontsize=7)
        top = max(top, max(ends))
    for yi, n in zip(y, names):
        if targets.get(n) is not None:
            ax.plot([targets[n]] * 2, [yi - 0.45, yi + 0.45], color="#c0392b", lw=2)
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, top * 1.12)
    ax.set_xlabel("time tinymobilenet / time PyTorch CPU, forward + backward (lower is better)")
    ax.set_title("tinymobilenet vs PyTorch CPU, same threads\n(red tick: target; "
                 "black whisker: quartiles of the per-round ratios)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
