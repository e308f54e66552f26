"""Where the process starts (the console script and ``python -m casbak``).

Ctrl-C can come while the CLI's modules are still being imported, before the
CLI can answer it; this answers it from the first instant, as the CLI would:
one line and exit 130, never a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

INTERRUPTED = 130


def run() -> NoReturn:
    """Import the CLI and run it."""
    try:
        from casbak.cli import run as run_cli
    except KeyboardInterrupt:
        sys.stderr.write("casbak: error: interrupted; nothing was written\n")
        sys.exit(INTERRUPTED)
    run_cli()
