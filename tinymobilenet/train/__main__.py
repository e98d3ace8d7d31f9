"""``python -m tinymobilenet.train``: see :mod:`tinymobilenet.train.command`."""

import sys

from .. import cli
from .command import main

sys.exit(cli.run(main))
