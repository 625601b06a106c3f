"""The model's processor files (sources/processor.py) against transformers 5.19 and vLLM 0.32, as installed.

A local model directory holds config.json and real processor files: a Qwen-VL preprocessor_config.json
(tests/data/processors/alibaba__rtp-llm__qwen2_vl: min_pixels 3,136, max_pixels 12,845,056) next to
Qwen2.5-VL-7B-Instruct's config.json, and medgemma-27b-it's own preprocessor_config.json / processor_config.json
next to its config.json. Layouts with processor_config.json's nested objects and a video_preprocessor_config.json
are built from the real file by changing max_pixels only.

- Which file wins: kvfit's pick() against transformers' own readers (ImageProcessingMixin.get_image_processor_dict,
  BaseVideoProcessor.get_video_processor_dict) on the same directory.
- The largest items: vLLM's processing-info classes (Qwen2_5_VLProcessingInfo, Gemma3ProcessingInfo) given the
  processors transformers builds from the directory (Qwen2VLImageProcessor via AutoImageProcessor, the video
  processor via Qwen2VLVideoProcessor.from_pretrained), against memory/encoder.py with what pick() read.
- The profile: vLLM's MultiModalBudget / compute_mm_encoder_budget on those token counts (H100 launch defaults
  of vLLM 0.32: max_num_batched_tokens 8,192, 1,024 sequences, max_model_len 128,000) against encoder_profile.

The processors are built as vLLM builds them: from the directory, with the --mm-processor-kwargs that are
not call-time ("dynamic") keys of the processor passed to from_pretrained
(transformers_utils/processor.py::cached_get_processor_without_dynamic_kwargs: flat min_pixels / max_pixels
reach the constructors, `size` and images_kwargs / videos_kwargs do not), and every kwarg goes through vLLM's
InputProcessingContext into _get_vision_info. The torchvision stub of test_encoder_vs_vllm.py is reused (nothing of torchvision runs).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.needs_vllm import require_vllm, require_vllm_032

from kvfit.memory import encoder as E
from kvfit.memory import profiles as P
from kvfit.sources.processor import pick, read_dir



@pytest.fixture(autouse=True)
def _vllm_here():
    """vLLM's code is the oracle: skip without it, fail under CI (tests/needs_vllm.py)."""
    require_vllm()

DATA = Path(__file__).resolve().parent.parent / "data"
MODELS = DATA / "models"
QWEN_PRE = DATA / "processors" / "alibaba__rtp-llm__qwen2_vl" / "preprocessor_config.json"
V032 = P.profile_for("0.32.0")


def _helpers():
    spec = importlib.util.spec_from_file_location("_kvfit_enc_vs_vllm", Path(__file__).with_name("test_encoder_vs_vllm.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def vllm032():
    require_vllm_032()
    import os
    import sys

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers.image_utils  # noqa: F401  (transformers decides torchvision is absent first)
    import vllm.config  # noqa: F401

    added = _helpers()._stub_torchvision()
    yield
    for name in added:
        sys.modules.pop(name, None)


def _with(pre: dict, **changes) -> dict:
    return dict(pre, **changes)


def qwen_layout(d: Path, layout: str) -> None:
    """A model directory: Qwen2.5-VL-7B-Instruct's config.json and the real Qwen-VL preprocessor_config.json,
    plus (by layout) a processor_config.json with nested objects or a video_preprocessor_config.json."""
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / "Qwen__Qwen2.5-VL-7B-Instruct" / "config.json", d / "config.json")
    shutil.copy(QWEN_PRE, d / "preprocessor_config.json")
    pre = json.loads(QWEN_PRE.read_text())
    if layout == "nested-image":
        (d / "processor_config.json").write_text(json.dumps(
            {"processor_class": "Qwen2_5_VLProcessor", "image_processor": _with(pre, max_pixels=2007040)}))
    elif layout == "video-file":
        (d / "video_preprocessor_config.json").write_text(json.dumps(
            _with(pre, max_pixels=602112, video_processor_type="Qwen2VLVideoProcessor")))
    elif layout == "nested-both":
        (d / "processor_config.json").write_text(json.dumps(
            {"image_processor": _with(pre, max_pixels=4014080),
             "video_processor": _with(pre, max_pixels=1204224, video_processor_type="Qwen2VLVideoProcessor")}))
        (d / "video_preprocessor_config.json").write_text(json.dumps(_with(pre, max_pixels=100352)))
    elif layout == "processor-config-flat":
        (d / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2_5_VLProcessor"}))


LAYOUTS = ["preprocessor-only", "nested-image", "video-file", "nested-both", "processor-config-flat"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pick_chooses_the_files_transformers_reads(vllm032, tmp_path, layout):
    from transformers.image_processing_base import ImageProcessingMixin
    from transformers.video_processing_utils import BaseVideoProcessor

    d = tmp_path / "m"
    qwen_layout(d, layout)
    got = pick(read_dir(d))
    assert got.image == ImageProcessingMixin.get_image_processor_dict(str(d))[0]
    assert got.video == BaseVideoProcessor.get_video_processor_dict(str(d))[0]
    assert str(d) in got.origin


def _qwen_info(d: Path, kwargs):
    from transformers import AutoImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from transformers.models.qwen2_5_vl.processing_qwen2_5_vl import Qwen2_5_VLProcessor
    from vllm.config import ModelConfig
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLProcessingInfo
    from vllm.multimodal.processing.context import InputProcessingContext
    from vllm.transformers_utils.processor import get_processor_kwargs_keys, get_processor_kwargs_type

    # vLLM passes the kwargs that are not call-time ("dynamic") keys of the processor to from_pretrained
    # (processor.py::cached_get_processor_without_dynamic_kwargs), which hands them to every sub-processor
    dynamic = get_processor_kwargs_keys(get_processor_kwargs_type(object.__new__(Qwen2_5_VLProcessor)))
    ctor = {k: v for k, v in (kwargs or {}).items() if k not in dynamic}
    proc = SimpleNamespace(image_processor=AutoImageProcessor.from_pretrained(str(d), **ctor),
                           video_processor=Qwen2VLVideoProcessor.from_pretrained(str(d), **ctor),
                           valid_processor_kwargs=Qwen2_5_VLProcessor.valid_processor_kwargs)
    mc = ModelConfig(model=str(d), tokenizer=str(d), skip_tokenizer_init=True, mm_processor_kwargs=kwargs,
                     limit_mm_per_prompt={})

    class Ctx(InputProcessingContext):
        def get_hf_processor(self, typ=None, /, **kw):
            return proc

    return Qwen2_5_VLProcessingInfo(Ctx(mc, None)), proc


KWARGS = [None, {"max_pixels": 401408}, {"videos_kwargs": {"max_pixels": 200704}},
          {"images_kwargs": {"min_pixels": 6272, "max_pixels": 8028160}}]


@pytest.mark.parametrize("kwargs", KWARGS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seq_len, counts", [(128000, {"image": 1, "video": 1}), (20000, {"image": 1, "video": 1}),
                                             (4096, {"video": 1})])
def test_qwen2_5_vl_items_from_the_repo_files_match_vllm(vllm032, tmp_path, layout, kwargs, seq_len, counts):
    d = tmp_path / "m"
    qwen_layout(d, layout)
    info, _ = _qwen_info(d, kwargs)
    want = info.get_mm_max_tokens_per_item(seq_len, counts)
    procs = pick(read_dir(d))
    config = json.loads((d / "config.json").read_text())
    got = E.items_for(config, profile=V032, seq_len=seq_len, counts=counts, text_hidden=3584,
                      mm_processor_kwargs=kwargs, processor=procs.image, video_processor=procs.video)
    assert {m: it.tokens for m, it in got.items()} == {m: want[m] for m in counts}
    if "image" in got:
        size = info.get_image_size_with_most_features()
        assert got["image"].detail.startswith(f"{size.width}x{size.height} image")


def test_the_real_file_makes_one_16384_token_image_and_a_114688_token_video(vllm032, tmp_path):
    """max_pixels 12,845,056 (the file): the image with the most features is 3584 x 3584, 256 x 256 patches of
    14, merged 2 x 2: 16,384 tokens; the 128,000-token video is 7 frame pairs of that grid (vLLM's count)."""
    d = tmp_path / "m"
    qwen_layout(d, "preprocessor-only")
    info, proc = _qwen_info(d, None)
    assert dict(proc.image_processor.size)["longest_edge"] == 12845056 == dict(proc.video_processor.size)["longest_edge"]
    want = info.get_mm_max_tokens_per_item(128000, {"image": 1, "video": 1})
    assert dict(want) == {"image": 16384, "video": 114688}


@pytest.mark.parametrize("layout", ["preprocessor-only", "nested-both", "processor-config-flat"])
@pytest.mark.parametrize("T, seqs, L", [(8192, 1024, 128000), (2048, 256, 32768), (16384, 256, 8192)])
def test_profile_budget_and_items_from_the_repo_files_match_vllm(vllm032, tmp_path, layout, T, seqs, L):
    """vLLM 0.32 (multimodal/encoder_budget.py): per-item tokens of every modality, the profiled modality (most
    tokens; ties by name), compute_mm_encoder_budget, _get_max_items; chunked prefill on, limits 999."""
    from vllm.multimodal.encoder_budget import MultiModalBudget
    from vllm.v1.core.encoder_cache_manager import compute_mm_encoder_budget

    d = tmp_path / "m"
    qwen_layout(d, layout)
    info, _ = _qwen_info(d, None)
    per_item = dict(info.get_mm_max_tokens_per_item(L, {"image": 1, "video": 1}))
    modality = max(per_item, key=lambda m: (per_item[m], m))
    sched = SimpleNamespace(disable_chunked_mm_input=False, max_num_batched_tokens=T, max_num_encoder_input_tokens=T,
                            encoder_cache_size=T, enable_chunked_prefill=True)
    compute, cache = compute_mm_encoder_budget(sched, per_item)
    b = object.__new__(MultiModalBudget)
    b.scheduler_config, b.max_model_len, b.max_num_reqs = sched, L, seqs
    b.mm_limits, b.encoder_compute_budget, b.encoder_cache_size = {"image": 999, "video": 999}, compute, cache
    _, items = MultiModalBudget._get_max_items(b, modality, per_item[modality])

    procs = pick(read_dir(d))
    e = E.encoder_profile(json.loads((d / "config.json").read_text()), profile=V032, text_hidden=3584,
                          max_model_len=L, max_num_batched_tokens=T, max_num_seqs=seqs, act_bytes=2,
                          processor=procs.image, video_processor=procs.video, processor_origin=procs.origin)
    assert (e.modality, e.tokens_per_item, e.budget, e.items) == (modality, per_item[modality],
                                                                   b.get_encoder_budget(), items)
    assert any(n.startswith("Qwen2.5-VL processor sizes:") and str(d) in n for n in e.notes), e.notes


def _gemma_info(d: Path, kwargs):
    from transformers import AutoImageProcessor
    from transformers.processing_utils import ProcessorMixin
    from vllm.config import ModelConfig
    from vllm.model_executor.models.gemma3_mm import Gemma3ProcessingInfo
    from vllm.multimodal.processing.context import InputProcessingContext

    proc = SimpleNamespace(image_processor=AutoImageProcessor.from_pretrained(str(d)),
                           tokenizer=SimpleNamespace(init_kwargs={}),
                           image_seq_length=json.loads((d / "processor_config.json").read_text())["image_seq_length"])
    proc._merge_kwargs = functools.partial(ProcessorMixin._merge_kwargs, proc)
    mc = ModelConfig(model=str(d), tokenizer=str(d), skip_tokenizer_init=True, mm_processor_kwargs=kwargs,
                     limit_mm_per_prompt={})

    class Ctx(InputProcessingContext):
        def get_hf_processor(self, typ=None, /, **kw):
            return proc

    return Gemma3ProcessingInfo(Ctx(mc, None)), proc


@pytest.mark.parametrize("kwargs", [None, {"do_pan_and_scan": True},
                                    {"images_kwargs": {"do_pan_and_scan": True, "pan_and_scan_max_num_crops": 2}},
                                    {"do_pan_and_scan": True, "pan_and_scan_min_crop_size": 2000},
                                    {"do_pan_and_scan": True, "pan_and_scan_max_num_crops": 7}])
def test_gemma3_with_medgemma_processor_files_matches_vllm(vllm032, tmp_path, kwargs):
    """medgemma-27b-it's real preprocessor_config.json leaves every pan-and-scan key null; vLLM's count reads
    them from the processor's merged images_kwargs, whose Gemma3ProcessorKwargs defaults win over the image
    processor's values (get_num_crops): the file changes nothing, --mm-processor-kwargs does."""
    d = tmp_path / "g"
    d.mkdir()
    for f in ("config.json", "preprocessor_config.json", "processor_config.json"):
        shutil.copy(MODELS / "google__medgemma-27b-it" / f, d / f)
    info, proc = _gemma_info(d, kwargs)
    assert proc.image_processor.do_pan_and_scan is None          # the file's null, not a class default
    size = info.get_image_size_with_most_features()
    want = info.get_num_image_tokens(image_width=size.width, image_height=size.height, processor=proc,
                                     mm_kwargs={})
    procs = pick(read_dir(d))
    assert procs.image == json.loads((d / "preprocessor_config.json").read_text())
    got = E.items_for(json.loads((d / "config.json").read_text()), profile=V032, seq_len=131072,
                      counts={"image": 1}, text_hidden=5376, mm_processor_kwargs=kwargs, processor=procs.image)
    assert got["image"].tokens == want
