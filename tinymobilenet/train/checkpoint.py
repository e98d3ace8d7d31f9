"""Checkpoints: one ``.npz`` of plain arrays and a JSON string, never a pickle.

    save_checkpoint(path, model, optimizer, epoch, history, config)   written atomically
    load_checkpoint(path, model, optimizer) -> meta                   restores both in place
    load_model(path) -> model                                         rebuilt from the config

Inside the file: ``model/<state-dict key>`` arrays (so ``models.load_weights(model, path)``
reads it as weights too), ``optimizer/velocity/<i>`` arrays, and ``meta``, a JSON string:
format, epoch, seed, history, config (the training options, the model's factory options,
the class names and the input preprocessing), the optimizer's hyperparameters and step count,
the states of the model's random generators, and the run's wall time so far.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..files import atomic_write
from .bn import random_layers

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "read_checkpoint", "load_model"]

CHECKPOINT_FORMAT = "tinymobilenet-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, not one, holds pickled objects, or does not fit
    the model (the message names the file and the key)."""


def _model_rngs(model):
    return [(name, m.rng) for name, m in random_layers(model)]


def save_checkpoint(path, model, optimizer, epoch: int, history=(), config=None, seed=0,
                    wall_time: float | None = None) -> Path:
    """Write the checkpoint of ``model`` and ``optimizer`` after ``epoch`` epochs to
    ``path`` (see the module docstring), atomically: a temporary file renamed over the old
    one, so an interrupted save never leaves half a checkpoint. Returns the path."""
    state = optimizer.state_dict()
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    for i, v in enumerate(state["velocity"]):
        if v is not None:
            arrays[f"optimizer/velocity/{i}"] = v
    meta = {"format": CHECKPOINT_FORMAT, "epoch": int(epoch), "seed": int(seed),
            "history": list(history), "config": config or {},
            "optimizer": {"hyperparameters": state["hyperparameters"],
                          "step_count": state["step_count"],
                          "num_params": len(state["velocity"])},
            "rng_states": {name: g.bit_generator.state for name, g in _model_rngs(model)}}
    if wall_time is not None:
        meta["wall_time_seconds"] = float(wall_time)
    arrays["meta"] = np.array(json.dumps(meta))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path, arrays: bool = True) -> tuple[dict, dict]:
    """(meta, {key: array}) of a checkpoint, read with ``allow_pickle=False`` (loading never
    runs code from the file); ``arrays=False`` reads only the meta data (the arrays dict is
    then empty). Raises :class:`CheckpointError` naming the file."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":           # every .npz is a zip archive
            raise CheckpointError(f"{path}: not a tinymobilenet checkpoint (not an .npz file)")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("a single array, not an archive")
            wanted = f.files if arrays else [k for k in f.files if k == "meta"]
            arrays = {k: f[k] for k in wanted}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: not a tinymobilenet checkpoint ({e})") from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a tinymobilenet checkpoint (no 'meta' entry)")
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: unreadable meta data ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: format {got!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [k for k in ("epoch", "seed", "history", "config", "optimizer", "rng_states")
               if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: meta data lacks {', '.join(missing)}")
    return meta, arrays


def load_checkpoint(path, model=None, optimizer=None) -> dict:
    """Read a checkpoint, restore ``model`` and ``optimizer`` in place if given, and
    return the meta dict.

    Raises :class:`CheckpointError` for a file that is not a checkpoint, contains pickled
    objects, or does not match the model or optimizer (the message names the key)."""
    meta, arrays = read_checkpoint(path)
    if model is not None:
        weights = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
        try:
            model.load_state_dict(weights)
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not match the model: {e}") from None
        rngs = dict(_model_rngs(model))
        for name, st in meta["rng_states"].items():
            if name not in rngs:
                raise CheckpointError(f"{path}: model has no random generator at '{name}'")
            rngs[name].bit_generator.state = st
    if optimizer is not None:
        opt = meta["optimizer"]
        velocity = [arrays.get(f"optimizer/velocity/{i}") for i in range(opt["num_params"])]
        try:
            optimizer.load_state_dict({"hyperparameters": opt["hyperparameters"],
                                       "step_count": opt["step_count"], "velocity": velocity})
        except (KeyError, ValueError) as e:
            raise CheckpointError(f"{path} does not match the optimizer: {e}") from None
    return meta


def load_model(path):
    """The trained model of a checkpoint written by ``python -m tinymobilenet.train``:
    the architecture rebuilt from the checkpoint's configuration (``model`` and
    ``model_options``), the weights loaded, in eval mode. The returned model carries the
    checkpoint's ``meta`` dict as ``model.checkpoint_meta`` (class names, preprocessing).

    Raises :class:`CheckpointError` for a checkpoint that does not say how to build its
    model (one written by :func:`save_checkpoint` without such a config)."""
    from .recipes import model_from_config
    meta, _ = read_checkpoint(path)
    try:
        model = model_from_config(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: its config does not say how to build the model "
                              f"({e}); build it yourself and use load_checkpoint") from None
    load_checkpoint(path, model)
    model.checkpoint_meta = meta
    return model.eval()
