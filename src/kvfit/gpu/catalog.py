"""Bundled GPUs with their totals as CUDA reports them (not the marketing number)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..errors import GpuError
from .model import Gpu

_DATA = Path(__file__).with_name("data") / "gpus.json"




@lru_cache(maxsize=1)
def catalog() -> tuple[dict, ...]:
    try:
        return tuple(json.loads(_DATA.read_text()))
    except (OSError, ValueError) as e:
        raise GpuError(f"the bundled GPU catalog is unreadable ({e})") from e


def _cc(entry: dict) -> tuple[int, int]:
    major, _, minor = str(entry.get("compute_capability", "8.0")).partition(".")
    return int(major), int(minor or 0)


def from_entry(entry: dict) -> Gpu:
    return Gpu(entry["name"], int(entry["total_bytes"]), _cc(entry), source="catalog")


def _norm(s: str) -> str:
    return "".join(ch for ch in s.lower() if ch.isalnum())


def lookup(name: str) -> Gpu:
    """Find a catalog GPU by exact name, alias, or an unambiguous substring."""
    key = _norm(name)
    if not key:
        raise GpuError("--gpu needs a GPU name", "See `kvfit gpus` for the names kvfit knows.")
    entries = catalog()
    for e in entries:
        if key == _norm(e["name"]) or key in (_norm(a) for a in e.get("aliases", [])):
            return from_entry(e)
    hits = [e for e in entries if key in _norm(e["name"]) or any(key in _norm(a) for a in e.get("aliases", []))]
    if len(hits) == 1:
        return from_entry(hits[0])
    if hits:
        names = ", ".join(e["name"] for e in hits)
        raise GpuError(f"--gpu {name!r} matches several GPUs: {names}", "Give the full name.")
    raise GpuError(f"unknown GPU {name!r}",
                   "See `kvfit gpus` for the names kvfit knows, or give the total with --gpu-memory 79.25GiB.")


def caveats(gpu: Gpu) -> tuple[str, ...]:
    """What a named catalog GPU's answer rests on that no vLLM log has shown kvfit: a total not measured in
    calibration (seen in a public vLLM log, in another program's CUDA log, or kvfit's estimate), and unified
    memory (vLLM then sizes from the system's available memory)."""
    entry = next((e for e in catalog() if e["name"] == gpu.name), None)
    if gpu.source != "catalog" or entry is None:
        return ()
    out = []
    src = str(entry.get("source", ""))
    if src.startswith("vLLM log"):
        out.append(f"{gpu.name}'s total ({gpu.total_bytes / 2**30:.2f} GiB) is the figure a public vLLM log printed "
                   "there to two decimals (the exact bytes are kvfit's inference); give --gpu-memory with what "
                   "torch.cuda.mem_get_info() reports on yours")
    elif src.startswith("CUDA log"):
        out.append(f"{gpu.name}'s total ({gpu.total_bytes / 2**30:.2f} GiB) is the CUDA device total a public log "
                   "(not vLLM's) printed there to two decimals; give --gpu-memory with what "
                   "torch.cuda.mem_get_info() reports on yours")
    elif not src.startswith("calibration"):
        where = "" if entry.get("unified_memory") else "run kvfit on the machine (it reads NVML) or "
        out.append(f"{gpu.name}'s total ({gpu.total_bytes / 2**30:.2f} GiB) is kvfit's estimate, not seen in a vLLM "
                   f"log: {where}give --gpu-memory with what torch.cuda.mem_get_info() reports there")
    if entry.get("unified_memory"):
        out.append(f"{gpu.name} shares its memory with the CPU: vLLM sizes the KV cache from what the system has "
                   f"available at launch (psutil), so whatever else runs there comes out of it")
    return tuple(out)


COMMON = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA A10", "NVIDIA L4",
          "NVIDIA L40S", "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3",
          "NVIDIA H200")


def common_gpus() -> list[Gpu]:
    """The table shown when no GPU is probed or named."""
    by_name = {e["name"]: e for e in catalog()}
    return [from_entry(by_name[n]) for n in COMMON if n in by_name]
