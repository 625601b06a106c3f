"""memory/encoder.py: vLLM's multimodal encoder profile per release, every number derived by hand from the
cited vLLM code (tests/memory/test_encoder_vs_vllm.py runs vLLM 0.32's own sizing code on the same cases).

Qwen2.5-VL-7B (tests/data/models): ViT patch 14, merge 2, temporal patch 2, hidden 1280, intermediate 3420,
out_hidden_size 3584. Processor class defaults (transformers 5.19): image max_pixels 1,003,520
(28 x 28 x 1280), min 3,136; video processor max 602,112 (28 x 28 x 768), min 100,352.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit.arch.normalize import normalize
from kvfit.errors import BadFlag
from kvfit.memory import encoder as E
from kvfit.memory.overhead import estimate_overhead
from kvfit.memory.profiles import profile_for

MODELS = Path(__file__).resolve().parent.parent / "data" / "models"


def cfg(name: str) -> dict:
    return json.loads((MODELS / name / "config.json").read_text())


QWEN25 = cfg("Qwen__Qwen2.5-VL-7B-Instruct")
# Qwen2.5-VL ViT per encoder position (memory/encoder.py::_per_position_bytes, bf16, TP 1):
#   attention 3d + 9d = 15,360; MLP (fused-residual block, gated) 5d + 3I = 6,400 + 10,260 = 16,660
#   -> 2 x (16,660 + 1,280) + 4 x (3 x 2 x 14 x 14 = 1,176 float32 pixels) = 35,880 + 4,704 = 40,584 B
QWEN25_POS = 40_584


def prof(config, version="0.32.0", *, L=128000, T=8192, R=1024, tp=1, **kw):
    return E.encoder_profile(config, profile=profile_for(version), text_hidden=3584, max_model_len=L,
                             max_num_batched_tokens=T, max_num_seqs=R, act_bytes=2, tp=tp, **kw)


def test_text_only_models_have_no_encoder_profile():
    assert E.encoder_profile(cfg("Qwen__Qwen2.5-7B-Instruct"), profile=profile_for("0.32.0"), text_hidden=3584,
                             max_model_len=32768, max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2) is None


def test_qwen25_vl_default_profile_is_one_video():
    """0.32, H100 serve defaults (T 8192, 1024 seqs), max_model_len 128,000.

    image: factor pair of 1,003,520 // 28^2 = 1,280 -> 32 x 40 -> 896 x 1120: 1,280 tokens.
    video (qwen2_vl.py get_num_frames_with_most_features): 14 frames (_MAX_FRAMES_PER_VIDEO) -> 7 frame pairs x
    1,280 = 8,960 tokens (counted against the image processor's size). The video wins; budget = max(8192, 8960)
    = 8,960; items = max(1, min(8960 // 8960, 1024 x min(999, 128000 // 8960))) = 1.
    The dummy video is processed by the video processor: smart_resize(896, 1120, 28, 100352, 602112):
    beta = sqrt(1,003,520 / 602,112) = 1.2910; h = floor(896 / 1.2910 / 28) x 28 = 672, w = floor(1120 / 1.2910 /
    28) x 28 = 840 -> 48 x 60 patches x 7 = 20,160 positions, 5,040 embeddings."""
    e = prof(QWEN25)
    assert (e.modality, e.tokens_per_item, e.budget, e.items) == ("video", 8960, 8960, 1)
    assert e.forward_bytes == 20_160 * QWEN25_POS
    assert e.cache_bytes == 5_040 * 3584 * 2
    assert any("class defaults" in n for n in e.notes)


def test_limits_choose_and_drop_modalities():
    """`{"image": 0}`: the video was profiled anyway (vLLM profiles one modality, the one with most tokens);
    `{"video": 0}`: images, 1,280 tokens: budget 8,192, items = min(8192 // 1280, 1024 x 99) = 6 of 1,280
    embeddings and 32 x 40 x 4 = 5,120 positions; both 0: nothing is profiled."""
    assert prof(QWEN25, limit_mm_per_prompt='{"image": 0}') == prof(QWEN25)
    e = prof(QWEN25, limit_mm_per_prompt='{"video": 0}')
    assert (e.modality, e.tokens_per_item, e.budget, e.items) == ("image", 1280, 8192, 6)
    assert e.forward_bytes == 6 * 5_120 * QWEN25_POS
    assert e.cache_bytes == 6 * 1_280 * 3584 * 2
    none = prof(QWEN25, limit_mm_per_prompt={"image": 0, "video": 0})
    assert none.items == 0 and none.forward_bytes == 0 and none.cache_bytes == 0


def test_limit_caps_items_per_prompt_and_batch():
    """items = max(1, min(budget // tokens, seqs x per_prompt)), per_prompt = max(1, min(limit, L // tokens)):
    video 0, image limit 2, 2 seqs, T 16384: min(16384 // 1280 = 12, 2 x min(2, 100)) = 4."""
    e = prof(QWEN25, T=16384, R=2, limit_mm_per_prompt='{"video": 0, "image": 2}')
    assert e.items == 4


def test_max_pixels_from_mm_processor_kwargs():
    """max_pixels 12,845,056 (flat: both processors): image 128 x 128 merged = 16,384 tokens (3584 x 3584);
    video 14 frames -> 7 x 16,384 = 114,688 tokens, processed at 3584 x 3584: 7 x 256 x 256 = 458,752
    positions."""
    e = prof(QWEN25, mm_processor_kwargs='{"max_pixels": 12845056}')
    assert (e.modality, e.tokens_per_item, e.budget, e.items) == ("video", 114_688, 114_688, 1)
    assert e.forward_bytes == 458_752 * QWEN25_POS == 18_617_991_168
    assert e.cache_bytes == 114_688 * 3584 * 2
    assert any("--mm-processor-kwargs over" in n for n in e.notes)


def test_dummy_options_shrink_the_dummy_not_the_budget():
    """--limit-mm-per-prompt '{"video": {"count": 1, "num_frames": 4}}' (0.11+ dummy options): 4 frames are
    encoded (2 pairs x 48 x 60 = 5,760 positions) while the budget still counts 8,960 tokens."""
    e = prof(QWEN25, limit_mm_per_prompt={"video": {"count": 1, "num_frames": 4}})
    assert e.tokens_per_item == 8960 and e.forward_bytes == 5_760 * QWEN25_POS


def test_skip_mm_profiling():
    e = prof(QWEN25, skip_mm_profiling=True)
    assert e.items == 0 and e.forward_bytes == 0 and e.cache_bytes == 0 and e.modality == "video"
    with pytest.raises(BadFlag):                                   # the flag came in 0.10.1
        prof(QWEN25, "0.9.2", skip_mm_profiling=True)


def test_release_rules():
    """0.11.0: square most-features image (smart_resize of 9999999^2: floor(1001.76 / 28) x 28 = 980 -> 35 x 35
    = 1,225 tokens), video 14 frames = 7 x 1,225 = 8,575; outputs padded to the budget in the encoder cache.
    0.9.2: video frames capped at 16 and counted on L - 1,225 image tokens -> 8 x 1,225 = 9,800; the dummy video
    is built at seq_len T = 8192: 12 frames (6 x 1,225 = 7,350 <= 8,192); items = min(cdiv(9800, 9800),
    1024 x 999) = 1. 0.8.3: the default limit is 1."""
    e = prof(QWEN25, "0.11.0", limit_mm_per_prompt='{"video": 0}')
    assert (e.tokens_per_item, e.budget, e.items) == (1225, 8192, 6)
    assert e.cache_bytes == 6 * 8192 * 3584 * 2                    # expanded to the budget (0.11.0-0.12.0)
    e = prof(QWEN25, "0.9.2")
    assert (e.modality, e.tokens_per_item, e.items) == ("video", 9800, 1)
    assert "12 frames" in e.notes[0]
    assert E.mm_rule(profile_for("0.8.3")).default_limit == 1
    assert E.mm_rule(profile_for("0.8.5")).default_limit == 999
    assert E.mm_rule(profile_for("0.8.3")).items_rule == "cdiv"
    assert E.mm_rule(profile_for("0.10.0")).items_rule == "floor"


def test_gemma3_images():
    """medgemma-27b (Gemma 3 27B, SigLIP 896/14, hidden 1152, I 4304, 27 layers): 256 tokens per image; H100:
    budget 8192, items = min(8192 // 256 = 32, 1024 x min(999, 131072 // 256)) = 32, each 64 x 64 = 4,096
    positions; per position 2 x (max(3d + 4d, 3d + 2I) + d) + 4 x 3 x 14^2 = 2 x (12,064 + 1,152) + 2,352 =
    28,784 B; outputs 32 x 256 x 5376 x 2."""
    c = cfg("google__medgemma-27b-it")
    e = E.encoder_profile(c, profile=profile_for("0.32.0"), text_hidden=5376, max_model_len=131072,
                          max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2)
    assert (e.modality, e.tokens_per_item, e.items) == ("image", 256, 32)
    assert e.forward_bytes == 32 * 4096 * 28_784
    assert e.cache_bytes == 32 * 256 * 5376 * 2
    pan = E.encoder_profile(c, profile=profile_for("0.32.0"), text_hidden=5376, max_model_len=131072,
                            max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2,
                            mm_processor_kwargs={"do_pan_and_scan": True, "pan_and_scan_max_num_crops": 4,
                                                 "pan_and_scan_min_crop_size": 256})
    assert pan.tokens_per_item == 5 * 256 and pan.items == 8192 // 1280


def test_llava_and_llama4():
    """LLaVA-1.5: (336 / 14)^2 = 576 tokens, CLIP up to vision_feature_layer -2 (23 of 24 layers); items at
    T 2048 = 2048 // 576 = 3. Llama 4 (class-default vision config): 17 tiles x (448/14)^2 / 4 = 17 x 256."""
    e = E.encoder_profile(cfg("llava-hf__llava-1.5-7b-hf"), profile=profile_for("0.32.0"), text_hidden=4096,
                          max_model_len=4096, max_num_batched_tokens=2048, max_num_seqs=256, act_bytes=2)
    assert (e.tokens_per_item, e.items) == (576, 3)
    item = E.items_for(cfg("llava-hf__llava-1.5-7b-hf"), profile=profile_for("0.32.0"), seq_len=4096,
                       counts={"image": 1}, text_hidden=4096)["image"]
    assert item.tower.layers == 23 and item.positions == 577
    l4 = E.items_for(cfg("meta-llama__Llama-4-Scout-17B-16E-Instruct"), profile=profile_for("0.32.0"),
                     seq_len=10**6, counts={"image": 1}, text_hidden=5120)["image"]
    assert l4.tokens == 17 * 256 and l4.positions == 17 * (32 * 32 + 1)


def test_qwen3_vl_deepstack_buffers_and_video():
    """Qwen3-VL-8B: video = two frames at the largest image under 786,432 // 2 pixels (Qwen3VLVideoProcessor
    default): 393,216 // 32^2 = 384 tokens; image 1,003,520 // 1,024 = 980 tokens wins. Deepstack: 3 levels,
    so each output row is 4096 x 4 wide and the model holds 3 x T x 4096 buffers."""
    c = cfg("Qwen__Qwen3-VL-8B-Instruct")
    e = E.encoder_profile(c, profile=profile_for("0.32.0"), text_hidden=4096, max_model_len=262144,
                          max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2)
    assert (e.modality, e.tokens_per_item, e.items) == ("image", 980, 8)
    assert e.cache_bytes == 8 * 980 * 4096 * 4 * 2
    assert e.persistent_bytes == 3 * 8192 * 4096 * 2


def test_unknown_families_keep_a_floor_and_say_so():
    c = {"model_type": "phi3_v", "architectures": ["Phi3VForCausalLM"], "hidden_size": 3072}
    e = E.encoder_profile(c, profile=profile_for("0.32.0"), text_hidden=3072, max_model_len=4096,
                          max_num_batched_tokens=2048, max_num_seqs=256, act_bytes=2)
    assert not e.modelled and "not modelled" in e.notes[0]


def test_v0_profile_doc_c3():
    """V0 (0.8.3, worker/model_runner.py::_dummy_run): limits 1 image + 1 video; max_mm_tokens = 1,225 + video
    tokens counted at L = 32768: frames on 32768 - 1225 = 31,543 -> 16 (cap) -> 8 x 1,225 = 9,800; total 11,025;
    seqs = max(1, min(256, 32768 // 11025)) = 2, each of 16,384 tokens with 1 image and a 16-frame video
    (16,384 - 1,225 = 15,159 >= 8 x 1,225). Images: 2 x 35 x 35 x 4 = 9,800 positions; videos 2 x 8 x 27 x 27
    x 4 (980 -> 756 by the video processor) = 46,656 positions. The sampler has 2 rows."""
    p = profile_for("0.8.3", engine="V0")
    e = E.encoder_profile(QWEN25, profile=p, text_hidden=3584, max_model_len=32768, max_num_batched_tokens=32768,
                          max_num_seqs=256, act_bytes=2)
    assert e.v0_seqs == 2 and e.items == 4
    assert e.forward_bytes == 46_656 * QWEN25_POS
    assert e.cache_bytes == 2 * (1225 + 8 * 27 * 27) * 3584 * 2
    arch = normalize(QWEN25)
    ov = estimate_overhead(arch, max_num_batched_tokens=32768, max_num_seqs=256, act_bytes=2, tp=1,
                           enforce_eager=False, cudagraph_counted=False, layers_on_rank=28, profile=p, encoder=e)
    assert ov.sampler_bytes == 2 * arch.vocab_size * 39
    assert ov.activation_bytes == max(ov.forward_bytes + e.cache_bytes, ov.sampler_bytes,
                                      e.forward_bytes + e.cache_bytes)


def test_v1_peak_combines_encoder_and_decoder():
    """V1: max(encoder forward, encoder outputs + decoder forward + sampler)."""
    arch = normalize(QWEN25)
    kw = dict(max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2, tp=1, enforce_eager=True,
              cudagraph_counted=False, layers_on_rank=28, profile=profile_for("0.32.0"))
    small = estimate_overhead(arch, encoder=prof(QWEN25), **kw)
    lm = small.forward_bytes + small.sampler_bytes
    assert small.activation_bytes == 5_040 * 3584 * 2 + lm
    big = estimate_overhead(arch, encoder=prof(QWEN25, mm_processor_kwargs={"max_pixels": 12845056}), **kw)
    assert big.activation_bytes == 18_617_991_168 > 114_688 * 3584 * 2 + lm
    none = estimate_overhead(arch, encoder=prof(QWEN25, limit_mm_per_prompt={"image": 0, "video": 0}), **kw)
    assert none.activation_bytes == lm


def test_qwen3_vl_0_11_log_line():
    """A real 0.11.0 log of a Qwen3-VL MoE launch (../shared/docs/vllm-gpu-memory-by-release.md §3): "Encoder
    cache will be initialized with a budget of 153600 tokens, and profiled with 1 video items of the maximum
    feature size". With the Qwen3-VL processor sizes (image longest_edge 16,777,216; video 25,165,824): a video is
    25,165,824 // 2 // 32^2 = 12,288 soft tokens, counted x 12.5 = 153,600 in 0.11.0-0.12.0 (qwen3_vl.py
    get_max_video_tokens); budget = max(T, 153,600); items = 153,600 // 153,600 = 1. 0.11.0 pads the output to
    the budget: 153,600 rows of 4096 x (1 + 3 deepstack levels) x 2 B (8B's dims; the MoE of the log differs)."""
    kw = {"max_pixels": 16777216, "min_pixels": 65536,
          "videos_kwargs": {"size": {"longest_edge": 25165824, "shortest_edge": 4096}}}
    e = E.encoder_profile(cfg("Qwen__Qwen3-VL-8B-Instruct"), profile=profile_for("0.11.0"), text_hidden=4096,
                          max_model_len=262144, max_num_batched_tokens=8192, max_num_seqs=256, act_bytes=2, tp=4,
                          mm_processor_kwargs=kw)
    assert (e.modality, e.budget, e.items) == ("video", 153_600, 1)
    assert e.cache_bytes == 153_600 * 4096 * 4 * 2
    later = E.encoder_profile(cfg("Qwen__Qwen3-VL-8B-Instruct"), profile=profile_for("0.16.0"), text_hidden=4096,
                              max_model_len=262144, max_num_batched_tokens=8192, max_num_seqs=256, act_bytes=2,
                              tp=4, mm_processor_kwargs=kw)
    assert (later.budget, later.items) == (16_384, 1)           # the image (16,384 tokens) now wins


def test_qwen2_5_omni_audio():
    """Qwen2.5-Omni thinker (transformers' Qwen2_5OmniConfig defaults: audio d_model 1280, 32 layers, ffn 5120,
    128 mel bins, output 3584). Audio (qwen2_audio.py::get_mm_max_tokens_per_item): 30 s x 16,000 / 160 = 3,000
    mel frames -> (3000 - 1) // 2 + 1 = 1,500 -> (1500 - 2) // 2 + 1 = 750 tokens. With video and image off,
    items = 8192 // 750 = 10 of 1,500 encoder positions; per position 2 x (max(3d + 4d, 3d + 2 x 5120) + d) +
    4 x 2 x 128 = 2 x 15,360 + 1,024 = 31,744 B."""
    from tests.needs_vllm import require_vllm

    require_vllm()                     # transformers comes with vLLM's CPU build (the oracle's dependencies)
    import transformers
    oc = transformers.Qwen2_5OmniConfig().to_dict()
    e = E.encoder_profile(oc, profile=profile_for("0.32.0"), text_hidden=3584, max_model_len=32768,
                          max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2,
                          limit_mm_per_prompt={"image": 0, "video": 0})
    assert (e.modality, e.tokens_per_item, e.items) == ("audio", 750, 10)
    assert e.forward_bytes == 10 * 1500 * 31_744
    assert e.cache_bytes == 10 * 750 * 3584 * 2
    assert E.encoder_profile(oc, profile=profile_for("0.32.0"), text_hidden=3584, max_model_len=32768,
                             max_num_batched_tokens=8192, max_num_seqs=1024, act_bytes=2).modality == "video"
