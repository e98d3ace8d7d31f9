"""A student's submission read as code: a ``.py`` file, or a chapter's ``.ipynb`` notebook.

A ``.py`` file is imported as it is. Of a notebook only the imports and definitions run
(``def``, ``class``, and names bound to a lambda or a constant): its demonstrations, timings
and self-checks do not, so a notebook is graded as fast as a file, and an answer must not
rely on a variable a demonstration cell computed. IPython's ``%`` and ``!`` lines are left
out.

The grader reads the submission here twice: in its own process, to scan the imports
(:func:`scan`) and to see which exercises the text defines (:func:`attempted`, which works
on a file that does not even parse), and in the child process that imports it
(:func:`load`) and looks up the answers (:func:`find`).
"""

from __future__ import annotations

import ast
import json
import re
import sys
import traceback
import types
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Submission", "SUFFIXES", "MODULE", "read", "scan", "attempted", "load", "find",
           "import_error"]

SUFFIXES = (".py", ".ipynb")
MODULE = "submission"              # the module name a submission is imported under
KERNELS = ("functional", "nn", "models", "count", "optim", "gradcheck")
_DYNAMIC = {"__import__", "import_module", "spec_from_file_location", "run_path"}


@dataclass
class Submission:
    """``cells``: (label, source) pairs, label '' for a .py file and 'cell N' (the notebook's
    N-th cell, counted from 1) for a notebook's code cells."""

    path: Path
    cells: list

    @property
    def notebook(self) -> bool:
        return self.path.suffix == ".ipynb"


def read(path) -> Submission:
    """The submission's code; ValueError with one line naming the file if it is not a text
    file or not a notebook."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({type(e).__name__}: {e})") from None
    if path.suffix != ".ipynb":
        return Submission(path, [("", text)])
    try:
        cells = json.loads(text)["cells"]
        code = [(f"cell {i}", "".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for i, c in enumerate(cells, 1) if c.get("cell_type") == "code"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a Jupyter notebook ({type(e).__name__}: {e})") from None
    return Submission(path, [(label, _without_magics(src)) for label, src in code])


def _without_magics(source):
    """IPython's magics (``%timeit ...``, ``t = %timeit ...``, ``!pip ...``) as ``pass``."""
    lines = []
    for line in source.splitlines():
        if re.match(r"\s*[%!]", line) or re.match(r"\s*[\w, ]+=\s*%", line):
            line = re.match(r"\s*", line).group(0) + "pass"
        lines.append(line)
    return "\n".join(lines)


def _filename(sub, label):
    return f"{sub.path} [{label}]" if label else str(sub.path)


def _parse(sub):
    """(label, module AST) of every cell; SyntaxError as Python raises it."""
    return [(label, ast.parse(src, filename=_filename(sub, label))) for label, src in sub.cells]


def _is_definition(node):
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef,
                         ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not all(isinstance(t, ast.Name) for t in targets):   # seq.fuse = False: a demo's
            return False
        if isinstance(node.value, ast.Lambda):
            return True
        try:
            ast.literal_eval(node.value)
            return True
        except ValueError:
            return False
    return False


def load(sub: Submission) -> types.ModuleType:
    """Import the submission as module :data:`MODULE` (exceptions propagate: the caller
    reports them with :func:`import_error`)."""
    module = types.ModuleType(MODULE)
    module.__file__ = str(sub.path)
    sys.modules[MODULE] = module
    sys.path.insert(0, str(sub.path.resolve().parent))     # as `python FILE` would
    for label, tree in _parse(sub):
        if sub.notebook:
            tree.body = [node for node in tree.body if _is_definition(node)]
        exec(compile(tree, _filename(sub, label), "exec"), module.__dict__)
    return module


def import_error(sub: Submission, error: BaseException) -> str:
    """One line for an exception raised while importing: 'SyntaxError line 4: invalid
    syntax', 'ZeroDivisionError in cell 3, line 2: division by zero', 'the file called
    sys.exit(3)'."""
    if isinstance(error, SyntaxError):
        return f"{type(error).__name__}{_where(sub, error.filename, error.lineno)}: {error.msg}"
    if isinstance(error, SystemExit):
        return f"the file called sys.exit({error.code})"
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if f.filename.startswith(str(sub.path))]
    where = _where(sub, frames[-1].filename, frames[-1].lineno) if frames else ""
    return f"{type(error).__name__}{where}: {error}"


def _where(sub, filename, line):
    cell = re.search(r"\[(cell \d+)\]$", filename or "")
    place = f" in {cell.group(1)}," if cell else ""
    return f"{place} line {line}" if line else place.rstrip(",")


def find(module, names) -> dict:
    """{exercise name: (the name it has in the module, the object)} for every exercise the
    module defines, as ``name`` or as the notebooks' ``my_name``. One defined in the file
    comes before one imported into it (chapter 4 imports the library's ``fold_batchnorm``
    for its demonstration; the answer is ``my_fold_batchnorm``)."""
    found = {}
    for name in names:
        candidates = [(attr, vars(module)[attr]) for attr in (name, f"my_{name}")
                      if attr in vars(module)]
        own = [c for c in candidates if getattr(c[1], "__module__", None) == MODULE]
        if candidates:
            found[name] = (own or candidates)[0]
    return found


def attempted(sub: Submission, names) -> list:
    """The exercises whose function the text defines (``def [my_]name(`` or ``[my_]name =``),
    found in the text itself, so that it works on a file that does not parse."""
    text = "\n".join(src for _, src in sub.cells)
    return [n for n in names if re.search(
        rf"^[ \t]*(?:(?:async[ \t]+)?def[ \t]+(?:my_)?{n}[ \t]*\(|(?:my_)?{n}[ \t]*=[^=])",
        text, re.M)]


def scan(sub: Submission):
    """The imports of the submission that a teacher should see: (flags, notes).

    flags: imports of the worked answers (any module named ``solutions``) and imports by
    name at run time (``importlib.import_module``, ``__import__``, ...).
    notes: imports of the library's kernels (``tinymobilenet.functional``, ``.nn``, ...) in a
    ``.py`` file; the chapters' notebooks import them for their demonstrations, so a
    notebook's are not listed. Whether an answer *uses* the library is decided per exercise,
    by the checker. A file that does not parse gives no flags (its import fails anyway).
    """
    flags, notes = [], []
    try:
        trees = _parse(sub)
    except SyntaxError:
        return flags, notes
    for label, tree in trees:
        for node in ast.walk(tree):
            where = f"{label}, line {getattr(node, 'lineno', '?')}".lstrip(", ")
            for module in _imported(node):
                parts = module.split(".")
                if "solutions" in parts:
                    flags.append(f"imports the worked answers `{module}` ({where})")
                elif parts[0] == "tinymobilenet" and (len(parts) == 1 or parts[1] in KERNELS) \
                        and not sub.notebook:
                    notes.append(f"imports {module} ({where})")
            if isinstance(node, ast.Call):
                fname = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if fname in _DYNAMIC:
                    flags.append(f"imports a module by name at run time, {fname}() ({where})")
    return flags, notes


def _imported(node):
    """The dotted modules an import statement brings in (``from a import b`` gives a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [f"{node.module}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.ImportFrom):                   # a relative import
        return [f"{node.module or ''}.{alias.name}".lstrip(".") for alias in node.names]
    return []
