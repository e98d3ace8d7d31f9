"""How much memory a model needs, estimated before it is built: the commands refuse sizes
that cannot fit (``count --alpha 1000``, ``train --resolution 100000``) with one line naming
the estimate, instead of failing deep inside NumPy.

The estimate counts a *reference* copy of the model, at width at most 1 and inputs at most
64 x 64 (cheap to build), with :func:`tinymobilenet.count.summary`, and scales it: weights
grow with the square of the width multiplier (a pointwise layer has C_in x C_out weights),
activations with the width times the number of input pixels. Then, in float32 (4 bytes):

    built model    2 values per parameter (its data and its .grad), 1 per buffer
    training       4 values per parameter (data, gradient, momentum, a temporary) and
                   2 per activation (every layer's output over the batch; its cached input
                   and its gradient come and go)
    evaluation     2 values per parameter and 1 per activation

Measured with tracemalloc on MobileNetV1 (alpha 0.25 and 2), V2, V3-Large and
EfficientNet-B0 at 32-128 px, batches 8-32: the training estimate is 1.2-2.3 times the
peak of a real training step, the built-model estimate 0.6-1.0 times the real model (small
models carry a little fixed overhead). Good enough to refuse what cannot fit.
"""

from __future__ import annotations

import math
import os

from .models import WIDTH_OPTIONS  # the factory options that scale a width

__all__ = ["estimate_bytes", "machine_bytes", "check_fits", "format_bytes", "WIDTH_OPTIONS"]

_REFERENCE_SIZE = 64


def format_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000)."""
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB", "TB", "PB", "EB"):
        n /= 1000
        if n < 1000 or unit == "EB":
            return f"{n:.1f} {unit}"


def machine_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def estimate_bytes(name: str, options: dict, input_shape, batch: int = 1,
                   purpose: str = "build") -> int:
    """Estimated bytes to build (``purpose="build"``), evaluate (``"eval"``) or train
    (``"train"``) model ``name`` made by ``models.get_model(name, **options)`` on inputs of
    ``input_shape`` ((C, H, W), or (D,) for the 1-D models) in batches of ``batch``.
    See the module docstring for the formula."""
    from .count import summary
    from .models import get_model
    if purpose not in ("build", "eval", "train"):
        raise ValueError(f"estimate_bytes: purpose must be build, eval or train, got {purpose!r}")
    ref_options, width = dict(options), 1.0
    for key in WIDTH_OPTIONS:
        if key in ref_options and ref_options[key] > 1:
            width, ref_options[key] = ref_options[key], 1.0
    shape = tuple(int(v) for v in input_shape)
    ref_shape, pixels = shape, 1.0
    if len(shape) == 3:
        ref_shape = (shape[0],) + tuple(min(v, _REFERENCE_SIZE) for v in shape[1:])
        pixels = shape[1] * shape[2] / (ref_shape[1] * ref_shape[2])
    s = summary(get_model(name, **ref_options), (1,) + ref_shape)
    params = s.total_params * width ** 2
    buffers = s.total_buffers * width
    activations = sum(math.prod(r.output_shape[1:]) for r in s.rows if r.is_leaf)
    activations *= width * pixels * batch
    values = {"build": 2 * params + buffers,
              "eval": 2 * params + buffers + activations,
              "train": 4 * params + buffers + 2 * activations}[purpose]
    return int(4 * values)


def check_fits(name: str, options: dict, input_shape, batch: int = 1, purpose: str = "build",
               data_bytes: int = 0, limit: int | None = None) -> str | None:
    """None if the estimate (plus ``data_bytes`` for the data set in memory) fits in
    ``limit`` bytes (default: this machine's memory), else a one-line reason naming the
    estimate, for a command to print."""
    limit = machine_bytes() if limit is None else limit
    need = estimate_bytes(name, options, input_shape, batch, purpose) + int(data_bytes)
    if limit is None or need <= limit:
        return None
    width = ", ".join(f"{k} {v:g}" for k, v in options.items() if k in WIDTH_OPTIONS)
    what = {"build": "to build it", "eval": "to evaluate it", "train": "to train it"}[purpose]
    data = f" and its data set" if data_bytes else ""
    return (f"{name}{' (' + width + ')' if width else ''} on inputs of "
            f"{'x'.join(str(v) for v in input_shape)} needs about {format_bytes(need)} "
            f"{what}{f' in batches of {batch}' if purpose != 'build' else ''}{data}, "
            f"more than this machine's {format_bytes(limit)}")
