"""The process that imports one submission and runs the checkers on its answers.

Started by :mod:`tinymobilenet.exercises.grade` as ``python -m tinymobilenet.exercises._child
PLAN`` with PLAN a JSON object ``{"path": FILE, "names": [exercise, ...]}``. It answers in
JSON lines on a private copy of its standard output (file descriptor 1 itself is pointed
at standard error first, so nothing the student's code prints can be taken for an answer):

    {"event": "ready"}                                   the checkers are imported and bound
    {"event": "import_failed", "message": ...}           or
    {"event": "imported", "found": {name: attr}, "origin": {name: module}}
    {"event": "start", "name": ...}                      for each answer found, in order
    {"event": "result", "name": ..., "result": {...}}    ExerciseResult.to_dict()
    {"event": "tampered", "names": [...]}                the student's code replaced a function
                                                         of the library or NumPy: stop

The checkers are looked up before the submission is imported, so replacing
``exercises.check_im2col`` does not change the one that runs; replacing a function the
checkers call (``tinymobilenet.*`` or ``numpy``) is detected and ends the grading of the
file. Results go back as JSON, never pickled.
"""

from __future__ import annotations

import json
import os
import sys


def _functions():
    """{(module, name): object} of every function and class of the library and NumPy."""
    return {(m, k): v for m, mod in list(sys.modules.items())
            if mod is not None and m.split(".")[0] in ("numpy", "tinymobilenet")
            for k, v in list(vars(mod).items()) if callable(v)}


def _replaced(before):
    """The functions of ``before`` that are no longer the same object."""
    now = _functions()
    return sorted(f"{m}.{k}" for (m, k), v in before.items() if now.get((m, k)) is not v)


def main(argv=None) -> int:
    plan = json.loads((argv if argv is not None else sys.argv[1:])[0])
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)                         # the student's prints (and os.write(1, ...)) -> stderr

    def send(**message):
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    from . import registry, submission
    checkers = {name: registry.get(name).checker for name in plan["names"]}
    sub = submission.read(plan["path"])
    before = _functions()
    send(event="ready")
    try:
        module = submission.load(sub)
    except BaseException as e:            # SyntaxError, SystemExit, KeyboardInterrupt, ...
        send(event="import_failed", message=submission.import_error(sub, e))
        return 0
    found = submission.find(module, plan["names"])
    send(event="imported", found={n: attr for n, (attr, _) in found.items()},
         origin={n: str(getattr(fn, "__module__", None)) for n, (_, fn) in found.items()})
    for name in plan["names"]:
        replaced = _replaced(before)
        if replaced:
            send(event="tampered", names=replaced)
            return 0
        if name not in found:
            continue
        send(event="start", name=name)
        try:
            result = checkers[name](found[name][1]).to_dict()
        except BaseException as e:        # what no checker catches (KeyboardInterrupt, ...)
            result = {"ok": False, "message": f"your function raised {type(e).__name__}: {e}",
                      "failed_case": "", "hint": "", "library": ""}
        send(event="result", name=name, result=result)
    replaced = _replaced(before)
    if replaced:
        send(event="tampered", names=replaced)
    return 0


if __name__ == "__main__":
    sys.exit(main())
