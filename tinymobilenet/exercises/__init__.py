"""Classroom exercises with self-checks, and a grader for a class's submissions.

Each ``check_*`` function takes *your* function and first looks at the function itself (is
it callable, does it take the exercise's parameters, is it not the library's own version of
what you are asked to write). Then it runs it on a handful of cases (simple ones first: odd
sizes, non-square inputs, stride 2, padding, K = 1/3/5) and looks at the *form* of each
answer before its numbers (an array or a tuple of the right length, the right shape, the
inputs' dtype). The numbers are compared with the library's naive loop oracles (forward
passes), with central-difference gradients from :mod:`tinymobilenet.gradcheck` or the
library's own layers run backward (backward passes, float64, random upstream gradient), or
with the counter and the library itself (costs, scaling, optimizer). It returns an
:class:`ExerciseResult`: PASS or FAIL, the worst relative error, the first case that failed
and a hint (``result.ok`` for a script). In a notebook the result prints itself::

    from tinymobilenet import exercises

    def my_depthwise_backward(dout, x, w, stride, padding):
        ...
        return dx, dw

    exercises.check_depthwise_backward(my_depthwise_backward)

Teachers grade files of answers (``.py``, or the chapters' ``.ipynb``) with::

    python -m tinymobilenet.exercises grade FILE_OR_FOLDER ... [--chapter N] [--format json]
    python -m tinymobilenet.exercises list

(see :mod:`tinymobilenet.exercises.grade`). The worked answers and a teacher's guide live
in the repository, ``notebooks/solutions/``, and are not installed with the package.

The functions you write, per chapter, with the checker of each (arrays are NCHW, float64):

"""

from __future__ import annotations

from . import registry
from ._checking import ExerciseResult
from .blocks import (check_inverted_residual_backward, check_se_backward,  # noqa: F401
                     check_stochastic_depth_backward, check_stochastic_depth_forward,
                     inverted_residual_forward, se_forward)
from .convolution import (check_conv2d_backward, check_conv2d_forward,  # noqa: F401
                          check_conv_output_size, check_depthwise_backward,
                          check_depthwise_forward, check_im2col)
from .costs import (check_compound_scaling, check_cost_ratio,  # noqa: F401
                    check_inverted_residual_macs, check_mbconv_macs, check_v1_macs)
from .layers import (check_batchnorm_backward, check_fold_batchnorm,  # noqa: F401
                     check_hardswish_backward, check_relu6_backward)
from .pretrained import check_lite_crop_box, check_saliency, check_same_padding  # noqa: F401
from .registry import EXERCISES
from .training import check_sgd_step  # noqa: F401

__all__ = (["ExerciseResult", "EXERCISES", "se_forward", "inverted_residual_forward"]
           + [e.checker.__name__ for e in EXERCISES])

__doc__ += registry.listing()
