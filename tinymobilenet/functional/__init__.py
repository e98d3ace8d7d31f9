"""Stateless math: every operation as a ``forward(...) -> (out, cache)`` and
``backward(dout, cache) -> grads`` pair, plus naive loop twins of the convolutions.

Nothing here keeps state or imports :mod:`tinymobilenet.nn`.
"""

from .conv import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .activations import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .grouped_linear import *  # noqa: F401,F403
from .same_pad import *  # noqa: F401,F403
