"""The permission bits of files isrflow publishes: those a plain ``open()`` would give.

Files are written under a temporary name and renamed into place; :func:`tempfile.mkstemp`
creates them with mode 0600 whatever the umask, so on a shared repository nobody else could
read them. :func:`honour_umask` gives such a file ``0o666 & ~umask`` before it is renamed.

The umask is read from ``/proc/self/status`` (Linux >= 4.7), which changes nothing; elsewhere
it is read by setting and restoring it under a lock (the only way POSIX offers), which is safe
against other isrflow threads. Pure standard library.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()
_PROC_STATUS = "/proc/self/status"


def current_umask() -> int:
    """The process umask (permission bits, e.g. ``0o022``), read without changing it."""
    try:
        with open(_PROC_STATUS, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file now: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def honour_umask(fd: int) -> None:
    """Give the open file ``fd`` (a temporary file from :func:`tempfile.mkstemp`) the mode a
    plain ``open()`` would have given it (see the module docstring)."""
    os.fchmod(fd, default_file_mode())


__all__ = ["current_umask", "default_file_mode", "honour_umask"]
