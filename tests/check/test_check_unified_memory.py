"""Unified-memory devices in the GPU catalog (issue 13, item 6): DGX Spark (GB10) and Jetson AGX Thor.

The expected tiers are vLLM's engine/arg_utils.py::get_batch_defaults for the default `vllm serve` path:
  * 0.32.0: `device_memory = current_platform.get_device_total_memory()` inside try/except; NVML's device
    memory query is not supported on GB10 (nvidia-smi prints "Not Supported" under Memory-Usage for NVIDIA GB10,
    NVIDIA/dgx-spark-playbooks nvidia/cuda-x-data-science/assets/cudf_pandas_demo.ipynb at 0db7c141), so
    device_memory = 0 -> the last branch: 2048 tokens (serve), 256 sequences.
  * 0.33.0: the same call falls back to the CUDA properties (platforms/cuda.py), and
    `is_gb10 = current_platform.is_device_capability((12, 1))` keeps GB10 out of the >= 70 GiB tier.
  * Thor (compute capability 11.0, not GB10) with a total >= 70 GiB: the >= 70 GiB tier, 8192 tokens (serve),
    1024 sequences (0.33; and 0.32 where NVML is absent, platforms/cuda.py "On Jetson, NVML is not supported").
"""

from __future__ import annotations

import pytest

from _checkutil import ORPHEUS

GiB = 1 << 30


@pytest.mark.parametrize("name, full, cc", [
    # 12.1: NVIDIA/dgx-spark-playbooks nvidia/cutile-kernels/README.md "Compute Capability | sm_121 (12.1)";
    # 11.0 / 12.1: dusty-nv/jetson-containers packages/llm/vllm/patches/generate_diff.py (dd206bfe)
    # "shared_sysmem_device_mem_sms = (110, 121)  # Thor, Spark"
    ("DGX Spark", "NVIDIA GB10", "12.1"),
    ("GB10", "NVIDIA GB10", "12.1"),
    ("Jetson AGX Thor", "NVIDIA Thor", "11.0"),
    ("Thor", "NVIDIA Thor", "11.0"),
])
def test_unified_memory_gpus_in_the_catalog(check_json, name, full, cc):
    j = check_json(ORPHEUS, "--gpu", name, "--max-model-len", "8192")
    assert j["gpu"]["name"] == full
    assert j["gpu"]["compute_capability"] == cc
    assert j["gpu"]["total_bytes"] >= 70 * GiB         # a total vLLM would put on the large tier if it read it


def test_thor_total_is_the_one_vllm_printed_there():
    """A vLLM startup error on Jetson AGX Thor (L4T r38.2.2), NVIDIA-AI-IOT/jetson-generative-ai-playground
    docs/workshop_gtcdc2025.md, commit 693002fb051f30be3a08113f6a06ae9c3e029397:
    'Free memory on device (14.45/122.82 GiB) on startup is less than desired GPU memory utilization (0.7, 85.98 GiB)'.
    vLLM prints the total to 2 decimals and requests ceil(total x 0.7) (0.32 v1/worker/utils.py::request_memory),
    so the total lies in [85.975 / 0.7, 122.825) GiB."""
    from kvfit.gpu.catalog import lookup

    total = lookup("Jetson AGX Thor").total_bytes
    assert round(total / GiB, 2) == 122.82
    assert round(total * 0.7 / GiB, 2) == 85.98
    assert 85.975 / 0.7 * GiB <= total < 122.825 * GiB


def test_gb10_total_is_the_one_cuda_printed_there():
    """NVIDIA cuOpt 25.10.1 on DGX Spark, NVIDIA/dgx-spark-playbooks
    nvidia/portfolio-optimization/assets/cvar_basic.ipynb, commit 0db7c141da60870ca6ed5c99436320f4e35cd531:
    'CUDA 13.0, device: NVIDIA GB10 (ID 0), VRAM: 119.70 GiB' (the CUDA device total, to 2 decimals), so the total
    lies in [119.695, 119.705) GiB. Not a vLLM log: the answer says so (test below)."""
    from kvfit.gpu.catalog import lookup

    total = lookup("DGX Spark").total_bytes
    assert round(total / GiB, 2) == 119.70
    assert 119.695 * GiB <= total < 119.705 * GiB


@pytest.mark.parametrize("version", ["0.32.0", "0.33.0"])
def test_gb10_gets_the_small_batch_tier(check_json, version):
    j = check_json(ORPHEUS, "--gpu", "DGX Spark", "--max-model-len", "8192", "--vllm-version", version)
    assert (j["settings"]["max_num_batched_tokens"], j["settings"]["max_num_seqs"]) == (2048, 256)


def test_thor_gets_the_70_gib_tier(check_json):
    j = check_json(ORPHEUS, "--gpu", "Jetson Thor", "--max-model-len", "8192", "--vllm-version", "0.33.0")
    assert (j["settings"]["max_num_batched_tokens"], j["settings"]["max_num_seqs"]) == (8192, 1024)


def test_unified_memory_entries_say_what_kvfit_assumes():
    from kvfit.gpu.catalog import catalog

    entries = {e["name"]: e for e in catalog()}
    for name in ("NVIDIA GB10", "NVIDIA Thor"):
        e = entries[name]
        assert e["unified_memory"] is True
        assert "psutil.virtual_memory().available" in e["notes"]      # vLLM's free memory on UMA devices
        assert "approximate" in e["source"]                           # exact bytes not measured by this project


@pytest.mark.parametrize("name, estimated, logged, cuda_logged, unified", [
    ("DGX Spark", False, False, True, True),  # 119.70 GiB printed by cuOpt on a GB10 (a CUDA log, not vLLM's)
    ("Thor", False, True, False, True),       # 122.82 GiB seen in a public vLLM log, its bytes inferred
    ("L4", True, False, False, False),        # total from knowledge, not from a vLLM log
    ("RTX 3090", False, False, False, False),  # calibration gt-001 printed total_gpu_memory=23.58GiB
])
def test_named_gpu_says_what_its_total_rests_on(check_json, name, estimated, logged, cuda_logged, unified):
    notes = " ".join(check_json(ORPHEUS, "--gpu", name, "--max-model-len", "8192")["notes"])
    assert ("kvfit's estimate, not seen in a vLLM log" in notes) is estimated
    assert ("a public vLLM log printed there to two decimals" in notes) is logged
    assert ("the CUDA device total a public log (not vLLM's) printed there to two decimals" in notes) is cuda_logged
    assert ("shares its memory with the CPU" in notes) is unified
    if unified:     # NVML cannot read memory there (nvidia-smi memory.total [N/A]): only --gpu-memory helps
        assert "reads NVML" not in notes


def test_measured_total_gives_no_estimate_note(check_json):
    notes = " ".join(check_json(ORPHEUS, "--gpu", "DGX Spark", "--gpu-memory", "119.5GiB",
                                "--max-model-len", "8192")["notes"])
    assert "kvfit's estimate" not in notes and "shares its memory" not in notes
