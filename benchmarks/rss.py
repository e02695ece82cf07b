"""Peak resident memory of the current process, for the child processes that the memory
benchmarks and tests start (``from benchmarks.rss import peak_rss_mib``)."""

from __future__ import annotations


def peak_rss_mib() -> float:
    """VmHWM, this process's own high-water mark, in MiB. ``ru_maxrss`` is not used: it can
    carry the parent's peak over fork+exec, which lets a memory check pass trivially."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
