"""Devices: which one a run uses, whether it is there, and the torch settings of a run.

Every tensor and module of a run is placed with ``device=`` / ``.to(device)`` on the
device of its config, and nothing else: the networks, the optimiser state (created on the
parameters' device), the data and latent draws (a generator on that device) and
evaluation. :func:`check_device` runs before anything is written, so a missing device is
a one-line error, not a traceback after the first results.
"""

from __future__ import annotations

import platform

import torch

from iwgan.engine.config import check_device_name


def default_device() -> str:
    """cuda where torch sees a CUDA device, cpu otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def is_cuda(device) -> bool:
    return torch.device(device).type == "cuda"


def check_device(name: str) -> torch.device:
    """The device ``name`` as a torch.device, refused with the reason and the fix when
    this machine cannot run on it: an unknown string, CUDA without a CUDA device, or a
    device torch cannot allocate on (it is asked for a tensor there)."""
    check_device_name(name)
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but torch sees no CUDA device; "
                             "use --device cpu")
        try:
            torch.empty(1, device=device)
        except (AssertionError, RuntimeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"device {name!r} cannot be used: {first}; use --device cpu, "
                             "or a torch build with CUDA on a machine with a GPU") from err
    return device


def configure_torch(cfg) -> None:
    """Threads and determinism settings; on CPU the same seed and thread count already
    give byte-identical results, ``deterministic`` matters for CUDA kernels."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=False)
    torch.backends.cudnn.deterministic = cfg.deterministic
    torch.backends.cudnn.benchmark = not cfg.deterministic


def sync(device) -> None:
    """Wait for the device's queued work (for timings)."""
    if is_cuda(device):
        torch.cuda.synchronize()


# CPU flags that give bf16 matmuls hardware support (AMX tiles, AVX-512 BF16 dot products).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; the platform's processor elsewhere): seeded CPU
    runs are bit-exact only on one CPU model, so results record it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_matmul_path() -> tuple[bool, str]:
    """(whether this CPU multiplies bf16 matrices in hardware, why): AMX or AVX-512 BF16
    in the CPU's flags, or torch's CPU capability naming AMX. Without them a bf16 matmul
    is emulated and slower than fp32, so the fast path falls back to fp32."""
    have = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    capability = torch.backends.cpu.get_cpu_capability()
    if have or "AMX" in capability.upper():
        return True, f"bf16 matmuls in hardware ({', '.join(have) or capability})"
    return False, (f"no {' or '.join(BF16_CPU_FLAGS)} in this CPU's flags (torch capability "
                   f"{capability}): fp32")
