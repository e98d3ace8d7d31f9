"""Saving and loading weights: NumPy ``.npz`` files, PyTorch ``.pth`` files, and porting
another implementation's names.

A state dict is ``{dotted name: array}`` with PyTorch's names and layouts, so a torchvision
state dict is already one: ``read_state_dict("mobilenet_v2-7ebf99e0.pth")`` reads it
without torch (:mod:`tinymobilenet.models.pth`) and ``load_weights`` puts it in a model.

Loading never runs code from a file: ``.npz`` files are read with ``allow_pickle=False``
and ``.pth`` files through :mod:`.pth`'s restricted unpickler.

Another implementation's state dict (TensorFlow ports, ``efficientnet_pytorch``, timm)
holds the same tensors under other names. :func:`port_state_dict` renames it, by an
explicit map or by order with every shape checked::

    state = models.port_state_dict("lite0.pth", model, by_order=True)
    state = models.port_state_dict(sd, model, {"fc.weight": "classifier.1.weight", ...})
    state = models.port_state_dict(sd, model, lambda k: k.replace("fc.", "classifier.1."))
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Mapping

import numpy as np

from ..files import atomic_open, input_problem
from . import pth

__all__ = ["load_weights", "save_weights", "read_state_dict", "port_state_dict",
           "WeightsMismatchError"]

#: file name endings read as PyTorch checkpoints (``.pth.tar`` and ``.ckpt`` are the
#: names training scripts give torch.save files; they are not tar archives)
PTH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".ckpt")
#: keys under which training checkpoints keep the model's state dict
NESTED_KEYS = ("state_dict", "model_state_dict", "model")


class WeightsMismatchError(ValueError):
    """The weights do not fit the model: a key is missing, unexpected or wrongly shaped."""


def _to_numpy(value):
    """An ndarray from an ndarray, a scalar or a torch tensor (without importing torch)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):      # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def read_state_dict(path_or_dict) -> dict:
    """``{name: ndarray}`` from a mapping, an ``.npz`` file, or a PyTorch checkpoint
    (``.pth``, ``.pt``, ``.pth.tar``, ``.ckpt``; read without torch).

    A checkpoint may hold the state dict under ``"state_dict"``, ``"model_state_dict"``
    or ``"model"``, as training scripts store it; an ``.npz`` written by the trainer
    (``model/<key>`` arrays beside ``meta``) gives its model's weights. Keys keep the
    file's order. A file that is corrupt, truncated, not of its kind, or holds anything but
    finite numbers raises :class:`~.pth.CheckpointFormatError` naming the file (and the
    entry); a ``.pth`` that asks to run code :class:`~.pth.UnsafeCheckpointError`, an
    ``.npz`` with pickled objects is refused as well (both ``ValueError``). A missing file
    raises ``FileNotFoundError``, a directory ``IsADirectoryError``.
    """
    if isinstance(path_or_dict, Mapping):
        return {str(k): _to_numpy(v) for k, v in path_or_dict.items()}
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise TypeError(f"load_weights: expected a path or a mapping of arrays, got "
                        f"{type(path_or_dict).__name__}")
    path = os.fspath(path_or_dict)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_weights: no such file: {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(input_problem(path, "weights"))
    name = os.path.basename(path).lower()
    if name.endswith(".npz"):
        state = read_npz(path)
        if "meta" in state and any(k.startswith("model/") for k in state):
            # a trainer checkpoint (train.save_checkpoint): the model's part only
            state = {k[len("model/"):]: v for k, v in state.items() if k.startswith("model/")}
        return check_numbers(state, path)
    if name.endswith(PTH_SUFFIXES):
        obj = pth.load(path)
        for key in NESTED_KEYS:
            if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        if not isinstance(obj, Mapping):
            raise pth.CheckpointFormatError(f"{path}: holds a {type(obj).__name__}, not a "
                                            f"state dict")
        bad = next((k for k, v in obj.items() if not isinstance(v, np.ndarray)), None)
        if bad is not None:
            raise pth.CheckpointFormatError(f"{path}: entry {bad!r} is a "
                                            f"{type(obj[bad]).__name__}, not a tensor")
        return check_numbers({str(k): v for k, v in obj.items()}, path)
    raise ValueError(f"load_weights: unknown file type {os.path.splitext(path)[1]!r} "
                     f"({path}); expected .npz or one of {', '.join(PTH_SUFFIXES)}")


def read_npz(path, what: str = "an .npz file of weights", keys=None) -> dict:
    """The arrays of an ``.npz`` file (``keys``: only those entries), read with
    ``allow_pickle=False`` (no code runs); CheckpointFormatError "<path>: not <what> (...)"
    for anything else, never NumPy's advice to unpickle it. The one reader of ``.npz`` files
    from outside: weights here, the trainer's checkpoints too."""
    with open(path, "rb") as f:
        head = f.read(6)
    if not head.startswith(b"PK\x03\x04"):                      # an .npz is a zip archive
        why = "an empty file" if not head else (
            "a single .npy array" if head == b"\x93NUMPY" else "not a zip archive")
        raise pth.CheckpointFormatError(f"{path}: not {what} ({why})")
    try:
        with np.load(path, allow_pickle=False) as f:
            state = {}
            for k in f.files if keys is None else [k for k in f.files if k in keys]:
                try:
                    state[k] = f[k]
                except ValueError as e:
                    if "allow_pickle" not in str(e) and "Object arrays" not in str(e):
                        raise
                    raise pth.CheckpointFormatError(
                        f"{path}: not {what}: entry {k!r} holds pickled Python objects, which "
                        f"are never loaded (read with allow_pickle=False: unpickling could run "
                        f"code); only arrays of numbers are") from None
            return state
    except pth.CheckpointFormatError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        raise pth.CheckpointFormatError(f"{path}: not {what}: truncated or corrupt? "
                                        f"({e})") from None
    except MemoryError as e:
        # an entry's header declares its shape, and NumPy allocates that much before it
        # reads a byte: a few hundred bytes can ask for terabytes
        raise pth.CheckpointFormatError(f"{path}: not {what}: an entry declares more data "
                                        f"than fits in memory ({e})") from None


def check_numbers(state: dict, path) -> dict:
    """``state`` ({name: ndarray} read from ``path``) if every entry holds finite numbers;
    CheckpointFormatError naming the file and the entry otherwise (strings, or NaN and
    infinities: a training run that diverged saves NaN)."""
    for k, v in state.items():
        if not isinstance(v, np.ndarray):        # a file in the zip that is not an .npy
            raise pth.CheckpointFormatError(f"{path}: entry {k!r} is not a NumPy array")
        if v.dtype.kind not in "fiubc":
            raise pth.CheckpointFormatError(f"{path}: entry {k!r} holds {v.dtype} values, "
                                            f"not numbers")
        if v.dtype.kind not in "fc":
            continue
        try:
            bad = np.count_nonzero(~np.isfinite(_distinct(v)))
        except MemoryError:
            raise pth.CheckpointFormatError(
                f"{path}: entry {k!r} of shape {v.shape} views its storage more times than "
                f"fit in memory") from None
        if bad:
            raise pth.CheckpointFormatError(
                f"{path}: entry {k!r} has {bad} NaN or infinite values (saved from a "
                f"training run that diverged?)")
    return state


def _distinct(v):
    """``v`` without the repeats along its stride-0 axes: a ``.pth`` tensor made by
    ``expand`` shows one stored row many times, and a check of every repeat would need
    memory for its whole shape (a tiny file can ask for terabytes)."""
    return v[tuple(slice(0, 1) if s == 0 else slice(None) for s in v.strides)]


def _optional(key):
    # BatchNorm's step counter: torch saves it, nothing here reads it
    return key.endswith("num_batches_tracked")


def _label(model):
    return getattr(model, "name", type(model).__name__)


def port_state_dict(source, model, name_map=None, *, by_order=False) -> dict:
    """Rename the state dict ``source`` (a mapping or a file :func:`read_state_dict`
    reads) into ``model``'s names and return it, ready for :func:`load_weights`.

    Exactly one way of pairing names:

    ``name_map``  a dict ``{source name: model name}`` (names not in it are kept as they
                  are; a value None drops the entry) or a callable ``source name -> model
                  name or None``. Every renamed entry must exist in the model with the
                  same shape; a name sent twice is an error.
    ``by_order``  the i-th source entry becomes the i-th model entry, for implementations
                  that build the same layers in the same order under other names. Every
                  pair's shapes must agree and the counts must be equal; the error names
                  the first mismatch (index, source key and shape, model key and shape).
                  Equal shapes cannot catch two same-shaped tensors in swapped order
                  (weight and bias of one BatchNorm are in the same order everywhere).

    ``num_batches_tracked`` entries are left out on both sides. Values keep their dtype
    (``load_weights`` casts them). Raises :class:`WeightsMismatchError`.
    """
    if (name_map is None) == (not by_order):
        raise TypeError("port_state_dict: give either name_map or by_order=True")
    state = {k: v for k, v in read_state_dict(source).items() if not _optional(k)}
    target = {k: tuple(v.shape) for k, v in model.state_dict().items() if not _optional(k)}
    label = _label(model)
    if by_order:
        return _port_by_order(state, target, label)
    rename = name_map if callable(name_map) else (lambda k: name_map.get(k, k))
    if not callable(name_map) and not isinstance(name_map, Mapping):
        raise TypeError(f"port_state_dict: name_map must be a dict or a callable, got "
                        f"{type(name_map).__name__}")
    out, came_from = {}, {}
    for key, value in state.items():
        new = rename(key)
        if new is None:
            continue
        if new in came_from:
            raise WeightsMismatchError(f"port_state_dict: both '{came_from[new]}' and '{key}' "
                                       f"are sent to {label} key '{new}'")
        if new != key and new not in target:
            raise WeightsMismatchError(f"port_state_dict: '{key}' is sent to '{new}', which "
                                       f"{label} does not have")
        if new in target and tuple(np.shape(value)) != target[new]:
            raise WeightsMismatchError(
                f"port_state_dict: source '{key}' {tuple(np.shape(value))} does not fit "
                f"{label} '{new}' {target[new]}")
        out[new], came_from[new] = value, key
    return out


def _port_by_order(state, target, label):
    src, dst = list(state.items()), list(target.items())
    for i, ((key, value), (new, shape)) in enumerate(zip(src, dst)):
        if tuple(np.shape(value)) != shape:
            raise WeightsMismatchError(
                f"port_state_dict: entry #{i} differs: source '{key}' "
                f"{tuple(np.shape(value))} vs {label} '{new}' {shape}")
    if len(src) != len(dst):
        n = min(len(src), len(dst))
        side, (key, shape) = ("source", (src[n][0], tuple(np.shape(src[n][1])))) \
            if len(src) > n else (label, dst[n])
        raise WeightsMismatchError(
            f"port_state_dict: the source has {len(src)} entries, {label} {len(dst)} "
            f"(num_batches_tracked left out); the first without a partner is #{n}, "
            f"{side} '{key}' {shape}")
    return {new: value for (_, value), (new, _) in zip(src, dst)}


def load_weights(model, path_or_dict, strict: bool = True, *,
                 name_map: Mapping | Callable | None = None, by_order: bool = False):
    """Load weights into ``model`` (in place) and return it.

    ``path_or_dict``: a mapping ``{name: array or tensor}``, an ``.npz`` file (written by
    :func:`save_weights` or the trainer), or a PyTorch ``.pth``/``.pt`` file (read
    without torch, see :func:`read_state_dict`). ``name_map`` / ``by_order``: the weights
    use another implementation's names; they are renamed first by
    :func:`port_state_dict`.

    Keys are compared in the model's order and the *first* mismatch is reported:
    ``WeightsMismatchError: mobilenet_v2: key 'features.1.conv.1.weight' has shape (24,)
    in the weights, the model expects (16,)``. With ``strict=False`` missing and unexpected
    keys are skipped (a wrong shape is still an error). ``num_batches_tracked`` is optional
    either way. Values are cast to the model's dtype.
    """
    if name_map is not None or by_order:
        state = port_state_dict(path_or_dict, model, name_map, by_order=by_order)
    else:
        state = read_state_dict(path_or_dict)
    expected = model.state_dict()
    label = _label(model)
    if isinstance(path_or_dict, (str, os.PathLike)):
        label = f"{os.fspath(path_or_dict)}: {label}"          # the error names the file
    summary = f"(the model has {len(expected)} keys, the weights {len(state)})"
    for key, target in expected.items():
        if key not in state:
            if strict and not _optional(key):
                raise WeightsMismatchError(
                    f"{label}: key '{key}' {tuple(target.shape)} is missing from the weights "
                    f"{summary}; is this the same architecture and width?")
            continue
        got = tuple(np.shape(state[key]))
        if got != tuple(target.shape):
            raise WeightsMismatchError(
                f"{label}: key '{key}' has shape {got} in the weights, the model expects "
                f"{tuple(target.shape)} {summary}")
    unexpected = [k for k in state if k not in expected and not _optional(k)]
    if strict and unexpected:
        raise WeightsMismatchError(
            f"{label}: unexpected key '{unexpected[0]}' in the weights"
            + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "")
            + f" {summary}")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return model


def save_weights(model, path):
    """Write ``model.state_dict()`` to an uncompressed ``.npz`` (keys in state-dict order)
    and return the path (``.npz`` appended when ``path`` lacks it, as ``np.savez`` does).
    Reload with :func:`load_weights`.

    Written to a temporary file in the same folder and renamed, so an interrupted save
    never leaves half a file under ``path``."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"                   # what np.savez would do silently
    with atomic_open(path) as f:
        np.savez(f, **model.state_dict())
    return path
