"""memory/encoder.py against the installed vLLM (0.32.0, CPU build): vLLM's own multimodal processing-info
classes size the largest item per modality (qwen2_vl.py, qwen2_5_vl.py, qwen3_vl.py, llava.py, gemma3_mm.py,
mllama4.py), and its MultiModalBudget / compute_mm_encoder_budget count the budget and the items. No engine is
started and nothing is downloaded: the model's config.json comes from tests/data/models, and the processors
are transformers' classes built with their defaults (what vLLM gets when the model has no processor files)
and the launch's --mm-processor-kwargs, routed through vLLM's own InputProcessingContext.

The CPU build ships without torchvision, which transformers' Qwen-VL image-processing modules import at
load time; a stub module is put in place for that import only (nothing of torchvision runs here: only the
sizing arithmetic of vLLM and transformers is called)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.needs_vllm import require_vllm, require_vllm_032

from kvfit.memory import encoder as E
from kvfit.memory import profiles as P



@pytest.fixture(autouse=True)
def _vllm_here():
    """vLLM's code is the oracle: skip without it, fail under CI (tests/needs_vllm.py)."""
    require_vllm()

MODELS = Path(__file__).resolve().parent.parent / "data" / "models"
V032 = P.profile_for("0.32.0")


def _stub_torchvision() -> list[str]:
    if importlib.util.find_spec("torchvision") is not None:
        return []
    tv = types.ModuleType("torchvision")
    tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
    tr, v2 = types.ModuleType("torchvision.transforms"), types.ModuleType("torchvision.transforms.v2")
    fn = types.ModuleType("torchvision.transforms.v2.functional")

    class InterpolationMode:
        NEAREST, BILINEAR, BICUBIC, LANCZOS, BOX, HAMMING, NEAREST_EXACT = (
            "nearest", "bilinear", "bicubic", "lanczos", "box", "hamming", "nearest-exact")

    for m in (tr, v2, fn):
        m.InterpolationMode = InterpolationMode
    tv.transforms, tr.v2, v2.functional, tr.functional = tr, v2, fn, fn
    mods = {"torchvision": tv, "torchvision.transforms": tr, "torchvision.transforms.v2": v2,
            "torchvision.transforms.v2.functional": fn, "torchvision.transforms.functional": fn,
            "torchvision.io": types.ModuleType("torchvision.io")}
    sys.modules.update(mods)
    return list(mods)


@pytest.fixture(scope="module")
def vllm032():
    require_vllm_032()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers.image_utils  # noqa: F401  (transformers decides torchvision is absent first)
    import vllm.config  # noqa: F401

    added = _stub_torchvision()
    yield
    for name in added:
        sys.modules.pop(name, None)


def _info(tmp_path, model: str, info_cls, processor, *, mm_processor_kwargs=None, limit=None):
    from vllm.config import ModelConfig
    from vllm.multimodal.processing.context import InputProcessingContext

    d = tmp_path / model
    d.mkdir(exist_ok=True)
    shutil.copy(MODELS / model / "config.json", d / "config.json")
    mc = ModelConfig(model=str(d), tokenizer=str(d), skip_tokenizer_init=True,
                     mm_processor_kwargs=mm_processor_kwargs, limit_mm_per_prompt=limit or {})

    class Ctx(InputProcessingContext):
        def get_hf_processor(self, typ=None, /, **kwargs):
            return processor(self.get_merged_mm_kwargs(kwargs))

    return info_cls(Ctx(mc, None)), json.loads((d / "config.json").read_text())


def _qwen_processor(image_cls, video_cls, processor_cls):
    def make(kw):
        pick = {k: v for k, v in kw.items() if k in ("min_pixels", "max_pixels", "size")}
        return SimpleNamespace(image_processor=image_cls(**pick), video_processor=video_cls(**pick),
                               valid_processor_kwargs=processor_cls.valid_processor_kwargs)
    return make


QWEN_KWARGS = [None, {"max_pixels": 12845056}, {"min_pixels": 3136, "max_pixels": 602112},
               {"images_kwargs": {"max_pixels": 401408}}, {"videos_kwargs": {"max_pixels": 200704}},
               {"size": {"shortest_edge": 3136, "longest_edge": 2007040}}]


@pytest.mark.parametrize("kwargs", QWEN_KWARGS)
@pytest.mark.parametrize("seq_len, counts", [(128000, {"image": 1, "video": 1}), (8192, {"video": 1}),
                                             (20000, {"image": 1, "video": 1}), (4096, {"video": 1})])
def test_qwen2_5_vl_largest_items_match_vllm(vllm032, tmp_path, kwargs, seq_len, counts):
    from transformers import Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLProcessingInfo

    info, config = _info(tmp_path, "Qwen__Qwen2.5-VL-7B-Instruct", Qwen2_5_VLProcessingInfo,
                         _qwen_processor(Qwen2VLImageProcessor, Qwen2VLVideoProcessor, Qwen2_5_VLProcessor),
                         mm_processor_kwargs=kwargs)
    want = info.get_mm_max_tokens_per_item(seq_len, counts)
    got = E.items_for(config, profile=V032, seq_len=seq_len, counts=counts, text_hidden=3584,
                      mm_processor_kwargs=kwargs)
    assert {m: it.tokens for m, it in got.items()} == {m: want[m] for m in counts}
    size = info.get_image_size_with_most_features()
    if "image" in got:
        assert got["image"].detail.startswith(f"{size.width}x{size.height} image")


@pytest.mark.parametrize("kwargs", [None, {"max_pixels": 16777216},
                                    {"videos_kwargs": {"size": {"shortest_edge": 4096, "longest_edge": 25165824}}}])
def test_qwen3_vl_largest_items_match_vllm(vllm032, tmp_path, kwargs):
    from transformers import Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor
    from vllm.model_executor.models.qwen3_vl import Qwen3VLProcessingInfo

    info, config = _info(tmp_path, "Qwen__Qwen3-VL-8B-Instruct", Qwen3VLProcessingInfo,
                         _qwen_processor(Qwen2VLImageProcessor, Qwen3VLVideoProcessor, Qwen3VLProcessor),
                         mm_processor_kwargs=kwargs)
    want = info.get_mm_max_tokens_per_item(262144, {"image": 1, "video": 1})
    got = E.items_for(config, profile=V032, seq_len=262144, counts={"image": 1, "video": 1}, text_hidden=4096,
                      mm_processor_kwargs=kwargs)
    assert {m: it.tokens for m, it in got.items()} == dict(want)
    assert got["video"].embeds == want["video"]          # 0.16+: the count is the soft tokens themselves


def test_llava_image_tokens_match_vllm(vllm032, tmp_path):
    from vllm.model_executor.models.llava import LlavaProcessingInfo

    info, config = _info(tmp_path, "llava-hf__llava-1.5-7b-hf", LlavaProcessingInfo, lambda kw: None)
    got = E.items_for(config, profile=V032, seq_len=4096, counts={"image": 1}, text_hidden=4096)
    assert got["image"].tokens == info.get_max_image_tokens() == 576


def test_gemma3_image_tokens_match_vllm(vllm032, tmp_path):
    """Without pan and scan (the processor default) one crop: (0 + 1) x image_seq_length."""
    from vllm.model_executor.models.gemma3_mm import Gemma3ProcessingInfo

    info, config = _info(tmp_path, "google__medgemma-27b-it", Gemma3ProcessingInfo, lambda kw: None)
    proc = SimpleNamespace(image_seq_length=config["mm_tokens_per_image"])
    info.get_num_crops = lambda **kw: 0
    want = info.get_num_image_tokens(image_width=896, image_height=896, processor=proc, mm_kwargs={})
    got = E.items_for(config, profile=V032, seq_len=4096, counts={"image": 1}, text_hidden=5376)
    assert got["image"].tokens == want == 256


def test_llama4_tile_tokens_match_vllm(vllm032):
    """mllama4.py Mllama4ProcessingInfo.get_patch_per_chunk on the vision config (transformers'
    Llama4VisionConfig defaults: the bundled Scout config has none), times max_patches + the global tile."""
    from transformers import Llama4VisionConfig
    from vllm.model_executor.models.mllama4 import Mllama4ProcessingInfo

    vc = Llama4VisionConfig()
    config = json.loads((MODELS / "meta-llama__Llama-4-Scout-17B-16E-Instruct" / "config.json").read_text())
    config = dict(config, vision_config=vc.to_dict())
    got = E.items_for(config, profile=V032, seq_len=10_000_000, counts={"image": 1}, text_hidden=5120)
    assert got["image"].tokens == (E.LLAMA4_MAX_PATCHES + 1) * Mllama4ProcessingInfo.get_patch_per_chunk(vc)


@pytest.mark.parametrize("T, L, seqs, limit, tokens, chunked", [
    (8192, 128000, 1024, 999, 8960, True), (2048, 128000, 256, 999, 1280, True), (8192, 128000, 256, 2, 1280, True),
    (16384, 4096, 256, 999, 1280, True), (8192, 32768, 4, 999, 256, True), (8192, 8192, 256, 999, 2048, False),
    (2048, 2048, 256, 1, 4096, False), (8192, 128000, 256, 3, 576, True)])
def test_items_and_budget_match_vllms_multimodal_budget(vllm032, T, L, seqs, limit, tokens, chunked):
    from vllm.multimodal.encoder_budget import MultiModalBudget
    from vllm.v1.core.encoder_cache_manager import compute_mm_encoder_budget

    sched = SimpleNamespace(disable_chunked_mm_input=False, max_num_batched_tokens=T, max_num_encoder_input_tokens=T,
                            encoder_cache_size=T, enable_chunked_prefill=chunked)
    compute, cache = compute_mm_encoder_budget(sched, {"image": tokens})
    b = object.__new__(MultiModalBudget)
    b.scheduler_config, b.max_model_len, b.max_num_reqs = sched, L, seqs
    b.mm_limits, b.encoder_compute_budget, b.encoder_cache_size = {"image": limit}, compute, cache
    _, want = MultiModalBudget._get_max_items(b, "image", tokens)
    budget = max(T, tokens)
    assert budget == b.get_encoder_budget()
    assert E._items_v1(E.mm_rule(V032), tokens, budget, limit, max_model_len=L, max_num_seqs=seqs,
                       max_num_batched_tokens=T, chunked_prefill=chunked) == want


def test_limit_flag_parses_as_vllm_0_32_does(vllm032):
    """engine/arg_utils.py's parser for --limit-mm-per-prompt, then MultiModalConfig's validation."""
    from vllm.config.multimodal import MultiModalConfig
    from vllm.engine.arg_utils import EngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from kvfit.errors import BadFlag
    from kvfit.flags import parse_limit_mm_per_prompt

    parser = EngineArgs.add_cli_args(FlexibleArgumentParser())
    for text in ('{"image": 0}', '{"image": 2, "video": 1, "audio": 0}', '{"video": {"count": 1, "num_frames": 32}}',
                 '{"image": {"count": 3, "width": 512, "height": 512}}', '{"image": true}'):
        ns = parser.parse_args(["--limit-mm-per-prompt", text])
        cfg = MultiModalConfig(limit_per_prompt=ns.limit_mm_per_prompt).limit_per_prompt
        ours = parse_limit_mm_per_prompt(text)
        for modality, opts in cfg.items():
            mine = ours[modality] if isinstance(ours[modality], dict) else {"count": ours[modality]}
            assert mine["count"] == opts.count
            for k, v in mine.items():
                assert getattr(opts, k) == v
    for bad in ('{"image": -1}', '{"image": 1.5}', '{"image": {"count": 1, "fps": 2}}', '{"image": "2"}'):
        ns = parser.parse_args(["--limit-mm-per-prompt", bad])
        with pytest.raises(Exception):
            MultiModalConfig(limit_per_prompt=ns.limit_mm_per_prompt)
        with pytest.raises(BadFlag):
            parse_limit_mm_per_prompt(bad)
