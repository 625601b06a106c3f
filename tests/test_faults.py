"""Environment faults: the Hub unreachable, silent or refusing; NVML missing or broken; MIG instances;
a GPU other processes already use. Each ends in a clear message and exit 0, 1 or 2, never a crash.

NVML is a fake pynvml module (tests/fuzz/nvml_fake.py) put in sys.modules; the Hub is a closed port, a
silent server or a local stand-in (tests/fuzz/hub_fake.py) named by HF_ENDPOINT.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))     # the shared fakes in tests/fuzz (importlib mode)

from fuzz import nvml_fake
from fuzz.harness import assert_contract, hermetic, run_entry
from fuzz.hub_fake import FakeHub, SilentServer, closed_port_url

ROOT = Path(__file__).resolve().parents[1]
LLAMA_TEXT = (ROOT / "tests" / "data" / "fuzz_seeds" / "meta-llama__Llama-3.1-8B-Instruct.json").read_text()
GiB = 1 << 30


def clean_env(tmp_path: Path, **extra: str) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("HF_", "HUGGINGFACE_", "CUDA_", "KVFIT_", "XDG_", "VLLM_"))}
    e.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    e.update(extra)
    return e


def kvfit(args: list[str], env: dict, cwd: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "kvfit", *args], capture_output=True, text=True, env=env, cwd=cwd,
                       timeout=timeout)
    from kvfit_schema import check_output

    check_output(args, p.stdout)                      # any JSON it printed validates against the shipped schema
    return p, time.monotonic() - t0


def assert_clean(p: subprocess.CompletedProcess) -> None:
    assert p.returncode in (0, 1, 2), p
    assert "Traceback" not in p.stdout + p.stderr and "internal error" not in p.stderr, p.stderr


# --- the Hub ---------------------------------------------------------------------------------------

def test_hub_unreachable_fails_fast_with_a_clear_message(tmp_path):
    """Connection refused: one message, exit 2, in seconds (huggingface_hub alone retries for ~25 s)."""
    env = clean_env(tmp_path, HF_ENDPOINT=closed_port_url())
    p, took = kvfit(["check", "someone/some-model", "--gpu", "H100"], env, tmp_path)
    assert_clean(p)
    assert p.returncode == 2
    assert "could not be reached" in p.stderr and "--offline" in p.stderr
    assert "Retrying" not in p.stderr                   # huggingface_hub's retry chatter is not shown
    assert took < 10, took


def test_hub_silent_times_out(tmp_path):
    """A Hub that accepts the connection and never answers: KVFIT_HUB_TIMEOUT bounds the whole lookup
    (huggingface_hub alone would wait and retry for minutes)."""
    with SilentServer() as hub:
        env = clean_env(tmp_path, HF_ENDPOINT=hub.url, KVFIT_HUB_TIMEOUT="2")
        p, took = kvfit(["check", "someone/some-model", "--gpu", "H100"], env, tmp_path)
    assert_clean(p)
    assert p.returncode == 2
    assert "did not answer within 2 s" in p.stderr and "KVFIT_HUB_TIMEOUT" in p.stderr
    assert took < 15, took


def test_hub_slow_to_answer_times_out(tmp_path):
    with FakeHub({"config.json": LLAMA_TEXT}, delay=5) as hub:
        env = clean_env(tmp_path, HF_ENDPOINT=hub.url, KVFIT_HUB_TIMEOUT="1")
        p, took = kvfit(["check", "someone/some-model", "--gpu", "H100"], env, tmp_path)
    assert_clean(p)
    assert p.returncode == 2 and "did not answer within 1 s" in p.stderr
    assert took < 10, took


def test_hub_down_falls_back_to_the_bundled_entry(tmp_path):
    """--revision asks the Hub; when it cannot answer, a bundled model is still checked, and says so."""
    with SilentServer() as hub:
        env = clean_env(tmp_path, HF_ENDPOINT=hub.url, KVFIT_HUB_TIMEOUT="1")
        p, took = kvfit(["check", "Qwen/Qwen3-8B", "--revision", "main", "--gpu", "H100", "--json"], env, tmp_path)
    assert_clean(p)
    model = json.loads(p.stdout)["model"]
    assert model["source"] == "catalog" and "Hub unreachable" in model["detail"]
    assert took < 10, took


@pytest.mark.parametrize("value", ["abc", "-3", "nan", "0", "inf", ""])
def test_bad_hub_timeout_setting_is_not_a_crash(tmp_path, value):
    """KVFIT_HUB_TIMEOUT=abc raised ValueError while importing kvfit.sources.hub (a traceback)."""
    env = clean_env(tmp_path, HF_ENDPOINT=closed_port_url(), KVFIT_HUB_TIMEOUT=value)
    p, _ = kvfit(["check", "someone/some-model", "--gpu", "H100"], env, tmp_path)
    assert_clean(p)
    assert p.returncode == 2 and "could not be reached" in p.stderr


@pytest.mark.parametrize("mode,token,expect", [
    ("gated", None, ["is gated", "HF_TOKEN", "licence"]),
    ("gated", "hf_kvfitWrongToken000000000000000", ["is gated", "HF_TOKEN has no access"]),
    ("private", None, ["not found on the Hugging Face Hub", "private", "HF_TOKEN"]),
    ("missing", "hf_kvfitSomeToken00000000000000000", ["not found on the Hugging Face Hub"]),
])
def test_gated_or_private_model(tmp_path, mode, token, expect):
    with FakeHub({"config.json": LLAMA_TEXT}, mode=mode) as hub:
        env = clean_env(tmp_path, HF_ENDPOINT=hub.url, **({"HF_TOKEN": token} if token else {}))
        p, took = kvfit(["check", "meta-llama/Llama-3.1-405B-gated", "--gpu", "H100"], env, tmp_path)
    assert_clean(p)
    assert p.returncode == 2
    for text in expect:
        assert text in p.stderr, (text, p.stderr)
    if token:
        assert token not in p.stdout + p.stderr
    assert took < 10


def test_gated_model_with_access_works(tmp_path):
    token = "hf_kvfitGoodToken000000000000000000"
    with FakeHub({"config.json": LLAMA_TEXT}, mode="gated", token=token) as hub:
        env = clean_env(tmp_path, HF_ENDPOINT=hub.url, HF_TOKEN=token)
        p, _ = kvfit(["check", "meta-llama/Llama-3.1-405B-gated", "--gpu", "H100", "--json"], env, tmp_path)
    assert_clean(p)
    assert p.returncode in (0, 1) and json.loads(p.stdout)["model"]["source"] == "hub"


# --- NVML ------------------------------------------------------------------------------------------

@pytest.fixture
def inproc(tmp_path):
    with hermetic(tmp_path) as (mp, guard):
        yield mp


NVML_FAULTS = {
    "not installed": (None, "nvidia-ml-py is not importable"),
    "library not found": ({"init_error": "LibraryNotFound"}, "NVML Shared Library Not Found"),
    "driver not loaded": ({"init_error": "DriverNotLoaded"}, "Driver Not Loaded"),
    "driver/library mismatch": ({"init_error": "LibRmVersionMismatch"}, "version mismatch"),
    "no permission": ({"init_error": "NoPermission"}, "Insufficient Permissions"),
    "query fails after init": ({"gpus": [nvml_fake.gpu()], "errors": {"nvmlDeviceGetCount": "Unknown"}},
                               "NVML query failed"),
    "gpu lost": ({"gpus": [nvml_fake.gpu()], "errors": {"nvmlDeviceGetMemoryInfo": "GpuIsLost"}}, "GPU is lost"),
    "no gpu": ({"gpus": []}, "no NVIDIA GPU found"),
}


@pytest.mark.parametrize("fault", sorted(NVML_FAULTS))
def test_nvml_fault_shows_the_common_gpu_table(inproc, fault):
    spec, reason = NVML_FAULTS[fault]
    nvml_fake.install(inproc, spec)
    o = run_entry(["check", "Qwen/Qwen3-8B", "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert report["schema"] == "kvfit.check/2" and report["verdict"]["table"]
    assert reason in report["gpu_probe"], report["gpu_probe"]
    assert len(report["results"]) >= 5
    assert {r["gpu"]["source"] for r in report["results"]} == {"catalog"}
    o = run_entry(["check", "Qwen/Qwen3-8B"])
    assert_contract(o)
    assert "no GPU named or probed" in o.out and reason in " ".join(o.out.split())
    o = run_entry(["gpus"])
    assert_contract(o)
    assert o.code == 0 and reason in " ".join(o.out.split())


def test_nvml_fault_with_a_named_gpu_never_probes(inproc):
    mod = nvml_fake.install(inproc, {"init_error": "DriverNotLoaded"})
    o = run_entry(["check", "Qwen/Qwen3-8B", "--gpu", "H100", "--json"])
    assert_contract(o, json_out=True)
    assert json.loads(o.out)["gpu"]["source"] == "catalog" and mod.calls == []


# --- MIG -------------------------------------------------------------------------------------------

A100 = "NVIDIA A100-SXM4-80GB"


def mig_machine(*profiles: tuple[str, float]) -> dict:
    migs = [nvml_fake.mig_instance(A100, p, gib, uuid=f"MIG-{i}abc") for i, (p, gib) in enumerate(profiles)]
    return {"gpus": [nvml_fake.gpu(A100, 79.15, 79.0, cc=(8, 0), uuid="GPU-a100", mig=migs)]}


def test_mig_instances_are_reported_with_their_own_memory(inproc):
    nvml_fake.install(inproc, mig_machine(("3g.40gb", 39.25), ("1g.10gb", 9.5)))
    o = run_entry(["gpus", "--json"])
    assert_contract(o, json_out=True)
    probed = json.loads(o.out)["probed"]
    assert [(g["name"], g["mig"]) for g in probed] == [(f"{A100} MIG 3g.40gb", True), (f"{A100} MIG 1g.10gb", True)]
    assert [g["total_bytes"] for g in probed] == [int(39.25 * GiB), int(9.5 * GiB)]
    o = run_entry(["gpus"])
    assert_contract(o)
    assert "MIG 3g.40gb" in o.out and "MIG 1g.10gb" in o.out


def test_check_uses_the_mig_instance_not_the_whole_gpu(inproc):
    nvml_fake.install(inproc, mig_machine(("3g.40gb", 39.25), ("1g.10gb", 9.5)))
    o = run_entry(["check", "Qwen/Qwen3-8B", "--json"])
    assert_contract(o, json_out=True)
    gpu = json.loads(o.out)["gpu"]
    assert gpu["name"] == f"{A100} MIG 3g.40gb" and gpu["total_bytes"] == int(39.25 * GiB)
    assert gpu["source"] == "NVML MIG instance"
    o = run_entry(["check", "Qwen/Qwen3-8B", "--details"])
    assert_contract(o)
    assert "MIG 3g.40gb" in o.out and "NVML MIG instance" in o.out


def test_mig_instance_chosen_by_cuda_visible_devices(inproc):
    """An 8B model in bf16 (16 GB of weights) fits a 3g.40gb instance, not a 1g.10gb one."""
    nvml_fake.install(inproc, mig_machine(("3g.40gb", 39.25), ("1g.10gb", 9.5)))
    inproc.setenv("CUDA_VISIBLE_DEVICES", "MIG-1abc")
    o = run_entry(["check", "Qwen/Qwen3-8B", "--max-model-len", "8192", "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert report["gpu"]["name"].endswith("MIG 1g.10gb") and report["gpu"]["total_bytes"] == int(9.5 * GiB)
    assert o.code == 1 and report["verdict"]["fits"] is False
    inproc.setenv("CUDA_VISIBLE_DEVICES", "MIG-0abc")
    o = run_entry(["check", "Qwen/Qwen3-8B", "--max-model-len", "8192", "--json"])
    assert_contract(o, json_out=True)
    assert o.code == 0 and json.loads(o.out)["gpu"]["name"].endswith("MIG 3g.40gb")


def test_mig_mode_without_instances(inproc):
    nvml_fake.install(inproc, mig_machine())
    o = run_entry(["check", "Qwen/Qwen3-8B", "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert report["schema"] == "kvfit.check/2" and report["verdict"]["table"]
    assert "no MIG instance" in report["gpu_probe"]


# --- a GPU other processes already use --------------------------------------------------------------

def busy_h100(free_gib: float) -> dict:
    total = 79.19
    return {"gpus": [nvml_fake.gpu("NVIDIA H100 80GB HBM3", total, free_gib, uuid="GPU-h100",
                                   procs=[(4242, int((total - free_gib) * GiB))])]}


def test_busy_gpu_vllm_will_refuse_to_start(inproc):
    """free (30 GiB) < total x 0.92: vLLM refuses at startup. The verdict says so, names the largest
    utilization that starts once vLLM's CUDA context (0.41 GiB, gt-046) takes its share of the free memory
    (0.37 = floor((30 - 0.41) / 79.19, 2)), and the recommended one starts and fits."""
    nvml_fake.install(inproc, busy_h100(30))
    o = run_entry(["check", "Qwen/Qwen3-8B", "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert o.code == 1
    assert report["verdict"]["startup_ok"] is False and report["verdict"]["fits"] is False
    reason = report["verdict"]["reasons"][0]
    assert reason.startswith("vLLM will refuse to start") and "other processes hold 49.19 GiB" in reason
    assert "--gpu-memory-utilization 0.37 or lower would start" in reason
    assert report["policy"]["utilization_ceiling"] == 0.37
    util = report["recommendation"]["gpu_memory_utilization"]
    assert util is not None and 0 < util <= 0.37
    assert f"--gpu-memory-utilization {util:g}" in report["recommendation"]["command"]["text"]
    o = run_entry(["check", "Qwen/Qwen3-8B", "--gpu-memory-utilization", f"{util:g}", "--json"])
    assert_contract(o, json_out=True)
    again = json.loads(o.out)
    assert o.code == 0 and again["verdict"]["startup_ok"] is True and again["verdict"]["fits"] is True
    o = run_entry(["check", "Qwen/Qwen3-8B"])                      # the human report says it too
    assert_contract(o)
    assert "vLLM will refuse to start" in o.out and "0.37 or lower would start" in " ".join(o.out.split())


def test_busy_gpu_with_no_room_at_all(inproc):
    nvml_fake.install(inproc, busy_h100(0.4))
    o = run_entry(["check", "Qwen/Qwen3-8B", "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert o.code == 1 and report["verdict"]["startup_ok"] is False
    assert "no utilization would start" in report["verdict"]["reasons"][0]
    assert report["verdict"]["nothing_fits"] is True
    rec = report["recommendation"]
    assert rec is None or rec["needs"]                       # nothing on this GPU until other processes free it
    assert report["policy"]["utilization_ceiling"] == 0.0


def test_busy_gpu_startup_check_is_exact(inproc):
    """The boundary: vLLM compares the free memory it sees (NVML's free less its own CUDA context, 0.41 GiB on an
    idle A100, gt-046) with ceil(total x utilization), to the byte."""
    from kvfit.memory.overhead import CUDA_CONTEXT_BYTES

    total = 80 * GiB
    spec = {"gpus": [nvml_fake.gpu("NVIDIA H100 80GB HBM3", 80, 40)]}
    spec["gpus"][0]["free"] = total // 2 + CUDA_CONTEXT_BYTES      # exactly half free once vLLM's context exists
    nvml_fake.install(inproc, spec)
    o = run_entry(["check", "Qwen/Qwen3-0.6B", "--gpu-memory-utilization", "0.5", "--max-model-len", "4096",
                   "--json"])
    assert_contract(o, json_out=True)
    assert json.loads(o.out)["verdict"]["startup_ok"] is True
    spec["gpus"][0]["free"] = total // 2 + CUDA_CONTEXT_BYTES - 1
    o = run_entry(["check", "Qwen/Qwen3-0.6B", "--gpu-memory-utilization", "0.5", "--max-model-len", "4096",
                   "--json"])
    assert_contract(o, json_out=True)
    report = json.loads(o.out)
    assert report["verdict"]["startup_ok"] is False and "0.49 or lower would start" in report["verdict"]["reasons"][0]
