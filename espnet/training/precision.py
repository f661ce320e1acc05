"""``--precision auto`` (the default of ``train.py`` and ``eval.py``): bf16 mixed precision where
the device computes bfloat16 natively, float32 elsewhere.

Native bf16 means: a CUDA GPU for which ``torch.cuda.is_bf16_supported()`` holds (Ampere and
later), or a CPU with the ``avx512_bf16`` or ``amx_bf16`` instructions (``/proc/cpuinfo``; e.g.
AMD Zen 4 and later, Intel Cooper Lake and Sapphire Rapids and later). Without them PyTorch
emulates bf16 and mixed precision is slower than float32, so ``auto`` keeps float32 there (and
on Apple GPUs and non-Linux CPUs, where this module does not look).

``auto`` is resolved to a concrete value before anything else reads ``--precision``: what
follows (Lightning's precision plugin, pretrained weights loaded in bfloat16, the QLoRA compute
dtype, bf16 autocast when decoding) sees ``32`` or ``bf16-mixed`` as if given on the command line.
"""

from typing import Optional, Tuple

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo names, the stronger first
CPUINFO = "/proc/cpuinfo"


def cpu_bf16_flag(flags: str) -> Optional[str]:
    """The first of :data:`CPU_BF16_FLAGS` among ``flags`` (the whitespace-separated ``flags``
    line of ``/proc/cpuinfo``, with or without its ``flags :`` label), or ``None``."""
    present = set(flags.split())
    return next((flag for flag in CPU_BF16_FLAGS if flag in present), None)


def read_cpu_flags(path: Optional[str] = None) -> str:
    """The ``flags`` line of the first processor in ``path`` (default :data:`CPUINFO`; empty
    where there is no such file, e.g. on macOS and Windows)."""
    path = CPUINFO if path is None else path
    try:
        with open(path, encoding="utf8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return line.partition(":")[2].strip()
    except FileNotFoundError:
        pass
    return ""


def resolve_precision(requested: str, device: str, cpu_flags: Optional[str] = None) -> Tuple[str, str]:
    """The concrete precision for ``requested`` on ``device`` and why.

    Args:
        requested: ``--precision``; anything but ``auto`` is returned as it is.
        device: ``"cuda"``, ``"cpu"`` or ``"mps"``: where the model runs.
        cpu_flags: The CPU's ``/proc/cpuinfo`` flags (default: read them).

    Returns:
        ``(precision, reason)``, e.g. ``("bf16-mixed", "auto: the CPU has avx512_bf16")``.
    """
    if requested != "auto":
        return requested, "--precision"
    if device == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16-mixed", f"auto: {torch.cuda.get_device_name()} computes bf16 natively"
        return "32", f"auto: {torch.cuda.get_device_name()} has no native bf16"
    if device != "cpu":
        return "32", f"auto: bf16 is chosen on CUDA GPUs and CPUs with native bf16, not on {device}"
    flag = cpu_bf16_flag(read_cpu_flags() if cpu_flags is None else cpu_flags)
    if flag is not None:
        return "bf16-mixed", f"auto: the CPU has {flag}"
    return "32", "auto: the CPU has neither avx512_bf16 nor amx_bf16 (bf16 would be emulated, slower)"
