"""Crash-safe file replacement and a cross-process lock for read-modify-write of one file.

Stdlib only. ``atomic_write`` writes a temporary file beside the target, fsyncs it, renames it
over the target and fsyncs the directory, so a crash, a kill -9 or a full disk leaves either
the old file or the new one, never a mix. Temporary files are named ``.<name>.<pid>.<random>.csdf-tmp``;
ones left behind by a killed writer are removed by the next save of the same file.

``file_lock`` serialises read-modify-write cycles (``encode --add``) between processes through
an advisory lock on a sidecar ``<name>.lock`` file, which is left in place (removing it would let
two processes lock two different files).
"""

from __future__ import annotations

import glob
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import Cancelled

TMP_SUFFIX = ".csdf-tmp"
#: A temporary file untouched this long is stale even if its writer's pid is in use again.
STALE_AFTER_S = 60.0


def resolve_target(path: str | Path) -> Path:
    """The file a write to ``path`` must replace: the final target of a symlink, else ``path``."""
    return Path(os.path.realpath(path))


def temp_files(target: Path) -> list[Path]:
    """Temporary files of saves of ``target`` (finished or not) in its directory."""
    return [Path(p) for p in glob.glob(str(target.parent / f".{glob.escape(target.name)}.*{TMP_SUFFIX}"))]


def _writer_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; rely on the age test
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def clean_stale_temps(target: Path, grace_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove temporary files of ``target`` whose writer is dead or that are older than ``grace_s``."""
    removed = []
    for tmp in temp_files(target):
        pid_text = tmp.name[len(target.name) + 2 :].split(".", 1)[0]
        try:
            stale = not (pid_text.isdigit() and _writer_alive(int(pid_text))) or time.time() - tmp.stat().st_mtime > grace_s
            if stale:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # its writer finished (or another cleaner won) meanwhile
            continue
    return removed


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op on Windows, which cannot open directories)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write_fn: Callable[[Path], None]) -> Path:
    """Replace ``path`` with what ``write_fn(tmp)`` writes to a temporary path, atomically.

    A replaced file keeps its permission bits; a new file gets the umask's. A symlink stays a
    link: its target is replaced. Any exception removes the temporary file and is re-raised with
    ``path`` untouched. Returns the file actually written.
    """
    target = resolve_target(path)
    if target.is_dir():
        raise IsADirectoryError(f"{path} is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(target)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask applies here
        mode = stat.S_IMODE((target if target.exists() else tmp).stat().st_mode)
        write_fn(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _try_lock(fd: int) -> bool:
    """Take the lock on ``fd`` without blocking; False if another process holds it."""
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)


def lock_path(path: str | Path) -> Path:
    """The sidecar lock file of ``path`` (of a symlink's target, so every alias shares one lock)."""
    target = resolve_target(path)
    return target.with_name(target.name + ".lock")


@contextmanager
def file_lock(
    path: str | Path,
    should_stop: Callable[[], bool] | None = None,
    on_wait: Callable[[], None] | None = None,
    poll_s: float = 0.1,
) -> Iterator[None]:
    """Hold an exclusive cross-process lock on ``path`` for the ``with`` block.

    Waits while another process holds it, calling ``on_wait()`` once; raises Cancelled if
    ``should_stop()`` turns true meanwhile. The lock is released when its holder exits or dies.
    """
    sidecar = lock_path(path)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(sidecar, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        waited = False
        while not _try_lock(fd):
            if should_stop is not None and should_stop():
                raise Cancelled(f"cancelled while waiting for another process to finish with {path}")
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            time.sleep(poll_s)
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)
