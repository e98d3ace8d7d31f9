"""The chapters in notebooks/ are committed without outputs, import only the library and its
runtime dependencies, and end with a summary and exercises. (CI executes every notebook:
``--nbmake`` in pyproject.toml's pytest options collects notebooks/*.ipynb.)"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
ALLOWED_IMPORTS = {"tinymobilenet", "numpy", "scipy", "matplotlib"}
IDS = [p.name for p in NOTEBOOKS]


def read(path):
    return nbformat.read(path, as_version=4)


def python_source(cell):
    """The cell's code with IPython magics (``%timeit``, ``x = %timeit ...``) blanked out."""
    lines = []
    for line in cell.source.splitlines():
        if re.match(r"\s*[%!]", line) or re.match(r"\s*[\w, ]+=\s*%", line):
            line = re.match(r"\s*", line).group(0) + "pass"
        lines.append(line)
    return "\n".join(lines)


def test_at_least_eight_chapters_numbered_by_file_name():
    assert len(NOTEBOOKS) >= 8
    numbers = [int(re.match(r"(\d\d)_[a-z0-9_]+\.ipynb$", p.name).group(1)) for p in NOTEBOOKS]
    assert numbers == list(range(1, len(NOTEBOOKS) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_without_outputs(path):
    nb = read(path)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: cell {i} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{path.name}: cell {i} has an execution count"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_imports_only_the_library_and_its_dependencies(path):
    for cell in read(path).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(python_source(cell))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name} imports {roots - ALLOWED_IMPORTS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_ends_with_a_summary_and_exercises_with_a_self_check(path):
    cells = read(path).cells
    headings = [(i, line.strip()) for i, c in enumerate(cells) if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("## ")]
    titles = [h for _, h in headings]
    assert titles[-2:] == ["## Summary", "## Exercises"], f"{path.name}: last sections are {titles[-2:]}"
    start = headings[-1][0]
    checks = [c for c in cells[start:] if c.cell_type == "code" and "exercises.check_" in c.source]
    assert checks, f"{path.name}: the exercises call no exercises.check_* self-check"
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# Chapter")
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    assert "solutions" not in code, f"{path.name}: the exercises must not use the worked answers"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_defines_nothing_the_library_already_has(path):
    """A notebook's own functions must not shadow a library name (it would drift from it)."""
    import tinymobilenet
    from tinymobilenet import count, figures, functional, gradcheck, models, nn
    library = set()
    for module in (tinymobilenet, count, figures, functional, gradcheck, models, nn):
        library |= {n for n in dir(module) if not n.startswith("_")}
    for cell in read(path).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(python_source(cell))):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.name not in library, f"{path.name} redefines {node.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_checker_a_notebook_calls_exists(path):
    from tinymobilenet import exercises
    code = "\n".join(c.source for c in read(path).cells if c.cell_type == "code")
    for name in re.findall(r"exercises\.(check_\w+)", code):
        assert name in exercises.__all__, f"{path.name} calls a missing checker {name}"
