"""``python -m tinymobilenet.bench``: the command line."""

from __future__ import annotations

import json
import sys

from .. import cli
from ..cli import Parser, number
from .memory import memory_report
from .report import format_markdown, format_table, plot_ratios

DESCRIPTION = """Time tinymobilenet's kernels and whole networks (forward + backward, float32),
optionally beside PyTorch CPU, or profile where a network's time goes per layer type."""

EPILOG = """examples:
  python -m tinymobilenet.bench                          kernels and networks, a table
  python -m tinymobilenet.bench --compare torch          + PyTorch CPU, interleaved
  python -m tinymobilenet.bench --suite networks --only inference
  python -m tinymobilenet.bench --profile mobilenet_v2 --train --resolution 96 --batch 8
  python -m tinymobilenet.bench --quick                  tiny shapes, a smoke test"""


def build_parser():
    from ..models import MODEL_NAMES
    p = Parser(prog="python -m tinymobilenet.bench", description=DESCRIPTION, epilog=EPILOG)
    p.add_argument("--compare", choices=["torch"], default=None,
                   help="time PyTorch CPU side by side (same threads, same weights), "
                        "round by round: ratio = median of the per-round ratios ours / "
                        "PyTorch, spread = their quartiles")
    p.add_argument("--suite", choices=["kernels", "networks", "all"], default="all",
                   help="single kernels, whole networks, or both")
    p.add_argument("--format", choices=["table", "json", "markdown"], default="table",
                   help="how to print the report")
    p.add_argument("--quick", action="store_true", help="tiny shapes, few repeats (smoke test)")
    p.add_argument("--threads", type=number(int, 1, 256), default=None,
                   help="threads for ours, BLAS and torch (default: "
                        "tinymobilenet.functional.tiling.num_threads())")
    p.add_argument("--repeats", type=number(int, 1), default=None,
                   help="timed rounds per operation (default 7, 3 with --quick; more "
                        "rounds, a steadier median on a busy machine)")
    p.add_argument("--only", nargs="+", default=None, metavar="TEXT",
                   help="run only operations whose name contains one of these (e.g. "
                        "'depthwise' or 'b0 inference 224px batch 1'; a text no name "
                        "contains is an error that lists the names)")
    p.add_argument("--no-memory", action="store_true", help="skip the memory report")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the ratios (needs --compare), or the profile")
    p.add_argument("--save", metavar="JSON", default=None, help="also save the report as JSON")
    g = p.add_argument_group("profiling (instead of the timing table)")
    g.add_argument("--profile", metavar="MODEL", choices=MODEL_NAMES, default=None,
                   help="time per layer type of one network: " + ", ".join(MODEL_NAMES))
    g.add_argument("--resolution", type=number(int, 8, 1024), default=None,
                   help="profile: input size (default: the model's own)")
    g.add_argument("--batch", type=number(int, 1, 1024), default=None,
                   help="profile: batch size (default: 8)")
    g.add_argument("--train", action="store_true",
                   help="profile a training step (default: eval inference)")
    return p


def _profile(args):
    from .profile import format_profile, plot_profile, profile
    from .. import blas
    from ..functional import tiling
    with blas.threads(args.threads or tiling.num_threads()):
        p = profile(args.profile, args.resolution, args.batch or 8, args.train,
                    repeats=args.repeats or 5)
    if args.plot:
        import matplotlib.pyplot as plt
        plt.close(plot_profile(p, args.plot))
    if args.save:
        cli.write_json(args.save, p)
    print(json.dumps(p, indent=2) if args.format == "json" else format_profile(p))
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compare == "torch":
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        except ImportError:
            parser.error("--compare torch needs PyTorch and torchvision installed "
                         "(pip install torch torchvision)")
    if args.profile:
        return _profile(args)
    profile_only = [o for o, given in (("--resolution", args.resolution is not None),
                                       ("--batch", args.batch is not None),
                                       ("--train", args.train)) if given]
    if profile_only:
        parser.error(f"{', '.join(profile_only)}: only with --profile MODEL (the timing "
                     f"table's shapes are fixed)")
    if args.plot and not args.compare:
        parser.error("--plot draws the ratios to PyTorch: it needs --compare torch "
                     "(or --profile MODEL)")
    if args.only:
        from .cases import cases
        names = [c.name for c in cases(args.quick, args.suite)]
        if not any(text in name for name in names for text in args.only):
            parser.error(f"--only: no operation of the {args.suite} suite"
                         f"{' (--quick)' * args.quick} has {' or '.join(map(repr, args.only))} "
                         f"in its name; the names: {'; '.join(names)}")
    from .timing import run
    progress = None
    if args.format == "table":
        def progress(r):
            print(f"  {r['name']}: {r['ms']:.1f} ms", file=sys.stderr, flush=True)
    report = run(args.quick, args.compare == "torch", args.threads, args.repeats, args.only,
                 progress, suite=args.suite)
    if not args.no_memory:
        report["memory"] = memory_report(args.quick, args.compare == "torch")
    if args.plot:
        plot_ratios(report, args.plot)
    if args.save:
        cli.write_json(args.save, report)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "markdown":
        print(format_markdown(report))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
