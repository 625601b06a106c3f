"""Probe the visible NVIDIA GPUs through NVML (nvidia-ml-py, imported as pynvml).

Honours CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUIDs) the way CUDA numbers devices.
No GPU or no driver is not an error: `probe()` returns [] and says why in `ProbeResult.reason`.
A GPU in MIG mode is not a CUDA device: its MIG instances are, each with its own memory, so the
probe reports the instances (name "... MIG 3g.40gb", mig=True) and never the parent's total.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .model import Gpu


@dataclass(frozen=True)
class ProbeResult:
    gpus: tuple[Gpu, ...]
    reason: str | None = None        # why none were found


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _memory(pynvml, h) -> tuple[int, int, int]:
    """(total, free, used) as CUDA sees them.

    NVML's v1 total is the board memory; cudaMemGetInfo (what vLLM reads) excludes the memory the
    driver reserves, which the v2 query reports separately (total = reserved + used + free).
    """
    try:
        m = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
        return int(m.total) - int(m.reserved), int(m.free), int(m.used)
    except Exception:  # noqa: BLE001 - old driver without the v2 query
        m = pynvml.nvmlDeviceGetMemoryInfo(h)
        return int(m.total), int(m.free), int(m.used)


def _mig_handles(pynvml, h) -> list | None:
    """The MIG instances of a GPU in MIG mode; None when MIG is off or not supported."""
    try:
        if not pynvml.nvmlDeviceGetMigMode(h)[0]:
            return None
    except Exception:  # noqa: BLE001 - no MIG on this GPU or an old binding
        return None
    out = []
    try:
        slots = int(pynvml.nvmlDeviceGetMaxMigDeviceCount(h))
    except Exception:  # noqa: BLE001
        return out
    for j in range(slots):
        try:
            out.append(pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j))
        except Exception:  # noqa: BLE001 - an empty slot (NVML_ERROR_NOT_FOUND)
            continue
    return out


def _cuda_devices(pynvml, handles: list) -> tuple[list[tuple[int, object, str, object, bool]], list[int]]:
    """(index of the physical GPU, handle, UUIDs, parent handle, is a MIG instance) per CUDA device,
    in NVML order, and the GPUs in MIG mode without an instance."""
    devices, empty = [], []
    for i, h in enumerate(handles):
        migs = _mig_handles(pynvml, h)
        if migs is None:
            devices.append((i, h, _str(pynvml.nvmlDeviceGetUUID(h)), h, False))
            continue
        if not migs:
            empty.append(i)
        parent_uuid = _str(pynvml.nvmlDeviceGetUUID(h))
        for m in migs:
            try:
                uuid = _str(pynvml.nvmlDeviceGetUUID(m))
            except Exception:  # noqa: BLE001
                uuid = parent_uuid
            devices.append((i, m, uuid + "|" + parent_uuid, h, True))
    return devices, empty


def _visible_devices(devices: list) -> list:
    """CUDA_VISIBLE_DEVICES applied: an index names a physical GPU (its MIG instances when in MIG
    mode), a UUID prefix a GPU or a MIG instance; CUDA stops at the first entry it cannot match."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(devices)
    out: list = []
    for tok in (t.strip() for t in env.split(",")):
        if not tok:
            continue
        if tok.lstrip("-").isdigit():
            match = [d for d in devices if d[0] == int(tok)]
        else:
            match = [d for d in devices if any(u.startswith(tok) or u.partition("-")[2].startswith(tok)
                                               for u in d[2].split("|"))]
        if not match:
            break
        out.extend(d for d in match if all(d is not o for o in out))
    return out


def probe() -> ProbeResult:
    try:
        import pynvml
    except Exception as e:  # noqa: BLE001 - a missing or broken binding is "no GPU", with the reason
        return ProbeResult((), f"nvidia-ml-py is not importable ({e.__class__.__name__})")
    try:
        pynvml.nvmlInit()
    except Exception as e:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, mismatch...
        return ProbeResult((), f"NVML unavailable: {_str(e) or e.__class__.__name__}")
    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        devices, empty_mig = _cuda_devices(pynvml, handles)
        gpus, unusable = [], []
        for i, h, uuid, parent, is_mig in _visible_devices(devices):
            total, free, used = _memory(pynvml, h)
            if total <= 0:              # a lost or half-initialised device: nothing vLLM could use
                unusable.append(f"GPU {i} reports {total} bytes of memory")
                continue
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            except Exception:  # noqa: BLE001 - MIG handles on some drivers: the parent's
                try:
                    major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(parent)
                except Exception:  # noqa: BLE001
                    major, minor = 8, 0
            procs: list[tuple[int, int]] = []
            try:
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    procs.append((int(p.pid), int(p.usedGpuMemory or 0)))
            except Exception:  # noqa: BLE001 - not permitted in some containers
                pass
            gpus.append(Gpu(_str(pynvml.nvmlDeviceGetName(h)), total, (int(major), int(minor)),
                            free_bytes=free, used_bytes=used, processes=tuple(procs),
                            source="NVML MIG instance" if is_mig else "NVML", index=i, mig=is_mig))
        if not gpus:
            if unusable:
                return ProbeResult((), "; ".join(unusable))
            if empty_mig:
                return ProbeResult((), f"MIG mode is on for GPU {', '.join(map(str, empty_mig))} but no MIG "
                                       "instance exists (create one with nvidia-smi mig)")
            return ProbeResult((), "CUDA_VISIBLE_DEVICES hides every GPU" if count else "no NVIDIA GPU found")
        return ProbeResult(tuple(gpus))
    except Exception as e:  # noqa: BLE001
        return ProbeResult((), f"NVML query failed: {_str(e) or e.__class__.__name__}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
