"""``python -m tinymobilenet.exercises list | grade FILE ...``: the exercises, and a grader.

Exit status: 0 whenever the listing or the report was produced, whatever the students'
results (a script reads them from ``--format json``); 2 for a bad command line, a path that
does not exist or is not a .py/.ipynb file, or a folder without any (one line on stderr,
nothing graded). A file that cannot be read or is not a notebook is graded: its import
fails, and the report says why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import cli
from . import grade, registry, submission

DESCRIPTION = """\
List the exercises of the chapters, or grade files of students' answers.

  list                      every exercise per chapter: signature, difficulty, points
  grade FILE [FILE ...]     each file (a .py, or a chapter's .ipynb; a folder means every
                            .py and .ipynb in it) imported in its own process; every
                            exercise function it defines (name or my_name) checked with a
                            time limit; per exercise passed or not, the checker's message
                            and the points, "not attempted" for the rest (of every chapter
                            for a .py file, of its own chapter for a chapter's notebook)

Exit status 0 when the listing or the report was produced, 2 for a bad option or path.
Run `python -m tinymobilenet.exercises grade --help` for the grader's options."""


_CHAPTER_RANGE = f"{min(registry.CHAPTERS)}..{max(registry.CHAPTERS)}"


def _chapter():
    return cli.number(int, min(registry.CHAPTERS), max(registry.CHAPTERS))


def build_parser():
    parser = cli.Parser(prog="python -m tinymobilenet.exercises", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="{list,grade}",
                                     parser_class=cli.Parser, required=True)
    listing = commands.add_parser("list", help="the exercises per chapter",
                                  description="List the exercises per chapter with their "
                                              "signature, difficulty and points.")
    listing.add_argument("--chapter", type=_chapter(), default=None, metavar="N",
                         help=f"only chapter N's exercises ({_CHAPTER_RANGE}; default: every chapter)")
    listing.add_argument("--format", choices=("table", "json"), default="table",
                         help="table for people, json for scripts")
    grading = commands.add_parser(
        "grade", help="grade files of answers",
        description="Grade files of answers: each file is imported in its own process and "
                    "every exercise function it defines is checked with a time limit.",
        epilog="Exit status 0 when the report was produced, whatever the results; 2 for a "
               "bad option, a missing path or one that is not a .py or .ipynb file.")
    grading.add_argument("files", nargs="+", metavar="FILE",
                         help="a .py file, a chapter's .ipynb, or a folder of them")
    grading.add_argument("--chapter", type=_chapter(), default=None, metavar="N",
                         help=f"grade only chapter N's exercises ({_CHAPTER_RANGE}); default: a .py file "
                              "on every chapter, a notebook on the chapters whose exercises "
                              "it defines (a chapter's notebook: its chapter)")
    grading.add_argument("--format", choices=("table", "json"), default="table",
                         help="table for people; json for scripts: one record per exercise "
                              "with its function name and a boolean `passed`, and totals")
    grading.add_argument("--timeout", type=cli.number(float, 0, 3600, lo_open=True), metavar="S",
                         default=grade.DEFAULT_TIMEOUT,
                         help="seconds each exercise's check may take (a file's import may "
                              f"take the larger of this and {grade.IMPORT_TIMEOUT:g} s)")
    return parser


def _files(parser, paths):
    """The submissions named on the command line, folders expanded; a bad path is one
    line and exit 2."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(q for q in p.iterdir() if q.suffix in submission.SUFFIXES and q.is_file())
            if not inside:
                parser.error(f"folder {p} has no .py or .ipynb files")
            files += inside
        elif not p.exists():
            parser.error(f"no such file: {p}")
        elif p.suffix not in submission.SUFFIXES:
            parser.error(f"{p} is not a .py or .ipynb file")
        else:
            files.append(p)
    return files


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "list":
        if args.format == "json":
            print(json.dumps([e.to_dict() for e in registry.EXERCISES
                              if args.chapter in (None, e.chapter)], indent=2))
        else:
            print(registry.listing(args.chapter))
        return 0
    files = _files(parser, args.files)
    report = grade.grade(files, args.chapter, args.timeout)
    print(json.dumps(report, indent=2) if args.format == "json" else grade.render_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
