"""`kvfit check` reads the model's processor files where it reads config.json (sources/processor.py): a local
directory, the Hugging Face cache, the Hub, the bundled catalog; the report says where the sizes came from.

Qwen2.5-VL-7B-Instruct's config.json with a real Qwen-VL preprocessor_config.json (min_pixels 3,136, max_pixels
12,845,056; tests/data/processors/alibaba__rtp-llm__qwen2_vl) on an H100 80GB, vLLM 0.32 serve defaults
(max_num_batched_tokens 8,192, 1,024 sequences, max_model_len 128,000, bf16): vLLM counts a 114,688-token video
(tests/memory/test_processor_files_vs_vllm.py), one item, 458,752 encoder positions x 40,584 B =
18,617,991,168 B, larger than the decoder's peak (tests/check/test_check_multimodal.py derives the same launch
with --mm-processor-kwargs '{"max_pixels": 12845056}', which sets both processors as the file does).
Without the file, the class defaults: one 8,960-token video, decoder forward + sampler + 5,040 x 3,584 x 2.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "data" / "models"
QWEN_PRE = ROOT / "tests" / "data" / "processors" / "alibaba__rtp-llm__qwen2_vl" / "preprocessor_config.json"
GPU = ("--gpu", "H100 80GB")
ENCODER_PEAK = 18_617_991_168
CLASS_DEFAULTS_PEAK = 1_166_016_512 + 4_982_833_152 + 5_040 * 3584 * 2


def _kv(d: dict) -> int:
    return d["memory"]["kv_available_bytes"]


def _sizes_note(d: dict) -> str:
    notes = [n for n in d["notes"] if n.startswith("Qwen2.5-VL processor sizes:")]
    assert len(notes) == 1, d["notes"]
    return notes[0]


def qwen_dir(d: Path, *, pre: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json", d / "config.json")
    if pre:
        shutil.copy(QWEN_PRE, d / "preprocessor_config.json")
    return d


def test_a_local_directory_with_the_processor_file_makes_the_encoder_the_peak(check_json, tmp_path):
    d = qwen_dir(tmp_path / "Qwen2.5-VL-7B-Instruct")
    got = check_json(str(d), *GPU)
    assert got["memory"]["activation_bytes"] == ENCODER_PEAK
    assert _kv(got) == _kv(check_json("Qwen/Qwen2.5-VL-7B-Instruct", *GPU,
                                      "--mm-processor-kwargs", '{"max_pixels": 12845056}'))
    bundled = check_json("Qwen/Qwen2.5-VL-7B-Instruct", *GPU)
    assert bundled["memory"]["activation_bytes"] == CLASS_DEFAULTS_PEAK
    assert _kv(bundled) - _kv(got) == ENCODER_PEAK - CLASS_DEFAULTS_PEAK
    note = _sizes_note(got)
    assert "image max_pixels 12,845,056, video max_pixels 12,845,056" in note
    assert f"from the model's preprocessor_config.json ({d})" in note


def test_the_file_under_mm_processor_kwargs(check_json, tmp_path):
    """--mm-processor-kwargs go over the file (from_pretrained kwargs over the file's values): back to the
    class-default max_pixels gives the class-default profile, and the note says both."""
    d = qwen_dir(tmp_path / "m")
    got = check_json(str(d), *GPU, "--mm-processor-kwargs", '{"max_pixels": 1003520, "videos_kwargs": '
                                                             '{"max_pixels": 602112}}')
    assert got["memory"]["activation_bytes"] == CLASS_DEFAULTS_PEAK
    assert "--mm-processor-kwargs over the model's preprocessor_config.json" in _sizes_note(got)


def test_a_directory_without_the_file_falls_back_to_class_defaults_and_says_so(check_json, tmp_path):
    d = qwen_dir(tmp_path / "bare", pre=False)
    got = check_json(str(d), *GPU)
    assert got["memory"]["activation_bytes"] == CLASS_DEFAULTS_PEAK
    note = _sizes_note(got)
    assert "image max_pixels 1,003,520, video max_pixels 602,112" in note
    assert f"the processor class defaults: {d} has no processor file" in note
    assert "may be larger" in note


def test_the_bundled_models_say_their_processor_files_were_not_found(check_json):
    note = _sizes_note(check_json("Qwen/Qwen2.5-VL-7B-Instruct", *GPU))
    assert "class defaults" in note and "no real copy of Qwen/Qwen2.5-VL-7B-Instruct's processor files" in note


def test_processor_config_json_nested_objects_win(check_json, tmp_path):
    """transformers 5.19: the image processor from processor_config.json's "image_processor", the video
    processor (none nested) from preprocessor_config.json."""
    d = qwen_dir(tmp_path / "nested")
    pre = json.loads(QWEN_PRE.read_text())
    (d / "processor_config.json").write_text(json.dumps({"image_processor": dict(pre, max_pixels=2007040)}))
    note = _sizes_note(check_json(str(d), *GPU))
    assert "image max_pixels 2,007,040, video max_pixels 12,845,056" in note
    assert "processor_config.json image_processor and preprocessor_config.json" in note


def test_a_remote_code_processor_is_not_run_and_left_on_class_defaults(check_json, tmp_path):
    d = qwen_dir(tmp_path / "remote")
    pre = json.loads(QWEN_PRE.read_text())
    (d / "preprocessor_config.json").write_text(json.dumps(
        dict(pre, auto_map={"AutoImageProcessor": "image_processing_x.XImageProcessor"})))
    got = check_json(str(d), *GPU)
    note = _sizes_note(got)
    assert "image max_pixels 1,003,520" in note
    assert "remote code (AutoImageProcessor: image_processing_x.XImageProcessor; kvfit never runs it)" in note
    assert not (d / "image_processing_x.py").exists()


def test_a_broken_processor_file_is_refused_with_exit_2(cli, tmp_path):
    d = qwen_dir(tmp_path / "broken", pre=False)
    (d / "preprocessor_config.json").write_text("{ not json")
    r = cli("check", str(d), *GPU, "--vllm-version", "0.32.0")
    assert r.rc == 2, r
    assert "preprocessor_config.json is not valid JSON" in r.err and "Traceback" not in r.err


# --- the Hugging Face cache ------------------------------------------------------------------------------

COMMIT = "a" * 40


def snapshot(cache: Path, repo: str, files: dict[str, Path | str], no_exist: tuple[str, ...] = ()) -> Path:
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(COMMIT)
    for name, src in files.items():
        (snap / name).write_text(src.read_text() if isinstance(src, Path) else src)
    for name in no_exist:
        (root / ".no_exist" / COMMIT).mkdir(parents=True, exist_ok=True)
        (root / ".no_exist" / COMMIT / name).touch()
    return snap


def test_the_hf_cache_snapshot_files_are_read(check_json, hermetic_env):
    snap = snapshot(hermetic_env, "acme/vl", {"config.json": MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json",
                                              "preprocessor_config.json": QWEN_PRE})
    got = check_json("acme/vl", *GPU)
    assert got["memory"]["activation_bytes"] == ENCODER_PEAK
    assert f"the HF cache snapshot {snap}" in _sizes_note(got)


def test_a_snapshot_without_them_says_how_to_get_them(check_json, hermetic_env):
    snapshot(hermetic_env, "acme/vl", {"config.json": MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json"})
    note = _sizes_note(check_json("acme/vl", *GPU))
    assert "class defaults" in note and "hf download acme/vl preprocessor_config.json processor_config.json" in note


def test_a_snapshot_whose_repo_has_none(check_json, hermetic_env):
    snapshot(hermetic_env, "acme/vl", {"config.json": MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json"},
             no_exist=("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"))
    note = _sizes_note(check_json("acme/vl", *GPU))
    assert "the repository has no processor file (the HF cache records the Hub's answer)" in note


def test_a_config_only_snapshot_of_a_bundled_model_takes_the_bundled_processor_files(hermetic_env):
    """google/medgemma-27b-it: the bundled entry's real processor files fill in for a snapshot holding only
    config.json, as its parameter counts do; a snapshot the Hub said has none keeps none."""
    from kvfit.sources.resolve import resolve

    snapshot(hermetic_env, "google/medgemma-27b-it", {"config.json": MODELS / "google__medgemma-27b-it" / "config.json"})
    src = resolve("google/medgemma-27b-it")
    assert src.source == "hf-cache"
    assert src.processors.files["preprocessor_config.json"] == json.loads(
        (MODELS / "google__medgemma-27b-it" / "preprocessor_config.json").read_text())
    assert "bundled copy" in src.processors.where


def test_no_bundled_fill_in_when_the_repo_has_none(hermetic_env):
    from kvfit.sources.resolve import resolve

    snapshot(hermetic_env, "google/medgemma-27b-it", {"config.json": MODELS / "google__medgemma-27b-it" / "config.json"},
             no_exist=("processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"))
    src = resolve("google/medgemma-27b-it")
    assert not src.processors.found and src.processors.repo_has_none


def test_the_bundled_medgemma_carries_its_real_processor_files():
    from kvfit.sources.processor import pick
    from kvfit.sources.resolve import resolve

    procs = pick(resolve("google/medgemma-27b-it", offline=True).processors)
    assert procs.image == json.loads((MODELS / "google__medgemma-27b-it" / "preprocessor_config.json").read_text())
    assert procs.video == procs.image            # no video file: transformers falls back to the image one
    assert "Ibtasam-98/medgemma-27b-it @351f31de59" in procs.origin


# --- the Hub (a local stand-in: tests/fuzz/hub_fake.py) ---------------------------------------------------

sys.path.insert(0, str(ROOT / "tests"))


def test_the_hub_serves_the_processor_files_and_the_cache_keeps_them(kvfit, tmp_path):
    from fuzz.hub_fake import FakeHub

    files = {"config.json": (MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json").read_text(),
             "preprocessor_config.json": QWEN_PRE.read_text()}
    env = {"HF_HUB_OFFLINE": None, "HF_HUB_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    args = ("check", "acme/vl", *GPU, "--vllm-version", "0.32.0", "--json")
    with FakeHub(files) as hub:
        r = kvfit(*args, env=dict(env, HF_ENDPOINT=hub.url))
    assert r.rc in (0, 1), r
    online = json.loads(r.out)
    assert online["memory"]["activation_bytes"] == ENCODER_PEAK
    assert "from the model's preprocessor_config.json (the Hub, acme/vl revision main)" in _sizes_note(online)
    asked = {q["path"].split("?")[0].rsplit("/", 1)[-1] for q in hub.requests}
    assert {"processor_config.json", "preprocessor_config.json", "video_preprocessor_config.json"} <= asked
    # offline, the HF cache snapshot the lookup filled holds the file
    r = kvfit(*args, env=dict(env, HF_HUB_OFFLINE="1"))
    offline = json.loads(r.out)
    assert _kv(offline) == _kv(online)
    assert "the HF cache snapshot" in _sizes_note(offline)


def test_a_hub_repo_without_processor_files_is_normal(kvfit, tmp_path):
    from fuzz.hub_fake import FakeHub

    files = {"config.json": (MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json").read_text()}
    with FakeHub(files) as hub:
        r = kvfit("check", "acme/vl", *GPU, "--vllm-version", "0.32.0", "--json",
                  env={"HF_HUB_OFFLINE": None, "HF_HUB_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path),
                       "HF_ENDPOINT": hub.url})
    assert r.rc in (0, 1), r
    got = json.loads(r.out)
    assert got["memory"]["activation_bytes"] == CLASS_DEFAULTS_PEAK
    assert "the repository has no processor file (the Hub, acme/vl revision main)" in _sizes_note(got)


@pytest.mark.parametrize("model", ["meta-llama__Llama-3.1-8B-Instruct"])
def test_a_text_model_on_the_hub_costs_no_processor_request(kvfit, tmp_path, model):
    from fuzz.hub_fake import FakeHub

    with FakeHub({"config.json": (MODELS / model / "config.json").read_text()}) as hub:
        r = kvfit("check", "acme/text", *GPU, "--vllm-version", "0.32.0", "--json",
                  env={"HF_HUB_OFFLINE": None, "HF_HUB_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path),
                       "HF_ENDPOINT": hub.url})
    assert r.rc in (0, 1), r
    assert not any("processor" in q["path"] for q in hub.requests), hub.requests
