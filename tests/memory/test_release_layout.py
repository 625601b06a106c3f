"""Each release's KV layout and memory rules as kvfit.plan.evaluate applies them (issue 13 items 3 and 4).

Expected values are worked out from the named release's code (`pip download --no-deps --only-binary :all:
vllm==X`, the file inside its vllm/ package), with the model's config values from tests/data/models.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.errors import BadFlag
from kvfit.gpu.catalog import lookup
from kvfit.gpu.model import Gpu
from kvfit.kv.capacity import capacity
from kvfit.memory import profiles as P
from kvfit.memory.overhead import CUDA_CONTEXT_BYTES, forward_peak_bytes
from kvfit.memory.profiles import profile_for
from kvfit.plan.evaluate import Model, evaluate, kv_options, request_context, resolve
from kvfit.settings import Settings

MiB, GiB = 1 << 20, 1 << 30
MODELS = Path(__file__).resolve().parent.parent / "data" / "models"
A100, H100, T4 = lookup("A100 80GB"), lookup("H100"), lookup("T4")


def model(name: str) -> Model:
    cfg = json.loads((MODELS / name / "config.json").read_text())
    return Model(name, "test", name, normalize(cfg), None, cfg)


def run(name: str, version: str, gpu=A100, engine: str | None = None, **kw):
    m = model(name)
    return evaluate(m, gpu, Settings(**kw), profile_for(version, gpu=gpu, engine=engine))


# --- sliding windows per release -----------------------------------------------------------------

def test_v0_charges_every_layer_as_full_attention():
    """0.6.6 worker/cache_engine.py::get_cache_block_size: num_attention_layers x block_size x
    (num_kv_heads x head_size) x 2 (K and V) x dtype bytes, no window discount. gemma-2-9b-it: 42 layers,
    8 KV heads of 256."""
    res = run("google__gemma-2-9b-it", "0.6.6", max_model_len=8192)
    assert res.profile.engine == "V0"
    assert res.layout.bytes_per_block == 42 * 16 * (8 * 256) * 2 * 2 == 5_505_024
    assert len(res.layout.groups) == 1


@pytest.mark.parametrize("version, layers_per_block", [
    ("0.8.2", 34),     # v1/worker/gpu_model_runner.py::get_kv_cache_spec: every decoder layer FullAttentionSpec
    ("0.8.3", 34),     # kv_cache_utils.py::unify_hybrid_kv_cache_specs: SlidingWindowSpec -> FullAttentionSpec
    ("0.9.0", 34),
    ("0.9.1", 5),      # hybrid manager: group size = the 5 full layers; 29 sliding -> 6 groups (1 padding layer)
    ("0.12.0", 5),     # 29 < 5 x 1.25 is false: still the smallest
    ("0.32.0", 5),
])
def test_v1_sliding_layout_by_release(version, layers_per_block):
    """gemma-3-4b-it: 34 layers, every 6th full (5 full, 29 sliding), 4 KV heads of 256 (transformers'
    Gemma3TextConfig defaults where the config leaves them out): one layer's page is 16 x 4 x 256 x 2 x 2 B."""
    res = run("google__gemma-3-4b-it", version, max_model_len=32768)
    page = 16 * 4 * 256 * 2 * 2
    assert res.layout.bytes_per_block == layers_per_block * page
    assert len(res.layout.groups) == (1 if layers_per_block == 34 else 7)


def test_v1_080_has_no_sliding_spec_and_083_keeps_all_sliding_models():
    """Mistral-7B-v0.1: every layer slides (window 4096). 0.8.2 allocates full attention (blocks for the whole
    length); 0.8.3 unifies only when full layers exist, so the sliding spec stays: per request
    cdiv(min(4096 - 1 + max_num_batched_tokens, L), 16) + 1 blocks (kv_cache_interface.py, 0.8.3)."""
    full = run("mistralai__Mistral-7B-Instruct-v0.1", "0.8.2", max_model_len=32768)
    sliding = run("mistralai__Mistral-7B-Instruct-v0.1", "0.8.3", max_model_len=32768)
    assert full.capacity.blocks_per_request == 32768 // 16
    mnbt = sliding.resolved.max_num_batched_tokens
    assert sliding.capacity.blocks_per_request == -(-min(4095 + mnbt, 32768) // 16) + 1


@pytest.mark.parametrize("version, batches", [("0.25.0", 1), ("0.26.0", 2)])
def test_sliding_window_in_flight_tokens(version, batches):
    """0.25 SlidingWindowSpec.max_memory_usage_bytes: min(window - 1 + max_num_batched_tokens, L);
    0.26 config/vllm.py::max_in_flight_tokens = max_concurrent_batches (2 with async scheduling) x mnbt."""
    m = model("google__gemma-3-4b-it")
    p = profile_for(version)
    s = Settings(max_model_len=32768).validate()
    r = resolve(m.arch, s, A100, p, m.config)
    ctx = request_context(r, s, m.arch, profile=p)
    assert ctx.max_in_flight_tokens == batches * r.max_num_batched_tokens
    res = evaluate(m, A100, s, p)
    sliding = next(g for g in res.layout.groups if g.spec.kind == "sliding")
    assert sliding.spec.blocks_per_request(ctx) == -(-min(1023 + batches * r.max_num_batched_tokens, 32768) // 16) + 1


def test_chunked_local_attention_is_full_before_0_10():
    """ChunkedLocalAttentionSpec is new in 0.10.0's v1/kv_cache_interface.py: before, Llama 4's chunked
    layers take FullAttentionSpec (one uniform group); 0.10.0 groups them apart."""
    old = run("meta-llama__Llama-4-Scout-17B-16E-Instruct", "0.9.2", gpu=lookup("H200"), max_model_len=32768,
              tensor_parallel_size=4)
    new = run("meta-llama__Llama-4-Scout-17B-16E-Instruct", "0.10.0", gpu=lookup("H200"), max_model_len=32768,
              tensor_parallel_size=4)
    assert len(old.layout.groups) == 1
    assert len(new.layout.groups) > 1


def test_group_size_ratio_by_release():
    """kv_cache_utils.py: group size = the smallest type's layer count (0.9.1-0.11.x), the largest when it
    is below 1.25x (0.12-0.17) or 1.5x (0.18+) the smallest. 12 sliding + 16 full layers (hand-built)."""
    from kvfit.arch.model import AttentionLayer
    base = model("google__gemma-3-4b-it").arch
    layers = tuple(AttentionLayer(i, "sliding" if i < 12 else "full", 4, 256, 256, window=1024) for i in range(28))
    arch = replace(base, layers=layers, num_hidden_layers=28)
    m = Model("hand-built", "test", "", arch, None, None)
    sizes = {}
    for version in ("0.11.0", "0.12.0", "0.18.0"):
        res = evaluate(m, A100, Settings(max_model_len=8192), profile_for(version))
        sizes[version] = res.layout.bytes_per_block // (16 * 4 * 256 * 2 * 2)
    # 16 < 12 x 1.25 = 15 is false -> 12; 16 < 12 x 1.5 = 18 -> 16
    assert sizes == {"0.11.0": 12, "0.12.0": 12, "0.18.0": 16}


# --- MLA alignment in V0 0.7.2-0.7.3 ---------------------------------------------------------------

@pytest.mark.parametrize("version, env, kv, entry, dtype_bytes", [
    ("0.7.1", {}, "auto", 576, 2),                                   # no _align_cache yet
    ("0.7.3", {}, "auto", 640, 2),                                   # align_to_256bytes(576, bf16) = 640
    ("0.7.3", {}, "fp8", 640, 1),                                    # aligned in the model dtype, stored as fp8
    ("0.7.3", {"VLLM_CUDA_MEM_ALIGN_KV_CACHE": "0"}, "auto", 576, 2),
    ("0.8.0", {"VLLM_USE_V1": "0"}, "auto", 576, 2),                 # gone from 0.8.0's cache_engine.py
])
def test_v0_mla_alignment(version, env, kv, entry, dtype_bytes):
    """0.7.3 worker/cache_engine.py::get_cache_block_size with CacheEngine._align_cache (use_mla, CUDA,
    VLLM_CUDA_MEM_ALIGN_KV_CACHE default "1"): DeepSeek-V2-Lite, 27 layers, kv_lora_rank 512 + rope 64."""
    res = run("deepseek-ai__DeepSeek-V2-Lite", version, engine="V0", max_model_len=8192, kv_cache_dtype=kv,
              vllm_env=tuple(env.items()))
    assert res.profile.engine == "V0"
    assert res.layout.bytes_per_block == 27 * 16 * entry * dtype_bytes


# --- the capacity check and the token figure ---------------------------------------------------------

@pytest.mark.parametrize("version, fits", [("0.28.0", True), ("0.29.0", False)])
def test_null_block_in_the_check_from_0_29(version, fits):
    """kv_cache_utils.py 0.29.0: "Reserve the null block BlockPool permanently holds back, so the check ...
    plan against usable blocks". A budget of exactly one request's blocks fits before, not after."""
    m = model("meta-llama__Llama-3.1-8B-Instruct")
    probe = evaluate(m, A100, Settings(max_model_len=8192, kv_cache_memory_bytes=GiB), profile_for(version))
    need = probe.capacity.blocks_per_request * probe.layout.bytes_per_block
    res = evaluate(m, A100, Settings(max_model_len=8192, kv_cache_memory_bytes=need), profile_for(version))
    assert res.capacity.fits is fits


def test_capacity_null_block_flag():
    m = model("meta-llama__Llama-3.1-8B-Instruct")
    res = evaluate(m, A100, Settings(max_model_len=8192, kv_cache_memory_bytes=GiB), profile_for("0.32.0"))
    ctx = request_context(res.resolved, res.settings, m.arch)
    need = res.capacity.blocks_per_request * res.layout.bytes_per_block
    assert capacity(res.layout, ctx, need, null_block=False).fits
    assert not capacity(res.layout, ctx, need, null_block=True).fits


@pytest.mark.parametrize("version", ["0.8.5", "0.9.0", "0.10.2", "0.20.0", "0.32.0"])
def test_token_figure_in_the_result(version):
    """"GPU KV cache size": num_blocks x 16 for a uniform model through 0.20.0 (kv_cache_utils.py,
    _get_kv_cache_config_uniform_type / the groups path with one group), int(concurrency x L) from 0.20.1."""
    res = run("meta-llama__Llama-3.1-8B-Instruct", version, max_model_len=8192, kv_cache_memory_bytes=10 * GiB)
    blocks = 10 * GiB // (32 * 16 * 8 * 128 * 2 * 2)
    assert res.capacity.num_blocks == blocks
    if version == "0.32.0":
        assert res.capacity.kv_cache_tokens == int(blocks / 512 * 8192)
    else:
        assert res.capacity.kv_cache_tokens == blocks * 16


# --- memory terms ----------------------------------------------------------------------------------

def test_v0_cpu_offload_adds_one_layer_to_the_peak():
    """0.7.3 model_executor/models/utils.py::maybe_offload_to_cpu: each offloaded decoder layer's
    state_dict is copied back with v.to(device) for its forward, so the profile holds one layer's
    parameters beside its activations. Llama-3.1-8B layer: q, o 4096x4096; k, v 1024x4096; gate, up, down
    14336x4096; two norms of 4096 = 218,112,000 bf16 parameters."""
    layer = (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 14336 * 4096 + 2 * 4096) * 2
    assert layer == 436_224_000
    kw = dict(max_model_len=8192, max_num_seqs=1)
    plain = run("meta-llama__Llama-3.1-8B-Instruct", "0.7.3", **kw)
    off = run("meta-llama__Llama-3.1-8B-Instruct", "0.7.3", cpu_offload_gb=4, **kw)
    assert off.memory.activation_bytes - plain.memory.activation_bytes == layer
    v1 = run("meta-llama__Llama-3.1-8B-Instruct", "0.9.2", cpu_offload_gb=4, **kw)
    v1_plain = run("meta-llama__Llama-3.1-8B-Instruct", "0.9.2", **kw)
    assert v1.memory.activation_bytes == v1_plain.memory.activation_bytes     # UVA views, no copy


@pytest.mark.parametrize("version, chunk", [("0.5.2", None), ("0.5.3", 32768), ("0.13.0", 32768),
                                            ("0.14.0", 16384), ("0.17.0", 16384), ("0.18.0", None)])
def test_fused_moe_chunk(version, chunk):
    """envs.py VLLM_FUSED_MOE_CHUNK_SIZE: "32768" from 0.5.3, str(16 * 1024) from 0.14, gone in 0.18
    (fused_moe.py: M = min(num_tokens, CHUNK_SIZE))."""
    assert P.fused_moe_chunk_tokens(profile_for(version)) == chunk
    if chunk:
        assert P.fused_moe_chunk_tokens(profile_for(version), {"VLLM_FUSED_MOE_CHUNK_SIZE": "4096"}) == 4096
    arch = model("Qwen__Qwen3-30B-A3B").arch          # 128 experts, top-8, moe_intermediate 768, hidden 2048
    t = 65536
    got = forward_peak_bytes(arch, t, 2, 1, chunk)
    m = min(t, chunk) if chunk else t
    assert got == int((m * 8 * (3 * 768 + 2048) + t * 4 * 2048) * 2)


def test_033_terms_reach_the_evaluation():
    """Llama-3.1-8B on an H100, serve defaults (8192 tokens, 1024 rows, vocab 128,256): 0.33 adds the warm-up
    sampler pass, 12 B per logit with FlashInfer's sampler (v1/worker/gpu/model_runner.py::_dummy_sampler_run),
    and takes the cuBLAS workspace (32 MiB from capability 9.0) out of the charged reserve
    (v1/worker/gpu_worker.py::init_device)."""
    a = run("meta-llama__Llama-3.1-8B-Instruct", "0.32.0", gpu=H100, max_model_len=8192)
    b = run("meta-llama__Llama-3.1-8B-Instruct", "0.33.0", gpu=H100, max_model_len=8192)
    assert (a.resolved.max_num_batched_tokens, a.resolved.max_num_seqs) == (8192, 1024)
    assert b.memory.activation_bytes - a.memory.activation_bytes == 1024 * 128256 * 12
    assert a.memory.non_torch_bytes - b.memory.non_torch_bytes == 32 * MiB


def test_gdn_checkpoints_reach_the_layout():
    """0.33 on an H100 (FlashInfer GDN prefill, capability 9.0): the hybrid block alignment becomes
    lcm(alignment, 64) and each GDN state group needs one more block (kv_cache_interface.py MambaSpec
    num_prefill_checkpoint_blocks=1); 0.32 and an A100 do not."""
    h33 = run("Qwen__Qwen3-Next-80B-A3B-Instruct", "0.33.0", gpu=H100, max_model_len=32768,
              tensor_parallel_size=4)
    h32 = run("Qwen__Qwen3-Next-80B-A3B-Instruct", "0.32.0", gpu=H100, max_model_len=32768,
              tensor_parallel_size=4)
    a33 = run("Qwen__Qwen3-Next-80B-A3B-Instruct", "0.33.0", gpu=A100, max_model_len=32768,
              tensor_parallel_size=4)
    assert h33.layout.attention_block_size % 64 == 0

    def gdn(res):
        return [g.spec for g in res.layout.groups if g.spec.kind == "mamba" and g.spec.mamba_type == "gdn"]

    assert gdn(h33) and all(s.checkpoint_blocks == 1 for s in gdn(h33))
    assert gdn(h32) and all(s.checkpoint_blocks == 0 for s in gdn(h32))
    assert a33.layout.attention_block_size == h32.layout.attention_block_size
    assert gdn(a33) and all(s.checkpoint_blocks == 0 for s in gdn(a33))


@pytest.mark.parametrize("version, kv, dtype", [("0.33.0", "float16", "bfloat16"), ("0.10.2", "bfloat16", "auto"),
                                               ("0.17.0", "float16", "auto")])
def test_kv_cache_dtype_refused_by_the_release(version, kv, dtype):
    """0.33 config/vllm.py::_reject_mismatched_float_kv_cache; bfloat16 is a CacheDType from 0.11.0,
    float16 from 0.18.0 (config/cache.py)."""
    with pytest.raises(BadFlag) as e:
        run("meta-llama__Llama-3.1-8B-Instruct", version, max_model_len=8192, kv_cache_dtype=kv, dtype=dtype)
    assert e.value.flag == "kv_cache_dtype"


def test_kv_cache_dtype_refused_exit_2(kvfit_invoke):
    r = kvfit_invoke(["check", "meta-llama/Llama-3.1-8B-Instruct", "--gpu", "H100", "--vllm-version", "0.33.0",
                      "--kv-cache-dtype", "float16", "--offline"])
    assert r.exit_code == 2
    assert "_reject_mismatched_float_kv_cache" in r.err + r.out


def test_gb10_batch_tier():
    """engine/arg_utils.py::get_batch_defaults: GB10 (capability 12.1) stays on the small tier (0.33
    is_device_capability((12, 1)); before, NVML's memory query raises there and device_memory = 0)."""
    gb10 = Gpu("NVIDIA GB10", int(119.7 * GiB), (12, 1), source="test")
    disc = Gpu("NVIDIA RTX PRO 6000 Blackwell", int(119.7 * GiB), (12, 0), source="test")
    for version in ("0.32.0", "0.33.0"):
        a = run("meta-llama__Llama-3.1-8B-Instruct", version, gpu=gb10, max_model_len=8192)
        b = run("meta-llama__Llama-3.1-8B-Instruct", version, gpu=disc, max_model_len=8192)
        assert (a.resolved.max_num_batched_tokens, a.resolved.max_num_seqs) == (2048, 256)
        assert (b.resolved.max_num_batched_tokens, b.resolved.max_num_seqs) == (8192, 1024)


def test_cudagraph_headroom_note_when_graphs_are_not_deducted():
    """Before 0.20 graphs are captured after the KV cache is sized to total x utilization
    (v1/worker/gpu_worker.py::compile_or_warm_up_model) and are not reserved: at 0.995 of an A100 80GB only
    0.40 GiB is left, less the 0.41 GiB CUDA context, so the capture does not fit. 0.32 deducts the estimate
    (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default "1") and says nothing; --enforce-eager captures none."""
    kw = dict(max_model_len=8192, gpu_memory_utilization=0.995)
    old = run("meta-llama__Llama-3.1-8B-Instruct", "0.19.1", **kw)
    assert any("CUDA graphs" in n for n in old.notes)
    assert old.memory.cudagraph_bytes == 0
    new = run("meta-llama__Llama-3.1-8B-Instruct", "0.32.0", **kw)
    assert not any("CUDA graphs" in n for n in new.notes) and new.memory.cudagraph_bytes > 0
    eager = run("meta-llama__Llama-3.1-8B-Instruct", "0.19.1", enforce_eager=True, **kw)
    assert not any("CUDA graphs" in n for n in eager.notes)
    fits = run("meta-llama__Llama-3.1-8B-Instruct", "0.19.1", max_model_len=8192, gpu_memory_utilization=0.9)
    assert not any("CUDA graphs" in n for n in fits.notes)
    off = run("meta-llama__Llama-3.1-8B-Instruct", "0.32.0",
              vllm_env=(("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "0"),), **kw)
    assert off.memory.cudagraph_bytes == 0 and any("CUDA graphs" in n for n in off.notes)


def test_policy_context_follows_the_release():
    """0.33 creates cuBLAS handles before vLLM measures free memory (gpu_worker.py::init_device): a probed
    H100 starts a smaller utilization once those 32 MiB are gone."""
    from kvfit.plan.goals import Goals
    from kvfit.plan.policy import policy_for

    total = H100.total_bytes
    free = int(0.90 * total) + CUDA_CONTEXT_BYTES + 16 * MiB      # 0.90 starts beside 0.32's context only
    g = replace(H100, free_bytes=free, source="NVML (test)")
    assert policy_for(g, Goals(), "cuda", profile_for("0.32.0")).ceiling == 0.90
    assert policy_for(g, Goals(), "cuda", profile_for("0.33.0")).ceiling == 0.89
    assert policy_for(g, Goals(), "cuda").ceiling == 0.90


@pytest.mark.parametrize("version, fits", [("0.13.0", True), ("0.15.0", False), ("0.17.0", True)])
def test_pipeline_parallel_whole_model_check(version, fits):
    """get_kv_cache_configs: 0.12-0.13 check each worker with its own layers; 0.14-0.16 check the global
    groups (all 32 layers of Llama-3.1-8B) against min(available_memory); 0.17+ per worker again
    (projected groups). A budget of one request for the 16 layers of a stage fits only per stage."""
    m = model("meta-llama__Llama-3.1-8B-Instruct")
    L = 8192
    stage_need = 16 * 16 * 8 * 128 * 2 * 2 * (L // 16)           # 16 layers x page x blocks for L
    res = evaluate(m, A100, Settings(max_model_len=L, pipeline_parallel_size=2, kv_cache_memory_bytes=stage_need),
                   profile_for(version))
    assert res.layout.bytes_per_block == 16 * 16 * 8 * 128 * 2 * 2
    assert res.capacity.fits is fits
    if not fits:
        assert res.capacity.needed_bytes == 2 * stage_need
        assert res.capacity.max_model_len_fit == L // 2


@pytest.mark.parametrize("version", ["0.6.6", "0.11.0", "0.32.0"])
def test_kv_heads_replicated_beyond_tp(version):
    """config.py (config/model.py)::get_num_kv_heads: max(1, total_num_kv_heads // tp) in every release read
    (0.3.3, 0.5.0, 0.6.6, 0.8.5, 0.11.0): Qwen3-30B-A3B's 4 KV heads cost one head per rank at TP 4 and
    at TP 8 (48 layers x 16 x 1 x 128 x 2 x 2 B)."""
    per = {}
    for tp in (4, 8):
        res = run("Qwen__Qwen3-30B-A3B", version, max_model_len=8192, tensor_parallel_size=tp)
        per[tp] = res.layout.bytes_per_block
    assert per[4] == per[8] == 48 * 16 * 1 * 128 * 2 * 2


# --- the profile run per release: model runner and sampler ------------------------------------------

@pytest.mark.parametrize("version, arch, moe, env, v2", [
    ("0.21.0", "LlamaForCausalLM", False, {}, False),                       # VLLM_USE_V2_MODEL_RUNNER default "0"
    ("0.21.0", "LlamaForCausalLM", False, {"VLLM_USE_V2_MODEL_RUNNER": "1"}, True),
    ("0.22.0", "Qwen3ForCausalLM", False, {}, True),                        # DEFAULT_V2_MODEL_RUNNER_ARCHITECTURES
    ("0.22.0", "LlamaForCausalLM", False, {}, False),
    ("0.24.0", "LlamaForCausalLM", False, {}, True),
    ("0.26.0", "LlamaForCausalLM", False, {}, True),                        # any non-MoE model
    ("0.26.0", "Qwen3MoeForCausalLM", True, {}, False),
    ("0.30.0", "Qwen3MoeForCausalLM", True, {}, True),
    ("0.31.0", "LlamaForCausalLM", False, {"VLLM_USE_V2_MODEL_RUNNER": "0"}, False),
])
def test_model_runner_v2_by_release(version, arch, moe, env, v2):
    """config/vllm.py::use_v2_model_runner and _is_default_v2_model_runner_model, per release read."""
    assert P.model_runner_v2(profile_for(version), architectures=(arch,), is_moe=moe, env=env) is v2


@pytest.mark.parametrize("version, env, cc, used", [
    ("0.10.2", {}, (8, 9), False),                                # flashinfer-python only an optional extra
    ("0.11.2", {}, (8, 9), False),                                # installed, opt-in
    ("0.11.2", {"VLLM_USE_FLASHINFER_SAMPLER": "1"}, (8, 9), True),
    ("0.21.0", {}, (8, 9), True),                                 # envs.py default True
    ("0.21.0", {"VLLM_USE_FLASHINFER_SAMPLER": "0"}, (8, 9), False),
    ("0.21.0", {}, (7, 5), False),                                # FlashInferBackend: capability 8.0-12.1
])
def test_flashinfer_sampler_by_release(version, env, cc, used):
    assert P.flashinfer_sampler(profile_for(version), compute_capability=cc, env=env) is used


def test_v1_runner_profile_peak_is_the_larger_of_forward_and_sampler():
    """v1/worker/gpu_model_runner.py::profile_run (0.15): _dummy_run's intermediates are freed before
    _dummy_sampler_run(last_hidden_states), so the peak is max(forward, [T, h] hidden states + sampler).
    Llama-3-8B, LLM class on an A100 80GB: T = 8192 tokens, R = 256 rows, vocab 128,256."""
    from kvfit.memory.overhead import (V1_RUNNER_NON_TORCH_BYTES, V1_RUNNER_SAMPLER_BYTES_PER_LOGIT)
    res = run("meta-llama__Meta-Llama-3-8B-Instruct", "0.15.0", entrypoint="llm", max_model_len=8192)
    assert (res.resolved.max_num_batched_tokens, res.resolved.max_num_seqs) == (8192, 256)
    forward = 8192 * (3 * 14336 + 4 * 4096) * 2
    sampler_side = 8192 * 4096 * 2 + 256 * 128256 * V1_RUNNER_SAMPLER_BYTES_PER_LOGIT
    assert sampler_side > forward
    assert res.memory.activation_bytes == sampler_side
    assert res.memory.non_torch_bytes == V1_RUNNER_NON_TORCH_BYTES
    # FlashInfer's sampler (opted in): 14 B per logit, no sort
    fi = run("meta-llama__Meta-Llama-3-8B-Instruct", "0.15.0", entrypoint="llm", max_model_len=8192,
             vllm_env=(("VLLM_USE_FLASHINFER_SAMPLER", "1"),))
    assert fi.memory.activation_bytes == max(forward, 8192 * 4096 * 2 + 256 * 128256 * 14)


# --- re-checking a log: the token figure each release logs ------------------------------------------

@pytest.mark.parametrize("version, name, groups", [
    ("0.8.5", "meta-llama__Llama-3.1-8B-Instruct", 1),      # num_blocks x block_size
    ("0.9.2", "google__gemma-3-4b-it", 7),                   # num_blocks // 7 groups x block_size
])
def test_recheck_budget_from_the_logged_token_figure(version, name, groups):
    """logs/recheck.py::_budget reads "GPU KV cache size: N tokens" back into blocks the way the release
    wrote it (v1/core/kv_cache_utils.py: 0.8.x num_blocks x block_size; 0.9.1-0.20.0
    num_blocks // len(groups) x min block size)."""
    from kvfit.logs.parse import LogFacts
    from kvfit.logs.recheck import _budget

    res = run(name, version, max_model_len=8192, kv_cache_memory_bytes=4 * GiB)
    assert len(res.layout.groups) == groups
    blocks = res.capacity.num_blocks
    logged = res.capacity.kv_cache_tokens
    assert logged == blocks // groups * 16
    lo, hi, where, exact = _budget(LogFacts(kv_cache_tokens=logged, max_model_len=8192), res, res.profile)
    bpb = res.layout.bytes_per_block
    assert lo <= blocks * bpb <= hi
    assert exact is (groups == 1)
    if groups == 1:
        assert (lo, hi) == (blocks * bpb, (blocks + 1) * bpb - 1)
    else:
        assert (lo, hi) == (logged // 16 * groups * bpb, (logged // 16 * groups + groups) * bpb - 1)


def test_offload_split_of_absurd_sizes_is_a_config_error():
    """A fuzz-found crash: parameter sizes near the float limit overflowed the running total of
    --cpu-offload-gb's split (int(inf)); it is refused as a config error (exit 2)."""
    from kvfit.errors import ConfigError
    from kvfit.memory.weights import _offload_split

    arch = model("meta-llama__Llama-3.1-8B-Instruct").arch
    with pytest.raises(ConfigError):
        _offload_split(1e308, 10, 1 << 62, arch, 1)
    assert _offload_split(436_224_000, 32, 1, arch, 1) > 0
