"""The machine a benchmark's figures were taken on, as every benchmark names it."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name, as the kernel gives it, or what Python knows of it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"
