"""What every checker shares: the result it returns, the checks of the *form* of an answer
(is it a function with the right parameters, not the library's own; does it return an
array, a tuple of the right length, the right shape and dtype; does it leave the arrays it
is given as they were) made before any number is compared, the comparison of the numbers,
and the loop over a checker's cases.

A checker blames the student only for what the student's code did: an exception raised
inside the student's function is reported as such (with its line), an answer of the wrong
form is named before it is used, and anything else that goes wrong is reported as the
checker's own failure.
"""

from __future__ import annotations

import inspect
import math
import traceback
import types
from dataclasses import asdict, dataclass

import numpy as np

from .. import gradcheck

TOL = 1e-6

LIBRARY = "tinymobilenet"
# the forward passes given with the exercises (se_forward, ...) may be called by an answer
GIVEN = LIBRARY + ".exercises"


@dataclass
class ExerciseResult:
    """Outcome of a ``check_*``. ``bool(result)`` is ``result.ok``; printing it (or leaving it
    as the last expression of a notebook cell) shows the verdict, the worst error and a hint.
    ``library`` names the library function the answer used instead of its own code (then
    ``ok`` is False)."""

    exercise: str
    ok: bool
    worst_error: float
    cases: int
    failed_case: str = ""
    message: str = ""
    hint: str = ""
    tol: float = TOL
    library: str = ""

    def __bool__(self):
        return self.ok

    def __str__(self):
        if self.ok:
            tol = "exact" if self.tol == 0 else f"tolerance {self.tol:.0e}"
            return (f"{self.exercise}: PASS  ({self.cases} cases, worst relative error "
                    f"{self.worst_error:.1e}, {tol})")
        where = f"  in case '{self.failed_case}'" if self.failed_case else ""
        lines = [f"{self.exercise}: FAIL{where}", f"  {self.message}"]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    __repr__ = __str__

    def to_dict(self) -> dict:
        """The result as JSON-ready values (an infinite or NaN error becomes None)."""
        d = asdict(self)
        d["worst_error"] = self.worst_error if math.isfinite(self.worst_error) else None
        d["tol"] = self.tol if math.isfinite(self.tol) else None
        return d


class Mismatch(Exception):
    """A case failed; carries the message shown to the student, the error size and, where
    the failure itself says more than the case's hint, a hint of its own."""

    def __init__(self, message, error=np.inf, hint=None):
        super().__init__(message)
        self.error, self.hint = error, hint


class NotImplementedYet(Exception):
    """The student's function raised NotImplementedError (the handed-out stub); ``where``
    names the function of theirs that raised it when that is another one (an answer that
    builds on an earlier exercise's), else None."""

    def __init__(self, where=None):
        super().__init__(where)
        self.where = where


class StudentRaised(Exception):
    """The student's function raised ``error``, at ``line`` of its own code (or None)."""

    def __init__(self, error, line):
        super().__init__(str(error))
        self.error, self.line = error, line


def guard(fn, params=(), may_update=()):
    """``fn`` as the checkers call it: its exceptions become :class:`StudentRaised`, so
    that they are told apart from a failure of the checker's own code, and an array
    argument it changes in place (``params`` names the arguments; ``may_update`` those an
    exercise lets it change, an optimizer's state) is a Mismatch: the caller still holds
    that array, and a network reads the same dout or weights elsewhere."""
    def student(*args):
        given = [(name, a, a.copy()) for name, a in zip(params, args)
                 if isinstance(a, np.ndarray) and name not in may_update]
        try:
            got = fn(*args)
        except NotImplementedError as e:
            raise NotImplementedYet(_raised_in(fn, e)) from None
        except (Exception, SystemExit) as e:       # sys.exit() in an answer fails that answer
            raise StudentRaised(e, _line_in(fn, e)) from e
        for name, array, before in given:
            if array.shape != before.shape or not np.array_equal(array, before):
                raise Mismatch(
                    f"your function changed its input `{name}` in place: the caller's array "
                    f"now holds other numbers, and the caller may still need it (a residual "
                    f"block sends the same dout to its shortcut; a model keeps its weights)",
                    hint=f"leave `{name}` as it is: compute into a new array (`y = {name} * s`, "
                         f"not `{name} *= s`), or start from `{name} = {name}.copy()`")
        return got
    return student


def may_update(*names):
    """Mark a checker's case builder: its answer may change the arguments ``names`` in
    place (an optimizer step updates its state); every other array it is given must be
    left as it was."""
    def mark(cases_of):
        cases_of.may_update = names
        return cases_of
    return mark


def _raised_in(fn, error):
    """The name of the function that raised ``error`` if it is not ``fn`` itself (None if
    it is, or if the error came from outside any Python function)."""
    frames = traceback.extract_tb(error.__traceback__)
    name = frames[-1].name if frames else None
    own = getattr(getattr(fn, "__code__", None), "co_name", None)
    return None if name in (own, "<module>", None) else name


def _line_in(fn, error):
    """The line of ``fn``'s source file where ``error`` was raised (the innermost frame in
    that file), or None."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return None
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__)
             if f.filename == code.co_filename]
    return lines[-1] if lines else None


# ---- the form of an answer --------------------------------------------------------------

def describe(value) -> str:
    """A value as a student should recognise it: 'None', 'a tuple of 2', 'an array of
    shape (3, 4)', 'the float 2.5', 'a str'."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} ({value.dtype})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    if isinstance(value, (bool, np.bool_)):
        return f"the boolean {value}"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"the {'integer' if isinstance(value, (int, np.integer)) else 'float'} {value!r}"
    return f"a {type(value).__name__}"


def _returned_none(what):
    return Mismatch(f"{what} is None: did the function forget to `return` it?")


def expect_tuple(got, names):
    """``got`` as a tuple of ``len(names)`` values, or Mismatch naming what it is instead."""
    spelled = f"({', '.join(names)})"
    if got is None:
        raise Mismatch(f"the function returned None: return the tuple {spelled}")
    if isinstance(got, np.ndarray):
        raise Mismatch(f"expected a tuple {spelled}, got {describe(got)}: return "
                       f"{'both' if len(names) == 2 else f'all {len(names)}'}")
    if not isinstance(got, (tuple, list)):
        raise Mismatch(f"expected a tuple {spelled}, got {describe(got)}")
    if len(got) != len(names):
        raise Mismatch(f"expected a tuple of {len(names)} {spelled}, got a "
                       f"{type(got).__name__} of {len(got)}")
    return tuple(got)


def expect_array(name, got, expected, tol=TOL, layout=""):
    """Check that ``got`` is an array like ``expected`` (type, shape, dtype, finite) and
    compare the numbers; the worst relative error. ``layout`` spells the expected shape in
    letters, e.g. '(N, C, K, K, Ho, Wo)'; ``tol=np.inf`` checks the form only."""
    expected = np.asarray(expected)
    if got is None:
        raise _returned_none(name)
    if isinstance(got, (tuple, list)) and got and isinstance(got[0], np.ndarray):
        raise Mismatch(f"expected an array `{name}`, got {describe(got)}: return only "
                       f"`{name}` (no cache or other values)")
    if not isinstance(got, np.ndarray):
        raise Mismatch(f"expected an array `{name}`, got {describe(got)}")
    if got.shape != expected.shape:
        letters = f" = {layout}" if layout else ""
        order = (f"the sizes are right but in another order: put the axes in the order "
                 f"{layout or str(expected.shape)} (np.transpose, or index in that order)"
                 if sorted(got.shape) == sorted(expected.shape) else None)
        raise Mismatch(f"{name} has shape {got.shape}, expected {expected.shape}{letters}",
                       hint=order)
    if got.dtype != expected.dtype:
        raise Mismatch(f"{name}: {got.dtype} returned for {expected.dtype} inputs (compute in "
                       f"the inputs' dtype: np.zeros(shape) is float64, np.zeros(shape, "
                       f"dtype=x.dtype) follows x)")
    if not np.all(np.isfinite(got)):
        raise Mismatch(f"{name} contains NaN or inf")
    if tol == np.inf:
        return 0.0
    return compare(name, got, expected, tol)


def compare(name, got, expected, tol):
    """Worst relative error of the array ``got`` against ``expected`` (same shape)."""
    err, flat = gradcheck.relative_error(got, expected)
    if err > tol:
        where = tuple(int(i) for i in np.unravel_index(flat, expected.shape)) if flat is not None else ()
        raise Mismatch(f"{name}: worst relative error {err:.2e} (tolerance {tol:.0e}) at index "
                       f"{list(where)}: got {got.reshape(-1)[flat]:.6g}, expected "
                       f"{expected.reshape(-1)[flat]:.6g}", err)
    return err


def expect_int(what, got, why="use integer division //, not /"):
    """``got`` as an int, or Mismatch saying what it is instead."""
    if got is None:
        raise _returned_none(what)
    if isinstance(got, (int, np.integer)) and not isinstance(got, (bool, np.bool_)):
        return int(got)
    if isinstance(got, (float, np.floating)):
        raise Mismatch(f"{what}: expected an integer, got the float {float(got)!r}: {why}")
    raise Mismatch(f"{what}: expected an integer, got {describe(got)}")


def expect_number(what, got):
    """``got`` (a real number, or a 0-d array) as a float, or Mismatch."""
    if got is None:
        raise _returned_none(what)
    if isinstance(got, np.ndarray) and got.ndim == 0:
        got = got[()]
    if isinstance(got, (int, float, np.integer, np.floating)) and not isinstance(got, (bool, np.bool_)):
        return float(got)
    raise Mismatch(f"{what}: expected a number, got {describe(got)}")


def exact(what, got, want):
    """An integer answer that must be exact (a count), after its type is checked."""
    got = expect_int(what, got, "a count of multiply-accumulates is a whole number: use // "
                                "and int(), not /")
    if got != want:
        raise Mismatch(f"{what}: got {got:,}, expected {want:,} (ratio {got / want:.4f})",
                       abs(got - want) / want)
    return 0.0


# ---- the function itself ----------------------------------------------------------------

def _library_module(obj):
    """The module of a library function, class or layer instance, None for anything else
    (the given forward passes of the exercises are not 'the library')."""
    if isinstance(obj, types.ModuleType) or not callable(obj):
        return None
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module.startswith(GIVEN):
        return None
    return module if module == LIBRARY or module.startswith(LIBRARY + ".") else None


def _names(code):
    """Every global or attribute name ``code`` (and the functions nested in it) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _reachable(spelled, obj, names, depth=3):
    """``(spelled, obj)`` and, for a module of the library, its attributes that ``names``
    mentions (``F.im2col``, ``tinymobilenet.functional.im2col``), ``depth`` levels down."""
    yield spelled, obj
    if depth and isinstance(obj, types.ModuleType) and (
            obj.__name__ == LIBRARY or obj.__name__.startswith(LIBRARY + ".")):
        for name in sorted(names):
            if name in vars(obj):
                yield from _reachable(f"{spelled}.{name}", vars(obj)[name], names, depth - 1)


def library_use(fn, allowed=()):
    """The library function or layer that ``fn`` is or calls, directly or through other
    functions of its own module (as the answer spells it: 'F.im2col'); '' if none.
    ``allowed`` holds the library objects an exercise lets its answer use."""
    allowed = {id(a) for a in allowed}
    if _library_module(fn) and id(fn) not in allowed:
        return f"{getattr(fn, '__qualname__', type(fn).__name__)} (from {fn.__module__})"
    home = getattr(fn, "__module__", None)
    seen, todo = set(), [fn]
    while todo:
        f = todo.pop()
        code = getattr(f, "__code__", None)
        if code is None or id(f) in seen:
            continue
        seen.add(id(f))
        names = _names(code)
        scope = dict(zip(code.co_freevars, _cells(f)))
        scope.update((n, f.__globals__[n]) for n in names
                     if n not in scope and n in getattr(f, "__globals__", {}))
        for name, value in sorted(scope.items(), key=lambda kv: kv[0]):
            for spelled, obj in _reachable(name, value, names):
                if _library_module(obj) and id(obj) not in allowed:
                    return spelled
                if isinstance(obj, types.FunctionType) and obj.__module__ == home:
                    todo.append(obj)               # a helper the answer wrote itself
    return ""


def _cells(f):
    values = []
    for cell in f.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:                         # a cell not filled yet
            values.append(None)
    return values


def form_of_function(fn, params, allowed):
    """What is wrong with ``fn`` itself before it is called: (message, library name)."""
    if not callable(fn):
        return f"expected a function, got {describe(fn)}", ""
    used = library_use(fn, allowed)
    if used:
        return (f"the answer is or calls the library's own {used}: the exercise is to write it "
                f"yourself (the checker compares with the library, so that would prove "
                f"nothing)", used)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):                # a builtin: nothing to inspect
        return "", ""
    try:
        signature.bind(*params)
    except TypeError:
        return (f"your function's parameters are {signature}, but the checker calls it with "
                f"{len(params)} arguments ({', '.join(params)})"), ""
    names = [p.name for p in signature.parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:len(params)]
    if sorted(names) == sorted(params) and names != list(params):   # the checker passes them in order
        return (f"your function's parameters are ({', '.join(names)}): the exercise's names in "
                f"another order; the checker passes them as ({', '.join(params)})"), ""
    return "", ""


# ---- running the cases ------------------------------------------------------------------

def run(exercise, cases, tol=TOL):
    """Run ``cases``: a list of (label, hint, thunk); each thunk returns the worst error of
    that case or raises. Stops at the first failing case (cases go from simple to hard)."""
    worst = 0.0
    for label, hint, thunk in cases:
        try:
            worst = max(worst, thunk())
        except Mismatch as e:
            return ExerciseResult(exercise, False, e.error, len(cases), label, str(e),
                                  hint if e.hint is None else e.hint, tol)
        except NotImplementedYet as e:
            if e.where:                     # an earlier exercise's stub, which this one calls
                return ExerciseResult(
                    exercise, False, np.inf, len(cases), label,
                    f"not implemented yet: {e.where}, which your function calls, raised "
                    f"NotImplementedError", f"finish {e.where} first", tol)
            return ExerciseResult(exercise, False, np.inf, len(cases), label,
                                  "not implemented yet (the function raised NotImplementedError)",
                                  "replace the `raise NotImplementedError` with your code", tol)
        except StudentRaised as e:
            line = f" (line {e.line} of your code)" if e.line else ""
            text = f"your function raised {type(e.error).__name__}: {e.error}{line}"
            if isinstance(e.error, SystemExit):
                text = f"your function called sys.exit({e.error.code}){line}"
            return ExerciseResult(exercise, False, np.inf, len(cases), label, text, hint, tol)
        except Exception as e:                      # the checker's own code failed
            return ExerciseResult(exercise, False, np.inf, len(cases), label,
                                  f"the checker could not use your answer ({type(e).__name__}: "
                                  f"{e}); look at what your function returns", hint, tol)
    return ExerciseResult(exercise, True, worst, len(cases), tol=tol)


def check(exercise, fn, cases_of, params, tol, allowed):
    """The whole check of ``fn``: its form (a function of ``params``, not the library's),
    then the cases ``cases_of(student)`` builds around the guarded ``student``."""
    message, used = form_of_function(fn, params, allowed)
    if message:
        hint = (f"define `def my_{exercise[len('check_'):]}({', '.join(params)}):` and "
                f"compute the result with NumPy")
        return ExerciseResult(exercise, False, np.inf, 0, "", message, hint, tol, used)
    student = guard(fn, params, getattr(cases_of, "may_update", ()))
    return run(exercise, cases_of(student), tol)


# ---- helpers of the cases ----------------------------------------------------------------

def rng(seed):
    return np.random.default_rng((seed, 0x6578))


def numeric(forward, arrays, G):
    """Central-difference gradients of sum(forward() * G) w.r.t. each array in ``arrays``."""
    return [gradcheck.numerical_gradient(forward, a, G=G) for a in arrays]


def check_grads(got, names, want, tol=TOL):
    """Compare the student's gradients ``got`` (a tuple named ``names``) with ``want``
    (one array each); the worst error."""
    got = expect_tuple(got, names)
    for n, g, w in zip(names, got, want):          # the form of every gradient first
        expect_array(n, g, w, np.inf)
    return max(compare(n, g, np.asarray(w), tol) for n, g, w in zip(names, got, want))
