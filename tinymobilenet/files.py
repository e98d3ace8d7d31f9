"""Every file the library writes is written atomically: into a temporary file in the same
directory, then renamed over the target with ``os.replace`` (atomic on POSIX and Windows).
A crash, a full disk or Ctrl-C during a write leaves the old file as it was, never half a
file.

It also holds what every command asks of a path before the work starts:
:func:`input_problem` (a file to read is missing or a directory), :func:`output_problem`
(a directory where a file is to be written, a file where a folder is needed), and
:func:`read_json` (a JSON file from outside, refused with one :class:`FileError` naming it)."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_open", "atomic_write", "write_json", "save_figure", "FileError",
           "input_problem", "output_problem", "read_json", "shown"]


class FileError(ValueError):
    """A file from outside that is missing, a directory, unreadable or not what it should
    be (the message names it and what is wrong)."""


def shown(path) -> str:
    """``path`` as a message shows it, without the detours of a path joined onto another:
    ``runs/x/../../photos`` as ``photos`` (for messages only: what is opened is ``path``)."""
    return os.path.normpath(str(path))


def _article(what: str) -> str:
    return "an" if what[:1] in "aeiou" else "a"


def input_problem(path, what: str = "") -> str | None:
    """None if ``path`` is a file that can be opened, else one line naming it:
    ``"x.npz: no such checkpoint file"``, ``"x.npz: is a directory, not a checkpoint
    file"`` (``what`` names the kind of file, e.g. "checkpoint", "image")."""
    p = Path(path)
    kind = f"{what} file" if what else "file"
    if p.is_file():
        return None
    if p.is_dir():
        return f"{path}: is a directory, not {_article(kind)} {kind}"
    if p.exists():
        return f"{path}: not a regular file"
    return f"{path}: no such {kind}"


def output_problem(path, folder: bool = False) -> str | None:
    """None if a file (``folder``: a folder) can be made at ``path`` as far as can be seen
    before writing, else one line naming it: a directory where the file would go, or an
    existing file where the folder (or one of the folders above it) would have to be."""
    p = Path(path)
    if not folder and p.is_dir():
        return f"{path}: is a directory; give a file name"
    for q in ([p] if folder else []) + list(p.parents):
        if q.exists() and not q.is_dir():
            return (f"{path}: is a file, not a folder" if q == p else
                    f"{path}: {q} is a file, not a folder")
    return None


@contextmanager
def atomic_open(path, binary: bool = True):
    """``with atomic_open(path) as f: f.write(...)``: a temporary file beside ``path``
    (parent directories are created), renamed to ``path`` when the block ends without an
    error; on any error it is removed and ``path`` is untouched."""
    path = Path(path)
    if path.is_dir():                     # os.replace would say "Is a directory" at the end
        raise IsADirectoryError(f"{path}: is a directory; give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name opened with "x" (not tempfile.mkstemp, whose 0600 mode the renamed
    # file would keep): the usual permissions, and two writers never share a temporary
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb" if binary else "x") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())          # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:                 # KeyboardInterrupt too: never leave the temporary file
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path, write, binary: bool = True) -> Path:
    """Call ``write(f)`` on a file opened with :func:`atomic_open` and return ``path``."""
    with atomic_open(path, binary) as f:
        write(f)
    return Path(path)


def write_json(path, obj, indent: int = 1) -> Path:
    """``obj`` as JSON text at ``path``, atomically."""
    text = json.dumps(obj, indent=indent)
    return atomic_write(path, lambda f: f.write(text + "\n"), binary=False)


def save_figure(fig, path, **savefig_kwargs) -> Path:
    """``fig.savefig`` to ``path`` atomically (the format from the file name's ending)."""
    path = Path(path)
    fmt = savefig_kwargs.pop("format", path.suffix.lstrip(".") or "png")
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, **savefig_kwargs))


def read_json(path, what: str = "JSON"):
    """The object in the JSON file ``path``; :class:`FileError` naming the file for one that
    is missing, a directory, not UTF-8 text or not valid JSON (nested too deep included).
    ``what`` names the kind of file in the messages ("metrics.json")."""
    problem = input_problem(path, what)
    if problem:
        raise FileError(problem)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise FileError(f"{path}: not {_article(what)} {what} file (not UTF-8 text)") from None
    except (json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise FileError(f"{path}: not {_article(what)} {what} file ({why})") from None
    except OSError as e:
        raise FileError(f"{path}: cannot read it ({e.strerror or e})") from None
