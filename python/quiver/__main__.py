"""``python -m quiver …`` is the ``quiver`` command: the same code, the same
arguments and exit codes."""

import sys

from . import _native

if __name__ == "__main__":
    sys.exit(_native.cli_main(["quiver", *sys.argv[1:]]))
