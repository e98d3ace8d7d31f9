"""What every ``python -m tinymobilenet.X`` command shares: its manners.

- A bad or unknown option, or a bad value, is one line on stderr and exit status 2, never a
  usage block or a traceback (:class:`Parser`).
- ``--help`` shows every option with its default (:class:`HelpFormatter`).
- Numbers are checked when they are parsed: ``number(int, lo=1)`` names the bound it broke.
- :func:`run` calls a command's ``main``: a closed pipe (``| head``) ends quietly, Ctrl-C
  ends with one line (exit 130) unless the command handles it itself.
"""

from __future__ import annotations

import argparse
import math
import sys

__all__ = ["Parser", "HelpFormatter", "number", "run", "write_json"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's line breaks and appends ``(default: ...)`` to every option
    that has a default value and a help text that does not already name its default
    (flags, whose default is "off", and options without a default get none)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` that reports a bad command line in one line, exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def number(kind=float, lo=None, hi=None, *, lo_open=False):
    """An argparse ``type=`` that parses ``kind`` (int or float), refuses NaN and infinity,
    and checks ``lo <= value <= hi`` (``lo < value`` with ``lo_open``)."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
        if kind is float and not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise argparse.ArgumentTypeError(f"must be {'>' if lo_open else '>='} {lo:g}, "
                                             f"got {text}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be <= {hi:g}, got {text}")
        return v
    parse.__name__ = kind.__name__           # argparse names the type in its messages
    return parse


def run(main, argv=None) -> int:
    """``sys.exit(run(main))`` at the bottom of a command module."""
    try:
        return main(argv)
    except BrokenPipeError:                  # piped into `head`: stop quietly
        try:
            sys.stderr.close()
        finally:
            return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def write_json(path, obj) -> None:
    """Write ``obj`` as JSON indented by 2 to ``path``, atomically
    (:func:`tinymobilenet.files.write_json`)."""
    from .files import write_json as write
    write(path, obj, indent=2)
