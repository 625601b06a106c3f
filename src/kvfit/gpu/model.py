"""A GPU as kvfit sees it: its total as CUDA reports it, compute capability, and (when probed) what is free.
Pure data: the catalog (gpu/catalog.py) and the NVML probe (gpu/nvml.py) build them."""

from __future__ import annotations

from dataclasses import dataclass

@dataclass(frozen=True)
class Gpu:
    name: str
    total_bytes: int
    compute_capability: tuple[int, int] = (8, 0)
    free_bytes: int | None = None        # known only when probed
    used_bytes: int | None = None
    processes: tuple[tuple[int, int], ...] = ()   # (pid, bytes) holding memory
    source: str = "catalog"              # "NVML" | "catalog" | "--gpu-memory"
    index: int | None = None
    mig: bool = False
