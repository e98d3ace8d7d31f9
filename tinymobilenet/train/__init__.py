"""The trainer: fit, evaluate, predict, checkpoints, recipes, and the command line.

    python -m tinymobilenet.train                          # MobileNetV1 on the bundled digits
    python -m tinymobilenet.train --model efficientnet_b0  # any model, with its family's recipe
    python -m tinymobilenet.train --data photos            # your own images, one folder a class

With no options it trains MobileNetV1 on the digits and writes
``runs/mobilenet_v1/metrics.json`` (test accuracy, per-epoch history, wall time,
configuration) and ``runs/mobilenet_v1/checkpoint.npz``;
``--resume DIR/checkpoint.npz [--epochs N]`` continues or extends a run.

    loop        fit, evaluate, predict (the training loop; (N, C, H, W) images or (N, D) vectors)
    bn          precise_bn: BatchNorm statistics right in eval mode after any number of steps
    checkpoint  save_checkpoint, load_checkpoint, load_model (atomic .npz, never a pickle)
    recipes     recipe(model), DEFAULTS, RECIPES, build_model
    runner      run(config): data, model, optimizer, fit, metrics.json
    progress    Progress: the bar / notebook / one-line-per-epoch display
    command     the command line (``python -m tinymobilenet.train --help``)
"""

from ..figures import plot_history
from .bn import batchnorm_layers, precise_bn
from .checkpoint import (CHECKPOINT_FORMAT, CheckpointError, load_checkpoint, load_model,
                         read_checkpoint, save_checkpoint)
from .command import build_parser, main
from .loop import PRECISE_BN_IMAGES, TrainingInterrupted, evaluate, fit, predict
from .progress import Progress
from .recipes import (DEFAULTS, FAMILIES, RECIPES, build_model, family_of, init_classifier,
                      model_from_config, model_options, recipe, zero_init_residual)
from .runner import ConfigError, load_data, run

__all__ = ["fit", "evaluate", "predict", "precise_bn", "batchnorm_layers", "PRECISE_BN_IMAGES",
           "TrainingInterrupted", "save_checkpoint", "load_checkpoint", "read_checkpoint",
           "load_model", "CheckpointError", "CHECKPOINT_FORMAT", "Progress", "plot_history",
           "DEFAULTS", "RECIPES", "FAMILIES", "recipe", "family_of", "build_model",
           "init_classifier", "zero_init_residual",
           "model_options", "model_from_config", "run", "load_data", "ConfigError",
           "build_parser", "main"]
