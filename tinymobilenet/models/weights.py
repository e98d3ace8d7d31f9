"""Saving and loading weights: NumPy ``.npz`` files and torchvision state dicts.

A state dict is ``{dotted name: array}`` with PyTorch's names and layouts, so a torchvision
state dict converted to NumPy (``{k: v.numpy() for k, v in sd.items()}``) is already one.

Loading never runs code from a file: ``.npz`` files are read with ``allow_pickle=False``
and ``.pth`` files with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

__all__ = ["load_weights", "save_weights", "read_state_dict", "WeightsMismatchError"]


class WeightsMismatchError(ValueError):
    """The weights do not fit the model: a key is missing, unexpected or wrongly shaped."""


def _to_numpy(value):
    """An ndarray from an ndarray, a scalar or a torch tensor (without importing torch)."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):      # a torch.Tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def read_state_dict(path_or_dict) -> dict:
    """``{name: ndarray}`` from a mapping, an ``.npz`` file, or a ``.pth``/``.pt`` file.

    A ``.pth`` file needs torch; it must hold a state dict (a mapping of tensors), possibly
    under a ``"state_dict"`` or ``"model"`` key as training checkpoints often store it.
    """
    if isinstance(path_or_dict, Mapping):
        return {str(k): _to_numpy(v) for k, v in path_or_dict.items()}
    if not isinstance(path_or_dict, (str, os.PathLike)):
        raise TypeError(f"load_weights: expected a path or a mapping of arrays, got "
                        f"{type(path_or_dict).__name__}")
    path = os.fspath(path_or_dict)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_weights: no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as f:        # never unpickle: no code runs
            return {k: f[k] for k in f.files}
    if ext in (".pth", ".pt"):
        try:
            import torch
        except ImportError:
            raise ImportError(f"load_weights: reading {path} needs PyTorch (not installed); "
                              f"convert it elsewhere with np.savez(out, **{{k: v.numpy() "
                              f"for k, v in sd.items()}}) and load the .npz") from None
        obj = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
                obj = obj[key]
        if not isinstance(obj, Mapping):
            raise TypeError(f"load_weights: {path} holds a {type(obj).__name__}, not a state dict")
        return read_state_dict(obj)
    raise ValueError(f"load_weights: unknown file type {ext!r} ({path}); expected .npz, "
                     f".pth or .pt")


def _optional(key):
    return key.endswith("num_batches_tracked")


def load_weights(model, path_or_dict, strict: bool = True):
    """Load weights into ``model`` (in place) and return it.

    ``path_or_dict``: a mapping ``{name: array or tensor}``, an ``.npz`` file written by
    :func:`save_weights`, or (with torch installed) a torchvision ``.pth`` state dict.

    Keys are compared in the model's order and the *first* mismatch is reported:
    ``WeightsMismatchError: mobilenet_v2: key 'features.1.conv.1.weight' has shape (24,)
    in the weights, the model expects (16,)``. With ``strict=False`` missing and unexpected
    keys are skipped (a wrong shape is still an error). ``num_batches_tracked`` is optional
    either way. Values are cast to the model's dtype.
    """
    state = read_state_dict(path_or_dict)
    expected = model.state_dict()
    label = getattr(model, "name", type(model).__name__)
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
    and return the path. Reload with :func:`load_weights`."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"                   # what np.savez would do silently
    np.savez(path, **model.state_dict())
    return path
