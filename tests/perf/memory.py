"""Peak memory of the current process.

getrusage's ru_maxrss survives execve, so a child started by a large parent reports the parent's peak;
VmHWM in /proc is per address space and starts afresh in each new program.
"""

from __future__ import annotations


def peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
