"""`kvfit check` with vLLM's multimodal flags (issue 13 item 2): --limit-mm-per-prompt, --mm-processor-kwargs
and --skip-mm-profiling reach the evaluation, on the command line and in a pasted launch, and move the KV
budget by the amount derived from vLLM 0.32's encoder profile (memory/encoder.py; tests/memory/test_encoder.py
derives the encoder terms).

Qwen/Qwen2.5-VL-7B-Instruct (bundled) on an H100 80GB, vLLM 0.32 serve defaults: max_num_batched_tokens
8,192, 1,024 sequences, max_model_len 128,000, bf16.
  decoder forward  8192 x (3 x 18,944 + 4 x 3,584) x 2 = 1,166,016,512 B
  sampler          1024 x 152,064 x 32               = 4,982,833,152 B
  encoder (class-default processor sizes): 1 video, 5,040 output rows x 3,584 x 2 = 36,126,720 B held through
  the decoder's run; its forward (20,160 positions x 40,584 B = 818,173,440 B) is below the decoder's peak.
"""

from __future__ import annotations

MODEL = "Qwen/Qwen2.5-VL-7B-Instruct"
GPU = ("--gpu", "H100 80GB")
LM_PEAK = 1_166_016_512 + 4_982_833_152
VIDEO_CACHE = 5_040 * 3584 * 2


def _kv(d: dict) -> int:
    return d["memory"]["kv_available_bytes"]


def test_no_multimodal_items_gives_more_kv_by_the_encoder_term(check_json):
    base = check_json(MODEL, *GPU)
    assert base["settings"]["max_num_batched_tokens"] == 8192 and base["settings"]["max_num_seqs"] == 1024
    assert base["memory"]["activation_bytes"] == LM_PEAK + VIDEO_CACHE
    none = check_json(MODEL, *GPU, "--limit-mm-per-prompt", '{"image": 0, "video": 0}')
    assert none["memory"]["activation_bytes"] == LM_PEAK
    assert _kv(none) - _kv(base) == VIDEO_CACHE


def test_image_limit_zero_alone_changes_nothing_for_a_video_model(check_json):
    """vLLM profiles one modality, the one with the most tokens per item: the 8,960-token video, not the
    1,280-token image, so {"image": 0} leaves the profile as it was."""
    base = check_json(MODEL, *GPU)
    img0 = check_json(MODEL, *GPU, "--limit-mm-per-prompt", '{"image": 0}')
    assert _kv(img0) == _kv(base)
    assert any("1 video item" in n for n in img0["notes"])


def test_images_instead_of_video(check_json):
    """{"video": 0}: 6 images of 1,280 rows held (tests/memory/test_encoder.py), and {"image": 0} on top of it
    frees them: KV grows by 6 x 1,280 x 3,584 x 2."""
    img = check_json(MODEL, *GPU, "--limit-mm-per-prompt", '{"video": 0}')
    none = check_json(MODEL, *GPU, "--limit-mm-per-prompt", '{"video": 0, "image": 0}')
    assert _kv(none) - _kv(img) == 6 * 1280 * 3584 * 2


def test_max_pixels_makes_the_encoder_the_peak(check_json):
    """--mm-processor-kwargs '{"max_pixels": 12845056}': one 114,688-token video, 458,752 encoder positions x
    40,584 B = 18,617,991,168 B, larger than outputs + decoder, so the activation is the encoder's forward and
    KV shrinks by it less the decoder's peak and the small default-video term."""
    base = check_json(MODEL, *GPU)
    big = check_json(MODEL, *GPU, "--mm-processor-kwargs", '{"max_pixels": 12845056}')
    assert big["memory"]["activation_bytes"] == 18_617_991_168
    assert _kv(base) - _kv(big) == 18_617_991_168 - (LM_PEAK + VIDEO_CACHE)


def test_skip_mm_profiling_and_the_pasted_launch_agree(check_json, cli):
    flag = check_json(MODEL, *GPU, "--skip-mm-profiling")
    assert flag["memory"]["activation_bytes"] == LM_PEAK

    def pasted(*launch: str) -> dict:
        r = cli("check", *GPU, "--vllm-version", "0.32.0", "--json", "--", "vllm", "serve", MODEL, *launch)
        assert r.rc in (0, 1), r
        return r.json

    assert _kv(pasted("--skip-mm-profiling")) == _kv(flag)
    # vLLM's dotted form (utils/argparse_utils.py) builds the same JSON object
    assert _kv(pasted("--limit-mm-per-prompt.image", "0", "--limit-mm-per-prompt.video", "0")) == _kv(flag)
    assert _kv(pasted("--mm-processor-kwargs.max_pixels", "12845056")) == _kv(
        check_json(MODEL, *GPU, "--mm-processor-kwargs", '{"max_pixels": 12845056}'))


def test_bad_limits_are_refused_with_exit_2(cli):
    for bad in ('{"image": -1}', '{"image": 1.5}', '{"video": {"count": 1, "fps": 2}}', "lots"):
        r = cli("check", MODEL, *GPU, "--limit-mm-per-prompt", bad)
        assert r.rc == 2, r
        assert "--limit-mm-per-prompt" in r.err


def test_skip_mm_profiling_before_0_10_1_is_refused(cli):
    r = cli("check", MODEL, *GPU, "--skip-mm-profiling", "--vllm-version", "0.9.2")
    assert r.rc == 2 and "0.10.1" in r.err, r
