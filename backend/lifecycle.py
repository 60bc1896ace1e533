"""Helper processes that end with the process that started them, however it ends.

A ``multiprocessing`` pool worker waits for work on a queue it holds both ends of, so when its
parent dies without shutting the pool down (``kill -9``, a crash, Blender killed under the worker)
it would wait, idle, for as long as the machine is up, and keep ``multiprocessing``'s resource
tracker alive with it (the tracker ends when the last holder of its pipe does).
``exit_with_parent`` is the initializer of every pool of this package: the worker ends within a
second or so of its parent on every platform. ``exit_after`` bounds how long a process that was
asked to stop (the Blender worker once Blender is gone) may take to do so.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
from multiprocessing.process import BaseProcess

#: Exit status of a helper process that ended because its parent had gone.
ORPHANED_EXIT = 70
_POLL_S = 1.0


def exit_with_parent() -> None:
    """Make this ``multiprocessing`` child end as soon as its parent process has ended.

    Linux: the kernel kills it at the parent's death (``PR_SET_PDEATHSIG``), at once even while a
    C extension holds the GIL. Everywhere: a daemon thread waits on the parent's sentinel (on POSIX
    a pipe only the parent holds open, on Windows the parent's process handle), also noticing a
    re-parenting on POSIX, and calls ``os._exit`` (its latency is then the longest GIL-holding
    call, e.g. one chunk of exact distances). A no-op outside a ``multiprocessing`` child.
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    _kill_on_parent_death()
    if _orphaned(parent):  # the parent died before the watch was set
        os._exit(ORPHANED_EXIT)
    threading.Thread(target=_watch, args=(parent,), name="csdf-parent-watch", daemon=True).start()


def exit_after(seconds: float, why: str) -> threading.Timer:
    """End this process in ``seconds`` unless it has ended by then, whatever it is doing: the
    backstop of a cooperative shutdown that a long call which cannot be cancelled would delay.
    ``why`` is logged (at WARNING) if it comes to that."""

    def end() -> None:
        logging.getLogger("compact_sdf").warning("%s; exiting", why)
        os._exit(ORPHANED_EXIT)

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()
    return timer


def _orphaned(parent: BaseProcess) -> bool:
    return not parent.is_alive() or (os.name == "posix" and os.getppid() != parent.pid)


def _watch(parent: BaseProcess) -> None:
    while not _orphaned(parent):
        parent.join(_POLL_S)  # returns at once when the parent ends, else re-checks the ppid each second
    os._exit(ORPHANED_EXIT)


def _kill_on_parent_death() -> None:
    """Linux only: SIGKILL this process when the thread that spawned it (the pool's user) exits."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl (e.g. a static or non-glibc build): the thread suffices
        pass
