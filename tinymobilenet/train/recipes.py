"""A training recipe per model family, and building a model from a run's configuration.

    recipe("mobilenet_v2")      the full default configuration of ``train --model mobilenet_v2``
    DEFAULTS                    recipe("mobilenet_v1"): the no-option run
    build_model(name, alpha, num_classes, in_channels, seed, ...)     a model to train
    model_from_config(config)   the model a checkpoint's configuration describes

The recipes were found by experiment on the bundled digits on a two-core machine (see the
README's "Training" section for the measurements). What each family needs:

- **MobileNetV1** (plain BN + ReLU stacks, no residuals) takes a large learning rate.
- **MobileNetV2** and **EfficientNet** diverge with it: their residual sums of linear
  bottlenecks grow with a large step, so they get a smaller rate and a longer warm-up.
- **MobileNetV3** and the deep **EfficientNets** use BatchNorm momentum 0.01: their
  running statistics follow the weights far too slowly for a short run; precise BN
  (:mod:`tinymobilenet.train.bn`, on for every family) makes eval mode right anyway.
- **EfficientNet**'s classifier is drawn from U(+-1/sqrt(K)) for K classes (torchvision):
  +-0.03 for ImageNet's 1000, but +-0.32 for 10 digits, whose 1280 features then give
  initial logits with a spread of about 6, a first loss near 7 (chance is 2.3) and
  gradients a thousand times the usual; training lurches and loses points late. The
  recipe draws the classifier at ImageNet's range, U(+-1/sqrt(1000)) (``classifier_range``),
  and smooths the labels (0.1): without it some runs lurched late, their loss doubling at a
  small learning rate.
- **Deep EfficientNets** (B5: 39 MBConv blocks, B7: 55) did not learn at all in a short
  run (B6, 3 epochs: 13 % test accuracy, training loss above chance; a four times smaller
  learning rate: 17 %): at initialisation each residual branch adds its own noise to the
  sum, and dozens of them bury the signal. ``zero_init_residual`` sets the last BatchNorm
  scale of every residual branch to 0, so each block starts as the identity and the network
  as shallow as its blocks without a skip: B6 then reached 97.2 % in the same 3 epochs. The
  recipe does it for the whole EfficientNet family.
- MobileNetV3 and EfficientNet-B5..B7/Lite use torchvision's (TensorFlow's) BatchNorm
  momentum 0.01; B0..B4 torchvision's 0.1.
- The **dense** (1-D) models see each digit as a vector of 64 pixels; no shift
  augmentation (a vector has no neighbours to shift into).
"""

from __future__ import annotations

import math
import textwrap

import numpy as np

from ..models import DENSE_MODEL_NAMES, MODEL_NAMES, get_model
from ..models import width_option as _model_width_option

__all__ = ["FAMILIES", "RECIPES", "COMMON", "SHORT_RUNS", "DEFAULTS", "family_of", "recipe", "build_model",
           "model_options", "model_from_config", "width_option", "init_classifier",
           "zero_init_residual",
           "recipe_table"]

#: model names of each family, in the order of the recipes
FAMILIES = {
    "mobilenet_v1": ("mobilenet_v1",),
    "mobilenet_v2": ("mobilenet_v2",),
    "mobilenet_v3": ("mobilenet_v3_small", "mobilenet_v3_large"),
    # EfficientNet-Lite (ReLU6, no SE, SAME padding) trains with EfficientNet's recipe
    "efficientnet": tuple(n for n in MODEL_NAMES if n.startswith("efficientnet_")),
    "dense": DENSE_MODEL_NAMES,
}

# alpha: width multiplier (None: the family has none); dropout: None keeps the model's own
# (torchvision's 0.2 for V2/V3/EfficientNet-B0); precise_bn: training samples whose
# statistics replace BatchNorm's running averages before every evaluation and checkpoint;
# classifier_range: None keeps the model's own initial classifier, r draws its weights
# from U(-r, r) (see the module docstring); zero_init_residual: every residual block's last
# BatchNorm scale starts at 0, so each block starts as the identity (zero_init_residual)
RECIPES = {
    "mobilenet_v1": dict(alpha=0.25, resolution=32, epochs=15, batch_size=32, lr=0.05,
                         warmup_epochs=1, weight_decay=2e-3, label_smoothing=0.0,
                         dropout=None, precise_bn=512, classifier_range=None,
                         zero_init_residual=False),
    "mobilenet_v2": dict(alpha=1.0, resolution=32, epochs=12, batch_size=32, lr=0.02,
                         warmup_epochs=1, weight_decay=1e-4, label_smoothing=0.0,
                         dropout=None, precise_bn=512, classifier_range=None,
                         zero_init_residual=False),
    "mobilenet_v3": dict(alpha=1.0, resolution=32, epochs=12, batch_size=32, lr=0.05,
                         warmup_epochs=1, weight_decay=1e-4, label_smoothing=0.0,
                         dropout=None, precise_bn=512, classifier_range=None,
                         zero_init_residual=False),
    "efficientnet": dict(alpha=None, resolution=32, epochs=10, batch_size=32, lr=0.02,
                         warmup_epochs=1, weight_decay=1e-4, label_smoothing=0.1,
                         dropout=None, precise_bn=512,
                         classifier_range=round(1 / math.sqrt(1000), 4), zero_init_residual=True),
    "dense": dict(alpha=1.0, resolution=8, epochs=20, batch_size=32, lr=0.05,
                  warmup_epochs=1, weight_decay=5e-4, label_smoothing=0.0,
                  dropout=None, precise_bn=512, classifier_range=None,
                         zero_init_residual=False),
}

#: what the recipes share; ``out`` None means runs/<model>
COMMON = dict(dataset="digits", data=None, in_channels=None, test_fraction=0.2,
              momentum=0.9, shift=0.5, seed=0, out=None)

#: what each family's BatchNorm needs, for the --help table
BN_NOTES = {
    "mobilenet_v1": "0.1",
    "mobilenet_v2": "0.1",
    "mobilenet_v3": "0.01 (torchvision)",
    "efficientnet": "0.1 B0-B4, 0.01 B5-B7/Lite",
    "dense": "0.1",
}

# shift augmentation makes no sense for feature vectors
_FAMILY_OVERRIDES = {"dense": dict(shift=0.0)}

#: EfficientNet-B1..B7 and -Lite1..4 train with B0's recipe, but only for a short run by
#: default: on two CPU cores a B7 epoch takes over a minute (a B0 epoch ten seconds), so ten
#: epochs of all of them would take hours. The run shows that they train (finite losses, the test accuracy
#: well above chance, nothing diverges); --epochs 10 trains them as long as B0.
SHORT_RUNS = {**{f"efficientnet_b{i}": 3 for i in range(1, 8)},
              **{f"efficientnet_lite{i}": 3 for i in range(1, 5)}}


def family_of(model: str) -> str:
    """The recipe family of a model name; ValueError listing the names for an unknown one."""
    for family, names in FAMILIES.items():
        if model in names:
            return family
    raise ValueError(f"unknown model {model!r}; choose one of "
                     f"{', '.join(MODEL_NAMES + DENSE_MODEL_NAMES)}")


def recipe(model: str = "mobilenet_v1") -> dict:
    """The complete default configuration of ``python -m tinymobilenet.train --model
    model``: the family's recipe, the shared options and ``model`` itself."""
    family = family_of(model)
    c = {"model": model, **COMMON, **RECIPES[family], **_FAMILY_OVERRIDES.get(family, {}),
         "recipe": family}
    if model in SHORT_RUNS:
        c["epochs"] = SHORT_RUNS[model]
    return c


DEFAULTS = recipe("mobilenet_v1")


def width_option(model: str) -> str | None:
    """The factory option that the trainer's ``alpha`` sets: ``alpha`` (V1), ``width_mult``
    (V2, V3), ``width_multiplier`` (dense), None (EfficientNet: compound scaling fixes
    each variant's width)."""
    family_of(model)                     # ValueError listing the names for an unknown one
    return _model_width_option(model)


def model_options(model: str, alpha=None, num_classes: int = 10, input_shape=(1, 32, 32),
                  seed: int = 0, dropout=None) -> dict:
    """Keyword arguments of ``models.get_model(model, ...)`` for a model that classifies
    ``num_classes`` classes of inputs ``input_shape`` ((C, H, W), or (D,) for the dense
    models) with width multiplier ``alpha``. ValueError for an alpha the model cannot take."""
    options = {"num_classes": int(num_classes), "seed": int(seed)}
    key = width_option(model)
    if key is None:
        if alpha not in (None, 1, 1.0):
            raise ValueError(f"{model} has no width multiplier (EfficientNet scales width, "
                             f"depth and resolution together: pick another variant, "
                             f"efficientnet_b0..b7, instead of --alpha)")
    elif alpha is not None:
        options[key] = float(alpha)
    if family_of(model) == "dense":
        if len(input_shape) != 1:
            raise ValueError(f"{model}: input_shape must be (D,), got {tuple(input_shape)}")
        options["input_dim"] = int(input_shape[0])
    else:
        if len(input_shape) != 3:
            raise ValueError(f"{model}: input_shape must be (C, H, W), got {tuple(input_shape)}")
        options["in_channels"] = int(input_shape[0])
    if dropout is not None:
        options["dropout"] = float(dropout)
    return options


def build_model(name="mobilenet_v1", alpha=1.0, num_classes=10, in_channels=1, seed=0, *,
                input_dim=None, dropout=None):
    """A model by name (``models.MODEL_NAMES`` or ``DENSE_MODEL_NAMES``) with width
    multiplier ``alpha`` (``alpha`` of V1, ``width_mult`` of V2/V3, ``width_multiplier``
    of the dense models; EfficientNet takes only 1.0 or None). The dense models take
    ``input_dim`` instead of ``in_channels``. Raises ValueError naming the problem."""
    shape = (input_dim,) if family_of(name) == "dense" else (in_channels, 32, 32)
    return get_model(name, **model_options(name, alpha, num_classes, shape, seed, dropout))


def model_from_config(config: dict):
    """The (untrained) model a run's ``config`` describes: ``get_model(config["model"],
    **config["model_options"])``."""
    return get_model(config["model"], **config["model_options"])


def zero_init_residual(model) -> int:
    """Set the scale (gamma) of the last BatchNorm of every residual block's branch to 0 and
    return how many blocks there are (``InvertedResidual``, ``MBConv`` and the 1-D
    ``DenseMBConv`` blocks with a skip connection). Each block
    then starts as the identity (its branch gives beta = 0), so a network of 55 MBConv
    blocks (EfficientNet-B7) starts as deep as its few blocks without a skip connection,
    and the branches grow in as training needs them ("zero gamma", Goyal et al., *Accurate,
    Large Minibatch SGD*, 2017; timm's ``zero_init_last``). Without it B5-B7 do not learn
    the digits in a short run."""
    from .. import nn
    blocks = [m for m in model.modules()
              if isinstance(m, (nn.InvertedResidual, nn.DenseMBConv)) and m.use_res_connect]
    for block in blocks:
        bns = [b for b in block.modules() if isinstance(b, (nn.BatchNorm2d, nn.BatchNorm1d))]
        bns[-1].weight.data[...] = 0
    return len(blocks)


def init_classifier(model, bound: float, seed: int = 0) -> None:
    """Redraw the weights of ``model``'s last Linear layer (its classifier) from
    U(-bound, bound), with a generator seeded by ``seed``; its bias stays."""
    from .. import nn
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no Linear classifier to initialise")
    w = linears[-1].weight
    rng = np.random.default_rng([seed, 1000])       # not the generator the model drew from
    w.data = rng.uniform(-bound, bound, w.data.shape).astype(w.data.dtype)


def recipe_table() -> str:
    """The recipes as a plain-text table (the epilog of ``train --help``)."""
    head = ("family", "alpha", "res", "epochs", "batch", "lr", "warm-up", "decay",
            "BN momentum", "precise BN", "classifier", "residual")
    rows = [head]
    for family, r in RECIPES.items():
        rows.append((family, "-" if r["alpha"] is None else f"{r['alpha']:g}",
                     str(r["resolution"]), str(r["epochs"]), str(r["batch_size"]),
                     f"{r['lr']:g}", f"{r['warmup_epochs']:g}", f"{r['weight_decay']:g}",
                     BN_NOTES[family], str(r["precise_bn"]),
                     "own" if r["classifier_range"] is None else f"U(+-{r['classifier_range']:g})",
                     "gamma 0" if r["zero_init_residual"] else "own"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in rows]
    short = sorted(set(SHORT_RUNS.values()))
    lines += [""] + textwrap.wrap(
        f"efficientnet_b1..b7 and efficientnet_lite1..4: B0's recipe, but a short run of {'/'.join(map(str, short))} "
        f"epochs by default; --epochs {RECIPES['efficientnet']['epochs']} trains them as long "
        f"as B0 and Lite0.", 88)
    lines += ["", "models of each family:"]
    for family, names in FAMILIES.items():
        lines += textwrap.wrap(", ".join(names), 88, initial_indent=f"  {family}: ",
                               subsequent_indent=" " * (4 + len(family)))
    return "\n".join(lines)
