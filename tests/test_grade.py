"""The grader: every submission imported in its own process; a report whatever the
submission does (endless loops, os._exit, crashes, syntax errors at import); flags for
answers that are or call the library's or come from the worked answers; a command that
answers a bad command line with one line and exit 2."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from tinymobilenet.exercises import grade, registry
from tinymobilenet.exercises.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions" / "solutions.py"
TOTAL_POINTS = sum(e.points for e in registry.EXERCISES)


def write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def records(file_report):
    return {r["exercise"]: r for r in file_report["exercises"]}


def test_the_worked_answers_get_every_point_from_the_command():
    out = subprocess.run([sys.executable, "-m", "tinymobilenet.exercises", "grade",
                          str(SOLUTIONS), "--format", "json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    (f,) = report["files"]
    assert f["import_error"] is None and not f["flags"] and not f["notes"]
    for r in f["exercises"]:
        assert r["passed"] is True and r["status"] == "passed", r
        assert r["function"] == r["exercise"] and not r["flags"]
    assert f["points"] == f["max_points"] == TOTAL_POINTS
    assert report["totals"] == {"files": 1, "points": TOTAL_POINTS, "max_points": TOTAL_POINTS,
                                "passed": len(registry.EXERCISES),
                                "exercises": len(registry.EXERCISES)}


PATHOLOGICAL = """\
    import os
    import sys
    import tinymobilenet.functional as F
    from tinymobilenet.functional import im2col
    print("the import prints")
    os.write(1, b"and writes to file descriptor 1\\n")

    def conv_output_size(size, kernel_size, stride, padding):
        print("a function prints")
        return (size - kernel_size) // stride + 1          # forgot the padding

    def my_conv2d_forward(x, w, b, stride, padding):
        return F.conv2d_forward(x, w, b, stride, padding)[0]

    def conv2d_backward(dout, x, w, stride, padding):
        return 1 / 0

    def depthwise_forward(x, w, stride, padding):
        while True:
            pass

    def depthwise_backward(dout, x, w, stride, padding):
        os._exit(3)

    def cost_ratio(C_out, K):
        raise NotImplementedError

    def relu6_backward(dout, x):
        sys.exit(4)

    def my_v1_macs(alpha, resolution):
        return None

    def hardswish_backward(dout, x):
        raise KeyboardInterrupt

    def sgd_step(w, grad, velocity, lr, momentum, weight_decay):
        velocity = momentum * velocity + grad + weight_decay * w
        return w - lr * velocity, velocity
"""


@pytest.fixture(scope="module")
def pathological(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("subs"), "pathological.py", PATHOLOGICAL)
    return grade.grade([path], timeout=2.0)


def test_every_pathology_becomes_the_failure_of_its_own_exercise(pathological):
    (f,) = pathological["files"]
    r = records(f)
    assert "size=1, kernel_size=1, stride=1, padding=1: got 1" in r["conv_output_size"]["message"]
    assert "raised ZeroDivisionError" in r["conv2d_backward"]["message"]
    assert r["depthwise_forward"]["message"] == "timed out after 2 s"
    assert r["depthwise_backward"]["message"] == (
        "the process exited with status 3 while running check_depthwise_backward")
    assert "not implemented" in r["cost_ratio"]["message"]
    assert "called sys.exit(4)" in r["relu6_backward"]["message"]
    assert "is None" in r["v1_macs"]["message"]
    assert r["hardswish_backward"]["message"].startswith("your function raised KeyboardInterrupt")
    # graded after the endless loop and the exit, in a new process
    assert r["sgd_step"]["passed"] is True and r["sgd_step"]["points"] == 1
    for name in ("conv_output_size", "conv2d_backward", "depthwise_forward", "cost_ratio"):
        assert r[name]["status"] == "failed" and r[name]["passed"] is False
    assert r["batchnorm_backward"]["status"] == "not attempted"
    assert r["v1_macs"]["function"] == "my_v1_macs"
    assert f["points"] == 1 and f["attempted"] == 11


def test_answers_that_are_or_call_the_library_are_flagged(pathological):
    (f,) = pathological["files"]
    r = records(f)
    assert not r["im2col"]["passed"] and "library's own" in r["im2col"]["message"]
    assert any("not defined in this file" in flag and "tinymobilenet.functional" in flag
               for flag in r["im2col"]["flags"])
    assert not r["conv2d_forward"]["passed"]
    assert "uses the library's own F.conv2d_forward" in r["conv2d_forward"]["flags"]
    assert "imports tinymobilenet.functional (line 3)" in f["notes"]


def test_the_report_is_json_and_a_table(pathological):
    json.dumps(pathological, allow_nan=False)            # strict JSON, no NaN or Infinity
    table = grade.render_table(pathological)
    assert "timed out after 2 s" in table and "not attempted: 4.1" in table
    assert "flag: uses the library's own F.conv2d_forward" in table
    assert "note: imports tinymobilenet.functional (line 3)" in table
    r = records(pathological["files"][0])["conv_output_size"]
    assert r["case"] and f"case '{r['case']}': {r['message']}" in table


@pytest.mark.parametrize("source, message", [
    ("def im2col(x, K, stride, padding):\n    return x[\n", "import failed: SyntaxError line 2"),
    ("def im2col(x, K, stride, padding):\n    return x\n\nraise ValueError('at import')\n",
     "import failed: ValueError line 4: at import"),
    ("import os\ndef im2col(x, K, stride, padding):\n    return x\nos._exit(5)\n",
     "import failed: the process exited with status 5 while importing the file"),
    ("def im2col(x, K, stride, padding):\n    return x\nwhile True:\n    pass\n",
     "import failed: timed out after 1.5 s"),
    ("import sys\ndef im2col(x, K, stride, padding):\n    return x\nsys.exit(3)\n",
     "import failed: the file called sys.exit(3)"),
    ("import json\ndef im2col(x, K, stride, padding):\n    return x\njson.loads('{')\n",
     "import failed: JSONDecodeError line 4: Expecting property name"),
], ids=["syntax error", "exception", "os._exit", "endless loop", "sys.exit", "in a library"])
def test_a_file_that_does_not_import_fails_the_exercises_it_defines(tmp_path, source, message):
    path = tmp_path / "student.py"
    path.write_text(source)
    f = grade.grade_file(path, timeout=5.0, import_timeout=1.5)
    r = records(f)
    assert f["import_error"].startswith(message), f["import_error"]
    assert r["im2col"]["status"] == "failed" and r["im2col"]["message"] == f["import_error"]
    assert r["conv2d_forward"]["status"] == "not attempted"


def test_replacing_the_library_s_functions_is_flagged_and_not_graded(tmp_path):
    path = write(tmp_path, "tamper.py", """\
        from tinymobilenet.exercises import _checking

        def conv_output_size(size, kernel_size, stride, padding):
            return (size + 2 * padding - kernel_size) // stride + 1

        def cost_ratio(C_out, K):
            _checking.compare = lambda *args: 0.0        # every comparison would pass
            return 1 / C_out + 1 / K ** 2

        def compound_scaling(phi):
            return 1.0, 1.0, 224
    """)
    r = records(grade.grade_file(path, timeout=5.0))
    assert r["conv_output_size"]["passed"]           # graded before the replacement
    for name in ("cost_ratio", "compound_scaling"):   # while and after
        assert not r[name]["passed"] and r[name]["points"] == 0
        assert "replaces functions of the library" in r[name]["message"]
        assert "_checking.compare" in r[name]["message"]
    # replacing a checker at import does not change the one that runs, and is flagged
    path = write(tmp_path, "patch.py", """\
        from tinymobilenet import exercises
        exercises.check_cost_ratio = lambda fn: True

        def cost_ratio(C_out, K):
            return 0.5
    """)
    f = grade.grade_file(path, timeout=5.0)
    assert not records(f)["cost_ratio"]["passed"]
    assert any("check_cost_ratio" in flag for flag in f["flags"])


def test_what_the_file_writes_to_standard_output_is_not_taken_for_an_answer(tmp_path):
    """The answers come back on a channel of their own: a line printed by the student's
    code that looks like the grader's message (a passed result, then an exit before the
    real one) fails the exercise as the exit it is."""
    forged = json.dumps({"event": "result", "name": "cost_ratio",
                         "result": {"ok": True, "message": "", "failed_case": "", "hint": "",
                                    "library": ""}})
    path = write(tmp_path, "forger.py", f"""\
        import os

        def cost_ratio(C_out, K):
            print({forged!r}, flush=True)
            os._exit(0)
    """)
    (r,) = grade.grade_file(path, [registry.get("cost_ratio")], timeout=5.0)["exercises"]
    assert not r["passed"] and r["points"] == 0
    assert r["message"] == "the process exited with status 0 while running check_cost_ratio"


def test_the_import_may_take_longer_than_one_check(tmp_path, monkeypatch):
    """A notebook's imports (matplotlib, SciPy) may take longer than the time limit of a
    check: the import waits for the larger of the two, each check for the time limit."""
    waits = []
    real = grade._Child.next

    def next_message(child, timeout):
        waits.append(timeout)
        return real(child, timeout)
    monkeypatch.setattr(grade._Child, "next", next_message)
    path = write(tmp_path, "student.py", """\
        def conv_output_size(size, kernel_size, stride, padding):
            return (size + 2 * padding - kernel_size) // stride + 1
    """)
    (r,) = grade.grade_file(path, [registry.get("conv_output_size")], timeout=3.0)["exercises"]
    assert r["passed"]
    assert waits[:2] == [grade.STARTUP_TIMEOUT, max(3.0, grade.IMPORT_TIMEOUT)]
    assert waits[2:] and set(waits[2:]) == {3.0}


def test_the_file_s_own_answer_wins_over_the_library_s_function_it_imports(tmp_path):
    """A chapter's handout imports the library's function for a demonstration and asks for
    ``my_<name>``: the answer graded is the one the file defines, not the import."""
    path = write(tmp_path, "student.py", """\
        from tinymobilenet.functional import conv_output_size

        def my_conv_output_size(size, kernel_size, stride, padding):
            return (size + 2 * padding - kernel_size) // stride + 1
    """)
    (r,) = grade.grade_file(path, [registry.get("conv_output_size")], timeout=5.0)["exercises"]
    assert r["passed"] and r["function"] == "my_conv_output_size" and not r["flags"]


def test_importing_the_worked_answers_is_flagged(tmp_path):
    path = write(tmp_path, "copied.py", f"""\
        import sys
        sys.path.insert(0, {str(SOLUTIONS.parent)!r})
        from solutions import im2col
    """)
    f = grade.grade_file(path, [registry.get("im2col")], timeout=5.0)
    assert any("imports the worked answers `solutions.im2col`" in flag for flag in f["flags"])
    (r,) = f["exercises"]
    assert "im2col is not defined in this file: it comes from solutions" in r["flags"]
    # from inside a package, and by name at run time
    path = write(tmp_path, "hidden.py", """\
        import importlib
        import notebooks.solutions.solutions as worked
        answers = importlib.import_module("sol" + "utions")
    """)
    flags = grade.grade_file(path, [registry.get("im2col")], timeout=5.0)["flags"]
    assert "imports the worked answers `notebooks.solutions.solutions` (line 2)" in flags
    assert "imports a module by name at run time, import_module() (line 3)" in flags


def test_a_chapter_notebook_runs_its_definitions_only(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "01_convolution_and_im2col.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "def my_conv_output_size" in cell.source:
            cell.source = cell.source.replace(
                "raise NotImplementedError   # your code here",
                "return (size + 2 * padding - kernel_size) // stride + 1")
    nb.cells.append(nbformat.v4.new_code_cell("raise RuntimeError('a demonstration ran')"))
    path = tmp_path / "student01.ipynb"
    nbformat.write(nb, path)
    out = subprocess.run([sys.executable, "-m", "tinymobilenet.exercises", "grade", str(path),
                          "--chapter", "1", "--format", "json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (f,) = json.loads(out.stdout)["files"]
    assert f["import_error"] is None and not f["notes"]    # the handout's imports are expected
    r = records(f)
    assert set(r) == {e.name for e in registry.EXERCISES if e.chapter == 1}
    assert r["conv_output_size"]["passed"] and r["conv_output_size"]["function"] == "my_conv_output_size"
    assert "not implemented" in r["im2col"]["message"]     # the handout's stub


def test_a_chapter_notebook_is_graded_on_its_own_chapter_unless_told(tmp_path):
    nb = nbformat.read(ROOT / "notebooks" / "03_depthwise_and_pointwise.ipynb", as_version=4)
    path = tmp_path / "renamed by the student.ipynb"   # found by what it defines, not its name
    nbformat.write(nb, path)
    (py := tmp_path / "answers.py").write_text(SOLUTIONS.read_text())
    chapter3 = [e for e in registry.EXERCISES if e.chapter == 3]
    report = grade.grade([path, py], timeout=30.0)
    nb_report, py_report = report["files"]
    assert nb_report["chapters"] == [3]
    assert [r["exercise"] for r in nb_report["exercises"]] == [e.name for e in chapter3]
    assert nb_report["max_points"] == sum(e.points for e in chapter3)
    assert py_report["max_points"] == TOTAL_POINTS                # a .py file: every chapter
    table = grade.render_table(report)
    assert f"{path} (chapter 3): 0 / {nb_report['max_points']} points" in table
    assert f"{py}: {TOTAL_POINTS} / {TOTAL_POINTS} points" in table
    assert nb_report["attempted"] == len(chapter3) and nb_report["passed"] == 0  # the stubs
    assert report["totals"] == {"files": 2, "points": TOTAL_POINTS,
                                "max_points": nb_report["max_points"] + TOTAL_POINTS,
                                "passed": len(registry.EXERCISES),
                                "exercises": len(chapter3) + len(registry.EXERCISES)}
    assert (f"2 files: {TOTAL_POINTS} / {nb_report['max_points'] + TOTAL_POINTS} points, "
            f"{len(registry.EXERCISES)} of {len(chapter3) + len(registry.EXERCISES)} "
            f"exercises passed") in table
    told = grade.grade([path], chapter=1, timeout=30.0)["files"][0]   # --chapter wins
    assert told["chapters"] == [1] and told["attempted"] == 0


def test_the_table_says_why_a_file_that_is_not_a_notebook_was_not_graded(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{'cells': ")
    table = grade.render_table(grade.grade([path]))
    assert f"import failed: {path}: not a Jupyter notebook" in table


def test_an_answer_that_calls_an_unfinished_one_names_it(tmp_path):
    path = write(tmp_path, "student.py", """\
        def my_im2col(x, K, stride, padding):
            raise NotImplementedError   # your code here

        def my_conv2d_forward(x, w, b, stride, padding):
            return my_im2col(x, w.shape[2], stride, padding)
        """)
    r = records(grade.grade_file(path, registry.EXERCISES[:3], timeout=10.0))
    assert r["im2col"]["message"] == "not implemented yet (the function raised NotImplementedError)"
    assert r["conv2d_forward"]["message"] == ("not implemented yet: my_im2col, which your "
                                              "function calls, raised NotImplementedError")
    assert r["conv2d_forward"]["hint"] == "finish my_im2col first"


def test_a_notebook_keeps_its_constants_and_lambdas_but_not_its_demonstrations(tmp_path):
    """Of a notebook, names bound to a constant or a lambda are kept (an answer may use
    them); a demonstration's statements are not run, an attribute set on a demonstration's
    object included."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("TWO = 2\ndouble = lambda v: TWO * v"),
        nbformat.v4.new_code_cell("net = make_a_demonstration_network()\nnet.fused = False"),
        nbformat.v4.new_code_cell("def my_conv_output_size(size, kernel_size, stride, padding):\n"
                                  "    return (size + double(padding) - kernel_size) // stride + 1"),
    ])
    path = tmp_path / "answers.ipynb"
    nbformat.write(nb, path)
    f = grade.grade_file(path, [registry.get("conv_output_size")], timeout=5.0)
    assert f["import_error"] is None and f["passed"] == 1, f


def test_a_file_may_import_a_module_of_its_own_folder(tmp_path):
    """As ``python FILE`` would: the file's folder comes first on the import path."""
    write(tmp_path, "helpers.py", """\
        def out_size(size, kernel_size, stride, padding):
            return (size + 2 * padding - kernel_size) // stride + 1
    """)
    path = write(tmp_path, "student.py", "from helpers import out_size as conv_output_size\n")
    f = grade.grade_file(path, [registry.get("conv_output_size")], timeout=5.0)
    assert f["import_error"] is None and f["passed"] == 1, f


def test_a_notebook_cell_that_does_not_parse_is_named(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# answers"),
        nbformat.v4.new_code_cell("%timeit 1 + 1\ndef my_cost_ratio(C_out, K):\n    return 1 / C_out + 1 / K ** 2"),
        nbformat.v4.new_code_cell("def my_im2col(x, K, stride, padding):\n    return (x"),
    ])
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    f = grade.grade_file(path, timeout=5.0)
    assert f["import_error"].startswith("import failed: SyntaxError in cell 3, line 2")
    assert records(f)["cost_ratio"]["status"] == "failed"


def test_a_folder_is_every_py_and_ipynb_in_it_and_list_shows_every_exercise(tmp_path, capsys):
    (tmp_path / "a.py").write_text(SOLUTIONS.read_text())
    (tmp_path / "notes.txt").write_text("not a submission")
    assert main(["grade", str(tmp_path), "--chapter", "9"]) == 0
    table = capsys.readouterr().out
    assert f"{tmp_path / 'a.py'} (chapter 9): 1 / 1 points, 1 of 1 exercises passed" in table
    assert "notes.txt" not in table
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    assert all(e.signature in listing for e in registry.EXERCISES)
    assert listing.splitlines()[-1] == (f"{len(registry.EXERCISES)} exercises, "
                                        f"{TOTAL_POINTS} points")
    assert main(["list", "--format", "json", "--chapter", "8"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == [e.name for e in registry.EXERCISES if e.chapter == 8]
    assert all({"signature", "difficulty", "points"} <= set(row) for row in rows)


def test_an_exercise_is_found_by_its_function_and_its_checker_is_named_after_it(monkeypatch):
    """registry.get names what it cannot find; a checker must be called check_<name> (the
    report names the checker a crash happened in)."""
    assert registry.get("im2col").checker.__name__ == "check_im2col"
    with pytest.raises(KeyError, match="no_such_exercise"):
        registry.get("no_such_exercise")
    monkeypatch.setattr(registry, "EXERCISES", list(registry.EXERCISES))
    with pytest.raises(ValueError, match="must be called check_double"):
        @registry.exercise("99.1", "double(v) -> int", difficulty=1, points=1)
        def check_twice(fn):
            return []


@pytest.mark.parametrize("argv, words", [
    ([], "required"),
    (["grade"], "required: FILE"),
    (["grade", "x.py", "--timeout", "0"], "--timeout: must be > 0"),
    (["grade", "x.py", "--format", "xml"], "invalid choice"),
    (["list", "--chapter", "0"], "--chapter: must be >= 1"),
    (["grade", "x.py", "--bogus"], "unrecognized arguments: --bogus"),
    (["grade", "no/such/file.py"], "no such file: no/such/file.py"),
    (["grade", str(ROOT / "README.md")], "is not a .py or .ipynb file"),
])
def test_a_bad_command_line_is_one_line_and_exit_2(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err


def test_an_empty_folder_is_a_bad_path(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["grade", str(tmp_path)])
    assert exit_.value.code == 2 and "has no .py or .ipynb files" in capsys.readouterr().err


@pytest.mark.slow
def test_every_handed_out_notebook_grades_as_not_implemented_yet():
    """What a teacher gets back from a class that did nothing: each chapter's stubs found
    under their notebook names and failed as not implemented, nothing flagged."""
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    report = grade.grade(notebooks, timeout=30.0)
    for path, f in zip(notebooks, report["files"]):
        chapter = int(path.name[:2])
        assert f["import_error"] is None and not f["flags"], (path.name, f)
        assert f["chapters"] == [chapter]             # graded on its own chapter only
        assert {r["chapter"] for r in f["exercises"]} == {chapter}, path.name
        for r in f["exercises"]:
            assert r["function"] == f"my_{r['exercise']}", (path.name, r)
            assert "not implemented yet" in r["message"] and not r["flags"], (path.name, r)
