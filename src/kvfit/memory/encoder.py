"""vLLM's memory profile of a multimodal model's encoder, per release: which dummy items it encodes, how many,
how large, and what that costs the KV cache.

V1 (v1/worker/gpu_model_runner.py::profile_run, and the V2 runner's v1/worker/gpu/model_runner.py::profile_run
with v1/worker/gpu/mm/encoder_runner.py::profile_encoder_cache, vLLM 0.32):

1. Per modality the model supports, the tokens of its largest item (`get_mm_max_tokens_per_item`, with
   mm_counts = 1 for every modality whose --limit-mm-per-prompt is > 0; multimodal/encoder_budget.py). A
   limit of 0 drops the modality (every limit 0: nothing is profiled, "Encoder cache will not be
   initialized").
2. The encoder budget: min(compute budget, cache size) with both = max(max_num_batched_tokens, the largest
   item's tokens) (v1/core/encoder_cache_manager.py::compute_mm_encoder_budget; config/scheduler.py sets
   max_num_encoder_input_tokens = encoder_cache_size = max_num_batched_tokens).
3. One modality is profiled: the one with the most tokens per item (ties: the later name, 0.16+).
4. Items (multimodal/encoder_budget.py::MultiModalBudget._get_max_items, 0.10.1+):
       per_prompt = max(1, min(limit, max_model_len // tokens))
       seqs       = max_num_seqs, or min(max_num_seqs, max_num_batched_tokens // tokens) without chunked prefill
       items      = max(1, min(budget // tokens, seqs x per_prompt))
   0.10.0: items = max(1, min(budget // tokens, max_num_seqs x limit)); 0.7.0-0.9.2:
   items = min(cdiv(budget, tokens), max_num_seqs x limit) (gpu_model_runner.py::profile_run).
5. The encoder runs ONCE on all items (one batch: multimodal/utils.py::group_and_batch_mm_kwargs), and its
   outputs stay in the encoder cache while the language model's dummy run and the sampler run. 0.11.0-0.12.0
   padded every output to `budget` rows first (profile_run: "expanded_outputs"). The profile's peak is
   max(encoder forward, encoder outputs + decoder forward + sampler).
6. --skip-mm-profiling (0.10.1+) skips steps 5: no encoder term at all.

V0 (worker/model_runner.py::profile_run / _dummy_run, 0.6.x-0.10.x; doc C3): max_mm_tokens = sum over
modalities of limit x tokens of the largest item (multimodal/registry.py::get_max_multimodal_tokens), the
dummy batch has seqs = max(1, min(max_num_seqs, max_num_batched_tokens // max_mm_tokens)) sequences, each
carrying `limit` largest items of every modality (InputRegistry.dummy_data_for_profiling with seq_len =
max_num_batched_tokens // seqs); the encoder runs on all of them inside the model forward, and the sampler
has seqs rows. The V0 default limit is 1 per modality (config.py::MultiModalConfig.get_limit_per_prompt);
V1's is 1 up to 0.8.4 and 999 from 0.8.5.

What is exact and what is estimated. Steps 1-4 (tokens, budget, modality, item count) follow the cited code
for each family below and are tested against hand derivations. The bytes are an estimate: the encoder's
activation peak is counted from the tensors its vLLM forward keeps alive at once per encoder position
(`_per_position_bytes`), and the outputs as rows x width x dtype. No real-GPU log of a V1 multimodal launch
with a known GPU is in the calibration set, so the estimate is not calibrated (the accuracy benchmark says
so). Item sizes depend on the model's processor files (processor_config.json, preprocessor_config.json,
video_preprocessor_config.json), which config.json does not carry: the caller passes the image and video
processor settings transformers builds from them (sources/processor.py reads them as JSON from the model
directory, the HF cache, the Hub or the bundled catalog); without them kvfit uses the processor class's
defaults (transformers 5.19, as installed with vLLM 0.32), which can be far smaller than a real repo's (Qwen-VL
repos set max_pixels 12,845,056; the class default is 1,003,520), and says so. --mm-processor-kwargs (max_pixels,
min_pixels, size, images_kwargs / videos_kwargs, do_pan_and_scan, max_patches) overrides them as vLLM does.
One note says which sizes were used and where they came from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..arch.towers import feature_layers
from ..errors import BadFlag

MODALITIES = ("image", "video", "audio")


# --- the release's rules (each line: the file it was read from) ---------------------------------------

def _rel(profile) -> tuple[int, int, int]:
    from .profiles import release_of

    return release_of(getattr(profile, "version", profile))


@dataclass(frozen=True)
class MMRule:
    """How one vLLM release profiles a multimodal encoder."""

    engine: str                  # "V1" | "V0"
    default_limit: int           # --limit-mm-per-prompt for a modality not given
    items_rule: str              # "budget" (0.10.1+) | "floor" (0.10.0) | "cdiv" (0.7.0-0.9.2) | "v0"
    counts_are_limits: bool      # mm_counts passed to get_mm_max_tokens_per_item are the limits (<= 0.8.4)
    dummy_seq_len: str           # the seq_len the dummy item is built with: "max_model_len" | "tokens" |
                                 # "max_num_batched_tokens" (V1), "per_seq" (V0)
    expand_outputs: bool         # 0.11.0-0.12.0: outputs padded to the budget in the encoder cache
    skip_flag: bool              # --skip-mm-profiling exists and is honoured (V1 0.10.1+)
    tie_by_name: bool            # modality ties broken by name (0.16+: max(..., key=(tokens, name)))


def mm_rule(profile) -> MMRule:
    v = _rel(profile)
    if getattr(profile, "engine", "V1") == "V0":
        # worker/model_runner.py::_dummy_run (0.6.4 lines 1248-1260 ... 0.9.2 lines 1359-1364);
        # config.py::MultiModalConfig.get_limit_per_prompt: 1 in V0
        return MMRule("V0", 1, "v0", True, "per_seq", False, False, False)
    default = 999 if v >= (0, 8, 5) else 1                                    # 0.8.5 config.py: 999 if VLLM_USE_V1
    if v >= (0, 10, 1):
        items, seq = "budget", ("max_model_len" if v >= (0, 11, 0) else "max_num_batched_tokens")
    elif v >= (0, 10, 0):
        items, seq = "floor", "tokens"                                           # 0.10.0 seq_len=max_tokens_per_mm_item
    else:
        items, seq = "cdiv", "max_num_batched_tokens"                            # 0.7.0-0.9.2 seq_len=self.max_num_tokens
    return MMRule("V1", default, items, v < (0, 8, 5), seq,
                  (0, 11, 0) <= v < (0, 13, 0), v >= (0, 10, 1), v >= (0, 16, 0))


# --- the launch's multimodal settings -------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    """--limit-mm-per-prompt: a count per modality and the dummy-item options (width, height, num_frames,
    length: config/multimodal.py ImageDummyOptions / VideoDummyOptions / AudioDummyOptions, 0.11+)."""

    counts: Mapping[str, int]
    options: Mapping[str, Mapping[str, int]]

    def count(self, modality: str, default: int) -> int:
        return self.counts.get(modality, default)


def read_limits(text: str | Mapping | None) -> Limits:
    d = json.loads(text) if isinstance(text, str) else dict(text or {})
    counts: dict[str, int] = {}
    options: dict[str, dict[str, int]] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            counts[k] = int(v.get("count", 999))               # BaseDummyOptions.count default 999
            options[k] = {o: int(x) for o, x in v.items() if o != "count" and x is not None}
        else:
            counts[k] = int(v)
    return Limits(counts, options)


def read_kwargs(text: str | Mapping | None) -> dict:
    return json.loads(text) if isinstance(text, str) else dict(text or {})


# --- what one dummy item is ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Tower:
    """The encoder that runs on a dummy item, as its vLLM module builds it (the dims that size activations)."""

    name: str
    layers: int
    hidden: int
    intermediate: int
    mlp: str = "plain"            # "gated" (SiLU-and-mul, gate_up fused) | "plain" (fc1, act, fc2)
    block: str = "prenorm"        # "prenorm": x = x + f(norm(x)); "fused-residual": Qwen2.5-VL's block keeps
                                  # x, x_attn, the fused norm's output and its residual alive through the MLP
    rope: bool = False            # rotary q/k: a contiguous q/k copy and the rotated q/k (Qwen ViTs, Llama 4)
    in_per_position: int = 0      # input values per encoder position (pixel_values, float32 from the processor)


@dataclass(frozen=True)
class MMItem:
    modality: str
    tokens: int                   # tokens vLLM counts for the item (get_mm_max_tokens_per_item): the budget
    embeds: int                   # rows the encoder writes to the encoder cache for the item
    positions: int                # encoder sequence positions of the item (patches, tiles x patches, frames)
    tower: Tower
    out_dim: int                  # width of one encoder-cache row (the language model's hidden size; Qwen3-VL
                                  # deepstack: x (1 + levels))
    detail: str = ""


@dataclass(frozen=True)
class EncoderProfile:
    """What vLLM's profile run does with the encoder, and its bytes on one GPU."""

    family: str
    modality: str | None = None           # the modality profiled (V1); None: nothing profiled
    tokens_per_item: int = 0
    budget: int = 0                       # V1 encoder budget (tokens)
    items: int = 0                        # items encoded in the profile (V1: one batch; V0: all sequences)
    forward_bytes: int = 0                # encoder forward peak (transient)
    cache_bytes: int = 0                  # encoder outputs held through the decoder's dummy run
    persistent_bytes: int = 0             # buffers the model allocates for multimodal input (Qwen3-VL deepstack)
    v0_seqs: int = 0                      # V0: sequences in the dummy batch (= sampler rows)
    estimated: bool = True                # bytes are a structural estimate (see the module docstring)
    modelled: bool = True                 # False: kvfit does not know this family's processor
    notes: tuple[str, ...] = field(default=())

    @property
    def profiled(self) -> bool:
        return self.items > 0


# --- processors (class defaults: transformers 5.19, as installed with vLLM 0.32) --------------------

# transformers/models/qwen2_vl/image_processing_qwen2_vl.py: size = {"shortest_edge": 56 * 56,
# "longest_edge": 28 * 28 * 1280}; video_processing_qwen2_vl.py: {"shortest_edge": 128 * 28 * 28,
# "longest_edge": 28 * 28 * 768}; qwen3_vl/video_processing_qwen3_vl.py: {"shortest_edge": 128 * 32 * 32,
# "longest_edge": 32 * 32 * 768}, temporal_patch_size 2.
QWEN2VL_IMAGE_SIZE = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
QWEN2VL_VIDEO_SIZE = {"shortest_edge": 128 * 28 * 28, "longest_edge": 28 * 28 * 768}
QWEN3VL_VIDEO_SIZE = {"shortest_edge": 128 * 32 * 32, "longest_edge": 32 * 32 * 768}
# whisper/feature_extraction_whisper.py: sampling_rate 16000, hop_length 160, chunk_length 30
WHISPER = {"sampling_rate": 16000, "hop_length": 160, "chunk_length": 30}
# llama4/image_processing_llama4_fast.py: max_patches = 16, tile size 336 (the vision config's image_size)
LLAMA4_MAX_PATCHES = 16

# The mm-processor-kwargs keys each family's profile reads (others are noted, not guessed at).
_SIZE_KEYS = {"min_pixels", "max_pixels", "size", "images_kwargs", "videos_kwargs", "audio_kwargs"}


def _size_of(default: Mapping, *layers: Mapping | None) -> dict:
    """A Qwen-VL `size` dict: the default, then each layer's `size`, `min_pixels`, `max_pixels` (later wins):
    the processor's __init__ (image_processing_qwen2_vl.py: min/max_pixels override size) and vLLM's
    Qwen2VLProcessingInfo._get_vision_size."""
    size = dict(default)
    for layer in layers:
        if not layer:
            continue
        if isinstance(layer.get("size"), Mapping):
            size.update({k: _pixels(k, v) for k, v in layer["size"].items()
                         if v is not None and k in ("shortest_edge", "longest_edge")})
        if layer.get("min_pixels") is not None:
            size["shortest_edge"] = _pixels("min_pixels", layer["min_pixels"])
        if layer.get("max_pixels") is not None:
            size["longest_edge"] = _pixels("max_pixels", layer["max_pixels"])
    return size


# One item of more tokens than this is longer than any context vLLM serves; kvfit refuses to size it (the
# most-features search below is a divisor search whose cost grows with the square root of the tokens).
MAX_ITEM_TOKENS = 1 << 22


def _pixels(key: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise BadFlag(f"--mm-processor-kwargs {key} must be a whole number of pixels > 0, got {v!r}",
                      flag="mm_processor_kwargs")
    return v


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers/models/qwen2_vl/image_processing_qwen2_vl.py::smart_resize (5.19)."""
    if max(height, width) / min(height, width) > 200:
        raise BadFlag(f"a {width}x{height} item: the Qwen-VL processor refuses aspect ratios over 200",
                      flag="limit_mm_per_prompt")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def video_smart_resize(num_frames: int, height: int, width: int, temporal_factor: int, factor: int,
                       min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers/models/qwen3_vl/video_processing_qwen3_vl.py::smart_resize (5.19): the pixel budget covers
    all frames."""
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def most_features_image(max_pixels: int, unit: int, rel: tuple[int, int, int]) -> tuple[int, int]:
    """(height, width) of the Qwen-VL image with the most features under max_pixels:
    0.13+: the factor pair of max_pixels // unit**2 with aspect <= 200 (qwen2_vl.py::
    get_image_size_with_most_features, closest_factor_pair); before: the processor's resize of a
    9999999 x 9999999 image, a square (qwen2_vl.py 0.7.0-0.12.0)."""
    if rel < (0, 13, 0):
        return smart_resize(9999999, 9999999, unit, 0, max_pixels)
    n = max(1, max_pixels // (unit * unit))
    if n > MAX_ITEM_TOKENS:
        raise BadFlag(f"max_pixels {max_pixels:,} makes one image {n:,} tokens, more than any context vLLM "
                      "serves", "Give the model's real max_pixels with --mm-processor-kwargs.",
                      flag="mm_processor_kwargs")
    hf, wf = 1, n
    for s in range(n, 0, -1):
        for d in range(math.isqrt(s), 0, -1):
            if s % d == 0:
                hf, wf = d, s // d
                break
        if wf / hf <= 200:
            break
    return unit * hf, unit * wf


# --- families ---------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    config: Mapping
    text_hidden: int
    rel: tuple[int, int, int]
    kwargs: Mapping
    processor: Mapping | None            # preprocessor_config.json, when known
    video_processor: Mapping | None      # video_preprocessor_config.json, when known
    options: Mapping[str, Mapping[str, int]]
    notes: list[str]
    read_keys: set[str] = field(default_factory=set)
    origin: str | None = None            # where processor / video_processor came from, or why there are none
    sizes: str = ""                      # the processor sizes the family's sizer used (for the source note)
    sizes_from_kwargs: bool = False      # --mm-processor-kwargs changed them
    size_source: str | None = None       # where the sizes came from, when not the processor files (Gemma 3)

    def sub(self, key: str) -> dict:
        for c in (self.config, self.config.get("thinker_config") or {}):
            v = c.get(key) if isinstance(c, Mapping) else None
            if isinstance(v, Mapping):
                return dict(v)
        return {}


def _note(ctx: _Ctx, text: str) -> None:
    if text not in ctx.notes:
        ctx.notes.append(text)


def _kwargs_give(kw: Mapping, keys: tuple[str, ...]) -> bool:
    """--mm-processor-kwargs set one of `keys`, flat or scoped (images_kwargs / videos_kwargs)."""
    return any(k in kw for k in keys) or any(
        isinstance(kw.get(s), Mapping) and any(k in kw[s] for k in keys) for s in ("images_kwargs", "videos_kwargs"))


def _source_note(ctx: _Ctx, name: str) -> None:
    """One note: the processor sizes the profile used and where they came from (the model's processor files,
    the class defaults, --mm-processor-kwargs over either)."""
    if not ctx.sizes:
        return                                   # the family's items do not depend on the processor
    if ctx.size_source:
        _note(ctx, f"{name} processor sizes: {ctx.sizes} ({ctx.size_source})")
        return
    if ctx.processor is not None or ctx.video_processor is not None:
        src = f"from {ctx.origin or 'the processor files given'}"
    else:
        src = (f"the processor class defaults: {ctx.origin or 'kvfit has none of the model processor files'}; "
               "the repo's processor file may allow larger items than these, so the real launch's profile may be "
               "larger (give its sizes with --mm-processor-kwargs)")
    if ctx.sizes_from_kwargs:
        src = f"--mm-processor-kwargs over {src.removeprefix('from ')}"
    _note(ctx, f"{name} processor sizes: {ctx.sizes} ({src})")


def _i(d: Mapping, *keys: str, default: int = 0) -> int:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return int(v)
    return default


def _qwen_sizes(ctx: _Ctx, video_default: Mapping) -> tuple[dict, dict, dict]:
    """(image size for counting, video size for counting, video size the dummy video is processed with).

    Counting (vLLM 0.32 qwen2_vl.py::_get_vision_info): the processor's size (class default, the file, then
    flat mm-processor-kwargs, which reach the processor's __init__) overridden by the scoped images_kwargs /
    videos_kwargs; Qwen2-VL counts videos against the *image* processor's size. Processing: the video
    processor's own size (video_preprocessor_config.json, else preprocessor_config.json as transformers falls
    back to it, else its class default)."""
    kw = ctx.kwargs
    ctx.read_keys |= _SIZE_KEYS
    img_base = _size_of(QWEN2VL_IMAGE_SIZE, ctx.processor, kw)
    image = _size_of(img_base, kw.get("images_kwargs") if isinstance(kw.get("images_kwargs"), Mapping) else None)
    vsrc = ctx.video_processor if ctx.video_processor is not None else ctx.processor
    vid_base = _size_of(video_default, vsrc, kw)
    vscoped = kw.get("videos_kwargs") if isinstance(kw.get("videos_kwargs"), Mapping) else None
    video_count = _size_of(img_base, vscoped)
    video_proc = _size_of(vid_base, vscoped)
    ctx.sizes = f"image max_pixels {image['longest_edge']:,}, video max_pixels {video_proc['longest_edge']:,}"
    ctx.sizes_from_kwargs = _kwargs_give(kw, ("min_pixels", "max_pixels", "size"))
    return image, video_count, video_proc


def _qwen_tower(vc: Mapping, *, rel_key: str, in_ch: int, patch: int, tp_frames: int) -> Tower:
    if rel_key == "qwen2_vl":        # qwen2_vl.py Qwen2VisionTransformer: embed_dim, mlp_ratio, QuickGELU MLP
        d = _i(vc, "embed_dim", default=1280)
        return Tower("Qwen2-VL ViT", _i(vc, "depth", default=32), d, int(d * float(vc.get("mlp_ratio", 4) or 4)),
                     "plain", "prenorm", True, in_ch * tp_frames * patch * patch)
    if rel_key == "qwen2_5_vl":      # qwen2_5_vl.py Qwen2_5_VisionBlock: gated MLP, fused residual norm
        return Tower("Qwen2.5-VL ViT", _i(vc, "depth", default=32), _i(vc, "hidden_size", default=1280),
                     _i(vc, "intermediate_size", default=3420), "gated", "fused-residual", True,
                     in_ch * tp_frames * patch * patch)
    return Tower("Qwen3-VL ViT", _i(vc, "depth", default=27), _i(vc, "hidden_size", default=1152),  # qwen3_vl.py
                 _i(vc, "intermediate_size", default=4304), "plain", "prenorm", True,
                 in_ch * tp_frames * patch * patch)


def _qwen2_family(ctx: _Ctx, seq_len: int, counts: Mapping[str, int], kind: str) -> dict[str, MMItem]:
    """Qwen2-VL, Qwen2.5-VL and the Qwen2.5-Omni thinker's vision (qwen2_vl.py / qwen2_5_vl.py /
    qwen2_5_omni_thinker.py Qwen2VLProcessingInfo; 0.32 unless said)."""
    vc = ctx.sub("vision_config")
    p = _i(vc, "patch_size", "spatial_patch_size", default=14)
    m = _i(vc, "spatial_merge_size", default=2)
    tpf = _i(vc, "temporal_patch_size", default=2)
    unit = p * m
    image_size, video_count, video_proc = _qwen_sizes(ctx, QWEN2VL_VIDEO_SIZE)
    if kind == "qwen2_vl":
        out = _i(vc, "hidden_size", default=ctx.text_hidden)
    else:
        out = _i(vc, "out_hidden_size", default=ctx.text_hidden)
    tower = _qwen_tower(vc, rel_key=kind, in_ch=_i(vc, "in_chans", "in_channels", default=3), patch=p, tp_frames=tpf)

    h, w = most_features_image(image_size["longest_edge"], unit, ctx.rel)

    def grid_tokens(height, width, size) -> int:          # one frame (pair) resized with `size`
        rh, rw = smart_resize(height, width, unit, size["shortest_edge"], size["longest_edge"])
        return (rh // p) * (rw // p) // (m * m)

    per_image = grid_tokens(h, w, image_size)
    per_pair_count = grid_tokens(h, w, video_count)

    def video_tokens(frames: int) -> int:
        return max((frames + (-frames % tpf)) // tpf, 1) * per_pair_count

    def frames_for(length: int, cnt: Mapping[str, int]) -> int:
        # get_num_frames_with_most_features: up to 0.10.1 the images' tokens are taken off seq_len first.
        # _get_max_video_frames adds frames while video_tokens(n + 1) <= seq_len; video_tokens(n) =
        # ceil(n / temporal) x per pair, so the last n is (seq_len // per pair) x temporal (0: none fits;
        # 0.13+ starts from 1 frame).
        budget_len = length - (per_image * cnt.get("image", 0) if ctx.rel < (0, 10, 2) else 0)
        cap = 16 if ctx.rel < (0, 11, 0) else 14                              # _MAX_FRAMES_PER_VIDEO
        per_video = max(cnt.get("video", 0), 1)
        if per_pair_count <= 0:
            n = cap * per_video
        else:
            n = max(0, budget_len) // per_pair_count * tpf
        n = max(n, 0 if ctx.rel < (0, 13, 0) else 1)
        return max(min(n // per_video, cap), 1)

    items: dict[str, MMItem] = {}
    if counts.get("image", 0) > 0:
        o = ctx.options.get("image", {})
        dh, dw = min(h, o.get("height", h)), min(w, o.get("width", w))
        rh, rw = smart_resize(dh, dw, unit, image_size["shortest_edge"], image_size["longest_edge"])
        pos = (rh // p) * (rw // p)
        items["image"] = MMItem("image", per_image, pos // (m * m), pos, tower, out,
                                f"{dw}x{dh} image, {per_image:,} tokens")
    if counts.get("video", 0) > 0:
        frames = frames_for(seq_len, counts)
        tokens = video_tokens(frames)
        o = ctx.options.get("video", {})
        dframes = min(frames, o.get("num_frames", frames))
        dh, dw = min(h, o.get("height", h)), min(w, o.get("width", w))
        rh, rw = smart_resize(dh, dw, unit, video_proc["shortest_edge"], video_proc["longest_edge"])
        grid_t = max((dframes + (-dframes % tpf)) // tpf, 1)
        pos = grid_t * (rh // p) * (rw // p)
        items["video"] = MMItem("video", tokens, pos // (m * m), pos, tower, out,
                                f"{dframes} frames of {dw}x{dh} ({rw}x{rh} after the video processor), "
                                f"{tokens:,} tokens counted")
    return items


def _qwen3_family(ctx: _Ctx, seq_len: int, counts: Mapping[str, int]) -> dict[str, MMItem]:
    """Qwen3-VL (+MoE) and Qwen3.5 (qwen3_vl.py Qwen3VLProcessingInfo, 0.32; qwen3_5.py reuses it): images as
    Qwen2-VL; a video is two frames at the largest image fitting video max_pixels // temporal_patch_size
    (get_max_video_tokens, 0.16+). 0.11.0-0.12.0 counted a video's soft tokens x 12.5 (timestamps)."""
    vc = ctx.sub("vision_config")
    p = _i(vc, "patch_size", default=16)
    m = _i(vc, "spatial_merge_size", default=2)
    tpf = _i(vc, "temporal_patch_size", default=2)
    unit = p * m
    image_size, _, video_size = _qwen_sizes(ctx, QWEN3VL_VIDEO_SIZE)
    levels = len(vc.get("deepstack_visual_indexes") or [])
    out = _i(vc, "out_hidden_size", default=ctx.text_hidden) * (1 + levels)
    tower = _qwen_tower(vc, rel_key="qwen3_vl", in_ch=_i(vc, "in_channels", "in_chans", default=3), patch=p,
                        tp_frames=tpf)
    items: dict[str, MMItem] = {}
    if counts.get("image", 0) > 0:
        h, w = most_features_image(image_size["longest_edge"], unit, ctx.rel)
        o = ctx.options.get("image", {})
        dh, dw = min(h, o.get("height", h)), min(w, o.get("width", w))
        rh, rw = smart_resize(h, w, unit, image_size["shortest_edge"], image_size["longest_edge"])
        tokens = (rh // p) * (rw // p) // (m * m)
        rh, rw = smart_resize(dh, dw, unit, image_size["shortest_edge"], image_size["longest_edge"])
        pos = (rh // p) * (rw // p)
        items["image"] = MMItem("image", tokens, pos // (m * m), pos, tower, out, f"{dw}x{dh} image, {tokens:,} tokens")
    if counts.get("video", 0) > 0:
        vmax = video_size["longest_edge"]
        h, w = most_features_image(vmax // tpf, unit, (0, 32, 0))
        rh, rw = video_smart_resize(2, h, w, tpf, unit, video_size["shortest_edge"], vmax)
        pos = (rh // p) * (rw // p)                       # two frames: grid_t 1
        soft = pos // (m * m)
        tokens = int(soft * 12.5) if (0, 11, 0) <= ctx.rel < (0, 13, 0) else soft
        items["video"] = MMItem("video", tokens, soft, pos, tower, out,
                                f"2 frames of {w}x{h}, {soft:,} tokens" + (" (x 12.5 counted)" if tokens != soft else ""))
        if (0, 11, 0) <= ctx.rel < (0, 16, 0):
            _note(ctx, "Qwen3-VL video sized by 0.16+'s rule (two frames at the video pixel budget); "
                             "0.11-0.15 spread the same budget over more frames")
    return items


def _omni_family(ctx: _Ctx, seq_len: int, counts: Mapping[str, int]) -> dict[str, MMItem]:
    """Qwen2.5-Omni thinker (qwen2_5_omni_thinker.py): vision as Qwen2.5-VL, audio as Qwen2-Audio
    (qwen2_audio.py::get_mm_max_tokens_per_item: min(chunk_length, 30) s at the feature extractor's rate,
    / hop_length mel frames, two stride-2 reductions)."""
    items = _qwen2_family(ctx, seq_len, counts, "qwen2_5_vl")
    if counts.get("audio", 0) > 0:
        ac = ctx.sub("audio_config")
        fe = dict(WHISPER)
        for k in WHISPER:
            if ctx.processor and isinstance(ctx.processor.get(k), int):
                fe[k] = ctx.processor[k]
        mel = int(min(fe["chunk_length"], 30) * fe["sampling_rate"]) // fe["hop_length"]
        after_conv = (mel - 1) // 2 + 1
        tokens = (after_conv - 2) // 2 + 1
        o = ctx.options.get("audio", {})
        if o.get("length"):
            mel = min(mel, o["length"] // fe["hop_length"])
        d = _i(ac, "d_model", "hidden_size", default=1280)
        tower = Tower("Qwen2.5-Omni audio encoder", _i(ac, "encoder_layers", "num_hidden_layers", default=32), d,
                      _i(ac, "encoder_ffn_dim", default=4 * d), "plain", "prenorm", False,
                      2 * _i(ac, "num_mel_bins", default=128))
        pos = (mel - 1) // 2 + 1
        items["audio"] = MMItem("audio", tokens, (pos - 2) // 2 + 1, pos, tower,
                                _i(ac, "output_dim", default=ctx.text_hidden),
                                f"{fe['chunk_length']} s of audio, {tokens:,} tokens")
    return items


def _clip_tower(vc: Mapping, name: str, used_layers: int) -> Tower:
    d = _i(vc, "hidden_size", default=1024)
    p = _i(vc, "patch_size", default=14)
    return Tower(name, used_layers, d, _i(vc, "intermediate_size", default=4 * d), "plain", "prenorm", False,
                 _i(vc, "num_channels", default=3) * p * p)


def _feature_layers(vc: Mapping, config: Mapping, default_layers: int) -> int:
    """llava.py::_get_num_hidden_layers: layers up to vision_feature_layer."""
    return feature_layers(_i(vc, "num_hidden_layers", default=default_layers), config)


def _llava(ctx: _Ctx, seq_len: int, counts: Mapping[str, int]) -> dict[str, MMItem]:
    """LLaVA 1.5 (llava.py): one image at the CLIP tower's image_size; tokens = (image_size / patch)^2 (+1 CLS
    with vision_feature_select_strategy "full": get_num_selected_vision_tokens)."""
    if counts.get("image", 0) <= 0:
        return {}
    vc, cfg = ctx.sub("vision_config"), ctx.config
    s, p = _i(vc, "image_size", default=336), _i(vc, "patch_size", default=14)
    grid = (s // p) ** 2
    tokens = grid + (1 if cfg.get("vision_feature_select_strategy") == "full" else 0)
    tower = _clip_tower(vc, "CLIP ViT", _feature_layers(vc, cfg, 24))
    return {"image": MMItem("image", tokens, tokens, grid + 1, tower, ctx.text_hidden, f"{s}x{s} image, {tokens} tokens")}


def _anyres_tokens(h: int, w: int, s: int, npatch: int, base: int) -> int:
    """llava_next.py::get_num_image_tokens for an image exactly at a grid pinpoint (best fit = itself)."""
    gh, gw = h // s, w // s
    ch, cw = npatch * gh, npatch * gw
    if w / h > cw / ch:
        new_h = int(round(h * (cw / w), 7))
        ch -= 2 * ((ch - new_h) // 2)
    else:
        new_w = int(round(w * (ch / h), 7))
        cw -= 2 * ((cw - new_w) // 2)
    return ch * cw + ch + base


def _llava_next(ctx: _Ctx, seq_len: int, counts: Mapping[str, int]) -> dict[str, MMItem]:
    """LLaVA-NeXT (llava_next.py): the grid pinpoint with the most features (get_image_size_with_most_features);
    the tower encodes the base tile plus one tile per grid cell."""
    if counts.get("image", 0) <= 0:
        return {}
    vc, cfg = ctx.sub("vision_config"), ctx.config
    s, p = _i(vc, "image_size", default=336), _i(vc, "patch_size", default=14)
    npatch = s // p
    base = npatch * npatch + (1 if cfg.get("vision_feature_select_strategy") == "full" else 0)
    pins = cfg.get("image_grid_pinpoints") or [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    best, best_hw = 0, (s, s)
    for hw in pins:
        if not (isinstance(hw, (list, tuple)) and len(hw) == 2):
            continue
        t = _anyres_tokens(int(hw[0]), int(hw[1]), s, npatch, base)
        if t > best:
            best, best_hw = t, (int(hw[0]), int(hw[1]))
    tiles = 1 + (best_hw[0] // s) * (best_hw[1] // s)
    tower = _clip_tower(vc, "CLIP ViT", _feature_layers(vc, cfg, 24))
    return {"image": MMItem("image", best, best, tiles * (npatch * npatch + 1), tower, ctx.text_hidden,
                            f"{best_hw[1]}x{best_hw[0]} image ({tiles} tiles), {best:,} tokens")}


# transformers/models/gemma3/processing_gemma3.py Gemma3ProcessorKwargs._defaults["images_kwargs"] (5.19)
GEMMA3_PAN_AND_SCAN = {"do_pan_and_scan": False, "pan_and_scan_min_crop_size": 256, "pan_and_scan_max_num_crops": 4,
                       "pan_and_scan_min_ratio_to_activate": 1.2}


def _gemma3_crops(width: int, height: int, kw: Mapping) -> int:
    """gemma3_mm.py::Gemma3ProcessingInfo.get_num_crops (vLLM 0.32)."""
    if not kw["do_pan_and_scan"]:
        return 0
    min_crop, max_crops, ratio = kw["pan_and_scan_min_crop_size"], kw["pan_and_scan_max_num_crops"], \
        kw["pan_and_scan_min_ratio_to_activate"]
    if width >= height:
        if width / height < ratio:
            return 0
        nw, nh = min(max_crops, max(2, min(int(math.floor(width / min_crop)), int(math.floor(width / height + 0.5))))), 1
    else:
        if height / width < ratio:
            return 0
        nw, nh = 1, min(max_crops, max(2, min(int(math.floor(height / min_crop)), int(math.floor(height / width + 0.5)))))
    if min(int(math.ceil(width / nw)), int(math.ceil(height / nh))) < min_crop:
        return 0
    return nw * nh


def _gemma3(ctx: _Ctx, seq_len: int, counts: Mapping[str, int]) -> dict[str, MMItem]:
    """Gemma 3 (gemma3_mm.py): (crops + 1) x mm_tokens_per_image per image, crops only with do_pan_and_scan
    (Gemma3ProcessingInfo.get_num_image_tokens; pan and scan off by default); each crop is one SigLIP pass at
    the tower's image_size, pooled to mm_tokens_per_image.

    The pan-and-scan settings are the processor's merged images_kwargs (processor._merge_kwargs): the
    Gemma3ProcessorKwargs defaults under --mm-processor-kwargs. The defaults name all four keys, so the image
    processor's own values (preprocessor_config.json) never reach the count (get_num_crops reads them only
    as the fallback of images_kwargs.get). The dummy image is image_size wide and image_size x max crops tall
    (get_image_size_with_most_features)."""
    if counts.get("image", 0) <= 0:
        return {}
    vc = ctx.sub("vision_config")
    kw = dict(GEMMA3_PAN_AND_SCAN)
    kw.update({k: v for k, v in ctx.kwargs.items() if k in GEMMA3_PAN_AND_SCAN})
    if isinstance(ctx.kwargs.get("images_kwargs"), Mapping):
        kw.update({k: v for k, v in ctx.kwargs["images_kwargs"].items() if k in GEMMA3_PAN_AND_SCAN})
    ctx.read_keys |= set(GEMMA3_PAN_AND_SCAN) | {"images_kwargs"}
    s = _i(vc, "image_size", default=896)
    crops = _gemma3_crops(s, s * int(kw["pan_and_scan_max_num_crops"]), kw)
    if _kwargs_give(ctx.kwargs, tuple(GEMMA3_PAN_AND_SCAN)):
        ctx.sizes = (f"pan and scan on, {crops} crops + the whole image" if kw["do_pan_and_scan"]
                     else "pan and scan off")
        ctx.size_source = ("--mm-processor-kwargs over transformers' Gemma3ProcessorKwargs defaults (the "
                           "processor files' pan-and-scan values do not reach vLLM's count)")
    per = _i(ctx.config, "mm_tokens_per_image", default=256)
    p = _i(vc, "patch_size", default=14)
    tower = Tower("SigLIP ViT", _i(vc, "num_hidden_layers", default=27), _i(vc, "hidden_size", default=1152),
                  _i(vc, "intermediate_size", default=4304), "plain", "prenorm", False,
                  _i(vc, "num_channels", default=3) * p * p)
    tokens = (crops + 1) * per
    return {"image": MMItem("image", tokens, tokens, (crops + 1) * (s // p) ** 2, tower, ctx.text_hidden,
                            f"{crops + 1} crop(s) of {s}x{s}, {tokens:,} tokens")}


def _llama4(ctx: _Ctx, seq_len: int, counts: Mapping[str, int]) -> dict[str, MMItem]:
    """Llama 4 (mllama4.py Mllama4ProcessingInfo): the dummy image is max_patches tiles tall (h:w = 16:1 by
    default); the processor adds a global tile when there is more than one; each tile gives
    (image_size / patch)^2 / round(1 / pixel_shuffle_ratio^2) tokens (get_patch_per_chunk)."""
    if counts.get("image", 0) <= 0:
        return {}
    vc = ctx.sub("vision_config") or {"hidden_size": 768, "num_hidden_layers": 34, "intermediate_size": 5632,
                                       "image_size": 448, "patch_size": 14, "pixel_shuffle_ratio": 0.5}
    kw = dict(ctx.processor or {})
    kw.update(ctx.kwargs)
    if isinstance(ctx.kwargs.get("images_kwargs"), Mapping):
        kw.update(ctx.kwargs["images_kwargs"])
    ctx.read_keys |= {"max_patches", "images_kwargs"}
    tiles = _i(kw, "max_patches", default=LLAMA4_MAX_PATCHES)
    ctx.sizes, ctx.sizes_from_kwargs = f"max_patches {tiles}", _kwargs_give(ctx.kwargs, ("max_patches",))
    tiles = tiles + 1 if tiles > 1 else tiles
    s, p = _i(vc, "image_size", default=448), _i(vc, "patch_size", default=14)
    ratio = float(vc.get("pixel_shuffle_ratio", 0.5) or 0.5)
    per_tile = (s // p) ** 2 // int(round(1.0 / ratio ** 2))
    d = _i(vc, "hidden_size", default=768)
    tower = Tower("Llama 4 ViT", _i(vc, "num_hidden_layers", default=34), d, _i(vc, "intermediate_size", default=5632),
                  "plain", "prenorm", True, _i(vc, "num_channels", default=3) * p * p)
    tokens = tiles * per_tile
    return {"image": MMItem("image", tokens, tokens, tiles * ((s // p) ** 2 + 1), tower, ctx.text_hidden,
                            f"{tiles} tiles of {s}x{s}, {tokens:,} tokens")}


# model_type -> (family name, the function that sizes its largest items, modalities vLLM supports)
_FAMILIES = {
    "qwen2_vl": ("Qwen2-VL", lambda c, L, n: _qwen2_family(c, L, n, "qwen2_vl"), ("image", "video")),
    "qwen2_5_vl": ("Qwen2.5-VL", lambda c, L, n: _qwen2_family(c, L, n, "qwen2_5_vl"), ("image", "video")),
    "qwen2_5_omni": ("Qwen2.5-Omni", _omni_family, ("audio", "image", "video")),
    "qwen2_5_omni_thinker": ("Qwen2.5-Omni", _omni_family, ("audio", "image", "video")),
    "qwen3_vl": ("Qwen3-VL", _qwen3_family, ("image", "video")),
    "qwen3_vl_moe": ("Qwen3-VL", _qwen3_family, ("image", "video")),
    "qwen3_5": ("Qwen3.5", _qwen3_family, ("image", "video")),
    "qwen3_5_moe": ("Qwen3.5", _qwen3_family, ("image", "video")),
    "llava": ("LLaVA", _llava, ("image",)),
    "llava_next": ("LLaVA-NeXT", _llava_next, ("image",)),
    "gemma3": ("Gemma 3", _gemma3, ("image",)),
    "llama4": ("Llama 4", _llama4, ("image",)),
}
# Multimodal families vLLM serves whose processors kvfit does not size yet (remote-code processors or not
# read yet): the encoder is charged the pre-issue-13 floor, max_num_batched_tokens x hidden, and said so.
_NOT_MODELLED = {
    "phi3_v": "Phi-3/3.5-vision (its processor is remote code: image_processing_phi3_v.py and "
              "preprocessor_config.json num_crops would be needed)",
    "phi4mm": "Phi-4-multimodal", "phi4_multimodal": "Phi-4-multimodal", "internvl_chat": "InternVL (remote code)",
    "internvl": "InternVL", "minicpmv": "MiniCPM-V (remote code)", "mistral3": "Mistral 3 / Pixtral",
    "pixtral": "Pixtral", "llava_onevision": "LLaVA-OneVision", "llava_next_video": "LLaVA-NeXT-Video",
    "idefics3": "Idefics3", "smolvlm": "SmolVLM", "paligemma": "PaliGemma", "qwen2_audio": "Qwen2-Audio",
    "qwen3_omni_moe": "Qwen3-Omni", "gemma3n": "Gemma 3n", "gemma4": "Gemma 4", "glm4v": "GLM-4.1V",
    "kimi_vl": "Kimi-VL", "deepseek_vl_v2": "DeepSeek-VL2", "aria": "Aria", "chameleon": "Chameleon",
    "molmo": "Molmo", "ovis": "Ovis", "keye_vl": "Keye-VL", "step3_vl": "Step3-VL", "glm4v_moe": "GLM-4.5V",
}


def family_of(config: Mapping | None) -> str | None:
    """The multimodal family of a config.json, or None for a text-only model."""
    if not isinstance(config, Mapping):
        return None
    mt = str(config.get("model_type") or "")
    if mt in _FAMILIES:
        return _FAMILIES[mt][0]
    if mt in _NOT_MODELLED:
        return _NOT_MODELLED[mt]
    if isinstance(config.get("vision_config"), Mapping) or isinstance(config.get("audio_config"), Mapping) \
            or isinstance(config.get("thinker_config"), Mapping):
        return mt or "unknown"
    return None


def items_for(config: Mapping, *, profile, seq_len: int, counts: Mapping[str, int], text_hidden: int,
              mm_processor_kwargs: str | Mapping | None = None, limit_mm_per_prompt: str | Mapping | None = None,
              processor: Mapping | None = None, video_processor: Mapping | None = None) -> dict[str, MMItem]:
    """The largest item per modality, as the family's processing info sizes it for (seq_len, mm_counts)."""
    mt = str(config.get("model_type") or "")
    if mt not in _FAMILIES:
        return {}
    ctx = _Ctx(config, text_hidden, _rel(profile), read_kwargs(mm_processor_kwargs), processor, video_processor,
               read_limits(limit_mm_per_prompt).options, [])
    return _FAMILIES[mt][1](ctx, seq_len, counts)


def _per_position_bytes(t: Tower, tp: int, act_bytes: int) -> int:
    """Bytes one encoder position keeps alive at the tower's peak (vLLM 0.32 eager forward; the layer's
    locals live until it returns, and the caller's argument through the call):

      attention: block input x, norm1(x), qkv [3d/tp], with rotary a contiguous q/k copy and the rotated
                 q/k [4d/tp], context and its contiguous copy [2d/tp] (without rotary: context only), the
                 projection's output [d]:           3d + 9d/tp (rotary) | 3d + 4d/tp
      MLP:       x, norm2(x), fc1 / gate_up [I/tp | 2I/tp], activation [I/tp], output [d]: 3d + (2|3) I/tp;
                 Qwen2.5-VL's fused-residual block also keeps x_attn and the new residual: 5d + 3I/tp
      outside:   the float32 pixel values of the batch and one [d] embedding copy (positions / window order).
    TP shards heads and the MLP width ("weights" encoder TP mode, vLLM's default)."""
    d, i = t.hidden, t.intermediate
    attn = 3 * d + (9 if t.rope else 4) * d / tp
    keep = 5 if t.block == "fused-residual" else 3
    mlp = keep * d + (3 if t.mlp == "gated" else 2) * i / tp
    return int(act_bytes * (max(attn, mlp) + d) + 4 * t.in_per_position)


def _items_v1(rule: MMRule, tokens: int, budget: int, limit: int, *, max_model_len: int, max_num_seqs: int,
              max_num_batched_tokens: int, chunked_prefill: bool) -> int:
    if rule.items_rule == "cdiv":
        return min(-(-budget // tokens), max_num_seqs * limit)
    if rule.items_rule == "floor":
        return max(1, min(budget // tokens, max_num_seqs * limit))
    per_prompt = max(1, min(limit, max_model_len // tokens))
    seqs = max_num_seqs if chunked_prefill else min(max_num_seqs, max_num_batched_tokens // tokens)
    return max(1, min(budget // tokens, seqs * per_prompt))


def encoder_profile(config: Mapping | None, *, profile, text_hidden: int, max_model_len: int,
                    max_num_batched_tokens: int, max_num_seqs: int, act_bytes: int, tp: int = 1,
                    limit_mm_per_prompt: str | Mapping | None = None,
                    mm_processor_kwargs: str | Mapping | None = None, skip_mm_profiling: bool = False,
                    chunked_prefill: bool = True, processor: Mapping | None = None,
                    video_processor: Mapping | None = None,
                    processor_origin: str | None = None) -> EncoderProfile | None:
    """vLLM's encoder profile for this launch, or None for a text-only model.

    `processor` / `video_processor` are the settings of the model's image and video processors as
    transformers reads them from the repository (sources/processor.py: processor_config.json,
    preprocessor_config.json, video_preprocessor_config.json) when the caller has them (never fetched here);
    without them the processor class defaults apply. `processor_origin` says where they came from (or why there
    are none), for the note."""
    fam = family_of(config)
    if fam is None:
        return None
    assert config is not None
    rule = mm_rule(profile)
    rel = _rel(profile)
    limits = read_limits(limit_mm_per_prompt)
    kwargs = read_kwargs(mm_processor_kwargs)
    notes: list[str] = []
    if skip_mm_profiling and rel < (0, 10, 1):
        raise BadFlag(f"--skip-mm-profiling: vLLM {getattr(profile, 'version', rel)} has no such flag "
                      "(it came in 0.10.1)", flag="skip_mm_profiling")
    mt = str(config.get("model_type") or "")
    if mt not in _FAMILIES:
        return EncoderProfile(fam, modelled=False, notes=(
            f"encoder profile of {fam} not modelled: kvfit charges max_num_batched_tokens x hidden "
            "(a floor; the real profile is larger)",))
    try:
        return _v1_or_v0(config, mt, rule, rel, limits, kwargs, notes, processor=processor,
                         video_processor=video_processor, processor_origin=processor_origin, text_hidden=text_hidden, max_model_len=max_model_len,
                         max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                         act_bytes=act_bytes, tp=tp, skip_mm_profiling=skip_mm_profiling,
                         chunked_prefill=chunked_prefill)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError, KeyError) as e:
        if isinstance(e, BadFlag):
            raise
        return EncoderProfile(fam, modelled=False, notes=(
            f"encoder profile of {fam} not sized: config.json's vision / audio settings cannot be read "
            f"({type(e).__name__}); kvfit charges max_num_batched_tokens x hidden (a floor)",))


def _v1_or_v0(config: Mapping, mt: str, rule: MMRule, rel, limits: Limits, kwargs: dict, notes: list[str], *,
              processor, video_processor, text_hidden: int, max_model_len: int, max_num_batched_tokens: int,
              max_num_seqs: int, act_bytes: int, tp: int, skip_mm_profiling: bool,
              chunked_prefill: bool, processor_origin: str | None = None) -> EncoderProfile:
    name, sizer, supported = _FAMILIES[mt]
    ctx = _Ctx(config, text_hidden, rel, kwargs, processor, video_processor, limits.options, notes,
               origin=processor_origin)
    unknown = sorted(set(limits.counts) - set(supported))
    if unknown:
        notes.append(f"--limit-mm-per-prompt: {name} takes no {', '.join(unknown)} (ignored, as vLLM ignores it)")
    lim = {m: limits.count(m, rule.default_limit) for m in supported}
    active = {m: n for m, n in lim.items() if n > 0}
    if not active:
        return EncoderProfile(name, notes=tuple(notes) + (
            "every modality's limit is 0: vLLM initializes no encoder cache and profiles no encoder",))

    if rule.engine == "V0":
        if skip_mm_profiling:
            notes.append("--skip-mm-profiling: the V0 engine does not read it; its profile encodes the items")
        return _v0(ctx, name, sizer, active, max_model_len=max_model_len,
                   max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                   act_bytes=act_bytes, tp=tp)

    counts = dict(active) if rule.counts_are_limits else dict.fromkeys(active, 1)
    per_item = sizer(ctx, max_model_len, counts)
    if not per_item:
        return EncoderProfile(name, notes=tuple(notes))
    key = (lambda kv: (kv[1].tokens, kv[0])) if rule.tie_by_name else (lambda kv: kv[1].tokens)
    modality, item = max(per_item.items(), key=key)
    tokens = item.tokens
    budget = max(max_num_batched_tokens, tokens)
    n = _items_v1(rule, tokens, budget, active[modality], max_model_len=max_model_len, max_num_seqs=max_num_seqs,
                  max_num_batched_tokens=max_num_batched_tokens, chunked_prefill=chunked_prefill)
    # the dummy item actually encoded (its size can depend on seq_len: Qwen-VL videos)
    seq_len = {"max_model_len": max_model_len, "tokens": tokens,
               "max_num_batched_tokens": max_num_batched_tokens}[rule.dummy_seq_len]
    dummy = sizer(ctx, seq_len, {modality: 1}).get(modality, item)
    _unread(ctx, kwargs, name)
    _source_note(ctx, name)
    if skip_mm_profiling:
        return EncoderProfile(name, modality, tokens, budget, 0, notes=tuple(notes) + (
            "--skip-mm-profiling: vLLM profiles no encoder; its activations and cache come out of the KV "
            "cache's headroom at run time",))
    fwd = n * dummy.positions * _per_position_bytes(dummy.tower, tp, act_bytes)
    rows = budget if rule.expand_outputs else dummy.embeds
    cache = n * rows * dummy.out_dim * act_bytes
    persistent = _persistent(config, max_num_batched_tokens, text_hidden, act_bytes)
    notes.insert(0, f"encoder profile ({name}): {n} {modality} item(s) of the maximum size ({dummy.detail}); "
                    f"encoder budget {budget:,} tokens")
    return EncoderProfile(name, modality, tokens, budget, n, fwd, cache, persistent, notes=tuple(notes))


def _persistent(config: Mapping, max_num_batched_tokens: int, text_hidden: int, act_bytes: int) -> int:
    """qwen3_vl.py Qwen3VLForConditionalGeneration.__init__: one [max_num_batched_tokens, text hidden] buffer
    per deepstack level, allocated with the model (torch.zeros on the default device and dtype)."""
    if str(config.get("model_type") or "") not in ("qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe"):
        return 0
    vc = config.get("vision_config") if isinstance(config.get("vision_config"), Mapping) else {}
    levels = len(vc.get("deepstack_visual_indexes") or [])
    return levels * max_num_batched_tokens * text_hidden * act_bytes


def _unread(ctx: _Ctx, kwargs: Mapping, name: str) -> None:
    extra = sorted(k for k in kwargs if k not in ctx.read_keys)
    if extra:
        _note(ctx, f"--mm-processor-kwargs {', '.join(extra)}: not read by kvfit's {name} profile "
                         "(no effect on the dummy item's size is modelled)")


def _v0(ctx: _Ctx, name: str, sizer, active: Mapping[str, int], *, max_model_len: int,
        max_num_batched_tokens: int, max_num_seqs: int, act_bytes: int, tp: int) -> EncoderProfile:
    """worker/model_runner.py::_dummy_run (V0) with the limits as mm_counts."""
    T = max_num_batched_tokens
    per_item = sizer(ctx, max_model_len, dict(active))
    # get_max_multimodal_tokens: sum of limit x tokens, counted at seq_len = max_model_len
    max_mm = sum(active[m] * it.tokens for m, it in per_item.items())
    seqs = max(1, min(max_num_seqs, T // max_mm)) if max_mm > 0 else max_num_seqs
    dummy = sizer(ctx, T // seqs, dict(active))            # each sequence's dummy data at its own seq_len
    fwd = cache = 0
    parts = []
    for m, it in dummy.items():
        k = seqs * active[m]
        fwd = max(fwd, k * it.positions * _per_position_bytes(it.tower, tp, act_bytes))
        cache += k * it.embeds * it.out_dim * act_bytes
        parts.append(f"{k} {m} ({it.detail})")
    _unread(ctx, ctx.kwargs, name)
    _source_note(ctx, name)
    ctx.notes.insert(0, f"V0 encoder profile ({name}): {seqs} dummy sequence(s) of {T // seqs:,} tokens carrying "
                        + ", ".join(parts))
    return EncoderProfile(name, max(dummy, key=lambda m: dummy[m].tokens) if dummy else None, 0, 0,
                          sum(seqs * active[m] for m in dummy), fwd, cache, 0, v0_seqs=seqs, notes=tuple(ctx.notes))
