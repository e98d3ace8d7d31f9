"""One training run from a configuration: data, model, optimizer, loop, files.

    run({"model": "mobilenet_v2"})    -> metrics; writes runs/mobilenet_v2/{metrics.json,
                                         checkpoint.npz} (and split.json for a split folder)

The configuration is the model's recipe (:func:`~tinymobilenet.train.recipes.recipe`) with
every key the caller gives (not None) replacing the recipe's. What the run adds to it, and
stores in the checkpoint and metrics.json: the model's factory options, the input shape,
the class names, the preprocessing of an image file (:class:`~tinymobilenet.data.
ImageTransform`), and for an image folder its split. Paths in it (``data``) are relative to
the run's directory, so a run directory moved together with its data still works.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np

from .. import cli, nn
from ..data import (DIGITS_TEST_SIZE, DIGITS_TRAIN_SIZE, ImageTransform, scan_folder,
                    image_folder, load_dataset, random_shift)
from ..files import output_problem, shown, write_json
from ..count import summary
from ..memory import check_fits
from ..optim import SGD, Cosine, Warmup, param_groups
from .checkpoint import read_checkpoint
from .loop import evaluate, fit
from .recipes import (family_of, init_classifier, model_from_config, model_options, recipe,
                      zero_init_residual)

__all__ = ["run", "resolve_config", "check_config", "OPTION_TYPES", "load_data",
           "ConfigError", "run_dir"]


# images of each bundled data set (train + test), for the memory estimate
DATASET_SIZES = {"digits": DIGITS_TRAIN_SIZE + DIGITS_TEST_SIZE, "shapes": 1200 + 400}


class ConfigError(ValueError):
    """A configuration that cannot be trained (the message says which option and why)."""


#: what each training option may be: the ``type=`` of its command-line option (which names
#: the bound a value breaks), also applied to a configuration read from a checkpoint
OPTION_TYPES = {
    "alpha": cli.number(float, 0, lo_open=True),
    "resolution": cli.number(int, 1),
    "test_fraction": cli.number(float, 0, 0.95, lo_open=True),
    "epochs": cli.number(int, 1),
    "batch_size": cli.number(int, 1),
    "lr": cli.number(float, 0, lo_open=True),
    "momentum": cli.number(float, 0, 0.999),
    "weight_decay": cli.number(float, 0),
    "warmup_epochs": cli.number(float, 0),
    "shift": cli.number(float, 0),
    "label_smoothing": cli.number(float, 0, 0.99),
    "dropout": cli.number(float, 0, 0.99),
    "classifier_range": cli.number(float, 0),
    "zero_init_residual": cli.number(int, 0, 1),
    "precise_bn": cli.number(int, 0),
    "seed": cli.number(int, 0),
}
# options that may be None (the recipe's "the model's own" / "none")
_OPTIONAL = {"alpha", "dropout", "classifier_range", "data", "in_channels", "out"}


def check_config(config: dict) -> None:
    """:class:`ConfigError` naming the first option of ``config`` (a configuration read
    from a file: every key optional) that the command line would refuse: a value of the
    wrong type or out of :data:`OPTION_TYPES`' bounds, an unknown model or data set, a
    ``data`` or ``out`` that is not a path, ``in_channels`` not 1 or 3, a ``split`` that is
    not a dict. Keys it does not know are left alone."""
    from ..data import DATASETS
    for key, value in config.items():
        if value is None and key in _OPTIONAL:
            continue
        if key in OPTION_TYPES:
            parse = OPTION_TYPES[key]
            if isinstance(value, bool) and key == "zero_init_residual":
                value = int(value)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (parse.__name__ == "int" and not isinstance(value, int)):
                what = "an integer" if parse.__name__ == "int" else "a number"
                raise ConfigError(f"{key}: must be {what}, got {value!r}")
            try:
                parse(repr(value))
            except argparse.ArgumentTypeError as e:
                raise ConfigError(f"{key}: {e}") from None
        elif key == "model":
            try:
                family_of(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"model: {e}") from None
        elif key == "dataset" and value not in DATASETS:
            raise ConfigError(f"dataset: must be one of {', '.join(DATASETS)}, got {value!r}")
        elif key in ("data", "out") and not isinstance(value, str):
            raise ConfigError(f"{key}: must be a path, got {value!r}")
        elif key == "in_channels" and (isinstance(value, bool) or value not in (1, 3)):
            raise ConfigError(f"in_channels: must be 1 or 3, got {value!r}")
        elif key == "split" and not isinstance(value, dict):
            raise ConfigError(f"split: must be a dict, got {type(value).__name__}")


def resolve_config(config: dict) -> dict:
    """The model's recipe updated with every key of ``config`` that is not None."""
    model = config.get("model") or "mobilenet_v1"
    try:
        c = recipe(model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    c.update({k: v for k, v in config.items() if v is not None})
    return c


def run_dir(config: dict) -> Path:
    """Where a run writes: ``config["out"]``, by default ``runs/<model>``."""
    return Path(config.get("out") or f"runs/{config['model']}")


def data_path(config: dict, base) -> Path | None:
    """The image folder of a configuration, a relative path taken from ``base``."""
    if not config.get("data"):
        return None
    p = Path(config["data"])
    return p if p.is_absolute() else Path(base) / p


def load_data(c: dict, base="."):
    """(train, test, transform) for configuration ``c``: the digits, the shapes or the image
    folder ``c["data"]`` (relative to ``base``), at ``c["resolution"]``, as vectors for the
    dense models. ``transform`` (an ImageTransform) makes the same input from an image file."""
    dense = family_of(c["model"]) == "dense"
    res = int(c["resolution"])
    folder = data_path(c, base)
    if folder is not None:
        train, test = image_folder(folder, res, c.get("in_channels"), c["test_fraction"],
                                   c["seed"], flatten=dense)
        return train, test, ImageTransform.from_dict(train.info["transform"])
    channels = c.get("in_channels") or 1
    mode = "L" if channels == 1 else "RGB"
    if c["dataset"] == "digits":
        # the digits are 8 x 8: a file is shrunk to 8 x 8, standardised, then upsampled;
        # shrunk by box averages, as the data set was made (on-pixels counted in 4 x 4
        # blocks of 32 x 32 bitmaps)
        train, test = load_dataset("digits", res, channels)
        transform = ImageTransform(mode, 8, train.info["mean"], train.info["std"],
                                   upsample=res, flatten=dense, resample="box")
    else:
        train, test = load_dataset(c["dataset"], res, channels, seed=c["seed"])
        transform = ImageTransform(mode, res, flatten=dense)
    if dense:
        train, test = train.flatten(), test.flatten()
    return train, test, transform


def _check_memory(c: dict, folder) -> None:
    """ConfigError if the model, trained in batches, and the data set cannot fit in this
    machine's memory (estimated before loading or building anything)."""
    if folder is not None:
        train, test = scan_folder(folder)            # also checks the folder's layout
        n = sum(map(len, train.values())) + sum(map(len, (test or {}).values()))
        classes, channels = len(train), 3
    else:
        n, classes, channels = DATASET_SIZES[c["dataset"]], 10, 1
    channels = c.get("in_channels") or channels
    r = int(c["resolution"])
    shape = (channels * r * r,) if family_of(c["model"]) == "dense" else (channels, r, r)
    try:
        opts = model_options(c["model"], c.get("alpha"), classes, shape, c["seed"],
                             c.get("dropout"))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    # the data set is held as float32, and once more while it is being made
    problem = check_fits(c["model"], opts, shape, c["batch_size"], "train",
                         data_bytes=2 * 4 * n * math.prod(shape))
    if problem:
        raise ConfigError(problem)


def _augment(c, train):
    """The batch augmentation of configuration ``c``: random shifts (None for vectors)."""
    if train.x.ndim != 4:
        return None
    # one pixel of the 8x8 digits is resolution/8 pixels of the upsampled image
    scale = c["resolution"] / 8 if (c["dataset"] == "digits" and not c.get("data")) else 1
    pixels = round(c["shift"] * scale)
    return (lambda x, rng: random_shift(x, pixels, rng)) if pixels else None


def run(config: dict, progress="auto", resume=None, on_epoch_end=None, log=None) -> dict:
    """Train as ``config`` says (see the module docstring); write ``out/metrics.json`` and
    ``out/checkpoint.npz``; return the metrics. ``resume``: a checkpoint to continue from
    (``config`` should then be its configuration, with ``epochs`` possibly raised and
    ``out`` possibly changed; its ``data`` is relative to the checkpoint's directory).
    ``on_epoch_end`` is passed to :func:`fit`; ``log(text)`` receives a line about the
    data and the model (None: silent). Raises :class:`ConfigError` for options that
    cannot work (an ``out`` that cannot be a folder included), before any training;
    ``metrics["wall_time_seconds"]`` covers the whole
    run, every resumed part included."""
    t_start = time.perf_counter()
    c = resolve_config(config)
    out = run_dir(c)
    problem = output_problem(out, folder=True)
    if problem:                                       # before the data is loaded
        raise ConfigError(problem)
    earlier, saved = 0.0, None
    if resume is not None:
        meta = read_checkpoint(resume, arrays=False)[0]
        earlier, saved = meta.get("wall_time_seconds", 0.0), meta["config"].get("model_options")
    folder = data_path(c, Path(resume).parent if resume is not None else ".")
    _check_memory(c, folder)
    train, test, transform = load_data({**c, "data": folder})
    if folder is not None:
        c["data"] = os.path.relpath(folder.resolve(), out.resolve())
        if resume is not None and c.get("split") not in (None, train.info["split"]):
            raise ConfigError(f"{folder}: the images differ from those the run in {resume} "
                              f"was trained on (its split.json lists them)")
    opts = model_options(c["model"], c.get("alpha"), len(train.classes), train.x.shape[1:],
                         c["seed"], c.get("dropout"))
    # every option the checkpoint names must be what its training options give (one it
    # lacks, from a version that did not store it, takes the value they give)
    if saved is not None and any(k not in opts or opts[k] != v for k, v in saved.items()):
        raise ConfigError(f"{resume}: meta data config.model_options {saved} differ from those "
                          f"its training options give, {opts}")
    c.update(model_options=opts, input_shape=list(train.x.shape[1:]),
             classes=list(train.classes), transform=transform.to_dict())
    if "split" in train.info:
        c["split"] = train.info["split"]
    model = model_from_config(c)
    if c.get("classifier_range") and resume is None:    # (a resumed run loads its weights)
        init_classifier(model, c["classifier_range"], c["seed"])
    if c.get("zero_init_residual") and resume is None:
        zero_init_residual(model)
    if log is not None:
        log(_describe(c, folder, train, test, model, out))
    if c.get("split", {}).get("kind") == "stratified":
        write_json(out / "split.json", c["split"])
    steps_per_epoch = math.ceil(len(train) / c["batch_size"])
    warmup = round(c["warmup_epochs"] * steps_per_epoch)
    schedule = Warmup(Cosine(c["lr"], max(1, c["epochs"] * steps_per_epoch - warmup)), warmup)
    optimizer = SGD(param_groups(model, c["weight_decay"]), lr=c["lr"],
                    momentum=c["momentum"], nesterov=c["momentum"] > 0)
    history = fit(model, train, c["epochs"], optimizer, schedule, test_data=test,
                  batch_size=c["batch_size"], seed=c["seed"], augment=_augment(c, train),
                  loss_fn=nn.CrossEntropyLoss(c["label_smoothing"]), progress=progress,
                  checkpoint=out / "checkpoint.npz", resume=resume, config=c,
                  on_epoch_end=on_epoch_end, precise_bn=c["precise_bn"], start_time=t_start)
    test_loss, test_accuracy = evaluate(model, test)
    metrics = {"test_accuracy": test_accuracy, "test_loss": test_loss, "history": history,
               "wall_time_seconds": earlier + time.perf_counter() - t_start,
               "train_seconds": sum(r["seconds"] for r in history),
               "params": model.num_parameters(),
               "macs": summary(model, (1,) + train.x.shape[1:]).total_macs,
               "config": c, "numpy": np.__version__}
    write_json(out / "metrics.json", metrics)
    return metrics


def _describe(c, folder, train, test, model, out) -> str:
    where = shown(folder) if folder is not None else f"the bundled {c['dataset']}"
    text = (f"{c['model']}: {model.num_parameters():,} parameters; {where}: "
            f"{len(train.classes)} classes, {len(train)} training / {len(test)} test "
            f"inputs of shape {tuple(train.x.shape[1:])}")
    split = c.get("split")
    if split and split["kind"] == "stratified":
        text += (f"; split here per class ({100 * split['test_fraction']:g} % for testing, "
                 f"seed {split['seed']}) -> {out / 'split.json'}")
    return text
