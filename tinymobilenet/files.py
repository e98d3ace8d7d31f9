"""Every file the library writes is written atomically: into a temporary file in the same
directory, then renamed over the target with ``os.replace`` (atomic on POSIX and Windows).
A crash, a full disk or Ctrl-C during a write leaves the old file as it was, never half a
file."""

from __future__ import annotations

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_open", "atomic_write", "write_json", "save_figure"]


@contextmanager
def atomic_open(path, binary: bool = True):
    """``with atomic_open(path) as f: f.write(...)``: a temporary file beside ``path``
    (parent directories are created), renamed to ``path`` when the block ends without an
    error; on any error it is removed and ``path`` is untouched."""
    path = Path(path)
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
