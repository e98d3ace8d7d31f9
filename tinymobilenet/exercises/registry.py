"""Every exercise of the chapters, in one list: its number in the notebook, the function the
student writes (name and signature), a difficulty, the points it is worth, and its checker.

A checker module declares each exercise where it defines the checker::

    @exercise("1.1", "conv_output_size(size, kernel_size, stride, padding) -> int",
              difficulty=1, points=1, tol=0.0)
    def check_conv_output_size(fn):
        return [(label, hint, thunk), ...]          # the cases, simple first

and the decorator turns the case builder into the checker users call: it first checks the
*function* (callable, takes the signature's parameters, is not and does not call the
library's own version of it; ``allow`` lists the library functions an answer may use),
then runs the cases on a guarded copy of it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from . import _checking

__all__ = ["Exercise", "EXERCISES", "CHAPTERS", "DIFFICULTY", "exercise", "get", "listing"]

CHAPTERS = {
    1: "Convolution and im2col",
    2: "Backprop and gradient checking",
    3: "Depthwise and pointwise",
    4: "Batch norm and activations",
    5: "MobileNetV1",
    6: "MobileNetV2",
    7: "MobileNetV3",
    8: "EfficientNet",
    9: "Training and speed",
    10: "A real pretrained network",
}

DIFFICULTY = {1: "warm-up", 2: "standard", 3: "derivation"}


@dataclass(frozen=True)
class Exercise:
    """One exercise: ``number`` as in the notebook ("6.4"), the function's ``name`` and
    ``signature`` ("name(a, b) -> result"), ``difficulty`` (1 warm-up, 2 standard,
    3 a derivation), ``points`` and the ``checker`` (``checker(fn) -> ExerciseResult``)."""

    number: str
    name: str
    signature: str
    difficulty: int
    points: int
    checker: Callable

    @property
    def chapter(self) -> int:
        return int(self.number.split(".")[0])

    @property
    def params(self) -> tuple:
        inside = self.signature[self.signature.index("(") + 1:self.signature.index(")")]
        return tuple(p.strip() for p in inside.split(",") if p.strip())

    def to_dict(self) -> dict:
        return {"number": self.number, "chapter": self.chapter, "name": self.name,
                "signature": self.signature, "difficulty": self.difficulty,
                "difficulty_name": DIFFICULTY[self.difficulty], "points": self.points,
                "checker": self.checker.__name__}


EXERCISES: list[Exercise] = []


def exercise(number, signature, *, difficulty, points, tol=_checking.TOL, allow=()):
    """Declare the decorated case builder ``check_<name>(fn) -> cases`` as the checker of
    exercise ``number``; returns the checker ``check_<name>(fn) -> ExerciseResult``."""
    def declare(cases_of):
        name = signature.split("(", 1)[0]
        if cases_of.__name__ != f"check_{name}":
            raise ValueError(f"the checker of {name} must be called check_{name}")

        @functools.wraps(cases_of)
        def checker(fn):
            return _checking.check(checker.__name__, fn, cases_of, entry.params, tol, allow)

        entry = Exercise(number, name, signature, difficulty, points, checker)
        EXERCISES.append(entry)
        EXERCISES.sort(key=lambda e: tuple(int(n) for n in e.number.split(".")))
        return checker
    return declare


def get(name: str) -> Exercise:
    """The exercise whose function is ``name`` (KeyError naming it otherwise)."""
    for e in EXERCISES:
        if e.name == name:
            return e
    raise KeyError(f"no exercise named {name!r}")


def listing(chapter=None) -> str:
    """The exercises per chapter with signature, difficulty and points, as text."""
    lines = []
    for ch in sorted({e.chapter for e in EXERCISES} | set(CHAPTERS)):
        rows = [e for e in EXERCISES if e.chapter == ch and chapter in (None, ch)]
        if not rows:
            continue
        lines.append(f"chapter {ch}  {CHAPTERS.get(ch, '')}".rstrip())
        for e in rows:
            pts = f"{e.points} point{'s' if e.points != 1 else ''}"
            lines.append(f"  {e.number:<4} {e.signature}")
            lines.append(f"       {DIFFICULTY[e.difficulty]}, {pts}; {e.checker.__name__}")
    total = sum(e.points for e in EXERCISES if chapter in (None, e.chapter))
    count = sum(1 for e in EXERCISES if chapter in (None, e.chapter))
    lines.append(f"{count} exercises, {total} points")
    return "\n".join(lines)
