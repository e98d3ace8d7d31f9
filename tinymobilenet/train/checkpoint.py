"""Checkpoints: one ``.npz`` of plain arrays and a JSON string, never a pickle.

    save_checkpoint(path, model, optimizer, epoch, history, config)   written atomically
    load_checkpoint(path, model, optimizer) -> meta                   restores both in place
    load_model(path) -> model                                         rebuilt from the config

Inside the file: ``model/<state-dict key>`` arrays (so ``models.load_weights(model, path)``
reads it as weights too), ``optimizer/velocity/<i>`` arrays, and ``meta``, a JSON string:
format, epoch, seed, history, config (the training options, the model's factory options,
the class names and the input preprocessing), the optimizer's hyperparameters and step count,
the states of the model's random generators, and the run's wall time so far.

A checkpoint is a file from outside: :func:`read_checkpoint` checks the structure and type of
every meta data field that later code uses (and that the weights are finite numbers) and
refuses a bad one with one :class:`CheckpointError` naming the file and the field
(``x.npz: meta data config.transform.std: ...``), so nothing downstream meets a surprise.
:func:`model_spec` checks the model's name, options and input shape, :func:`load_model`
also that the model fits in memory before building it.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np

from ..files import atomic_write, input_problem
from ..models.pth import CheckpointFormatError
from ..models.weights import check_numbers, read_npz
from .bn import random_layers

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "read_checkpoint", "load_model", "model_spec"]

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
    then empty). Every meta data field is checked (see the module docstring), and the
    model's weights must be finite numbers. Raises :class:`CheckpointError` naming the file
    (and the field)."""
    problem = input_problem(path, "checkpoint")
    if problem:
        raise CheckpointError(problem)
    try:
        arrays = read_npz(path, "a tinymobilenet checkpoint", None if arrays else ("meta",))
    except CheckpointFormatError as e:
        raise CheckpointError(str(e)) from None
    if "meta" not in arrays:
        raise CheckpointError(f"{path}: not a tinymobilenet checkpoint (no 'meta' entry)")
    text = arrays.pop("meta")
    if text.shape != () or text.dtype.kind != "U":
        raise CheckpointError(f"{path}: not a tinymobilenet checkpoint ('meta' is not one "
                              f"string)")
    try:
        meta = json.loads(str(text))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: unreadable meta data ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: unreadable meta data (nested too deeply)") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: format {got!r}, expected {CHECKPOINT_FORMAT!r}")
    missing = [k for k in ("epoch", "seed", "history", "config", "optimizer", "rng_states")
               if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: meta data lacks {', '.join(missing)}")
    try:
        _check_meta(meta)
    except _Bad as e:
        raise CheckpointError(f"{path}: {e}") from None
    try:                              # (a training run that diverged can save NaN)
        check_numbers({k: v for k, v in arrays.items() if k.startswith("model/")}, path)
    except CheckpointFormatError as e:
        raise CheckpointError(str(e)) from None
    return meta, arrays


# ---- what a checkpoint's meta data must be ------------------------------------------------

class _Bad(Exception):
    """A bad field: the message names it; read_checkpoint adds the file."""


def _field(where, problem):
    return _Bad(f"meta data {where}: {problem}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _need(ok, where, what, value):
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else type(value).__name__
        raise _field(where, f"must be {what}, got {shown}")


def _check_meta(meta: dict) -> None:
    """_Bad naming the first field of ``meta`` that later code could not use."""
    _need(_is_int(meta["epoch"]) and meta["epoch"] >= 0, "epoch", "an integer >= 0",
          meta["epoch"])
    _need(_is_int(meta["seed"]) and meta["seed"] >= 0, "seed", "an integer >= 0", meta["seed"])
    if "wall_time_seconds" in meta:
        _need(_is_number(meta["wall_time_seconds"]), "wall_time_seconds", "a number",
              meta["wall_time_seconds"])
    history = meta["history"]
    _need(isinstance(history, list), "history", "a list of epochs", history)
    for i, row in enumerate(history):
        # a record, never computed with: NaN or inf (a loss that blew up) is a fair entry
        _need(isinstance(row, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                            for v in row.values())
              and _is_int(row.get("epoch")), f"history[{i}]",
              "an epoch's row of numbers (epoch, train_loss, ...)", row)
    _check_optimizer(meta["optimizer"])
    states = meta["rng_states"]
    _need(isinstance(states, dict), "rng_states", "a dict of generator states", states)
    for name, st in states.items():
        _need(isinstance(st, dict) and isinstance(st.get("state"), dict),
              f"rng_states.{name}", "a NumPy bit generator state (a dict)", st)
    _check_config(meta["config"])


def _check_optimizer(opt) -> None:
    _need(isinstance(opt, dict), "optimizer", "a dict", opt)
    for key in ("num_params", "step_count"):
        _need(_is_int(opt.get(key)) and opt[key] >= 0, f"optimizer.{key}", "an integer >= 0",
              opt.get(key))
    h = opt.get("hyperparameters")
    _need(isinstance(h, dict), "optimizer.hyperparameters", "a dict", h)
    for key in ("lr", "momentum", "weight_decay", "dampening"):
        _need(_is_number(h.get(key)), f"optimizer.hyperparameters.{key}", "a number",
              h.get(key))
    _need(isinstance(h.get("nesterov"), bool), "optimizer.hyperparameters.nesterov",
          "true or false", h.get("nesterov"))
    decays = h.get("decays")
    _need(isinstance(decays, list) and all(map(_is_number, decays)),
          "optimizer.hyperparameters.decays", "a list of numbers", decays)


def _check_config(config) -> None:
    """The training options (as the command line would take them), the model and its input,
    the class names and the preprocessing. Every key is optional (save_checkpoint takes
    any config); what is there must be right."""
    from ..data import ImageTransform
    from .runner import ConfigError, check_config
    _need(isinstance(config, dict), "config", "a dict", config)
    try:
        check_config(config)
    except ConfigError as e:
        raise _Bad(f"meta data config.{e}") from None
    if "model" in config and "model_options" in config:
        _check_model(config)
    classes = config.get("classes")
    if classes is not None or "classes" in config:
        _need(isinstance(classes, list) and len(classes) >= 1
              and all(isinstance(c, str) for c in classes),
              "config.classes", "a list of class names", classes)
        k = config.get("model_options", {}).get("num_classes")
        if _is_int(k) and k != len(classes):
            raise _field("config.classes", f"{len(classes)} class name(s) for a model of {k} "
                                           f"classes (config.model_options.num_classes)")
    if "transform" in config:
        try:
            t = ImageTransform.from_dict(config["transform"])
        except ValueError as e:
            raise _field("config.transform", str(e).replace("ImageTransform: ", "")) from None
        shape = config.get("input_shape")
        if shape is not None and t.output_shape != tuple(shape):
            raise _field("config.transform", f"makes inputs of shape {t.output_shape}, the "
                                             f"model takes {tuple(shape)} (config.input_shape)")


def _check_model(config) -> None:
    """config.model (a known name), config.model_options (the factory's own options, each of
    the type of its default) and config.input_shape (positive integers, (C, H, W) or (D,))."""
    from ..models import DENSE_MODEL_NAMES, _DENSE_FACTORIES, _IMAGE_FACTORIES
    name, options = config["model"], config["model_options"]
    factories = {**_IMAGE_FACTORIES, **_DENSE_FACTORIES}
    _need(isinstance(name, str) and name in factories, "config.model",
          f"one of {', '.join(factories)}", name)
    _need(isinstance(options, dict), "config.model_options", "a dict", options)
    params = inspect.signature(factories[name]).parameters
    for key, value in options.items():
        where = f"config.model_options.{key}"
        if key not in params or key in ("weights", "progress", "rng"):
            # weights= would fetch or read another file: never from a file's say-so
            usable = [k for k in params if k not in ("weights", "progress", "rng")]
            raise _field(where, f"{name} has no such option (its options: "
                                f"{', '.join(usable)})")
        default = params[key].default
        if isinstance(default, bool):
            _need(isinstance(value, bool), where, "true or false", value)
        elif isinstance(default, float):
            _need(_is_number(value), where, "a number", value)
        elif isinstance(default, str):
            _need(isinstance(value, str), where, "a string", value)
        elif isinstance(default, tuple):
            _need(isinstance(value, list) and all(_is_int(v) and v >= 1 for v in value),
                  where, "a list of integers >= 1", value)
        else:                                # int, or None / no default: an int (a count)
            _need((value is None and default is None)
                  or (_is_int(value) and value >= (0 if key == "seed" else 1)),
                  where, "an integer >= 0" if key == "seed" else "an integer >= 1", value)
    if "input_shape" in config:
        shape = config["input_shape"]
        n = 1 if name in DENSE_MODEL_NAMES else 3
        _need(isinstance(shape, list) and len(shape) == n and all(_is_int(v) and v >= 1
                                                                    for v in shape),
              "config.input_shape", f"{n} integers >= 1", shape)
        channels = options.get("input_dim" if n == 1 else "in_channels")
        if channels is not None and channels != shape[0]:
            raise _field("config.input_shape", f"{shape} does not fit the model's "
                         f"{'input_dim' if n == 1 else 'in_channels'} {channels}")


def model_spec(path, meta: dict) -> tuple[str, dict, tuple | None]:
    """(model name, factory options, input shape or None) of a checkpoint's meta data
    (checked by :func:`read_checkpoint`); :class:`CheckpointError` naming ``path`` for a
    config that does not say which model was trained (not written by the trainer)."""
    config = meta["config"]
    lacks = [k for k in ("model", "model_options") if k not in config]
    if lacks:
        raise CheckpointError(f"{path}: its config does not say how to build the model (no "
                              f"{lacks[0]!r}; not written by python -m tinymobilenet.train?); "
                              f"build it yourself and use load_checkpoint")
    shape = config.get("input_shape")
    return config["model"], dict(config["model_options"]), None if shape is None else tuple(shape)


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
            try:
                rngs[name].bit_generator.state = st
            except (TypeError, ValueError, KeyError) as e:
                raise CheckpointError(f"{path}: meta data rng_states.{name}: not a state of "
                                      f"the model's {type(rngs[name].bit_generator).__name__} "
                                      f"generator ({e})") from None
    if optimizer is not None:
        opt = meta["optimizer"]
        if opt["num_params"] > len(arrays):       # (more parameters than arrays: made up)
            raise CheckpointError(f"{path} does not match the optimizer: meta data "
                                  f"optimizer.num_params is {opt['num_params']}")
        velocity = [arrays.get(f"optimizer/velocity/{i}") for i in range(opt["num_params"])]
        try:
            optimizer.load_state_dict({"hyperparameters": opt["hyperparameters"],
                                       "step_count": opt["step_count"], "velocity": velocity})
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{path} does not match the optimizer: {e}") from None
    return meta


def load_model(path):
    """The trained model of a checkpoint written by ``python -m tinymobilenet.train``:
    the architecture rebuilt from the checkpoint's configuration (``model`` and
    ``model_options``), the weights loaded, in eval mode. The returned model carries the
    checkpoint's ``meta`` dict as ``model.checkpoint_meta`` (class names, preprocessing).

    Raises :class:`CheckpointError` for a checkpoint that does not say how to build its
    model (one written by :func:`save_checkpoint` without such a config; then build it
    yourself and use :func:`load_checkpoint`), whose options the model refuses, or whose
    model would not fit in this machine's memory (checked before building it)."""
    from ..memory import check_fits
    from .recipes import model_from_config
    meta, _ = read_checkpoint(path)
    name, options, shape = model_spec(path, meta)
    if shape is None:                 # (not written by the trainer) for the estimate only
        shape = (options["input_dim"],) if "input_dim" in options else (
            options.get("in_channels", 3), 32, 32)
    try:
        problem = check_fits(name, options, shape, 1, "eval")
        model = None if problem else model_from_config(meta["config"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: meta data config.model_options: {e}") from None
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    load_checkpoint(path, model)
    model.checkpoint_meta = meta
    return model.eval()
