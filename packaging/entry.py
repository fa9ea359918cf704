"""The script PyInstaller freezes: the ``maskloop`` command (GUI, subcommands, --self-test)."""

import multiprocessing
import sys

from app.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
