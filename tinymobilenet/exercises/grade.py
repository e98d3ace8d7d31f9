"""Grade files of answers: ``python -m tinymobilenet.exercises grade FILE ...``.

Each file is imported in a separate Python process (:mod:`._child`, started with
``sys.executable``), so nothing a student's code does can change the grader, and the
results come back as JSON lines. Every exercise function the file defines (``name`` or the
notebooks' ``my_name``) is checked by its checker, with a time limit each; the others are
reported as not attempted. What would stop a grader becomes the failure of one exercise:

- an endless loop: the process is killed after the time limit ("timed out after 10 s"),
  and a new one grades the exercises that remain;
- ``os._exit(3)`` or a crash of the interpreter: "the process exited with status 3 while
  running check_im2col", and a new process grades the rest;
- an exception, ``raise NotImplementedError``, ``sys.exit()``: the checker's message;
- a file that does not import (a syntax error, an exception, an endless loop or an exit at
  import; the import may take up to IMPORT_TIMEOUT = 60 s, or the time limit if it is
  longer): every exercise the file's text defines fails with that message ("import
  failed: SyntaxError line 4: invalid syntax").

Flagged for the teacher: an answer that is the library's function or comes from another
module (``fn.__module__``), an answer that calls the library's own kernel (the checker fails
it), a file that imports the worked answers or imports by name at run time, and a file whose
code replaces functions of the library or NumPy (then its results are not trusted).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from . import registry, submission

__all__ = ["grade", "grade_file", "render_table", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 10.0
STARTUP_TIMEOUT = 120.0          # Python, NumPy and the library, on a busy machine
# a file's import may take longer than one check: a notebook imports matplotlib and SciPy
# (seconds on a busy machine; the first import of matplotlib builds its font cache)
IMPORT_TIMEOUT = 60.0
_TIMEOUT = object()
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class _Child:
    """One grading process and the JSON lines it sends (read by a thread, so that waiting
    for the next one can time out)."""

    def __init__(self, path, names):
        env = dict(os.environ)
        # the child imports the same tinymobilenet as this process, installed or not
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        env["MPLBACKEND"] = "Agg"          # a notebook's matplotlib must not open windows
        plan = json.dumps({"path": str(path), "names": list(names)})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tinymobilenet.exercises._child", plan],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, start_new_session=os.name == "posix")
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue
        self.lines.put(None)                               # end of the stream

    def next(self, timeout):
        """The next message, None if the process ended, or _TIMEOUT."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return _TIMEOUT

    def exit_text(self):
        """'the process exited with status 3' / 'the process was killed by signal 9 (SIGKILL)'."""
        code = self.proc.wait()
        if code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                name = ""
            return f"the process was killed by signal {-code}{name}"
        return f"the process exited with status {code}"

    def close(self):
        """Kill the process and whatever it started (its own process group)."""
        if self.proc.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc.stdout.close()


def _record(e: registry.Exercise):
    return {"number": e.number, "chapter": e.chapter, "exercise": e.name, "function": None,
            "status": "not attempted", "passed": False, "points": 0, "max_points": e.points,
            "message": "", "case": "", "hint": "", "flags": []}


def _fail(record, message):
    record.update(status="failed", passed=False, points=0, message=message, case="", hint="")


def grade_file(path, exercises=None, timeout=DEFAULT_TIMEOUT, import_timeout=None) -> dict:
    """Grade one submission on ``exercises`` (default: all of them), each check limited to
    ``timeout`` seconds and the import to ``import_timeout`` (default: the larger of
    ``timeout`` and IMPORT_TIMEOUT); the file's record (see :func:`grade`)."""
    if import_timeout is None:
        import_timeout = max(timeout, IMPORT_TIMEOUT)
    exercises = list(exercises if exercises is not None else registry.EXERCISES)
    path = Path(path)
    records = {e.name: _record(e) for e in exercises}
    report = {"file": str(path), "import_error": None, "flags": [], "notes": [],
              "exercises": list(records.values())}
    try:
        sub = submission.read(path)
    except ValueError as e:
        report["import_error"] = f"import failed: {e}"
        return _totals(report)
    report["flags"], report["notes"] = submission.scan(sub)
    remaining = [e.name for e in exercises]
    imported = False
    while remaining:
        child = _Child(path, remaining)
        try:
            remaining, imported, again = _run_child(child, report, records, remaining,
                                                    imported, sub, timeout, import_timeout)
        finally:
            child.close()
        if not again:
            break
    return _totals(report)


def _run_child(child, report, records, remaining, imported, sub, timeout, import_timeout):
    """Let one process grade ``remaining``; (what remains, whether the file ever imported,
    whether a new process should go on)."""
    def fail_all(message, names):
        if not imported:                    # the file never imported: which does it define?
            names = submission.attempted(sub, names)
            report["import_error"] = message
        for n in names:
            _fail(records[n], message)
        return [], imported, False

    msg = child.next(STARTUP_TIMEOUT)
    if msg is _TIMEOUT or msg is None or msg.get("event") != "ready":
        why = "did not start in time" if msg is _TIMEOUT else child.exit_text()
        return fail_all(f"the grading process could not start ({why}): is tinymobilenet "
                        f"importable by {sys.executable}?", remaining)
    msg = child.next(import_timeout)
    if msg is _TIMEOUT:
        return fail_all(f"import failed: timed out after {import_timeout:g} s", remaining)
    if msg is None:
        return fail_all(f"import failed: {child.exit_text()} while importing the file", remaining)
    if msg["event"] == "import_failed":
        return fail_all(f"import failed: {msg['message']}", remaining)
    if not imported:
        for name, attr in msg["found"].items():
            records[name]["function"] = attr
            origin = msg["origin"][name]
            if origin != submission.MODULE:
                records[name]["flags"].append(f"{attr} is not defined in this file: it comes "
                                              f"from {origin}")
        remaining = [n for n in remaining if n in msg["found"]]
    imported = True
    done = None                             # the exercise whose answer ran last
    while remaining:
        running = None
        msg = child.next(timeout)
        if isinstance(msg, dict) and msg["event"] == "start":
            running = msg["name"]
            msg = child.next(timeout)
        if msg is _TIMEOUT or msg is None:
            name = running or remaining[0]
            what = (f"timed out after {timeout:g} s" if msg is _TIMEOUT
                    else f"{child.exit_text()} while running {registry.get(name).checker.__name__}")
            _fail(records[name], what)
            return [n for n in remaining if n != name], imported, True
        if msg["event"] == "tampered":
            return _tampered(report, records, remaining, done, msg["names"], imported)
        _result(records[msg["name"]], msg["result"])
        done = msg["name"]
        remaining = [n for n in remaining if n != done]
    msg = child.next(timeout)               # a last "tampered", or the end of the stream
    if isinstance(msg, dict) and msg["event"] == "tampered":
        return _tampered(report, records, remaining, done, msg["names"], imported)
    return remaining, imported, False


def _tampered(report, records, remaining, done, names, imported):
    """The student's code replaced library functions while ``done`` ran (or at import):
    that result and every later one fail."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    message = f"the file's code replaces functions of the library or NumPy ({shown}): not graded"
    report["flags"].append(message)
    for n in remaining + ([done] if done else []):
        _fail(records[n], message)
    return [], imported, False


def _result(record, result):
    record.update(status="passed" if result["ok"] else "failed", passed=bool(result["ok"]),
                  points=record["max_points"] if result["ok"] else 0,
                  message=result["message"], case=result["failed_case"], hint=result["hint"])
    if result.get("library"):
        record["flags"].append(f"uses the library's own {result['library']}")


def _totals(report):
    ex = report["exercises"]
    report.update(points=sum(r["points"] for r in ex), max_points=sum(r["max_points"] for r in ex),
                  passed=sum(r["passed"] for r in ex),
                  attempted=sum(r["status"] != "not attempted" for r in ex), total=len(ex))
    return report


def _notebook_exercises(path):
    """The exercises of the chapters whose exercises a notebook defines (a chapter's
    handout defines its own chapter's stubs), or all of them: for a ``.py`` file, a
    notebook that defines none, or one that cannot be read (its grading says why)."""
    if Path(path).suffix == ".ipynb":
        try:
            names = submission.attempted(submission.read(path), [e.name for e in registry.EXERCISES])
        except ValueError:
            names = []
        chapters = {registry.get(n).chapter for n in names}
        if chapters:
            return [e for e in registry.EXERCISES if e.chapter in chapters]
    return list(registry.EXERCISES)


def grade(paths, chapter=None, timeout=DEFAULT_TIMEOUT, import_timeout=None) -> dict:
    """Grade every file of ``paths`` on the exercises of ``chapter``, with the time limits
    of :func:`grade_file`. Without a chapter a ``.py`` file is graded on every exercise and
    a notebook on the chapters whose exercises it defines (a chapter's notebook on its
    chapter: "5 / 5 points", not "5 / 41")::

        {"chapter": N or None, "timeout": seconds,
         "files": [{"file", "chapters", "import_error", "flags", "notes", "points",
                    "max_points", "passed", "attempted", "total",
                    "exercises": [{"number", "chapter", "exercise", "function", "status",
                                   "passed", "points", "max_points", "message", "case",
                                   "hint", "flags"}, ...]}, ...],
         "totals": {"files", "points", "max_points", "passed", "exercises"}}

    ``status`` is "passed", "failed" or "not attempted"; ``function`` the name the answer
    has in the file (None if not attempted).
    """
    files = []
    for p in paths:
        exercises = ([e for e in registry.EXERCISES if e.chapter == chapter] if chapter
                     else _notebook_exercises(p))
        f = grade_file(p, exercises, timeout, import_timeout)
        files.append({"file": f["file"], "chapters": sorted({e.chapter for e in exercises}), **f})
    return {"chapter": chapter, "timeout": timeout, "files": files,
            "totals": {"files": len(files), "points": sum(f["points"] for f in files),
                       "max_points": sum(f["max_points"] for f in files),
                       "passed": sum(f["passed"] for f in files),
                       "exercises": sum(f["total"] for f in files)}}


def render_table(report) -> str:
    """The report for people: per file a line of totals, one line per attempted exercise
    (the checker's message under a failure), the numbers of the exercises not attempted,
    then the flags."""
    lines = []
    every = sorted({e.chapter for e in registry.EXERCISES})
    for f in report["files"]:
        chapters = f.get("chapters", every)
        scope = ("" if chapters == every else
                 f" (chapter{'s' * (len(chapters) > 1)} {', '.join(map(str, chapters))})")
        lines.append(f"{f['file']}{scope}: {f['points']} / {f['max_points']} points, "
                     f"{f['passed']} of {f['total']} exercises passed, {f['attempted']} attempted")
        if f["import_error"] and all(r["message"] != f["import_error"] for r in f["exercises"]):
            lines.append(f"  {f['import_error']}")
        for r in f["exercises"]:
            if r["status"] == "not attempted":
                continue
            status = "passed" if r["passed"] else "FAILED"
            function = r["function"] or "-"
            lines.append(f"  {r['number']:<4} {r['exercise']:<27} {status:<7} "
                         f"{r['points']}/{r['max_points']}  {function}")
            if r["status"] == "failed":
                case = f"case '{r['case']}': " if r["case"] else ""
                lines.append(f"         {case}{r['message']}")
            lines += [f"         flag: {flag}" for flag in r["flags"]]
        missing = [r["number"] for r in f["exercises"] if r["status"] == "not attempted"]
        if missing:
            lines.append(f"  not attempted: {', '.join(missing)}")
        lines += [f"  flag: {flag}" for flag in f["flags"]]
        lines += [f"  note: {note}" for note in f["notes"]]
    t = report["totals"]
    if t["files"] > 1:
        lines.append(f"{t['files']} files: {t['points']} / {t['max_points']} points, "
                     f"{t['passed']} of {t['exercises']} exercises passed")
    return "\n".join(lines)
