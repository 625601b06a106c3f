"""A stand-in for nvidia-ml-py, put first on PYTHONPATH by the tests' `kvfit` subprocess runner.

It answers from the JSON in $KVFIT_FAKE_NVML so that every test is hermetic (the real GPU of the
machine running the suite, if any, is never probed):

  {"fail": "Driver Not Loaded"}                       nvmlInit raises, as on a machine without a driver
  {"gpus": [{"name": ..., "uuid": "GPU-...", "total": B, "reserved": B, "free": B, "used": B,
             "cc": [8, 6], "procs": [[pid, bytes], ...]}]}
  {"query_fail": "Unknown Error"}                     nvmlInit works, nvmlDeviceGetCount raises
"""

import json
import os


class NVMLError(Exception):
    pass


nvmlMemory_v2 = 0x02000028


def _spec():
    return json.loads(os.environ.get("KVFIT_FAKE_NVML") or '{"fail": "NVML Shared Library Not Found"}')


def nvmlInit():
    s = _spec()
    if "fail" in s:
        raise NVMLError(s["fail"])


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    s = _spec()
    if "query_fail" in s:
        raise NVMLError(s["query_fail"])
    return len(s["gpus"])


def nvmlDeviceGetHandleByIndex(i):
    return i


def _g(h):
    return _spec()["gpus"][h]


def nvmlDeviceGetUUID(h):
    return _g(h)["uuid"]


def nvmlDeviceGetName(h):
    return _g(h)["name"]


class _Mem:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def nvmlDeviceGetMemoryInfo(h, version=None):
    g = _g(h)
    if version is None:
        return _Mem(total=g["total"], free=g["free"], used=g["used"])
    return _Mem(total=g["total"], reserved=g.get("reserved", 0), free=g["free"], used=g["used"])


def nvmlDeviceGetCudaComputeCapability(h):
    return tuple(_g(h).get("cc", [8, 0]))


class _Proc:
    def __init__(self, pid, used):
        self.pid, self.usedGpuMemory = pid, used


def nvmlDeviceGetComputeRunningProcesses(h):
    return [_Proc(p, b) for p, b in _g(h).get("procs", [])]


def nvmlDeviceGetMigMode(h):
    raise NVMLError("Not Supported")
