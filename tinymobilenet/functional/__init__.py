"""Stateless math: every operation as a ``forward(...) -> (out, cache)`` and
``backward(dout, cache) -> grads`` pair, one operation a file, its readable definition
first. Nothing here keeps state or imports :mod:`tinymobilenet.nn`.

    conv_geometry   output sizes, padding, where kernel taps land (the notation)
    im2col          im2col / col2im: a convolution as one matrix product
    conv2d          standard convolution (any groups); naive twin, then im2col + matmul
    depthwise       one filter per channel; naive twin, then the dispatch to
                    _depthwise_direct (K*K multiply-adds), _depthwise_banded (BLAS) or
                    _depthwise_dense (one matrix per channel, tiny maps; BLAS)
    pointwise       1 x 1 convolution, a matmul
    norm            batch norm (optionally fused with a following ReLU/ReLU6)
    activations     ReLU, ReLU6, sigmoid, h-sigmoid, h-swish, SiLU
    squeeze_excitation  the excitation x * gate and its two-path backward
    pooling, linear, dropout, stochastic_depth, loss, grouped_linear
    tiling          cache-sized tiles and the threads that run them
    reductions      sums and dot products along rows, in BLAS

Files whose name starts with ``_`` hold fast paths a student can skip, and the argument
checks every public function runs first (:mod:`._checks`). Their dtype rule: x, the
weights, the bias and dout are NumPy arrays of float32 or float64 (anything else is a
``TypeError`` that names the function, the argument, the dtype and the fix); the
computation runs in x's dtype, so weights, bias or dout of the other float dtype are
cast to it. A backward pass checks dout against the forward's output shape.
"""

from .conv_geometry import *  # noqa: F401,F403
from .im2col import *  # noqa: F401,F403
from .conv2d import *  # noqa: F401,F403
from .depthwise import *  # noqa: F401,F403
from .pointwise import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .activations import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .stochastic_depth import *  # noqa: F401,F403
from .squeeze_excitation import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .grouped_linear import *  # noqa: F401,F403
from .same_pad import *  # noqa: F401,F403
