"""One run per output folder: an exclusive OS file lock on OUT/.audiosum/lock, released by the kernel on death.

Holds the lock and says who holds it; knows nothing about runs or documents.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path

from pipeline.errors import DiskFull, LockHeld, UsageError, is_no_space

LOCK_NAME = "lock"


class RunLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if is_no_space(exc):
                raise DiskFull(f"no space left to create {self.path.parent} ({exc.strerror})") from exc
            raise
        # O_NOFOLLOW: a symlink planted at the lock path must not make audiosum truncate the file it points to.
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UsageError(f"{self.path} is a symbolic link; audiosum will not use it as its run lock "
                                 "(remove it)") from exc
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(f"another audiosum run holds {self.path.parent.parent} "
                           f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')})") from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        except OSError as exc:
            if not is_no_space(exc):
                raise
            # Held all the same (flock needs no space); only who holds it is not written down.
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_holder(state_dir: Path) -> dict[str, object] | None:
    """Who holds OUT's run lock ({"pid", "started"}), or None when no process holds it — read without taking the
    lock (a probe could make a run starting at that instant think another run holds the folder).

    Linux lists every flock in /proc/locks by device and inode; elsewhere the recorded pid is asked whether it
    lives (a reused pid can make a dead run look alive there, never the reverse).
    """
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None  # no lock file: no run has held this folder, or it is not audiosum's
    try:
        recorded, info = _read_holder(fd), os.fstat(fd)
    finally:
        os.close(fd)
    flocked = _flocked_in_proc(info.st_dev, info.st_ino)
    if flocked is None:
        flocked = _pid_alive(recorded.get("pid"))
    return recorded if flocked else None


def _flocked_in_proc(device: int, inode: int) -> bool | None:
    """Whether /proc/locks lists a FLOCK on this file; None where there is no /proc/locks."""
    wanted = f"{os.major(device):02x}:{os.minor(device):02x}:{inode}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(line.split()[1:2] == ["FLOCK"] and wanted in line.split() for line in locks)
    except OSError:
        return None


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; it is someone else's
    return True


def _read_holder(fd: int) -> dict[str, object]:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}
