"""``python -m tinymobilenet.bench``: the command line."""

from __future__ import annotations

import json
import sys

from .. import cli
from ..cli import Parser, number
from .memory import memory_report
from .report import format_markdown, format_table, plot_ratios
from .timing import run


def main(argv=None) -> int:
    parser = Parser(prog="python -m tinymobilenet.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--compare", choices=["torch"], help="time PyTorch CPU side by side")
    parser.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, few repeats (smoke test)")
    parser.add_argument("--threads", type=number(int, 1), help="threads for ours, BLAS and torch "
                        "(default: tinymobilenet.functional.tiling.num_threads())")
    parser.add_argument("--repeats", type=number(int, 1), help="timed rounds per operation")
    parser.add_argument("--only", nargs="*",
                        help="run only operations whose name contains one of these")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc report")
    parser.add_argument("--plot", metavar="PNG", help="also draw the ratios (needs --compare)")
    parser.add_argument("--save", metavar="JSON", help="also save the report as JSON")
    args = parser.parse_args(argv)
    if args.compare == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            parser.error("--compare torch needs PyTorch installed (pip install torch torchvision)")
    progress = None
    if args.format == "table":
        def progress(r):
            print(f"  {r['name']}: {r['ms']:.1f} ms", file=sys.stderr, flush=True)
    report = run(args.quick, args.compare == "torch", args.threads, args.repeats, args.only,
                 progress)
    if not args.no_memory:
        report["memory"] = memory_report(args.quick)
    if args.plot:
        plot_ratios(report, args.plot)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(report, f, indent=2)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    elif args.format == "markdown":
        print(format_markdown(report))
    else:
        print(format_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
