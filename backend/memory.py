"""How much memory a job may still take, so that jobs too large for it are refused up front.

Stdlib only. ``available_bytes`` is the memory the system can give without swapping (Linux:
``MemAvailable``, capped by the cgroup's limit in a container; else psutil when installed; else
``sysconf``; on Windows ``GlobalMemoryStatusEx``), or None when none of these answers: the check
is then skipped, never guessed. ``require`` raises BadInputError before a job that would not fit
allocates anything, instead of a MemoryError traceback (or the OOM killer) halfway through.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .errors import BadInputError


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Room left under a cgroup v2 memory limit (containers, CI runners); None without a limit."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def _windows_available() -> int | None:
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return None
    return int(status.ullAvailPhys)


def available_bytes() -> int | None:
    """Memory available to this process now, in bytes; None if the system does not say."""
    found = _meminfo_available()
    if found is None:
        try:
            import psutil  # type: ignore[import-not-found]

            found = int(psutil.virtual_memory().available)
        except Exception:  # not installed, or no answer on this platform
            found = None
    if found is None and os.name == "nt":
        try:
            found = _windows_available()
        except (OSError, AttributeError, ValueError):
            found = None
    if found is None:
        try:
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            found = None
    limit = _cgroup_available()
    if limit is not None:
        found = limit if found is None else min(found, limit)
    return found


def format_bytes(size: float) -> str:
    """``size`` bytes as people read it: 512 MB, 3.4 GB."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 1e3:.0f} KB"


def require(needed: float, what: str, hint: Callable[[int], str] | None = None) -> None:
    """BadInputError naming ``what``, the estimate and the memory available (and ``hint(available)``,
    what to do instead), unless ``needed`` bytes fit (nothing is checked when the system does not say)."""
    available = available_bytes()
    if available is not None and needed > available:
        advice = hint(available) if hint is not None else ""
        raise BadInputError(f"{what} needs about {format_bytes(needed)} of memory, but only {format_bytes(available)} "
                            f"is available{'; ' + advice if advice else ''}")
