"""What a record says about where it ran: device, package versions, platform, and which machine."""

from __future__ import annotations

import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psutil
import torch

from peftbench.errors import PeftbenchError
from peftbench.precision import bf16_supported
from peftbench.version import __version__

PACKAGES = ("torch", "transformers", "peft", "datasets", "scikit-learn", "scipy", "pluggy", "numpy")


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else the CPU; a bad request is a one-line error."""
    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise PeftbenchError(f"unknown device '{requested}': use cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PeftbenchError(f"device '{requested}' was asked for but no CUDA GPU is available")
    return device


def cpu_model() -> str | None:
    """The processor's marketing name (``platform.processor()`` is often just the architecture on
    Linux); ``None`` where the system does not say. Records from before it lack the key."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    return platform.processor() or None


def machine_tag() -> str:
    """Eight hex digits naming this machine until it reboots: records with the same tag were timed
    on the same machine, so their timings compare; records with different tags may not, even where
    the processor's name is the same (virtual machines often show a generic one). A hash of the
    kernel's boot id (Linux), else of the host name: it tells machines apart and says nothing else."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as boot:
            identity = boot.read().strip()
    except OSError:
        identity = ""
    identity = identity or platform.node() or "unknown"
    return hashlib.sha256(identity.encode()).hexdigest()[:8]


def describe_environment(device: torch.device) -> dict[str, Any]:
    versions = {"peftbench": __version__}  # the running code's, even in an editable install
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": device_name,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        # What decides a CPU's speed beyond its name: the widest vector instructions torch uses
        # ("AVX512", "AVX2", ...) and whether it runs bf16 matmuls natively.
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16": bf16_supported(torch.device("cpu")),
        "machine": machine_tag(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
    }


@dataclass
class MachineLoad:
    """How busy the machine was while a run went on, for telling honest timings from disturbed ones.

    - ``other_cpu_share``: the cores' worth of CPU that other processes used over the run: the
      machine's busy CPU seconds (``psutil.cpu_times``: user, nice, system, interrupts; not idle,
      I/O wait or time stolen by a hypervisor) less this process's, per wall second. It is what
      decides (``peftbench.leaderboard.diagnostics.other_load``): exact over the run, with no lag.
    - ``process_cpu_share``: this process's CPU seconds per wall second (the cores' worth the run
      itself kept busy).
    - ``load_average_start``, ``load_average_end``: the 1-minute load average when the run started
      and ended (``os.getloadavg``; it counts the run's own threads and lags by about a minute, so
      it is kept for reading, not for deciding).

    Started when made; ``costs()`` reads the end.
    """

    load_start: float | None = field(default_factory=lambda: _load_average())
    busy_start: float | None = field(default_factory=lambda: _busy_cpu_seconds())
    cpu_start: float = field(default_factory=time.process_time)
    wall_start: float = field(default_factory=time.perf_counter)

    def costs(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall_start
        own = time.process_time() - self.cpu_start
        load_end, busy_end = _load_average(), _busy_cpu_seconds()
        costs = {"process_cpu_share": own / wall if wall > 0 else 0.0}
        if self.busy_start is not None and busy_end is not None and wall > 0:
            costs["other_cpu_share"] = max(0.0, (busy_end - self.busy_start - own) / wall)
        if self.load_start is not None and load_end is not None:
            costs.update(load_average_start=self.load_start, load_average_end=load_end)
        return costs


def _busy_cpu_seconds() -> float | None:
    """CPU seconds every core of the machine has spent working since boot (not idle, waiting for
    I/O or stolen); ``None`` where psutil cannot tell."""
    try:
        times = psutil.cpu_times()
    except (OSError, RuntimeError, AttributeError):
        return None
    idle = sum(getattr(times, name, 0.0) for name in ("idle", "iowait", "steal", "guest", "guest_nice"))
    return sum(times) - idle


def _load_average() -> float | None:
    """The 1-minute load average, where the system has one (not on Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
