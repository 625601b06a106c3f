"""sources/processor.py without vLLM: what is read from a directory and which object each processor gets
(the precedence of transformers 5.19; tests/memory/test_processor_files_vs_vllm.py checks it against
transformers' own readers where vLLM / transformers are installed)."""

from __future__ import annotations

import json

import pytest

from kvfit.errors import ConfigError
from kvfit.sources.processor import ProcessorFiles, pick, read_dir

IMG = {"min_pixels": 3136, "max_pixels": 12845056, "image_processor_type": "Qwen2VLImageProcessor"}


def files(**named) -> ProcessorFiles:
    return ProcessorFiles({k.replace("_json", ".json"): v for k, v in named.items()}, "/m")


def test_nothing_found_is_class_defaults_with_the_reason():
    p = pick(ProcessorFiles({}, "/m", "/m has no processor file", repo_has_none=True))
    assert (p.image, p.video, p.origin) == (None, None, "/m has no processor file")
    assert pick(None).origin == "kvfit has none of the model's processor files"


def test_preprocessor_config_serves_both():
    p = pick(files(preprocessor_config_json=IMG))
    assert p.image == p.video == IMG
    assert p.origin == "the model's preprocessor_config.json (/m)"


def test_video_file_then_nested_objects_win():
    vid = dict(IMG, max_pixels=602112)
    p = pick(files(preprocessor_config_json=IMG, video_preprocessor_config_json=vid))
    assert (p.image, p.video) == (IMG, vid)
    nested_i, nested_v = dict(IMG, max_pixels=1), dict(IMG, max_pixels=2)
    p = pick(files(preprocessor_config_json=IMG, video_preprocessor_config_json=vid,
                   processor_config_json={"image_processor": nested_i, "video_processor": nested_v}))
    assert (p.image, p.video) == (nested_i, nested_v)
    assert "processor_config.json image_processor and processor_config.json video_processor" in p.origin


def test_a_flat_processor_config_names_no_sub_processor():
    p = pick(files(processor_config_json={"processor_class": "Gemma3Processor", "image_seq_length": 256}))
    assert (p.image, p.video) == (None, None)
    assert "name no image or video processor" in p.origin


def test_remote_code_is_left_on_class_defaults_per_processor():
    img = dict(IMG, auto_map={"AutoImageProcessor": "m--x.XProc"})
    vid = dict(IMG, max_pixels=602112)
    p = pick(files(preprocessor_config_json=img, video_preprocessor_config_json=vid))
    assert p.image is None and p.video == vid
    assert "the image processor is remote code (AutoImageProcessor: m--x.XProc; kvfit never runs it)" in p.origin
    p = pick(files(preprocessor_config_json=dict(IMG, auto_map={"AutoVideoProcessor": ["a.V", None]})))
    assert p.image is not None and p.video is None and "AutoVideoProcessor: a.V" in p.origin


def test_read_dir(tmp_path):
    assert not read_dir(tmp_path).found and read_dir(tmp_path).repo_has_none
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(IMG))
    (tmp_path / "tokenizer_config.json").write_text("{}")
    pf = read_dir(tmp_path)
    assert dict(pf.files) == {"preprocessor_config.json": IMG} and pf.where == str(tmp_path)
    (tmp_path / "video_preprocessor_config.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="video_preprocessor_config.json must hold a JSON object"):
        read_dir(tmp_path)
