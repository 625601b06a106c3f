"""Version profiles: which vLLM release behaves how (each boundary read from that release's wheel)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kvfit.errors import BadInput
from kvfit.gpu.model import Gpu
from kvfit.gpu.catalog import lookup
from kvfit.memory.profiles import (CURRENT_VERSION, batch_defaults, profile_for, resolve_batch, v0_batch,
                                   v0_chunked_prefill)

GiB = 1 << 30


@pytest.mark.parametrize("version, engine, formula, util, cg", [
    ("0.4.2", "V0", "v0-free-delta", 0.9, False),
    ("0.6.3", "V0", "v0-free-delta", 0.9, False),     # peak = init free - free after profile
    ("0.6.4", "V0", "v0-torch-peak", 0.9, False),     # torch allocated peak + all non-torch memory
    ("0.6.5", "V0", "v0-profiling", 0.9, False),      # memory_profiling(baseline)
    ("0.7.3", "V0", "v0-profiling", 0.9, False),
    ("0.8.5", "V1", "v1", 0.9, False),                # V1 by default from 0.8.0 (on compute capability >= 8)
    ("0.19.1", "V1", "v1", 0.9, False),               # still 0.9, no CUDA-graph estimate
    ("0.20.0", "V1", "v1", 0.92, True),               # 0.92 and VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1
    ("0.31.0", "V1", "v1", 0.92, True),
    ("0.32.0", "V1", "v1", 0.92, True),
])
def test_profile_by_version(version, engine, formula, util, cg):
    p = profile_for(version)
    assert (p.engine, p.memory_formula, p.default_gpu_memory_utilization, p.cudagraph_estimate_subtracted) == \
        (engine, formula, util, cg)
    assert p.version == version


def test_current_version_is_the_default():
    assert profile_for(None).version == CURRENT_VERSION == "0.32.0"
    assert profile_for("v0.32.0").engine == "V1"


def test_unreadable_version_is_bad_input():
    with pytest.raises(BadInput):
        profile_for("latest")


def test_0_8_falls_back_to_v0_below_compute_capability_8():
    assert profile_for("0.8.5", gpu=lookup("T4")).engine == "V0"             # gt-039: "V0 fallback" on a T4
    assert profile_for("0.8.5", gpu=lookup("V100 32GB")).engine == "V0"      # gt-041: V0 on Volta
    assert profile_for("0.8.5", gpu=lookup("A100 80GB")).engine == "V1"
    assert profile_for("0.9.0", gpu=lookup("T4")).engine == "V1"             # V1 on Turing from 0.9
    assert profile_for("0.8.5", engine="V0").engine == "V0"                  # VLLM_USE_V1=0
    assert profile_for("0.11.0", engine="V0").engine == "V1"                 # V0 is gone from 0.11


def test_v0_chunked_prefill_defaults():
    assert profile_for("0.6.3").v0_chunked_tokens == 512                     # config.py 0.6.3/0.6.4: 512
    assert profile_for("0.6.4").v0_chunked_tokens == 512
    assert profile_for("0.6.5").v0_chunked_tokens == 2048                    # 0.6.5+: 2048
    assert not profile_for("0.5.2").v0_chunked_auto and profile_for("0.5.3").v0_chunked_auto


@pytest.mark.parametrize("version, kw, on", [
    ("0.6.3", {}, True),                                   # > 32768 on CUDA
    ("0.6.3", {"max_model_len": 32768}, False),            # not above 32K
    ("0.6.3", {"sliding_window": True}, False),
    ("0.6.3", {"lora": True}, False),
    ("0.6.3", {"multimodal": True}, False),                # excluded from 0.6.2
    ("0.6.1", {"multimodal": True}, True),
    ("0.7.3", {"use_mla": True}, True),
    ("0.8.5", {"use_mla": True}, False),                   # MLA excluded from 0.8.0
    ("0.5.2", {}, False),                                  # no automatic chunked prefill before 0.5.3
    ("0.6.3", {"device": "cpu"}, False),
])
def test_v0_chunked_prefill_rules(version, kw, on):
    args = dict(max_model_len=131072, device="cuda", sliding_window=False, use_mla=False, multimodal=False,
                lora=False)
    args.update(kw)
    assert v0_chunked_prefill(profile_for(version), **args) is on


def test_v0_batch_defaults():
    p063, p066 = profile_for("0.6.3"), profile_for("0.6.6")
    # not chunked: max(max_model_len, 2048) tokens, 256 seqs
    assert v0_batch(p063, max_model_len=20000, chunked=False, max_num_batched_tokens=None, max_num_seqs=None) == (20000, 256)
    assert v0_batch(p066, max_model_len=1024, chunked=False, max_num_batched_tokens=None, max_num_seqs=None) == (2048, 256)
    assert v0_batch(p063, max_model_len=131072, chunked=True, max_num_batched_tokens=None, max_num_seqs=None) == (512, 256)
    assert v0_batch(p066, max_model_len=131072, chunked=True, max_num_batched_tokens=None, max_num_seqs=16) == (2048, 16)


H100 = Gpu("NVIDIA H100 80GB HBM3", 85_061_533_696, (9, 0))
A100 = Gpu("NVIDIA A100-SXM4-80GB", 85_094_039_552, (8, 0))
B200 = Gpu("NVIDIA B200", 191_501_434_880, (10, 0))
RTX3090 = Gpu("NVIDIA GeForce RTX 3090", 25_318_916_096, (8, 6))


def _bd(gpu, entrypoint="serve", version="0.32.0"):
    b = batch_defaults(device="cuda", total_bytes=gpu.total_bytes, gpu_name=gpu.name, entrypoint=entrypoint,
                       profile=profile_for(version))
    return b.max_num_batched_tokens, b.max_num_seqs


@pytest.mark.parametrize("gpu, entrypoint, version, expected", [
    (H100, "serve", "0.32.0", (8192, 1024)),      # >= 70 GiB, not an A100
    (H100, "llm", "0.32.0", (16384, 1024)),
    (A100, "serve", "0.32.0", (2048, 256)),       # "a100" in the name: the small tier (PR #17885)
    (A100, "llm", "0.32.0", (8192, 256)),
    (B200, "serve", "0.32.0", (16384, 1024)),     # >= 160 GiB from 0.28.0
    (B200, "serve", "0.27.0", (8192, 1024)),
    (RTX3090, "serve", "0.32.0", (2048, 256)),
    (A100, "serve", "0.8.5", (8192, 1024)),       # 0.8.5: by memory only, A100 80GB included
    (A100, "serve", "0.8.2", (2048, 1024)),       # 0.8.0-0.8.3: by name (h100/h200), 1024 seqs always
    (H100, "serve", "0.8.2", (8192, 1024)),
    (A100, "serve", "0.8.4", (2048, 256)),        # 0.8.4: 256 seqs unless h100/h200
])
def test_batch_default_tiers(gpu, entrypoint, version, expected):
    assert _bd(gpu, entrypoint, version) == expected


def test_batch_defaults_cpu_scale_with_world_size():
    b = batch_defaults(device="cpu", total_bytes=0, gpu_name="", entrypoint="serve", world_size=2)
    assert (b.max_num_batched_tokens, b.max_num_seqs) == (4096, 256)


def test_caps_apply_to_defaults_only():
    d = batch_defaults(device="cuda", total_bytes=H100.total_bytes, gpu_name=H100.name, entrypoint="serve")
    assert resolve_batch(d, max_num_batched_tokens=None, max_num_seqs=None, max_model_len=4) == (4096, 1024)
    assert resolve_batch(d, max_num_batched_tokens=None, max_num_seqs=2, max_model_len=1024) == (2048, 2)
    assert resolve_batch(d, max_num_batched_tokens=100, max_num_seqs=None, max_model_len=8) == (100, 100)


def test_version_detection_never_imports_vllm():
    code = ("import sys; from kvfit.memory.profiles import installed_vllm_version; installed_vllm_version(); "
            "import kvfit.plan, kvfit.memory.overhead, kvfit.memory.weights; "
            "bad = [m for m in ('vllm', 'torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
