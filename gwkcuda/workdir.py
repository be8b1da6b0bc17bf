"""A run's work folder (per-epoch checkpoints), held by one process at a time.

Two runs with the same --out (or --workdir) would otherwise share the checkpoints, resume from each
other's epochs and delete the folder under each other. The lock is an flock on WORKDIR/.lock, so it
is released by the kernel when its holder dies, however it dies; no stale lock survives a kill.
"""
import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = ".lock"


class WorkdirBusy(ValueError):
    """Another live process holds the work folder."""


@contextlib.contextmanager
def locked(folder):
    """Creates ``folder`` if needed and holds it for the duration of the ``with`` block.

    Raises NotADirectoryError if ``folder`` names a file, WorkdirBusy if another process holds it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"work folder {folder}: expected a folder, got a file")
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise WorkdirBusy(f"work folder {folder} is in use by another gwkcuda run (process {holder}); "
                          "wait for it to finish, or give this run another --out or --workdir") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still held: a later run creates a fresh lock file
        os.close(fd)
