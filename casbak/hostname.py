"""The machine's name, as locks and provenance record it."""

from __future__ import annotations

import os


def host_name() -> str:
    """The host name (``gethostname``), without importing ``socket`` where ``uname`` has it.

    ``socket`` costs a few milliseconds of every command's start-up, and a
    one-tenant snapshot is mostly start-up.
    """
    uname = getattr(os, "uname", None)
    if uname is not None:
        return str(uname().nodename)
    import socket  # systems without uname

    return socket.gethostname()
