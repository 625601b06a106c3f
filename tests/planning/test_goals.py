"""The planner (kvfit.plan: goals, policy, search, planner, alternatives) and the weight variants, with numbers
derived here from the architectures (Orpheus 3B: 28 layers x 8 KV heads x head_dim 128; Llama 3.1 70B:
80 x 8 x 128) and the GPU catalog's totals, not read back from kvfit's output."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from kvfit.app.inputs import catalog_gpus, load_model as _load
from kvfit.errors import BadInput
from kvfit.gpu.catalog import lookup
from kvfit.gpu.model import Gpu
from kvfit.memory.overhead import CUDA_CONTEXT_BYTES
from kvfit.memory.profiles import profile_for
from kvfit.memory.variants import four_bit_checkpoint
from kvfit.memory.weights import estimate_inventory
from kvfit.plan.goals import Goals, Headroom, judge, parse_headroom
from kvfit.plan.planner import plan
from kvfit.plan.policy import UNPROBED_CEILING, policy_for
from kvfit.settings import Settings

from .conftest import GiB, MiB, ORPHEUS

P = profile_for("0.32.0")
ORPHEUS_TOKEN = 2 * 28 * 8 * 128 * 2          # K and V, 28 layers, 8 KV heads, head_dim 128, bf16
ORPHEUS_BLOCK = 16 * ORPHEUS_TOKEN             # 1,835,008 B
ORPHEUS_PARAMS = 3_300_867_072
ORPHEUS_EMBED = 156_940 * 3072                 # tied: the only embedding matrix
ROTARY = 131072 * 128 * 2                      # vLLM's cos/sin cache, bf16
RTX4090_TOTAL = 25_394_413_568                 # the catalog's CUDA total for the RTX 4090
H = 256 * MiB                                  # kvfit's default headroom


def load_model(ref, revision, offline):
    return _load(ref, revision, offline)[0]


def check(model, gpu, s, profile, goals, headroom=H):
    return judge(model, gpu, s, profile, goals, headroom)


@pytest.fixture(scope="module")
def orpheus():
    return load_model(ORPHEUS, None, True)


@pytest.fixture(scope="module")
def rtx4090():
    return lookup("RTX 4090")


def test_catalog_total_is_what_these_tests_assume(rtx4090):
    assert rtx4090.total_bytes == RTX4090_TOTAL


# --- concurrency: N full-length sequences beside vLLM's null block ------------------------------------------

def test_pinned_kv_budget_holds_exactly_n_sequences(orpheus, rtx4090):
    per_request = 8192 // 16
    exact = (8 * per_request + 1) * ORPHEUS_BLOCK
    goals = Goals(context=8192, concurrency=8)
    s = Settings(max_model_len=8192, kv_cache_memory_bytes=exact)
    c = check(orpheus, rtx4090, s, P, goals)
    assert c.resident == 8 and c.meets, c.unmet
    assert c.kv_needed_bytes == exact
    short = check(orpheus, rtx4090, replace(s, kv_cache_memory_bytes=exact - 1), P, goals)
    assert short.resident == 7 and not short.meets
    assert any("holds 7 sequence" in u for u in short.reasons)


def test_headroom_comes_off_the_kv_cache_with_a_utilization(orpheus, rtx4090):
    s = Settings(max_model_len=8192, gpu_memory_utilization=0.5)
    for h in (0, 256 * MiB, 2 * GiB):
        c = check(orpheus, rtx4090, s, P, Goals(), h)
        avail = c.result.memory.kv_available_bytes
        assert c.resident == ((avail - h) // ORPHEUS_BLOCK - 1) // 512
        assert c.resident_exact == (avail // ORPHEUS_BLOCK - 1) // 512
        assert c.headroom_bytes == h


def test_max_num_seqs_below_the_concurrency_goal_is_unmet(orpheus, rtx4090):
    c = check(orpheus, rtx4090, Settings(max_model_len=2048, max_num_seqs=4), P, Goals(concurrency=8))
    assert not c.meets and any("max_num_seqs 4 caps" in u for u in c.reasons)


def test_context_goal_longer_than_the_launch(orpheus, rtx4090):
    c = check(orpheus, rtx4090, Settings(max_model_len=4096), P, Goals(context=8192))
    assert any("below the context goal 8,192" in u for u in c.reasons)
    pl = plan(orpheus, rtx4090, Settings(max_model_len=4096), P, Goals(context=8192))
    assert pl.recommended is not None and pl.recommended.check.max_model_len == 8192


# --- budgets: --max-vram, free memory, the unprobed ceiling ------------------------------------------------

def test_max_vram_is_ceil_of_total_times_utilization(orpheus, rtx4090):
    goals = Goals(context=2048, max_vram_bytes=9 * 10**9)
    assert policy_for(rtx4090, goals).ceiling == 0.35               # floor(9e9 / 25.39e9 * 100) / 100
    at35 = check(orpheus, rtx4090, Settings(max_model_len=2048, gpu_memory_utilization=0.35), P, goals)
    assert at35.footprint_bytes == math.ceil(RTX4090_TOTAL * 0.35) <= 9 * 10**9
    at36 = check(orpheus, rtx4090, Settings(max_model_len=2048, gpu_memory_utilization=0.36), P, goals)
    assert at36.footprint_bytes == math.ceil(RTX4090_TOTAL * 0.36) > 9 * 10**9
    assert any("over the" in u for u in at36.reasons)


def test_free_memory_caps_every_recommendation(orpheus):
    free = 10 * GiB
    gpu = Gpu("NVIDIA GeForce RTX 4090", RTX4090_TOTAL, (8, 9), free_bytes=free, used_bytes=RTX4090_TOTAL - free,
              source="NVML")
    top = policy_for(gpu, Goals()).ceiling
    # vLLM's own CUDA context takes its share of the free memory before vLLM measures it
    assert top == math.floor((free - CUDA_CONTEXT_BYTES) / RTX4090_TOTAL * 100) / 100 == 0.40
    pl = plan(orpheus, gpu, Settings(max_model_len=8192), P, Goals(context=8192, concurrency=2))
    assert not pl.as_given.meets                         # 0.92 of the card is more than is free
    assert any("free memory" in u for u in pl.as_given.reasons)
    rec = pl.recommended
    assert rec is not None and rec.meets
    assert rec.check.utilization <= top
    assert math.ceil(RTX4090_TOTAL * rec.check.utilization) <= free
    for o in pl.alternatives:
        if o.requires is None and o.check.settings.kv_cache_memory_bytes is None and o.meets:
            assert math.ceil(RTX4090_TOTAL * o.check.utilization) <= free, o.label


def test_unprobed_gpus_are_never_asked_for_more_than_095(orpheus, rtx4090):
    pl = plan(orpheus, rtx4090, Settings(max_model_len=131072, gpu_memory_utilization=0.5), P,
                      Goals(context=131072))
    assert pl.policy.ceiling == UNPROBED_CEILING == 0.95
    assert pl.recommended is not None and pl.recommended.check.utilization <= 0.95


def test_pinned_kv_form_is_the_same_memory_minus_headroom(orpheus, rtx4090):
    goals = Goals(context=8192, concurrency=4)
    pl = plan(orpheus, rtx4090, Settings(max_model_len=8192, gpu_memory_utilization=0.5), P, goals)
    rec, k = pl.recommended.check, pl.kv_pinned.check
    assert k is not None and pl.kv_pinned.meets
    kv = k.settings.kv_cache_memory_bytes
    assert kv % MiB == 0
    assert kv <= rec.result.memory.kv_available_bytes - rec.headroom_bytes
    assert k.footprint_bytes + k.headroom_bytes <= math.ceil(RTX4090_TOTAL * rec.utilization)


# --- model variants -----------------------------------------------------------------------------------------

ORPHEUS_NORMS = (2 * 28 + 1) * 3072            # two RMSNorms per layer and the final one
ORPHEUS_LINEAR = ORPHEUS_PARAMS - ORPHEUS_EMBED - ORPHEUS_NORMS


def _weights(model, gpu, settings=Settings(max_model_len=4096)):
    return check(model, gpu, settings, P, Goals(), 0)


def test_fp8_weights_are_one_byte_per_linear_param(orpheus, rtx4090):
    """--quantization fp8 (fp8_per_tensor in 0.32) on an unquantized checkpoint: embedding and norms stay bf16;
    every linear weight goes from 2 bytes to 1, plus one float32 weight scale per logical matrix (qkv_proj holds
    3, gate_up_proj 2, o_proj and down_proj 1: 7 a layer x 28 layers = 196; online/fp8.py PerTensorScaleParameter)."""
    base = _weights(orpheus, rtx4090)
    fp8 = _weights(orpheus, rtx4090, Settings(max_model_len=4096, quantization="fp8"))
    assert base.result.memory.weights_bytes - fp8.result.memory.weights_bytes == ORPHEUS_LINEAR * (2 - 1) - 196 * 4
    assert any("FP8 per-tensor" in n for n in fp8.result.notes)


def test_four_bit_checkpoint_weights(orpheus):
    """What a 4-bit AWQ checkpoint of the model holds: 0.5 B per linear parameter, an fp16 scale and a packed
    4-bit zero point per group of 128 (layers/quantization/awq.py shapes)."""
    inv = orpheus.inventory or estimate_inventory(orpheus.arch)
    q = four_bit_checkpoint(orpheus.arch, inv)
    assert q.params_by_dtype["F4"] == ORPHEUS_LINEAR
    assert q.params_by_dtype["F16"] == ORPHEUS_LINEAR // 128
    assert q.params_by_dtype["I32"] == ORPHEUS_LINEAR // 1024


def test_four_bit_flag_on_an_unquantized_checkpoint_is_refused(orpheus, rtx4090):
    """vLLM's get_quant_config looks for the checkpoint's AWQ config and fails: kvfit refuses it too."""
    with pytest.raises(BadInput, match="needs a checkpoint quantized with awq"):
        _weights(orpheus, rtx4090, Settings(max_model_len=4096, quantization="awq"))
    with pytest.raises(BadInput, match="not a quantization method vLLM knows"):
        _weights(orpheus, rtx4090, Settings(max_model_len=4096, quantization="foo"))


def test_cpu_offload_takes_gib_off_each_gpu(orpheus, rtx4090):
    """vLLM moves whole parameters until the budget is reached: at least N GiB, at most one parameter
    more (Orpheus's largest, gate_up, is 2 x 8192 x 3072 x 2 B = 96 MiB)."""
    for settings, gib in ((Settings(max_model_len=4096), 2), (Settings(max_model_len=4096, tensor_parallel_size=2), 1)):
        base = _weights(orpheus, rtx4090, settings)
        off = _weights(orpheus, rtx4090, replace(settings, cpu_offload_gb=float(gib)))
        moved = base.result.memory.weights_bytes - off.result.memory.weights_bytes
        assert gib * GiB <= moved + 8 and moved - gib * GiB <= 96 * MiB, (gib, moved)
        assert off.result.memory.cpu_offload_bytes == moved


def test_prequantized_checkpoint_is_not_requantized():
    """A ModelOpt FP8 checkpoint: vLLM's ModelOptFp8Config.override_quantization_method returns "modelopt" for any
    --quantization, so the checkpoint decides and the weights are the same; an AWQ checkpoint with --quantization
    gptq is refused (no override applies, the methods differ)."""
    m = load_model("nvidia/Llama-3.1-70B-Instruct-FP8", None, True)
    s = Settings(max_model_len=4096, tensor_parallel_size=2)
    a = check(m, lookup("H100"), s, P, Goals())
    b = check(m, lookup("H100"), replace(s, quantization="fp8"), P, Goals())
    assert a.result.memory.weights_bytes == b.result.memory.weights_bytes
    from kvfit.memory.variants import check_quantization

    assert check_quantization(replace(m.arch, quantization="awq"), "awq_marlin", "x") == "awq_marlin"
    with pytest.raises(BadInput, match="does not match"):
        check_quantization(replace(m.arch, quantization="awq"), "gptq", "x")


def test_fp8_weights_need_ampere():
    m = load_model(ORPHEUS, None, True)
    with pytest.raises(BadInput):
        check(m, lookup("T4"), Settings(max_model_len=2048, quantization="fp8"), P, Goals())


# --- alternatives ----------------------------------------------------------------------------------------------

def test_alternatives_are_each_rechecked_and_ranked(orpheus, rtx4090):
    goals = Goals(context=8192, concurrency=8, max_vram_bytes=9 * 10**9)
    s = Settings(gpu_memory_utilization=0.35)
    pl = plan(orpheus, rtx4090, replace(s, quantization="fp8"), P, goals)
    assert not pl.as_given.meets
    assert pl.alternatives
    seen_unmet = False
    for o in pl.alternatives:
        again = check(o.check.model, o.check.gpu, o.check.settings, P, goals)
        assert again.meets == o.meets, o.label
        if o.meets:
            assert not seen_unmet, "options that meet the goals come first"
            assert again.footprint_bytes <= 9 * 10**9
            assert again.resident >= 8 and again.max_model_len >= 8192
        else:
            seen_unmet = True
    rec = pl.recommended
    assert rec is not None and rec.meets and rec.check.settings == pl.alternatives[0].check.settings
    assert rec.check.utilization == 0.35             # the launch's own utilization is kept when it suffices


def test_fp8_kv_alternative_halves_the_block(orpheus, rtx4090):
    pl = plan(orpheus, rtx4090, Settings(max_model_len=131072, gpu_memory_utilization=0.5), P,
                      Goals(context=131072))
    fp8 = next(o for o in pl.alternatives if o.label == "--kv-cache-dtype fp8")
    assert fp8.check.result.layout.bytes_per_block == ORPHEUS_BLOCK // 2


def test_tensor_parallel_alternative_splits_the_kv_heads():
    m = load_model("meta-llama/Llama-3.1-70B-Instruct", None, True)
    gpu = lookup("A100 80GB")
    pl = plan(m, gpu, Settings(), P, Goals(context=32768, concurrency=8), gpu_count=8)
    tps = [o for o in pl.alternatives if o.label.startswith("--tensor-parallel-size")]
    assert tps
    for o in tps:
        t = o.check.settings.tensor_parallel_size
        assert 64 % t == 0                                     # vLLM needs the attention heads to split
        assert o.check.result.layout.kv_bytes_per_token == 2 * 80 * (8 // t) * 128 * 2
        assert o.requires is None                              # 8 GPUs present
    assert pl.recommended is not None and pl.recommended.meets


def test_larger_gpu_alternative_is_a_larger_catalog_gpu(orpheus):
    small = lookup("RTX 3060")
    pl = plan(orpheus, small, Settings(), P, Goals(context=65536, concurrency=2), catalog=catalog_gpus())
    big = [o for o in pl.alternatives if o.label.startswith("a larger GPU")]
    assert big and big[0].meets and big[0].check.gpu.total_bytes > small.total_bytes
    assert big[0].check.utilization <= UNPROBED_CEILING        # the policy's ceiling on a named GPU


def test_as_given_meeting_the_goals_is_left_alone(orpheus, rtx4090):
    pl = plan(orpheus, rtx4090, Settings(max_model_len=4096), P, Goals(context=4096, concurrency=2))
    assert pl.ok and pl.recommended.label == "as given" and pl.alternatives == ()
    assert pl.what_if.min_gpu_memory_utilization < P.default_gpu_memory_utilization


# --- goals parsing ---------------------------------------------------------------------------------------------

def test_headroom_parsing():
    assert parse_headroom(None).resolve(10 * GiB) == 256 * MiB
    assert parse_headroom("5%").resolve(20 * GiB) == GiB
    assert parse_headroom("512MiB").resolve(1) == 512 * MiB
    assert parse_headroom("0").resolve(10 * GiB) == 0
    for bad in ("lots", "150%", "-1GiB"):
        with pytest.raises(BadInput):
            parse_headroom(bad)
    with pytest.raises(BadInput):
        Goals(concurrency=0).validate()
