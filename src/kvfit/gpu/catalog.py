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


COMMON = ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA A10", "NVIDIA L4",
          "NVIDIA L40S", "NVIDIA A100-SXM4-40GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3",
          "NVIDIA H200")


def common_gpus() -> list[Gpu]:
    """The table shown when no GPU is probed or named."""
    by_name = {e["name"]: e for e in catalog()}
    return [from_entry(by_name[n]) for n in COMMON if n in by_name]
