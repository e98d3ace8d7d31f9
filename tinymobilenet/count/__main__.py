"""``python -m tinymobilenet.count``: see :mod:`tinymobilenet.count.command`."""

import sys

from .. import cli
from .command import main

sys.exit(cli.run(main))
