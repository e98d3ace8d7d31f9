"""Numerical gradient checking: is a hand-written backward pass right?

The test is the one CS231n and Chainer use. Pick a *random* upstream gradient G shaped
like the output and look at the scalar ``L(x) = sum(f(x) * G)``. Its exact gradient is
what ``backward(G)`` returns; its numerical gradient is the central difference::

    dL/dx_i  ~  (L(x + h e_i) - L(x - h e_i)) / (2h)        error O(h^2)

Why float64: the difference of two nearly equal numbers loses about log10(|L|/h) digits;
float32's 7 digits leave almost nothing, float64's 16 leave ~10.

Why a random G and not all ones: with G = 1 some bugs cancel exactly. BatchNorm's dx,
for instance, is identically zero for G = 1 (the mean of the output does not depend on x),
so a backward that forgot the mean/variance terms would pass.

How a difference is judged. A central difference cannot resolve everything: each of
f(x + h) and f(x - h) carries round-off of about ``eps * |f|``, so the numerical gradient
carries an absolute noise of about ``eps * sum(|f| * |G|) / h`` (its *resolution*), and
where the function bends sharply within h the O(h^2) truncation error adds to it. An
entry whose true gradient is zero (a BatchNorm bias feeding a train-mode BatchNorm) or
tiny (a squeeze-excitation weight 1e-7 against outputs of 1) is then pure noise on the
numerical side: an element-wise relative error would call a correct backward wrong. So
each element passes when

    |a - n| <= tol * (|a| + |n|) + u

with a the analytic and n the numerical gradient and u the numerical gradient's own
uncertainty: the resolution above (times a safety factor ``ROUNDOFF``) and, for the few
elements that fail with that alone, also ``|n(h) - n(2h)|``, the change of the central
difference when the step doubles (it measures truncation and noise on the spot). The
reported error of an element is ``|a - n| / (|a| + |n| + u / tol)``, which is <= tol
exactly when the element passes and is the plain relative error wherever the gradient is
well above u. A wrong backward still fails: its error is a fraction of the gradient
itself, far above u. The result says how many elements passed only thanks to u
(``GradcheckResult.resolved_by_uncertainty``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .nn.fusion import unfused

__all__ = ["numerical_gradient", "relative_error", "GradcheckResult", "check_module",
           "check_function", "kink_distance", "dodge_kinks", "randomize_batchnorm"]


def numerical_gradient(f, x, h=1e-5, indices=None, G=None):
    """Central-difference gradient of ``L = f()`` (or, with ``G``, ``L = sum(f() * G)``)
    with respect to the array ``x``.

    ``x`` is perturbed *in place* (and restored), so ``f`` must read it. With ``G`` the
    two outputs are subtracted element-wise before the weighted sum,
    ``sum((f(x+h) - f(x-h)) * G) / 2h``: the same number mathematically, but the large
    equal parts cancel before rounding, which keeps ~30x more digits than differencing
    two large sums. With ``indices`` (flat indices) only those entries are computed; the
    rest stay NaN.
    """
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient needs a C-contiguous array it can perturb in place")
    grad = np.full(x.shape, np.nan) if indices is not None else np.zeros(x.shape)
    flat_x = x.reshape(-1)            # a view: writing it perturbs x
    flat_g = grad.reshape(-1)
    for i in (range(x.size) if indices is None else indices):
        old = flat_x[i]
        flat_x[i] = old + h
        fp = np.array(f(), dtype=np.float64, copy=True)
        flat_x[i] = old - h
        fm = np.array(f(), dtype=np.float64, copy=True)
        flat_x[i] = old
        diff = fp - fm
        flat_g[i] = (np.sum(diff * G) if G is not None else float(diff)) / (2 * h)
    return grad


# Safety factor on the round-off resolution eps * sum(|f| * |G|) / h: the forward pass's
# own round-off is a few eps per value, not one
ROUNDOFF = 4


def relative_error(analytic, numeric):
    """Element-wise relative error of two computations of the same array, and the flat
    index of the worst element: ``(worst_error, index)``; NaN entries of ``numeric`` are
    skipped.

    Each element's error is ``|a - n| / max(|a| + |n|, floor)`` with the floor 1e-2 times
    the largest ``|a| + |n|`` in the array: entries that are zero up to round-off are
    judged against the array's scale rather than against their own noise, while a wrong
    entry of 1 % of the array's scale or more still shows up as an error near 1. (The
    gradient check itself judges against the numerical gradient's uncertainty instead;
    see the module docstring.)
    """
    a = np.asarray(analytic, dtype=np.float64).reshape(-1)
    n = np.asarray(numeric, dtype=np.float64).reshape(-1)
    ok = ~np.isnan(n)
    if not ok.any():
        return 0.0, None
    a, n, idx = a[ok], n[ok], np.flatnonzero(ok)
    mag = np.abs(a) + np.abs(n)
    floor = max(1e-2 * mag.max(), 1e-300)
    err = np.abs(a - n) / np.maximum(mag, floor)
    k = int(np.argmax(err))
    return float(err[k]), int(idx[k])


def _judged_error(a, n, u, tol):
    """``|a - n| / (|a| + |n| + u / tol)`` element-wise over the computed (non-NaN)
    entries of n: (worst, flat index). It is <= tol exactly when
    ``|a - n| <= tol * (|a| + |n|) + u``, and the plain relative error wherever the
    gradient is well above the numerical uncertainty u."""
    ok = ~np.isnan(n)
    if not ok.any():
        return 0.0, None
    a, n, u, idx = a[ok], n[ok], u[ok], np.flatnonzero(ok)
    err = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n) + u / tol, 1e-300)
    k = int(np.argmax(err))
    return float(err[k]), int(idx[k])


@dataclass
class GradcheckResult:
    """Outcome of a gradient check. ``bool(result)`` is ``result.ok``.

    ``errors``: name -> worst error of that array; ``resolution``: the numerical
    gradient's round-off resolution u0 (absolute); ``resolved_by_uncertainty``: how many
    elements passed only because their difference was within the numerical uncertainty."""

    ok: bool
    worst_error: float
    worst_name: str
    worst_index: tuple | None
    errors: dict = field(default_factory=dict)
    tol: float = 1e-6
    resolution: float = 0.0
    resolved_by_uncertainty: int = 0
    checked: int = 0

    def __bool__(self):
        return self.ok

    def __str__(self):
        verdict = "PASS" if self.ok else "FAIL"
        per = ", ".join(f"{k}: {v:.1e}" for k, v in self.errors.items())
        return (f"gradcheck {verdict}: worst error {self.worst_error:.2e} (tolerance "
                f"{self.tol:.0e}) in {self.worst_name}{list(self.worst_index or [])}; "
                f"criterion |a - n| <= tol*(|a| + |n|) + u, u = numerical uncertainty "
                f"(round-off resolution {self.resolution:.1e}; {self.resolved_by_uncertainty}"
                f" of {self.checked} elements within u only)  [{per}]")


def _pick_indices(size, max_elements, rng):
    if max_elements is None or size <= max_elements:
        return None
    return np.sort(rng.choice(size, max_elements, replace=False))


def _summarise(pairs, tol, resolution, h):
    """pairs: (name, analytic, numeric, recompute) with ``recompute(indices, step)`` the
    numerical gradient of those flat indices at another step."""
    errors, worst, by_u, checked = {}, (0.0, "-", None), 0, 0
    for name, analytic, numeric, recompute in pairs:
        a = np.asarray(analytic, dtype=np.float64).reshape(-1)
        n = np.asarray(numeric, dtype=np.float64).reshape(-1)
        done = ~np.isnan(n)
        checked += int(done.sum())
        u = np.full(n.shape, resolution)
        diff = np.abs(a - n)
        bound = tol * (np.abs(a) + np.abs(n))
        by_u += int(np.sum(done & (diff > bound) & (diff <= bound + u)))
        suspects = np.flatnonzero(done & (diff > bound + u))
        if suspects.size:                  # is the difference the numerics' own? ask at 2h
            n2 = recompute(suspects, 2 * h).reshape(-1)[suspects]
            u[suspects] += np.abs(n[suspects] - n2)
            by_u += int(np.sum(diff[suspects] <= bound[suspects] + u[suspects]))
        err, flat = _judged_error(a, n, u, tol)
        errors[name] = err
        if err >= worst[0]:
            where = None if flat is None else tuple(int(i) for i in np.unravel_index(flat, np.shape(analytic)))
            worst = (err, name, where)
    return GradcheckResult(ok=bool(worst[0] <= tol), worst_error=worst[0], worst_name=worst[1],
                           worst_index=worst[2], errors=errors, tol=tol, resolution=resolution,
                           resolved_by_uncertainty=by_u, checked=checked)


def _resolution(y, G, h):
    """Round-off resolution of the central difference: ROUNDOFF * eps * sum(|y| |G|) / h."""
    return float(ROUNDOFF * np.finfo(np.float64).eps * np.sum(np.abs(y) * np.abs(G)) / h)


def _rng_states(module):
    """Snapshot every random generator a module holds (dropout, stochastic depth)."""
    gens = [m.rng for m in module.modules() if isinstance(getattr(m, "rng", None), np.random.Generator)]
    return [(g, g.bit_generator.state) for g in gens]


def check_module(module, x, *, seed=0, h=1e-5, tol=1e-6, check_params=True,
                 max_elements=None):
    """Gradient-check ``module.backward`` against central differences, for dx and every
    parameter.

    module: a :class:`tinymobilenet.nn.Module` in float64 (``module.to(np.float64)``)
    x:      float64 input array
    max_elements: check at most this many randomly chosen entries per array (for models)

    The module's random generators are reset before every forward so dropout masks stay
    fixed, and its parameters and buffers (BN running statistics) are restored at the end.
    Returns a :class:`GradcheckResult`; ``print(result)`` shows the worst error and where.
    ``TypeError`` for a parameter that is not float64.
    """
    params = list(module.named_parameters())
    for name, p in params:
        if p.data.dtype != np.float64:
            raise TypeError(f"check_module: parameter {name} is {p.data.dtype}; gradient "
                            f"checks need float64 (call module.to(np.float64))")
    x = np.array(x, dtype=np.float64, copy=True)
    rng = np.random.default_rng((seed, 0x6763))   # a stream apart from the caller's data
    saved_state = module.state_dict()
    rng_states = _rng_states(module)

    def restore_rngs():
        for g, state in rng_states:
            g.bit_generator.state = state

    restore_rngs()
    y = module.forward(x)
    G = rng.standard_normal(np.shape(y))
    dx = module.backward(G)
    analytic = {name: p.grad.copy() for name, p in params}

    def output():
        restore_rngs()
        return module.forward(x)

    def pair(name, analytic_grad, arr):
        num = numerical_gradient(output, arr, h, _pick_indices(arr.size, max_elements, rng), G)
        return (name, analytic_grad, num,
                lambda idx, step: numerical_gradient(output, arr, step, idx, G))

    pairs = [pair("x", dx, x)]
    if check_params:
        pairs += [pair(name, analytic[name], p.data) for name, p in params]
    result = _summarise(pairs, tol, _resolution(y, G, h), h)
    module.load_state_dict(saved_state)
    restore_rngs()
    return result


def check_function(forward, backward, inputs, *, wrt=None, seed=0, h=1e-5, tol=1e-6,
                   max_elements=None):
    """Gradient-check a functional pair.

    forward(**inputs) -> (out, cache);  backward(dout, cache) -> gradient or tuple of
    gradients, one per name in ``wrt`` (default: every array in ``inputs``, in order;
    ``None`` gradients are skipped). Arrays are copied to float64. Returns a
    :class:`GradcheckResult`.
    """
    inputs = {k: (np.array(v, dtype=np.float64) if isinstance(v, np.ndarray) else v)
              for k, v in inputs.items()}
    if wrt is None:
        wrt = [k for k, v in inputs.items() if isinstance(v, np.ndarray)]
    rng = np.random.default_rng((seed, 0x6763))   # a stream apart from the caller's data
    out, cache = forward(**inputs)
    G = rng.standard_normal(np.shape(out))
    grads = backward(G, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)

    def output():
        return forward(**inputs)[0]

    pairs = []
    for name, g in zip(wrt, grads):
        if g is None:
            continue
        arr = inputs[name]
        pairs.append((name, g,
                      numerical_gradient(output, arr, h, _pick_indices(arr.size, max_elements, rng), G),
                      lambda idx, step, arr=arr: numerical_gradient(output, arr, step, idx, G)))
    return _summarise(pairs, tol, _resolution(out, G, h), h)


def kink_distance(module, x):
    """Run ``module.forward(x)`` and return how close any piecewise activation inside it
    (ReLU, ReLU6, hard-sigmoid, hard-swish) came to one of its kinks: the smallest
    ``|input - kink|``. Central differences across a kink are meaningless, so a gradient
    check wants this to be comfortably larger than the step h times the input's sensitivity.
    """
    rng_states = _rng_states(module)
    saved_state = module.state_dict()
    best = np.inf
    with unfused(module):                      # each activation caches its own input
        module.forward(x)
        for m in module.modules():             # read before fusing again drops them
            kinks = getattr(type(m), "kinks", ())
            cached = getattr(m, "_cache", None)
            if kinks and isinstance(cached, np.ndarray):
                for k in kinks:
                    best = min(best, float(np.min(np.abs(cached - k))))
    module.load_state_dict(saved_state)
    for g, state in rng_states:
        g.bit_generator.state = state
    return best


def dodge_kinks(module, sample, margin=1e-4, tries=200):
    """Return the first input ``sample(seed)`` (seed = 0, 1, ...) whose activations all stay
    at least ``margin`` away from their kinks (deterministic, no retries of failed checks).

    ``sample``: a function ``seed -> x``. Raises ``RuntimeError`` if none of ``tries`` does.
    """
    for seed in range(tries):
        x = sample(seed)
        if kink_distance(module, x) >= margin:
            return x
    raise RuntimeError(f"dodge_kinks: no input among {tries} seeds keeps a margin of {margin}")


def randomize_batchnorm(module, seed=0):
    """Give every BatchNorm in ``module`` random gamma, beta and running statistics.

    Fresh BN layers (gamma = 1, beta = 0, mean 0, var 1) hide bugs: a backward that forgot
    gamma, or eval mode that ignored the running statistics, would still pass. Zero beta
    also makes a BN -> ReLU -> conv -> BN chain exactly invariant to the first gamma, so
    that gradient is zero and its check meaningless. Returns the module.
    """
    rng = np.random.default_rng((seed, 0x626E))
    for m in module.modules():
        if hasattr(m, "running_var") and hasattr(m, "num_features"):
            C, dt = m.num_features, m.weight.data.dtype
            m.weight.data = rng.uniform(0.5, 1.5, C).astype(dt)
            m.bias.data = rng.normal(0.0, 0.5, C).astype(dt)
            m.running_mean = rng.normal(0.0, 0.5, C).astype(dt)
            m.running_var = rng.uniform(0.5, 2.0, C).astype(dt)
    return module
