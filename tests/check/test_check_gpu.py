"""GPUs: --gpu catalog lookup, --gpu-memory, NVML probing through a fake pynvml (tests/check/fake_nvml),
CUDA_VISIBLE_DEVICES, free memory below total x utilization, and the table of common GPUs when
nothing is probed.
"""

from __future__ import annotations

import math

import pytest

from _checkutil import ORPHEUS, flat, no_traceback

GiB = 1 << 30
# An RTX 3090 as NVML reports it: 24 GiB of board memory, of which the driver reserves 450,887,680 B;
# CUDA (and vLLM) see total = 25,769,803,776 - 450,887,680 = 25,318,916,096 B (23.58 GiB).
RTX3090 = {"name": "NVIDIA GeForce RTX 3090", "uuid": "GPU-aaaa1111-0000-0000-0000-000000000000",
           "total": 25_769_803_776, "reserved": 450_887_680, "free": 25_000_000_000, "used": 318_916_096,
           "cc": [8, 6], "procs": []}
A100 = {"name": "NVIDIA A100-SXM4-80GB", "uuid": "GPU-bbbb2222-0000-0000-0000-000000000000",
        "total": 85_899_345_920, "reserved": 805_306_368, "free": 84_000_000_000, "used": 1_094_039_552,
        "cc": [8, 0], "procs": [[4242, 1_000_000_000]]}
NO_GPU = {"fail": "Driver Not Loaded"}


# --- catalog lookup -------------------------------------------------------------------------------

@pytest.mark.parametrize("name, full, total", [
    ("RTX 3090", "NVIDIA GeForce RTX 3090", 25_318_916_096),       # 23.58 GiB as CUDA reports it
    ("3090", "NVIDIA GeForce RTX 3090", 25_318_916_096),
    ("rtx3090", "NVIDIA GeForce RTX 3090", 25_318_916_096),
    ("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 3090", 25_318_916_096),
    ("A100 80GB", "NVIDIA A100-SXM4-80GB", 85_094_039_552),         # 79.25 GiB
    ("a100-80gb", "NVIDIA A100-SXM4-80GB", 85_094_039_552),
    ("H100", "NVIDIA H100 80GB HBM3", 85_061_533_696),              # 79.22 GiB
    ("T4", "Tesla T4", 15_827_206_144),
])
def test_gpu_lookup(check_json, name, full, total):
    j = check_json(ORPHEUS, "--gpu", name, "--max-model-len", "8192")
    assert j["gpu"]["name"] == full
    assert j["gpu"]["total_bytes"] == total
    assert j["gpu"]["source"] == "catalog"
    assert j["gpu"]["free_bytes"] is None


def test_catalog_totals_match_reported_gib():
    from kvfit.gpu.catalog import catalog

    for e in catalog():
        assert round(e["total_bytes"] / GiB, 2) == e["total_gib_reported"], e["name"]


def test_catalog_aliases_unique():
    from kvfit.gpu.catalog import _norm, catalog

    seen: dict[str, str] = {}
    for e in catalog():
        for a in [e["name"], *e.get("aliases", [])]:
            k = _norm(a)
            assert seen.get(k, e["name"]) == e["name"], (a, seen.get(k))
            seen[k] = e["name"]


@pytest.mark.parametrize("name", ["A100", "V100", "RTX"])
def test_gpu_ambiguous(cli, name):
    r = cli("check", ORPHEUS, "--gpu", name)
    assert r.rc == 2, r
    assert "several GPUs" in flat(r.err)


def test_gpu_memory_alone(check_json):
    j = check_json(ORPHEUS, "--gpu-memory", "79.25GiB", "--max-model-len", "8192")
    # 79.25 x 2^30 = 85,094,039,552
    assert j["gpu"]["total_bytes"] == 85_094_039_552
    assert j["gpu"]["source"] == "--gpu-memory"
    assert j["gpu"]["compute_capability"] == "8.0"
    # requested = ceil(85,094,039,552 x 0.9) = ceil(76,584,635,596.8) = 76,584,635,597
    j = check_json(ORPHEUS, "--gpu-memory", "79.25GiB", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9")
    assert j["memory"]["requested_bytes"] == 76_584_635_597


def test_gpu_memory_with_gpu_keeps_compute_capability(check_json):
    j = check_json(ORPHEUS, "--gpu", "T4", "--gpu-memory", "16GiB", "--max-model-len", "8192")
    assert j["gpu"]["total_bytes"] == 16 * GiB
    assert j["gpu"]["compute_capability"] == "7.5"
    assert j["settings"]["dtype"] == "float16"


def test_requested_bytes_is_ceil_total_times_util(check_json):
    j = check_json(ORPHEUS, "--gpu", "RTX 3090", "--gpu-memory-utilization", "0.9", "--max-model-len", "8192")
    # ceil(25,318,916,096 x 0.9) = ceil(22,787,024,486.4) = 22,787,024,487
    assert j["memory"]["requested_bytes"] == 22_787_024_487
    m = j["memory"]
    # what vLLM hands the KV cache is the request minus everything else it keeps
    assert m["kv_available_bytes"] == (m["requested_bytes"] - m["weights_bytes"] - m["activation_bytes"]
                                       - m["cudagraph_bytes"] - m["non_torch_bytes"])
    # num_blocks = floor(available / 1,835,008)
    assert j["capacity"]["num_blocks"] == m["kv_available_bytes"] // 1_835_008
    assert m["kv_cache_bytes"] == j["capacity"]["num_blocks"] * 1_835_008


def test_default_utilization_is_the_versions(check_json):
    assert check_json(ORPHEUS, "--gpu", "H100", "--vllm-version", "0.32.0",
                      "--max-model-len", "8192")["settings"]["gpu_memory_utilization"] == 0.92
    assert check_json(ORPHEUS, "--gpu", "H100", "--vllm-version", "0.11.0",
                      "--max-model-len", "8192")["settings"]["gpu_memory_utilization"] == 0.9


# --- NVML failing or absent: a table of common GPUs, not a failure ----------------------------------

@pytest.mark.parametrize("nvml", [NO_GPU, {"query_fail": "Unknown Error"}, {"gpus": []}])
def test_no_gpu_shows_common_gpus(kvfit, nvml):
    r = kvfit("check", ORPHEUS, nvml=nvml)
    no_traceback(r)
    # orpheus at its full 131,072 tokens fits on an 80 GB card: the table's exit code is 0
    assert r.rc == 0, r
    out = flat(r.out)
    assert "no GPU named or probed" in out and "--gpu" in out
    for name in ("RTX 3090", "A100", "H100"):
        assert name in out


def test_no_gpu_json_table(kvfit):
    r = kvfit("check", ORPHEUS, "--json", nvml=NO_GPU)
    assert r.rc == 0, r
    j = r.json
    assert j["schema"] == "kvfit.check/2" and j["verdict"]["table"] is True
    assert j["verdict"]["fits"] is True and "NVIDIA H100 80GB HBM3" in j["verdict"]["fits_on"]
    assert "Driver Not Loaded" in j["gpu_probe"]
    names = [x["gpu"]["name"] for x in j["results"]]
    assert "NVIDIA GeForce RTX 3090" in names and "NVIDIA H100 80GB HBM3" in names
    assert all(x["gpu"]["source"] == "catalog" for x in j["results"])


def test_no_gpu_table_exit_1_when_nothing_fits(kvfit):
    # a fixed 1 GiB KV budget holds 585 orpheus blocks on any GPU: 131,072 tokens never fit
    r = kvfit("check", ORPHEUS, "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "131072", nvml=NO_GPU)
    assert r.rc == 1, r
    no_traceback(r)


def test_pynvml_not_importable(kvfit, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pynvml.py").write_text("raise ImportError('no NVML binding here')\n")
    r = kvfit("check", ORPHEUS, "--json", env={"PYTHONPATH": str(broken)})
    assert r.rc in (0, 1), r
    no_traceback(r)
    assert "not importable" in r.json["gpu_probe"]


def test_gpus_command_without_gpu(kvfit):
    r = kvfit("gpus", nvml=NO_GPU)
    assert r.rc == 0, r
    no_traceback(r)
    assert "no GPU probed" in flat(r.out)
    j = kvfit("gpus", "--json", nvml=NO_GPU).json
    assert j["probed"] == []
    assert any(e["name"] == "NVIDIA GeForce RTX 3090" for e in j["catalog"])


# --- a probed GPU --------------------------------------------------------------------------------

def test_probed_gpu(kvfit):
    r = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--json", nvml={"gpus": [RTX3090]})
    assert r.rc == 0, r
    g = r.json["gpu"]
    assert g["name"] == "NVIDIA GeForce RTX 3090"
    assert g["source"] == "NVML"
    # total as CUDA sees it: 25,769,803,776 - 450,887,680 reserved = 25,318,916,096
    assert g["total_bytes"] == 25_318_916_096
    assert g["free_bytes"] == 25_000_000_000
    assert g["compute_capability"] == "8.6"
    assert r.json["verdict"]["startup_ok"] is True


def test_gpus_command_lists_probed(kvfit):
    j = kvfit("gpus", "--json", nvml={"gpus": [RTX3090, A100]}).json
    assert [g["name"] for g in j["probed"]] == ["NVIDIA GeForce RTX 3090", "NVIDIA A100-SXM4-80GB"]
    assert j["probed"][1]["processes"] == [[4242, 1_000_000_000]]
    r = kvfit("gpus", nvml={"gpus": [RTX3090, A100]})
    assert "pid 4242" in r.out


def _busy_3090(free: int) -> dict:
    return dict(RTX3090, free=free, used=25_318_916_096 - free, procs=[[777, 25_318_916_096 - free]])


def test_free_below_total_times_util_refuses_to_start(kvfit):
    # another process holds memory: free 20 GiB = 21,474,836,480 B; at 0.92 vLLM requests
    # ceil(25,318,916,096 x 0.92) = 23,293,402,809 B > free -> "Free memory on device ... is less than
    # desired GPU memory utilization" at startup
    nvml = {"gpus": [_busy_3090(20 * GiB)]}
    r = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--gpu-memory-utilization", "0.92", "--json", nvml=nvml)
    assert r.rc == 1, r
    j = r.json
    assert j["verdict"]["fits"] is False
    assert j["verdict"]["startup_ok"] is False
    assert any("refuse to start" in x for x in j["verdict"]["reasons"])
    util = j["recommendation"]["gpu_memory_utilization"]
    # a utilization that starts: ceil(total x util) <= free, i.e. util <= 0.848...; kvfit rounds to
    # hundredths and leaves vLLM's CUDA context room: at most floor(21,474,836,480 / 25,318,916,096 x 100) / 100
    assert util is not None and util <= 0.84
    assert math.ceil(25_318_916_096 * util) <= 20 * GiB
    assert f"--gpu-memory-utilization {util:g}" in j["recommendation"]["command"]["text"]
    # ... and it does start and fit
    again = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--gpu-memory-utilization", f"{util:g}", nvml=nvml)
    assert again.rc == 0, again


def test_free_below_total_times_util_human(kvfit):
    r = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--gpu-memory-utilization", "0.92",
              nvml={"gpus": [_busy_3090(20 * GiB)]})
    assert r.rc == 1, r
    assert "refuse to start" in flat(r.out)


def test_free_exactly_requested_starts(kvfit):
    # vLLM raises only when the free memory it sees (in its worker, after its CUDA context: 0.41 GiB on an
    # idle A100, gt-046) is below ceil(25,318,916,096 x 0.5) = 12,659,458,048: NVML's free, probed from
    # kvfit's process, must hold both
    from kvfit.memory.overhead import CUDA_CONTEXT_BYTES

    need = 12_659_458_048 + CUDA_CONTEXT_BYTES
    r = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--gpu-memory-utilization", "0.5", "--json",
              nvml={"gpus": [_busy_3090(need)]})
    assert r.json["verdict"]["startup_ok"] is True
    r = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--gpu-memory-utilization", "0.5", "--json",
              nvml={"gpus": [_busy_3090(need - 1)]})
    assert r.json["verdict"]["startup_ok"] is False


def test_free_too_small_for_any_fit_says_why(kvfit):
    # 4 GiB free: weights alone (6.18 GiB) cannot fit below the free-memory ceiling
    r = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--json", nvml={"gpus": [_busy_3090(4 * GiB)]})
    assert r.rc == 1, r
    j = r.json
    assert j["verdict"]["nothing_fits"] is True
    rec = j["recommendation"]
    assert rec is None or rec["needs"]                  # anything proposed needs what this GPU lacks
    assert "free" in j["policy"]["utilization_ceiling_reason"]


# --- CUDA_VISIBLE_DEVICES --------------------------------------------------------------------------

UUIDS = ["GPU-aaaa1111-0000", "GPU-bbbb2222-0000", "GPU-cccc3333-0000"]


@pytest.mark.parametrize("env, want", [
    (None, [0, 1, 2]),                # unset: every GPU
    ("", []),                         # empty: none
    ("1", [1]),
    ("2,0", [2, 0]),                  # CUDA renumbers in the given order
    (" 1 , 2 ", [1, 2]),
    ("0,7,1", [0]),                   # CUDA stops at the first invalid index
    ("-1", []),
    ("3", []),
    ("GPU-bbbb2222", [1]),            # UUID prefix
    ("GPU-cccc3333-0000,0", [2, 0]),
    ("GPU-ffff", []),                 # unknown UUID stops the list
])
def test_visible(monkeypatch, env, want):
    from kvfit.gpu import nvml

    if env is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", env)
    if hasattr(nvml, "_visible"):
        assert nvml._visible(3, UUIDS) == want
    # what probe() uses: (physical index, handle, uuid, parent handle, is MIG) per CUDA device
    devices = [(i, f"h{i}", u, f"h{i}", False) for i, u in enumerate(UUIDS)]
    assert [d[0] for d in nvml._visible_devices(devices)] == want


def test_cuda_visible_devices_picks_the_gpu(kvfit):
    nvml = {"gpus": [RTX3090, A100]}
    j = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--json", nvml=nvml,
              env={"CUDA_VISIBLE_DEVICES": "1"}).json
    assert j["gpu"]["name"] == "NVIDIA A100-SXM4-80GB"
    # 80 GiB board - 768 MiB reserved = 85,094,039,552 (79.25 GiB)
    assert j["gpu"]["total_bytes"] == 85_094_039_552
    j = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--json", nvml=nvml,
              env={"CUDA_VISIBLE_DEVICES": "GPU-bbbb2222"}).json
    assert j["gpu"]["name"] == "NVIDIA A100-SXM4-80GB"
    j = kvfit("check", ORPHEUS, "--max-model-len", "8192", "--json", nvml=nvml,
              env={"CUDA_VISIBLE_DEVICES": "0"}).json
    assert j["gpu"]["name"] == "NVIDIA GeForce RTX 3090"


def test_cuda_visible_devices_hiding_everything_shows_the_table(kvfit):
    r = kvfit("check", ORPHEUS, "--json", nvml={"gpus": [RTX3090]}, env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.rc in (0, 1), r
    assert r.json["schema"] == "kvfit.check/2" and r.json["verdict"]["table"]
    assert "CUDA_VISIBLE_DEVICES" in r.json["gpu_probe"]


def test_tp_uses_the_gpu_with_least_free(kvfit):
    nvml = {"gpus": [RTX3090, dict(RTX3090, uuid="GPU-dddd", free=22_000_000_000)]}
    j = kvfit("check", ORPHEUS, "-tp", "2", "--max-model-len", "8192", "--json", nvml=nvml).json
    assert j["gpu"]["free_bytes"] == 22_000_000_000


def test_tp_needs_enough_visible_gpus(kvfit):
    r = kvfit("check", ORPHEUS, "-tp", "2", nvml={"gpus": [RTX3090, A100]}, env={"CUDA_VISIBLE_DEVICES": "0"})
    assert r.rc == 2, r
    no_traceback(r)
    assert "needs 2 GPUs" in flat(r.err)


def test_pp_needs_enough_visible_gpus(kvfit):
    # vLLM's world size is TP x PP: 1 x 2 needs two GPUs
    r = kvfit("check", ORPHEUS, "-pp", "2", nvml={"gpus": [RTX3090]})
    assert r.rc == 2, r
    no_traceback(r)


# --- in process: NVML raising anywhere is "no GPU", never a failure ----------------------------------

class _FakeNvml:
    class NVMLError(Exception):
        pass

    nvmlMemory_v2 = 2

    def __init__(self, fail_at: str):
        self.fail_at = fail_at

    def __getattr__(self, name):
        def call(*a, **k):
            if name == self.fail_at:
                raise RuntimeError(f"{name} failed")
            return {"nvmlDeviceGetCount": 1, "nvmlDeviceGetUUID": "GPU-x", "nvmlDeviceGetName": "Fake"}.get(name)
        return call


@pytest.mark.parametrize("fail_at", ["nvmlInit", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
                                     "nvmlDeviceGetUUID", "nvmlDeviceGetMemoryInfo"])
def test_probe_never_raises(monkeypatch, fail_at):
    import sys

    from kvfit.gpu import nvml

    monkeypatch.setitem(sys.modules, "pynvml", _FakeNvml(fail_at))
    found = nvml.probe()
    assert found.gpus == ()
    assert found.reason


def test_no_gpu_in_process_table(cli):
    # the cli fixture's probe reports no GPU
    r = cli("check", ORPHEUS, "--json")
    assert r.rc == 0, r
    assert r.json["schema"] == "kvfit.check/2" and r.json["verdict"]["table"]
    assert r.json["gpu_probe"] == "test: no GPU"
    assert len(r.json["results"]) >= 5


def test_kv_cache_memory_bytes_still_needs_free_memory(kvfit):
    # vLLM's Worker.init_device calls request_memory() whatever --kv-cache-memory-bytes says: free
    # 20 GiB < ceil(25,318,916,096 x 0.92) = 23,293,402,809 B refuses to start even with a 1 GiB KV budget
    nvml = {"gpus": [_busy_3090(20 * GiB)]}
    r = kvfit("check", ORPHEUS, "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "8192",
              "--gpu-memory-utilization", "0.92", "--json", nvml=nvml)
    assert r.rc == 1, r
    assert r.json["verdict"]["startup_ok"] is False
    # the printed flags start: they carry a utilization <= 0.84 beside the KV budget
    flags = r.json["recommendation"]["command"]["argv"]
    assert "--kv-cache-memory-bytes" in flags and "--gpu-memory-utilization" in flags
    u = float(flags[flags.index("--gpu-memory-utilization") + 1])
    assert u <= 0.84
    again = kvfit("check", ORPHEUS, *flags[3:], nvml=nvml)
    assert again.rc == 0, again
