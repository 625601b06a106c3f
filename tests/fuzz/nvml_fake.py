"""A fake nvidia-ml-py (`pynvml`) module for in-process tests: install() puts it in sys.modules.

Shaped after nvidia-ml-py 12/13: NVMLError subclasses per error code with the library's messages,
handles as opaque objects, MIG instances reached through nvmlDeviceGetMigDeviceHandleByIndex,
nvmlMemory_v2 with `reserved`. A spec describes the machine:

    {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "total": B, "free": B, "used": B, "reserved": B,
               "cc": (9, 0), "uuid": "GPU-...", "procs": [(pid, bytes)],
               "mig": [{"name": "... MIG 3g.40gb", "total": B, "free": B, "used": B, "uuid": "MIG-..."}]}],
     "init_error": "DriverNotLoaded",             # nvmlInit raises NVMLError_DriverNotLoaded
     "errors": {"nvmlDeviceGetCount": "Unknown"}} # any function raises
"""

from __future__ import annotations

import sys
import types

GiB = 1 << 30

# nvidia-ml-py's codes and messages (nvmlErrorString).
ERRORS = {
    "Uninitialized": (1, "Uninitialized"),
    "InvalidArgument": (2, "Invalid Argument"),
    "NotSupported": (3, "Not Supported"),
    "NoPermission": (4, "Insufficient Permissions"),
    "NotFound": (6, "Not Found"),
    "DriverNotLoaded": (9, "Driver Not Loaded"),
    "LibraryNotFound": (12, "NVML Shared Library Not Found"),
    "FunctionNotFound": (13, "Function Not Found"),
    "GpuIsLost": (15, "GPU is lost"),
    "LibRmVersionMismatch": (18, "RM has detected an NVML/RM version mismatch."),
    "Unknown": (999, "Unknown Error"),
}


class NVMLError(Exception):
    value = 999

    def __str__(self):
        return next((msg for code, msg in ERRORS.values() if code == self.value), f"NVML error {self.value}")


def _error_class(name: str) -> type:
    code, _ = ERRORS[name]
    return type(f"NVMLError_{name}", (NVMLError,), {"value": code})


class _Handle:
    def __init__(self, gpu: dict, parent: "_Handle | None" = None):
        self.gpu, self.parent = gpu, parent


class _Mem:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class _Proc:
    def __init__(self, pid, used):
        self.pid, self.usedGpuMemory = pid, used


def gpu(name="NVIDIA H100 80GB HBM3", total_gib=79.6, free_gib=None, cc=(9, 0), uuid=None, procs=(),
        mig=None, reserved_gib=0.0) -> dict:
    total = int(total_gib * GiB)
    free = total if free_gib is None else int(free_gib * GiB)
    return {"name": name, "total": total + int(reserved_gib * GiB), "reserved": int(reserved_gib * GiB),
            "free": free, "used": total - free, "cc": cc, "uuid": uuid or f"GPU-{abs(hash(name)) % 10**8:08d}",
            "procs": list(procs), "mig": mig}


def mig_instance(parent_name: str, profile: str, total_gib: float, free_gib=None, uuid=None) -> dict:
    total = int(total_gib * GiB)
    free = total if free_gib is None else int(free_gib * GiB)
    return {"name": f"{parent_name} MIG {profile}", "total": total, "free": free, "used": total - free,
            "uuid": uuid or f"MIG-{abs(hash((parent_name, profile))) % 10**8:08d}"}


def module(spec: dict) -> types.ModuleType:
    """A pynvml module answering from `spec`. The module records every function called in .calls."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    for name in ERRORS:
        setattr(m, f"NVMLError_{name}", _error_class(name))
    m.nvmlMemory_v2 = 0x02000028
    m.calls = []
    gpus = spec.get("gpus", [])
    errors = spec.get("errors", {})

    def api(fn):
        def wrapper(*args, **kwargs):
            m.calls.append(fn.__name__)
            if fn.__name__ in errors:
                raise getattr(m, f"NVMLError_{errors[fn.__name__]}")()
            return fn(*args, **kwargs)
        wrapper.__name__ = fn.__name__
        setattr(m, fn.__name__, wrapper)
        return wrapper

    @api
    def nvmlInit():
        if spec.get("init_error"):
            raise getattr(m, f"NVMLError_{spec['init_error']}")()

    @api
    def nvmlShutdown():
        pass

    @api
    def nvmlDeviceGetCount():
        return len(gpus)

    @api
    def nvmlDeviceGetHandleByIndex(i):
        if not 0 <= i < len(gpus):
            raise m.NVMLError_InvalidArgument()
        return _Handle(gpus[i])

    @api
    def nvmlDeviceGetName(h):
        return h.gpu["name"]

    @api
    def nvmlDeviceGetUUID(h):
        return h.gpu["uuid"]

    @api
    def nvmlDeviceGetMemoryInfo(h, version=None):
        g = h.gpu
        if version is None:
            return _Mem(total=g["total"], free=g["free"], used=g["used"])
        if h.parent is not None:                # MIG handles: v2 not supported on some drivers
            raise m.NVMLError_NotSupported()
        return _Mem(total=g["total"], reserved=g.get("reserved", 0), free=g["free"], used=g["used"])

    @api
    def nvmlDeviceGetCudaComputeCapability(h):
        if h.parent is not None:
            raise m.NVMLError_NotSupported()
        return tuple(h.gpu.get("cc", (8, 0)))

    @api
    def nvmlDeviceGetComputeRunningProcesses(h):
        return [_Proc(p, b) for p, b in h.gpu.get("procs", [])]

    @api
    def nvmlDeviceGetMigMode(h):
        if h.gpu.get("mig") is None:
            raise m.NVMLError_NotSupported()
        return (1, 1)

    @api
    def nvmlDeviceGetMaxMigDeviceCount(h):
        return 7

    @api
    def nvmlDeviceGetMigDeviceHandleByIndex(h, j):
        migs = h.gpu.get("mig") or []
        if j >= len(migs):
            raise m.NVMLError_NotFound()
        return _Handle(migs[j], parent=h)

    return m


def install(monkeypatch, spec: dict | None) -> types.ModuleType | None:
    """sys.modules["pynvml"] = a fake answering `spec`; spec None: the binding is missing (ImportError)."""
    if spec is None:
        monkeypatch.setitem(sys.modules, "pynvml", None)      # `import pynvml` raises ImportError
        return None
    mod = module(spec)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    return mod
