"""Probe the visible NVIDIA GPUs through NVML (nvidia-ml-py, imported as pynvml).

Honours CUDA_VISIBLE_DEVICES (indices or GPU-/MIG- UUIDs) the way CUDA numbers devices.
No GPU or no driver is not an error: `probe()` returns [] and says why in `ProbeResult.reason`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .catalog import Gpu


@dataclass(frozen=True)
class ProbeResult:
    gpus: tuple[Gpu, ...]
    reason: str | None = None        # why none were found


def _visible(count: int, handles_uuid: list[str]) -> list[int]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is None:
        return list(range(count))
    out: list[int] = []
    for tok in (t.strip() for t in env.split(",")):
        if not tok:
            continue
        if tok.lstrip("-").isdigit():
            i = int(tok)
            if i < 0 or i >= count:
                break                    # CUDA stops at the first invalid index
            out.append(i)
        else:
            match = [i for i, u in enumerate(handles_uuid) if u.startswith(tok) or tok in u]
            if not match:
                break
            out.append(match[0])
    return out


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
        uuids = [_str(pynvml.nvmlDeviceGetUUID(h)) for h in handles]
        gpus = []
        for i in _visible(count, uuids):
            h = handles[i]
            total, free, used = _memory(pynvml, h)
            try:
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            except Exception:  # noqa: BLE001
                major, minor = 8, 0
            procs: list[tuple[int, int]] = []
            try:
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                    procs.append((int(p.pid), int(p.usedGpuMemory or 0)))
            except Exception:  # noqa: BLE001 - not permitted in some containers
                pass
            mig = False
            try:
                mig = bool(pynvml.nvmlDeviceGetMigMode(h)[0])
            except Exception:  # noqa: BLE001 - not supported on this GPU
                pass
            gpus.append(Gpu(_str(pynvml.nvmlDeviceGetName(h)), total, (int(major), int(minor)),
                            free_bytes=free, used_bytes=used, processes=tuple(procs),
                            source="NVML", index=i, mig=mig))
        if not gpus:
            return ProbeResult((), "CUDA_VISIBLE_DEVICES hides every GPU" if count else "no NVIDIA GPU found")
        return ProbeResult(tuple(gpus))
    except Exception as e:  # noqa: BLE001
        return ProbeResult((), f"NVML query failed: {_str(e) or e.__class__.__name__}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
