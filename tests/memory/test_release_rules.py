"""Per-release rules in memory/profiles.py: engine choice, CUDA-graph accounting, KV dtypes, RoPE and
the derived max_model_len. Expected values are read from each release's wheel (the file is named at
each case; `pip download --no-deps --only-binary :all: vllm==X`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.gpu.catalog import lookup
from kvfit.memory import profiles as P
from kvfit.memory.profiles import engine_for, profile_for, rope_scaled_max_len

GiB = 1 << 30
MODELS = Path(__file__).resolve().parent.parent / "data" / "models"
QWEN3_8B = json.loads((MODELS / "Qwen__Qwen3-8B" / "config.json").read_text())
# Qwen's documented long-context launch (Qwen3-8B model card, "Processing Long Texts")
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
T4, A100, H100, B200 = (7, 5), (8, 0), (9, 0), (10, 0)


# --- engine choice -------------------------------------------------------------------------------

@pytest.mark.parametrize("version, env, kw, engine, error", [
    # envs.py: VLLM_USE_V1 appears in 0.6.4 (default "0"), default "1" from 0.8.0, gone in 0.11.1
    ("0.6.3", {"VLLM_USE_V1": "1"}, {}, "V0", False),          # not read before 0.6.4
    ("0.7.3", {}, {}, "V0", False),
    ("0.7.3", {"VLLM_USE_V1": "1"}, {}, "V1", False),          # opt-in
    ("0.8.5", {}, {}, "V1", False),
    ("0.8.5", {"VLLM_USE_V1": "0"}, {}, "V0", False),
    ("0.8.5", {"VLLM_USE_V1": "yes"}, {}, "V1", True),         # bool(int("yes")) raises
    # "Compute Capability < 8.0": _raise_or_fallback in 0.8.0 .. 0.10.1; VLLM_USE_V1=1 makes it an error
    ("0.9.2", {}, {"compute_capability": T4}, "V0", False),
    ("0.9.2", {"VLLM_USE_V1": "1"}, {"compute_capability": T4}, "V1", True),
    ("0.10.1", {}, {"compute_capability": T4}, "V0", False),
    ("0.10.2", {}, {"compute_capability": T4}, "V1", False),
    # --kv-cache-dtype: 0.8.0/0.8.1 any; 0.8.2+ fp8 with FA3 (9.x); 0.10.0 + 10.0; 0.10.2 MLA ok; 0.11 no test
    ("0.8.1", {}, {"compute_capability": H100, "kv_cache_dtype": "fp8"}, "V0", False),
    ("0.8.5", {}, {"compute_capability": H100, "kv_cache_dtype": "fp8"}, "V1", False),
    ("0.8.5", {}, {"compute_capability": A100, "kv_cache_dtype": "fp8"}, "V0", False),
    ("0.10.0", {}, {"compute_capability": B200, "kv_cache_dtype": "fp8"}, "V1", False),
    ("0.10.2", {}, {"compute_capability": A100, "kv_cache_dtype": "fp8", "use_mla": True}, "V1", False),
    ("0.10.2", {}, {"compute_capability": A100, "kv_cache_dtype": "fp8"}, "V0", False),
    ("0.11.0", {}, {"compute_capability": A100, "kv_cache_dtype": "fp8"}, "V1", False),
    # 0.8.0-0.8.2: --cpu-offload-gb unsupported, LoRA and PP experimental
    ("0.8.2", {}, {"cpu_offload_gb": 4}, "V0", False),
    ("0.8.3", {}, {"cpu_offload_gb": 4}, "V1", False),
    ("0.8.0", {}, {"enable_lora": True}, "V0", False),
    ("0.8.0", {"VLLM_USE_V1": "1"}, {"enable_lora": True}, "V1", False),
    ("0.8.3", {}, {"enable_lora": True}, "V1", False),
    # PP: 0.8.3-0.8.5 only with ray; 0.9.0-0.9.1 ray/mp/external_launcher (the default None falls back)
    ("0.8.5", {}, {"pipeline_parallel_size": 2}, "V0", False),
    ("0.8.5", {}, {"pipeline_parallel_size": 2, "distributed_executor_backend": "ray"}, "V1", False),
    ("0.9.1", {}, {"pipeline_parallel_size": 2}, "V0", False),
    ("0.9.2", {}, {"pipeline_parallel_size": 2}, "V1", False),
    # --dtype float32: 0.8.0-0.9.1
    ("0.9.1", {}, {"model_dtype": "float32"}, "V0", False),
    ("0.9.2", {}, {"model_dtype": "float32"}, "V1", False),
    # speculative methods
    ("0.8.5", {}, {"speculative_method": "eagle3"}, "V0", False),      # experimental
    ("0.8.5", {}, {"speculative_method": "deepseek_mtp"}, "V0", False),
    ("0.9.0", {}, {"speculative_method": "deepseek_mtp"}, "V1", False),
    ("0.9.2", {}, {"speculative_method": "draft_model"}, "V0", False),
    ("0.10.0", {}, {"speculative_method": "draft_model"}, "V1", True),  # NotImplementedError
    # mamba: "Mamba" experimental 0.9.2-0.10.1; SupportsV0Only architectures per release
    ("0.9.2", {}, {"has_inner_state": True}, "V0", False),
    ("0.10.2", {}, {"has_inner_state": True}, "V1", False),
    ("0.10.0", {}, {"architectures": ("JambaForCausalLM",)}, "V0", False),
    ("0.10.2", {}, {"architectures": ("MllamaForConditionalGeneration",)}, "V0", False),
    ("0.11.0", {}, {"architectures": ("MllamaForConditionalGeneration",)}, "V1", False),
    ("0.11.0", {}, {"architectures": ("MotifForCausalLM",)}, "V1", True),
    # CPU: no V1 before 0.9.1 (supports_v1 False), experimental in 0.9.1, default on x86 from 0.9.2;
    # CPU + sliding window falls back 0.9.2-0.10.x and cannot fall back in 0.11.0
    ("0.9.0", {}, {"device": "cpu"}, "V0", False),
    ("0.9.1", {}, {"device": "cpu"}, "V0", False),
    ("0.9.2", {}, {"device": "cpu"}, "V1", False),
    ("0.10.2", {}, {"device": "cpu", "sliding_window": True}, "V0", False),
    ("0.11.0", {}, {"device": "cpu", "sliding_window": True}, "V1", True),
    ("0.32.0", {}, {"device": "cpu", "sliding_window": True}, "V1", False),
    # 0.11.0 has no V0 engine: VLLM_USE_V1=0 trips api_server's assert; 0.11.1 no longer reads it
    ("0.11.0", {"VLLM_USE_V1": "0"}, {}, "V1", True),
    ("0.11.1", {"VLLM_USE_V1": "0"}, {}, "V1", False),
    ("0.33.0", {"VLLM_USE_V1": "0"}, {"compute_capability": T4}, "V1", False),
])
def test_engine_choice(version, env, kw, engine, error):
    kw.setdefault("compute_capability", A100)
    choice = engine_for(version, env, **kw)
    assert choice.engine == engine, choice.reason
    assert (choice.error is not None) is error, choice.error
    assert choice.reason


def test_engine_choice_feeds_profile_for():
    choice = engine_for("0.8.5", {"VLLM_USE_V1": "0"})
    p = profile_for("0.8.5", gpu=lookup("A100 80GB"), engine=choice.engine)
    assert (p.engine, p.memory_formula, p.batch_rule) == ("V0", "v0-profiling", "v0")
    p = profile_for("0.7.3", engine=engine_for("0.7.3", {"VLLM_USE_V1": "1"}).engine)
    assert p.engine == "V1" and p.rules_from == "0.8.0" and "0.7.3" in p.warning and "opt-in" in p.warning


def test_v0_only_architectures_come_from_the_wheels():
    assert "Gemma3ForConditionalGeneration" in P.v0_only_architectures("0.8.0")
    assert "Gemma3ForConditionalGeneration" not in P.v0_only_architectures("0.8.1")
    assert "MambaForCausalLM" in P.v0_only_architectures("0.10.0")
    assert "MambaForCausalLM" not in P.v0_only_architectures("0.10.1")
    assert P.v0_only_architectures("0.11.0") == {"MotifForCausalLM"}
    assert P.v0_only_architectures("0.7.3") == P.v0_only_architectures("0.12.0") == frozenset()


# --- CUDA graphs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version, env, estimated, deducted, residue, logged", [
    ("0.6.6", None, False, False, False, False),     # V0: captured after the KV cache, never reserved
    ("0.17.0", {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "1"}, False, False, False, False),  # no estimator
    ("0.19.0", None, True, False, False, False),     # envs.py default "0" in 0.18/0.19
    ("0.18.0", {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "1"}, True, True, True, False),
    ("0.20.0", None, True, True, True, False),       # default "1" from 0.20.0
    ("0.26.0", None, True, True, True, False),       # profile_cudagraph_memory inside memory_profiling()
    ("0.27.0", None, True, True, False, True),       # moved out; logged peak activation includes it
    ("0.32.0", {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0"}, True, False, False, False),
])
def test_cudagraph_rule(version, env, estimated, deducted, residue, logged):
    r = P.cudagraph_rule(profile_for(version), env)
    assert (r.estimated, r.deducted, r.residue_double_counted, r.logged_peak_includes_graphs) == \
        (estimated, deducted, residue, logged)
    assert r.captured_after_kv and r.must_fit_headroom is (not deducted)
    assert not P.cudagraph_rule(profile_for(version), env, enforce_eager=True).must_fit_headroom


def test_profile_flag_agrees_with_the_rule():
    for version in ("0.8.5", "0.19.1", "0.20.0", "0.32.0", "0.33.0"):
        p = profile_for(version)
        assert p.cudagraph_estimate_subtracted is P.cudagraph_rule(p).deducted


@pytest.mark.parametrize("version, seqs, mnbt, spec, n", [
    ("0.6.6", 256, 8192, 0, 35),      # V0: [1, 2, 4] + 8 .. 256
    ("0.6.6", 100, 8192, 0, 16),      # up to 104, the first size >= 100
    ("0.8.5", 256, 2048, 0, 67),      # V1 0.8-0.9: [1, 2, 4] + range(8, 513, 8)
    ("0.8.5", 256, 100, 0, 15),       # <= max_num_batched_tokens
    ("0.10.2", 128, 2048, 0, 35),     # [1, 2, 4] + range(8, min(2 x 128, 512) + 1, 8)
    ("0.12.0", 256, 2048, 0, 51),     # [1, 2, 4] + range(8, 256, 8) + range(256, 513, 16)
    ("0.12.0", 128, 2048, 1, 35),     # 0.12 ignores speculative tokens: max 256 -> 3 + 31 + [256]
    ("0.13.0", 128, 2048, 1, 51),     # 0.13+: 2 x 128 x (1 + 1) = 512
    ("0.32.0", 256, 300, 0, 37),      # max capped at 300: 3 + 31 + [256, 272, 288]
])
def test_capture_sizes_by_release(version, seqs, mnbt, spec, n):
    assert len(P.cudagraph_capture_sizes(profile_for(version), seqs, mnbt, spec)) == n


def test_headroom_warning_when_graphs_are_not_reserved():
    """A100 80GB (85,094,039,552 B) at 0.9: 10 % = 7.93 GiB less a 0.41 GiB context is left for graphs."""
    total, ctx = 85_094_039_552, int(0.41 * GiB)
    kw = dict(total_bytes=total, gpu_memory_utilization=0.9, context_bytes=ctx)
    assert P.cudagraph_headroom_warning(profile_for("0.19.1"), cudagraph_bytes=2 * GiB, **kw) is None
    msg = P.cudagraph_headroom_warning(profile_for("0.19.1"), cudagraph_bytes=8 * GiB, **kw)
    assert msg and "0.19.1" in msg and "7.52 GiB" in msg      # 85,094,039,552 x 0.1 - 0.41 GiB
    assert P.cudagraph_headroom_warning(profile_for("0.19.1"), cudagraph_bytes=8 * GiB, enforce_eager=True,
                                        **kw) is None
    assert P.cudagraph_headroom_warning(profile_for("0.32.0"), cudagraph_bytes=8 * GiB, **kw) is None   # deducted
    assert P.cudagraph_headroom_warning(profile_for("0.32.0"), cudagraph_bytes=8 * GiB,
                                        env={"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0"}, **kw)
    # a busy GPU: what is free at start, not the total, bounds the headroom
    assert P.cudagraph_headroom_warning(profile_for("0.6.6"), cudagraph_bytes=2 * GiB,
                                        free_bytes=int(total * 0.9) + GiB, **kw)


# --- KV cache dtype ------------------------------------------------------------------------------

@pytest.mark.parametrize("version, expected", [
    # engine/arg_utils.py --kv-cache-dtype choices (before 0.8.5), config/cache.py CacheDType after
    ("0.4.2", "auto fp8"),
    ("0.6.3", "auto fp8 fp8_e5m2 fp8_e4m3"),
    ("0.10.2", "auto fp8 fp8_e4m3 fp8_e5m2 fp8_inc"),
    ("0.11.0", "auto bfloat16 fp8 fp8_e4m3 fp8_e5m2 fp8_inc"),
    ("0.19.0", "auto float16 bfloat16 fp8 fp8_e4m3 fp8_e5m2 fp8_inc fp8_ds_mla"),
    ("0.33.0", "auto float16 bfloat16 fp8 fp8_e4m3 fp8_e5m2 fp8_inc fp8_ds_mla nvfp4_ds_mla turboquant_k8v4 "
               "turboquant_4bit_nc turboquant_k3v4_nc turboquant_3bit_nc octave_k3v4 octave_k3v3 "
               "octave_k3v3_compact ultraquant_4bit int4_per_token_head int8_per_token_head fp8_per_token_head "
               "nvfp4 nvfp4_4over6"),
])
def test_kv_cache_dtypes_by_release(version, expected):
    assert P.kv_cache_dtypes(version) == set(expected.split())


@pytest.mark.parametrize("version, kv, model, refused", [
    ("0.32.0", "float16", "bfloat16", False),     # accepted and sized in 0.32
    ("0.33.0", "float16", "bfloat16", True),      # _reject_mismatched_float_kv_cache
    ("0.33.0", "bfloat16", "bfloat16", False),
    ("0.33.0", "bfloat16", "float32", True),
    ("0.33.0", "fp8", "bfloat16", False),
    ("0.32.0", "half", "float16", True),          # no release accepts these names
    ("0.32.0", "float32", "float32", True),
    ("0.32.0", "int8", "bfloat16", True),
    ("0.17.0", "float16", "float16", True),       # float16 from 0.18.0
    ("0.10.2", "bfloat16", "bfloat16", True),     # bfloat16 from 0.11.0
])
def test_kv_cache_dtype_validation(version, kv, model, refused):
    err = P.kv_cache_dtype_error(profile_for(version), kv, model)
    assert (err is not None) is refused, err


# --- RoPE scaling and the derived max_model_len -----------------------------------------------------

@pytest.mark.parametrize("version, flag, theta, overrides", [
    ("0.4.2", False, False, False), ("0.4.3", True, False, False), ("0.5.0", True, True, False),
    ("0.6.3", True, True, False), ("0.6.4", True, True, True), ("0.11.0", True, True, True),
    ("0.11.1", False, False, True), ("0.32.0", False, False, True), ("0.33.0", False, False, True),
])
def test_long_context_flags_by_release(version, flag, theta, overrides):
    """engine/arg_utils.py: --rope-scaling 0.4.3-0.11.0, --rope-theta 0.5.0-0.11.0, --hf-overrides 0.6.4+."""
    assert (P.has_rope_scaling_flag(version), P.has_rope_theta_flag(version), P.has_hf_overrides_flag(version)) == \
        (flag, theta, overrides)


@pytest.mark.parametrize("version, form, derived, error", [
    # --rope-scaling (0.4.3-0.11.0): merged into hf_overrides; yarn -> original 32768 x 4
    ("0.8.5", "flag", 131072, False),
    ("0.11.0", "flag", 131072, False),
    ("0.11.1", "flag", None, True),               # the flag is gone: "unrecognized arguments"
    ("0.32.0", "flag", None, True),
    # --hf-overrides '{"rope_scaling": ...}': original x factor up to 0.29; 0.30+ yarn is not scaled
    ("0.6.4", "rope_scaling", 131072, False),
    ("0.11.1", "rope_scaling", 131072, False),
    ("0.12.0", "rope_scaling", 131072, False),
    ("0.29.0", "rope_scaling", 131072, False),
    ("0.30.0", "rope_scaling", 40960, False),
    ("0.32.0", "rope_scaling", 40960, False),
    ("0.33.0", "rope_scaling", 40960, False),
    # --hf-overrides '{"rope_parameters": ...}': an unread attribute before 0.12
    ("0.11.0", "rope_parameters", 40960, False),
    ("0.12.0", "rope_parameters", 131072, False),
    ("0.29.0", "rope_parameters", 131072, False),
    ("0.32.0", "rope_parameters", 40960, False),
    # the 0.30+ way to serve 131072: raise max_position_embeddings in the same override
    ("0.32.0", "rope_scaling+mpe", 131072, False),
    ("0.6.3", "rope_scaling", None, True),        # no --hf-overrides before 0.6.4
])
def test_qwen3_8b_yarn_launch_by_release(version, form, derived, error):
    kw = {"flag": dict(rope_scaling=YARN),
          "rope_scaling": dict(hf_overrides={"rope_scaling": YARN}),
          "rope_parameters": dict(hf_overrides={"rope_parameters": dict(YARN, rope_theta=1000000)}),
          "rope_scaling+mpe": dict(hf_overrides={"rope_scaling": YARN, "max_position_embeddings": 131072}),
          }[form]
    r = rope_scaled_max_len(profile_for(version), QWEN3_8B, **kw)
    assert (r.error is not None) is error, r.error
    if not error:
        assert r.derived_len == derived
        refused, warning = P.max_len_refusal(version, asked=131072, derived=r)
        assert (refused is None) is (derived >= 131072)
        assert warning is None


def test_qwen3_8b_without_overrides_is_40960_everywhere():
    for version in ("0.8.5", "0.11.0", "0.12.0", "0.29.0", "0.32.0", "0.33.0"):
        r = rope_scaled_max_len(version, QWEN3_8B)
        assert (r.derived_len, r.default_len, r.key, r.factor) == (40960, 40960, "max_position_embeddings", 1.0)


@pytest.mark.parametrize("version, env, refused, warned", [
    ("0.32.0", None, True, False),
    ("0.32.0", {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}, False, True),
    ("0.32.0", {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": " True "}, False, True),    # strip().lower() in ("1", "true")
    ("0.32.0", {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "yes"}, True, False),
    ("0.5.4", {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}, False, True),          # envs.py from 0.5.4
    ("0.5.3", {"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}, True, False),
])
def test_allow_long_max_model_len(version, env, refused, warned):
    r = rope_scaled_max_len(version, QWEN3_8B)
    err, warn = P.max_len_refusal(version, asked=131072, derived=r, env=env)
    assert (err is not None, warn is not None) == (refused, warned)
    assert P.max_len_refusal(version, asked=40960, derived=r, env=env) == (None, None)
    # model_max_length allows a longer value without the variable
    assert P.max_len_refusal(version, asked=131072, derived=r, model_max_length=131072) == (None, None)


@pytest.mark.parametrize("version, rope, derived, error", [
    ("0.5.0", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, None, True),  # ["type"]
    ("0.5.0", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 131072, False),
    ("0.5.5", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 131072, False),
    ("0.6.3", {"type": "linear"}, None, True),                 # assert "factor" in rope_scaling
    ("0.6.4", {"rope_type": "linear"}, 40960, False),          # .get("factor", 1.0)
    ("0.6.4", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, None, True),
    ("0.10.0", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 131072, False),
    ("0.11.0", {"rope_type": "yarn", "factor": 4.0}, None, True),   # KeyError original_max_position_embeddings
    ("0.11.0", {"rope_type": "dynamic", "factor": 2.0}, 81920, False),
    ("0.32.0", {"rope_type": "dynamic", "factor": 2.0}, 81920, False),
    ("0.32.0", {"rope_type": "linear", "factor": None}, 40960, False),   # null factor -> 1.0 (0.18+)
    ("0.11.0", {"rope_type": "llama3", "factor": 8.0}, 40960, False),    # llama3 never scaled
])
def test_rope_dict_edge_cases_by_release(version, rope, derived, error):
    """Overrides through --hf-overrides: applied after patch_rope_scaling before 0.10.0 (so a "type"-only
    dict fails), before it from 0.10.0 (transformers_utils/config.py::get_config)."""
    kw = {"hf_overrides": {"rope_scaling": rope}} if P.has_hf_overrides_flag(version) else {"rope_scaling": rope}
    r = rope_scaled_max_len(version, QWEN3_8B, **kw)
    assert (r.error is not None) is error, r.error
    if not error:
        assert r.derived_len == derived


def test_rope_types_in_real_configs():
    """Configs that carry their own rope dict (tests/data/models): what each release derives."""
    def load(name):
        return json.loads((MODELS / name / "config.json").read_text())

    phi3 = load("microsoft__Phi-3-mini-128k-instruct")      # longrope, mpe 131072, original 4096
    r = rope_scaled_max_len("0.32.0", phi3)
    assert (r.derived_len, r.key, r.default_len) == (131072, "max_position_embeddings", 4096)
    assert rope_scaled_max_len("0.11.0", phi3).default_len == 131072    # longrope default from 0.11.1
    dsv2 = load("deepseek-ai__DeepSeek-V2-Lite")             # yarn factor 40, original 4096, mpe 163840
    assert rope_scaled_max_len("0.29.0", dsv2).derived_len == 4096 * 40 == 163840
    assert rope_scaled_max_len("0.32.0", dsv2).derived_len == 163840
    gemma3 = load("google__gemma-3-4b-it")                   # linear factor 8, skipped for gemma3 from 0.8.0
    g = rope_scaled_max_len("0.32.0", gemma3)
    assert (g.derived_len, g.factor) == (131072, 1.0)
    llama = load("meta-llama__Llama-3.1-8B-Instruct")        # llama3: not scaled
    assert rope_scaled_max_len("0.8.5", llama).derived_len == rope_scaled_max_len("0.33.0", llama).derived_len == 131072


def test_rope_override_on_a_multimodal_root_config_is_noted():
    cfg = json.loads((MODELS / "Qwen__Qwen3-VL-8B-Instruct" / "config.json").read_text())
    r = rope_scaled_max_len("0.32.0", cfg, hf_overrides={"rope_scaling": YARN})
    assert any("text_config" in n for n in r.notes)
