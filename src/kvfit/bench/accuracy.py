"""`python -m kvfit.bench accuracy`: kvfit against every real vLLM log with a known GPU, release and launch.

Reads the calibration records in tests/data/calibration: observations.jsonl (a copy of
../shared/calibration/observations.jsonl), spec_8_3.jsonl (the spec's §8.3 logs) and public_logs.jsonl
(logs committed to public GitHub repositories, each with its repository, path, commit and the log lines
verbatim). Each launch runs through kvfit.plan.evaluate with the release's rules, and the benchmark prints:

* the KV figure kvfit predicts against the one logged: tokens where the log printed them (V0: blocks x
  block_size; V1: "GPU KV cache size"), else the KV GiB ("the rest of the memory reserved for KV Cache" /
  "Available KV cache memory"); V1 and V0 apart, then per cause (the launch's features: LoRA, quantized,
  MLA, MoE, tensor parallel, multimodal, ...);
* the GPU-side memory term by term where the log shows it (weights, activation peak, non-torch, CUDA
  graphs; the encoder is inside V0's activation peak and V1 logs never print it apart);
* every record it does not score, with the reason.

Fit, not validation. A record a constant of memory/overhead.py was fitted on (FIT_RECORDS names which
constant) is labelled "fit" and kept out of the headline figures: reproducing it only checks the fit.
Everything else scored is held out from every fit (validation).

Scored: confidence high or medium, a GPU whose total is logged (or inferred in the record, shown as such),
a model kvfit can read from a real config.json, a CUDA platform, a launch kvfit check can express, and
weights kvfit can know (a checkpoint whose quantization is not in a real config copy is scored term by
term only, with its weights taken from the log).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
from pathlib import Path

GiB = 1 << 30
ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "calibration"
MODELS = ROOT / "tests" / "data" / "models"
FILES = ("observations.jsonl", "spec_8_3.jsonl", "public_logs.jsonl")

# Inputs the records give only in prose, each with the record text it comes from.
MODEL_ALIAS = {
    # "meta-llama/Meta-Llama-3-8B" (gt-003): the base model; the bundled Instruct entry has the same
    # config and the same 8,030,261,248 parameters.
    "gt-003": "meta-llama/Meta-Llama-3-8B-Instruct",
    # DeepSeek-Coder-V2-Lite-Instruct (gt-029) has DeepSeek-V2-Lite's architecture (27 layers, MLA 512+64,
    # 64 routed experts, 15,706,484,224 parameters): the bundled DeepSeek-V2-Lite-Chat entry.
    "gt-029": "deepseek-ai/DeepSeek-V2-Lite-Chat",
    # Qwen2.5-Math-1.5B (gt-033): Qwen2.5-1.5B's shape (28 layers, hidden 1536, 2 KV heads, vocab 151,936).
    "gt-033": "Qwen/Qwen2.5-1.5B",
    # Qwen2.5-0.5B (gt-037): Qwen2-0.5B-Instruct has the same shapes (24 layers, hidden 896, 14 heads,
    # 2 KV heads, intermediate 4864, vocab 151,936, tied embeddings).
    "gt-037": "Qwen/Qwen2-0.5B-Instruct",
    # gt-059 is CosyVoice2's LLM: the Qwen2.5-0.5B backbone with the speech-token head (models/ here).
    "gt-059": "FunAudioLLM/CosyVoice2-0.5B (LLM)",
    "gt-051": "facebook/opt-125m",
    # canopylabs/orpheus-tts-0.1-finetune-prod (gt-021, gt-022) is the Orpheus 3B fine-tune: the bundled
    # orpheus-3b-0.1-ft entry has its config (Llama-3.2-3B shape, vocab 156,940) and parameter count.
    "gt-021": "canopylabs/orpheus-3b-0.1-ft",
    "gt-022": "canopylabs/orpheus-3b-0.1-ft",
}
# Records whose GPU total is unknown, checked on an assumed GPU (shown apart, never scored).
ASSUMED_GPU = {
    # issue #4's done-when command; the record says only "implied 24 GB class"
    "gt-021": "RTX 3090",
}
ENTRYPOINT = {
    # `LLM(model='Qwen/Qwen3-1.7B', max_num_seqs=1, max_model_len=1024)` (gt-007 notes)
    "gt-007": "llm",
    # `time python generate-vllm.py` with LLM(...) arguments in 'non-default args' (gt-049)
    "gt-049": "llm",
}
NOT_SCORED = {
    "gt-043": "in-flight bitsandbytes quantization of a bf16 checkpoint whose config.json kvfit has no real "
              "copy of (microsoft/phi-4)",
    "gt-027": "the launch is not fully known: the logged activation peak (0.22 GiB, the 2048-token forward pass "
              "alone) shows a max_num_seqs far below vLLM's default 256, and the record does not give it",
    "gt-017": "the engine ran out of memory before allocating KV (0.04-0.13 GiB left per rank); its "
              "multimodal V0 profile (vision encoder dummy batch) is not modelled",
}
NON_CUDA = ("rocm", "dcu", "amd", "xpu", "intel", "hygon")
# Records a constant was fitted on (memory/overhead.py): their agreement is a fit check, not a validation.
FIT_RECORDS = {
    "gt-046": "memory/overhead.py's Model Runner V2 terms (non-torch 0.27 GiB, sampler 32 B per logit, CUDA graphs "
              "per graph and layer, CUDA context) are fitted on this log: reproducing it checks the fit only",
    "pl-014": "memory/overhead.py's V1-runner terms (PyTorch-native sampler 38 B per logit, non-torch 0.02 GiB) "
              "are fitted on this log's breakdown: reproducing it checks the fit only",
    "gt-001": "memory/overhead.py's 0.6.4 non-torch term (0.35 GiB: that release counted all memory outside "
              "torch) is this log's figure: reproducing it checks the fit only",
}
# Records only the V0 constants' fit uses (memory/overhead.py: sampler bytes per logit, non-torch): their KV
# figure is not scored (weights unknown) and their terms are kept out of the term summary.
TERM_FIT_RECORDS = {f"pl-{i:03d}": "V0 sampler and non-torch constants" for i in range(5, 11)}
# Causes, in the order the per-cause table lists them.
CAUSES = ("dense", "LoRA", "quantized", "MoE", "MLA", "tensor parallel", "multimodal", "sliding window",
          "long V0 profile", "GPU inferred")


@dataclasses.dataclass
class Row:
    obs_id: str
    confidence: str
    engine: str
    version: str
    model: str
    gpu_gib: float | None
    length: int | None
    util: float | None
    metric: str = ""
    reported: float | None = None
    predicted: float | None = None
    error_pct: float | None = None
    reason: str = ""
    detail: dict = dataclasses.field(default_factory=dict)
    terms: dict = dataclasses.field(default_factory=dict)      # term -> (kvfit GiB, logged GiB)
    causes: tuple = ()
    shown_version: str = ""      # the version as the record has it when approximate ("~0.7")
    source: str = ""
    kv_scored: bool = True       # False: weights unknown, terms only
    with_logged_weights: tuple | None = None   # weights unknown: (logged KV GiB, kvfit's KV GiB given the log's weights)

    @property
    def fit(self) -> bool:
        """A record the constants were fitted on (FIT_RECORDS)."""
        return self.obs_id in FIT_RECORDS


def load_records(data: Path = DATA) -> list[dict]:
    out = []
    for name in FILES:
        path = data / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def _version(text: str | None, engine: str) -> str:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if m and int(m.group(1)) == 0:
        return f"0.{m.group(2)}.{m.group(3) or 0}"
    return "0.6.0" if engine.startswith("V0") else "0.32.0"


def _dtype(text: str | None) -> str:
    m = re.search(r"bfloat16|float16|float32", text or "")
    return m.group(0) if m else "auto"


def _total_gib(rec: dict) -> float | None:
    return (rec.get("gpu") or {}).get("total_gpu_memory_gib_reported") or rec["reported"].get("total_gpu_memory_gib")


def _source(rec: dict) -> str:
    s = rec.get("source")
    if isinstance(s, dict):
        if s.get("repo") and s.get("path"):
            return f"{s['repo']}:{s['path']}@{str(s.get('commit', ''))[:10]}"
        return s.get("url") or s.get("repo") or ""
    return str(s or "")


def load_model(rec: dict, data: Path = DATA):
    """The record's model: calibration models/ (configs with parameter counts), the bundled catalog, or a
    real config.json under tests/data/models (parameters then estimated from it). A record whose checkpoint
    quantization the log shows (quantization_from_log) gets that quantization_config."""
    from ..arch.normalize import normalize
    from ..memory.weights import Inventory
    from ..plan.evaluate import Model
    from ..sources import catalog

    wanted = MODEL_ALIAS.get(rec["obs_id"]) or rec.get("arch_key") or rec.get("model_id") or ""
    quant = rec.get("quantization_from_log")
    for f in sorted((data / "models").glob("*.json")):
        entry = json.loads(f.read_text(encoding="utf-8"))
        if entry["id"] == wanted:
            inv = Inventory({k: int(v) for k, v in entry["params"].items()}, "calibration models/")
            return Model(entry["id"], "calibration", f.name, normalize(entry["config"]), inv, entry["config"])
    key = wanted.split(" ")[0]
    src = catalog.load(key)
    if src is not None:
        config, hq, inv, where = src.config, src.hf_quant_config, src.inventory, src.detail
    else:
        path = MODELS / key.replace("/", "__") / "config.json"
        if not path.is_file():
            return None
        config, hq, inv, where = json.loads(path.read_text(encoding="utf-8")), None, None, "tests/data/models"
    if quant:
        config = dict(config, quantization_config={k: v for k, v in quant.items() if k != "evidence"})
        inv = None                     # the bf16 parameter counts no longer describe the checkpoint
    return Model(key, "calibration", where, normalize(config, hf_quant_config=hq), inv, config)


def pick_gpu(rec: dict, total_gib: float):
    """The GPU the log names (its compute capability from kvfit's catalog), with the total the log shows."""
    from ..gpu.catalog import catalog, from_entry
    from ..gpu.model import Gpu

    name = (rec.get("gpu") or {}).get("name") or ""
    low = name.lower()
    best = None
    for e in catalog():
        keys = [e["name"].lower()] + [a.lower() for a in e.get("aliases", [])]
        if any(k in low for k in keys if len(k) > 3):
            g = from_entry(e)
            if best is None or abs(g.total_bytes / GiB - total_gib) < abs(best.total_bytes / GiB - total_gib):
                best = g
    cc = best.compute_capability if best is not None else (8, 0)
    if best is None:
        for key, cap in (("t4", (7, 5)), ("turing", (7, 5)), ("2080", (7, 5)), ("2060", (7, 5)),
                         ("v100", (7, 0)), ("volta", (7, 0)), ("h200", (9, 0)), ("h100", (9, 0)), ("l4", (8, 9)),
                         ("b200", (10, 0))):
            if key in low:
                cc = cap
                break
    shown = best.name if best is not None else (name or f"{total_gib} GiB GPU")
    return Gpu(shown, round(total_gib * GiB), cc, source="calibration record")


def settings_for(rec: dict, model, engine: str):
    from ..settings import Settings

    kv = rec.get("kv_cache_dtype") or "auto"
    kv = kv.split(" ")[0] if kv.split(" ")[0] in ("auto", "fp8", "fp8_e4m3", "fp8_e5m2") else "auto"
    fields = {f.name for f in dataclasses.fields(Settings)}
    kw = dict(max_model_len=rec.get("max_model_len"),
              gpu_memory_utilization=rec.get("gpu_memory_utilization"),
              tensor_parallel_size=rec.get("tensor_parallel_size") or 1,
              pipeline_parallel_size=rec.get("pipeline_parallel_size") or 1,
              dtype=_dtype(rec.get("dtype")), kv_cache_dtype=kv,
              block_size=rec.get("block_size") if rec.get("block_size") not in (None, 16) else None,
              max_num_seqs=rec.get("max_num_seqs"), max_num_batched_tokens=rec.get("max_num_batched_tokens"),
              enforce_eager=bool(rec.get("enforce_eager")),
              entrypoint=ENTRYPOINT.get(rec["obs_id"], rec.get("entrypoint") or "serve"),
              enable_lora=bool(rec.get("enable_lora")))
    env = {k: str(v) for k, v in (rec.get("vllm_env") or {}).items()}
    if env:
        kw["vllm_env"] = tuple(sorted(env.items()))
    if rec.get("enable_lora"):
        kw["max_loras"] = rec.get("max_loras") or 1
        if rec.get("max_lora_rank"):
            kw["max_lora_rank"] = rec["max_lora_rank"]
    return Settings(**{k: v for k, v in kw.items() if k in fields})


def profile_for_record(version: str, gpu, engine: str):
    from ..memory.profiles import profile_for

    try:
        return profile_for(version, gpu=gpu, engine="V0" if engine.startswith("V0") else "V1")
    except TypeError:       # an older kvfit (the "before" table): one profile per version
        return profile_for(version)


def _evaluate(rec: dict, model, gpu, engine: str):
    from ..plan import evaluate as plan

    version = _version(rec.get("vllm_version"), engine)
    profile = profile_for_record(version, gpu, engine)
    settings = settings_for(rec, model, engine)
    return version, plan.evaluate(model, gpu, settings, profile)


def _metric(rec: dict, res) -> tuple[str, float, float] | None:
    rep = rec["reported"]
    tokens = rep.get("kv_cache_tokens")
    if tokens is None and rep.get("num_gpu_blocks"):
        tokens = rep["num_gpu_blocks"] * (rec.get("block_size") or 16)
    if tokens:
        return "tokens", float(tokens), float(res.capacity.kv_cache_tokens)
    gib = rep.get("kv_cache_gib")
    if gib is None and isinstance(rep.get("kv_cache_gib_per_rank"), list):
        gib = min(rep["kv_cache_gib_per_rank"])
    if gib is not None:
        return "KV GiB", float(gib), res.memory.kv_available_bytes / GiB
    return None


def _first(*xs):
    return next((x for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)), None)


def _terms(rec: dict, res) -> dict:
    """kvfit's GPU-side terms against the log's, GiB, where the log prints the term."""
    from ..memory.overhead import estimate_cudagraph_bytes
    from ..memory.profiles import cudagraph_rule

    rep, m, p = rec["reported"], res.memory, res.profile
    out = {}
    w = _first(rep.get("model_weights_gib"), rep.get("model_loading_gib"), rep.get("model_weights_gb_logged"),
               rep.get("model_loading_gb_logged"))
    if w is not None:
        out["weights"] = (None if rec.get("weights_known") is False else m.weights_bytes / GiB, w)
    act = rep.get("activation_peak_gib")
    if "peak_torch_memory_gib" in rep and w is not None:
        act = round(rep["peak_torch_memory_gib"] - w, 2)
    graphs_in_peak = p.engine == "V1" and cudagraph_rule(p).logged_peak_includes_graphs
    if isinstance(act, (int, float)):
        mine = m.activation_bytes + (m.cudagraph_bytes if graphs_in_peak else 0)
        out["activation"] = (mine / GiB, act)
    nt = rep.get("non_torch_memory_gib")
    if isinstance(nt, list):
        nt = max(nt)
    if isinstance(nt, (int, float)):
        out["non-torch"] = (m.non_torch_bytes / GiB, nt)
    if rep.get("cuda_graph_gib") is not None and p.engine == "V1":
        out["CUDA graphs (deducted)"] = (m.cudagraph_bytes / GiB, rep["cuda_graph_gib"])
    est = _first(rep.get("cuda_graph_estimate_gib"))
    if est is not None:
        out["CUDA graphs (vLLM's estimate)"] = (m.cudagraph_bytes / GiB, est)
    after = _first(rep.get("cuda_graph_gib_after_kv"))
    if after is not None and not res.settings.enforce_eager:
        r = res.resolved
        graphs = estimate_cudagraph_bytes(p, max_num_seqs=r.max_num_seqs, max_num_batched_tokens=r.max_num_batched_tokens,
                                          layers_on_rank=res.layout.layers_on_rank)
        out["CUDA graphs (captured)"] = (graphs / GiB, after)
    return out


def _causes(rec: dict, res) -> tuple[str, ...]:
    from ..memory.overhead import is_multimodal

    arch, s = res.model.arch, res.settings
    out = []
    if s.enable_lora:
        out.append("LoRA")
    if arch.quantization or rec.get("quantization_from_log") or (rec.get("quantization") or "").startswith("fp8"):
        out.append("quantized")
    if arch.num_experts:
        out.append("MoE")
    if arch.use_mla:
        out.append("MLA")
    if s.tensor_parallel_size > 1 or s.pipeline_parallel_size > 1:
        out.append("tensor parallel")
    if is_multimodal(arch):
        out.append("multimodal")
    if any(x.kind == "sliding" for x in arch.attention_layers):
        out.append("sliding window")
    if res.profile.engine == "V0" and res.resolved.max_num_batched_tokens >= 8192:
        out.append("long V0 profile")
    if "inferred" in str((rec.get("gpu") or {}).get("gpu_confidence", "")) and rec.get("gpu_assumed"):
        out.append("GPU inferred")
    return tuple(out) or ("dense",)


def run_records(records: list[dict], data: Path = DATA) -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    """(scored, not scored, implied-total rows, assumed-GPU rows). Rows scored on their terms only (weights
    unknown) are in `scored` with kv_scored False."""
    from ..errors import KvfitError
    from ..gpu.catalog import lookup

    scored, skipped, implied, assumed = [], [], [], []
    for rec in records:
        oid, conf = rec["obs_id"], rec.get("confidence", "low")
        engine = (rec.get("engine") or "V1").split(" ")[0]
        total = _total_gib(rec)
        row = Row(oid, conf, engine, _version(rec.get("vllm_version"), engine),
                  (rec.get("model_id") or "?").split(" (")[0][:44], total, rec.get("max_model_len"),
                  rec.get("gpu_memory_utilization"), source=_source(rec))
        raw = rec.get("vllm_version") or ""
        m = re.search(r"~?\d+\.\d+(?:\.(?:\d+|x))?", raw)
        row.shown_version = m.group(0) if m and ("~" in m.group(0) or m.group(0).endswith("x")) else ""
        platform = f"{(rec.get('gpu') or {}).get('name', '')} {rec.get('vllm_version', '')}".lower()
        if rec.get("duplicate_of"):
            row.reason = f"the same launch and figures as {rec['duplicate_of']} (not counted twice)"
        elif oid in NOT_SCORED:
            row.reason = NOT_SCORED[oid]
        elif any(k in platform for k in NON_CUDA):
            row.reason = "not a CUDA platform (ROCm/DCU/XPU): kvfit models CUDA"
        elif conf not in ("high", "medium"):
            row.reason = f"{conf} confidence"
        elif rec.get("enable_chunked_prefill") and engine == "V0":
            row.reason = ("the launch turns V0's chunked prefill on (enable_chunked_prefill), which kvfit's V0 model "
                          "does not take (it applies vLLM's automatic choice only)")
        if row.reason:
            skipped.append(row)
            continue
        model = load_model(rec, data)
        if model is None:
            row.reason = "model not known to kvfit (no real config.json copy)"
            skipped.append(row)
            continue
        if total is None and oid in ASSUMED_GPU:
            assumed.append(_assumed(rec, row, model, ASSUMED_GPU[oid]))
            continue
        if total is None and rec.get("gpu_assumed"):
            total = lookup(rec["gpu_assumed"]).total_bytes / GiB
            row.gpu_gib = total
        if total is None:
            if engine == "V1" and rec["reported"].get("kv_cache_gib"):
                implied.append(_implied(rec, row, model))
            else:
                row.reason = "GPU total not in the log"
                skipped.append(row)
            continue
        gpu = pick_gpu(rec, total)
        if rec.get("gpu_assumed"):
            gpu = lookup(rec["gpu_assumed"])
        try:
            row.version, res = _evaluate(rec, model, gpu, engine)
        except KvfitError as e:
            row.reason = f"kvfit refused it: {e.message}"
            skipped.append(row)
            continue
        metric = _metric(rec, res)
        if metric is None:
            row.reason = "no KV figure in the log"
            skipped.append(row)
            continue
        row.metric, row.reported, row.predicted = metric
        row.error_pct = (row.predicted - row.reported) / row.reported * 100 if row.reported else None
        row.terms = _terms(rec, res)
        row.causes = _causes(rec, res)
        row.detail = {"profile": res.profile.name, "mnbt/seqs": f"{res.resolved.max_num_batched_tokens}/"
                                                                 f"{res.resolved.max_num_seqs}"}
        if rec.get("weights_known") is False:
            row.kv_scored = False
            row.reason = ("weights unknown: the checkpoint's quantization is not in a real config copy, so the "
                          "KV figure is not scored; its terms are")
            row.with_logged_weights = _with_logged_weights(rec, res)
        scored.append(row)
    return scored, skipped, implied, assumed


def _with_logged_weights(rec: dict, res) -> tuple[float, float] | None:
    """(logged KV GiB, kvfit's KV GiB with the log's weights in place of its own): everything in the reserve
    but the weights, checked where the checkpoint's weights cannot be sized from a real config."""
    rep = rec["reported"]
    w = _first(rep.get("model_weights_gib"), rep.get("model_loading_gib"))
    kv = rep.get("kv_cache_gib")
    if w is None or not isinstance(kv, (int, float)):
        return None
    m = res.memory
    return float(kv), (m.kv_available_bytes + m.weights_bytes) / GiB - w


def _assumed(rec: dict, row: Row, model, gpu_name: str) -> Row:
    from ..gpu.catalog import lookup

    gpu = lookup(gpu_name)
    row.version, res = _evaluate(rec, model, gpu, row.engine)
    row.gpu_gib = gpu.total_bytes / GiB
    row.metric, row.reported, row.predicted = _metric(rec, res)
    row.error_pct = (row.predicted - row.reported) / row.reported * 100
    row.reason = f"assumed {gpu.name}; fits: {res.fits}"
    return row


def _implied(rec: dict, row: Row, model) -> Row:
    """GPU total = (logged KV + kvfit's reserve) / utilization, the batch tier re-checked once."""
    from ..gpu.catalog import catalog
    from ..gpu.model import Gpu

    util = rec.get("gpu_memory_utilization") or 0.9
    kv = rec["reported"]["kv_cache_gib"] * GiB
    total = 48 * GiB
    for _ in range(3):
        gpu = Gpu("implied", int(total), (8, 0), source="implied")
        _, res = _evaluate({**rec, "gpu_memory_utilization": util}, model, gpu, row.engine)
        reserve = res.memory.requested_bytes - res.memory.kv_available_bytes
        total = (kv + reserve) / util
    near = sorted(catalog(), key=lambda e: abs(e["total_bytes"] - total))[0]
    row.metric = "implied total GiB"
    row.predicted = total / GiB
    row.reason = (f"nearest catalog GPU {near['name']} ({near['total_bytes'] / GiB:.2f} GiB); "
                  f"record: {(rec.get('gpu') or {}).get('name')}")
    return row


def _fmt(x, nd=2):
    return "-" if x is None else (f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{nd}f}")


def summary(rows: list[Row]) -> str:
    errs = [abs(r.error_pct) for r in rows if r.error_pct is not None]
    if not errs:
        return "no records"
    return (f"{len(errs)} records: median |error| {statistics.median(errs):.2f}%, "
            f"max |error| {max(errs):.2f}%")


def stats(rows: list[Row]) -> tuple[int, float | None, float | None]:
    errs = [abs(r.error_pct) for r in rows if r.error_pct is not None]
    return len(errs), (statistics.median(errs) if errs else None), (max(errs) if errs else None)


def table(rows: list[Row]) -> list[str]:
    head = "| record | conf | vLLM | model | GPU GiB | max_model_len | util | causes | metric | reported | kvfit | error |"
    sep = "|---|---|---|---|---|---|---|---|---|---|---|---|"
    out = [head, sep]
    for r in rows:
        err = "-" if r.error_pct is None else f"{r.error_pct:+.2f}%"
        out.append(f"| {r.obs_id}{' (fit)' if r.fit else ''} | {r.confidence} | {r.shown_version or r.version} | "
                   f"{r.model} | {_fmt(r.gpu_gib)} | {r.length or '-'} | "
                   f"{'-' if r.util is None else f'{r.util:.4g}'} | {', '.join(r.causes)} | {r.metric} | "
                   f"{_fmt(r.reported)} | {_fmt(r.predicted)} | {err} |")
    return out


TERM_ORDER = ("weights", "activation", "non-torch", "CUDA graphs (deducted)", "CUDA graphs (vLLM's estimate)",
              "CUDA graphs (captured)")


def term_table(rows: list[Row]) -> list[str]:
    """Per record: kvfit / logged GiB for every term the log prints; then per term the median and max
    absolute difference."""
    have = [r for r in rows if r.terms]
    if not have:
        return []
    cols = [t for t in TERM_ORDER if any(t in r.terms for r in have)]
    out = ["| record | engine | profile | mnbt/seqs | " + " | ".join(f"{c} kvfit / log" for c in cols) + " |",
           "|---|---|---|---|" + "---|" * len(cols)]
    for r in have:
        cells = []
        for c in cols:
            if c in r.terms and r.terms[c][0] is None:
                cells.append(f"unknown / {r.terms[c][1]:.2f}")
            elif c in r.terms:
                a, b = r.terms[c]
                cells.append(f"{a:.2f} / {b:.2f} ({a - b:+.2f})")
            else:
                cells.append("-")
        fit = r.fit or r.obs_id in TERM_FIT_RECORDS
        out.append(f"| {r.obs_id}{' (fit)' if fit else ''} | {r.engine} | {r.detail.get('profile', '')} | "
                   f"{r.detail.get('mnbt/seqs', '')} | " + " | ".join(cells) + " |")
    out.append("")
    out.append("Over the records no constant was fitted on:")
    out.append("")
    out.append("| term | engine | records | median abs diff GiB | max abs diff GiB | median abs diff % of logged |")
    out.append("|---|---|---|---|---|---|")
    for c in cols:
        for eng in ("V1", "V0"):
            d = [(abs(r.terms[c][0] - r.terms[c][1]), r.terms[c][1]) for r in have
                 if c in r.terms and r.terms[c][0] is not None and r.engine == eng and not r.fit
                 and r.obs_id not in TERM_FIT_RECORDS]
            if not d:
                continue
            pct = [x / y * 100 for x, y in d if y]
            out.append(f"| {c} | {eng} | {len(d)} | {statistics.median(x for x, _ in d):.2f} | "
                       f"{max(x for x, _ in d):.2f} | {statistics.median(pct):.0f}% |" if pct else
                       f"| {c} | {eng} | {len(d)} | {statistics.median(x for x, _ in d):.2f} | "
                       f"{max(x for x, _ in d):.2f} | - |")
    return out


def cause_table(rows: list[Row]) -> list[str]:
    out = ["| cause | engine | records | median abs error | max abs error | records |",
           "|---|---|---|---|---|---|"]
    for c in CAUSES:
        for eng in ("V1", "V0"):
            rs = [r for r in rows if c in r.causes and r.engine == eng]
            n, med, mx = stats(rs)
            if n:
                out.append(f"| {c} | {eng} | {n} | {med:.2f}% | {mx:.2f}% | {', '.join(r.obs_id for r in rs)} |")
    return out


def report(detail: bool = False, data: Path = DATA) -> str:
    records = load_records(data)
    scored, skipped, implied, assumed = run_records(records, data)
    files = [n for n in FILES if (data / n).is_file()]
    lines = [f"kvfit accuracy on {len(records)} calibration records ({', '.join(files)})", ""]
    kv = [r for r in scored if r.kv_scored]
    lines += ["| engine | scored (validation) | median abs error | max abs error | fit records (not in the figure) |",
              "|---|---|---|---|---|"]
    for engine in ("V1", "V0"):
        n, med, mx = stats([r for r in kv if r.engine == engine and not r.fit])
        fits = [r.obs_id for r in kv if r.engine == engine and r.fit]
        lines.append(f"| {engine} | {n} | {'-' if med is None else f'{med:.2f}%'} | "
                     f"{'-' if mx is None else f'{mx:.2f}%'} | {', '.join(fits) or '-'} |")
    lines.append("")
    for engine in ("V1", "V0"):
        rows = [r for r in kv if r.engine == engine and not r.fit]
        lines.append(f"### {engine}: {summary(rows)} (validation: records no constant was fitted on)")
        lines.append("")
        if rows:
            lines.extend(table(rows))
            lines.append("")
    lines.append("### Per cause (validation records; a record counts under each of its causes)")
    lines.append("")
    lines.extend(cause_table([r for r in kv if not r.fit]))
    lines.append("")

    def explained(title: str, rows: list, why) -> None:
        """A table of records, each followed by why it stands apart."""
        if rows:
            lines.extend([title, "", *table(rows), *(f"\n{r.obs_id}: {why(r)}" for r in rows), ""])

    fits = [r for r in kv if r.fit]
    explained(f"### Fit check, not validation: {summary(fits)} on the record(s) the constants were fitted on",
              fits, lambda r: FIT_RECORDS[r.obs_id])
    lines.append("### GPU-side memory, term by term, where the log prints it (GiB)")
    lines.append("")
    lines.append("V1 logs print the breakdown only from 0.10.2 (\"Free memory on device ... Actual usage is ...\"); "
                 "from 0.27 their peak activation includes the CUDA-graph estimate, and kvfit's figure is summed the "
                 "same way. \"captured\": what the capture took after the KV cache was allocated (not deducted "
                 "before 0.20), against kvfit's estimate of it. The encoder has no line of its own in any log here.")
    lines.append("")
    lines.extend(term_table(scored))
    lines.append("")
    explained("### Scored on their terms only (weights unknown)", [r for r in scored if not r.kv_scored],
              lambda r: r.reason)
    checked = [r for r in scored if r.with_logged_weights]
    if checked:
        lines += ["### The rest of the reserve, with the log's weights (weights-unknown records, not in the figures)",
                  "", "kvfit's KV cache with the weights the log printed in place of its own estimate: everything "
                  "else in the reserve (activation, sampler, CUDA graphs, non-torch) against the log. Records the "
                  "V0 constants were fitted on are labelled \"fit\".", "",
                  "| record | engine | vLLM | logged weights GiB | logged KV GiB | kvfit KV GiB | error |",
                  "|---|---|---|---|---|---|---|"]
        for r in checked:
            logged, ours = r.with_logged_weights
            w = r.terms.get("weights", (None, None))[1]
            fit = " (fit)" if r.obs_id in TERM_FIT_RECORDS else ""
            lines.append(f"| {r.obs_id}{fit} | {r.engine} | {r.shown_version or r.version} | "
                         f"{_fmt(w)} | {_fmt(logged)} | {_fmt(ours)} | {(ours - logged) / logged * 100:+.2f}% |")
        lines.append("")
    explained("### On an assumed GPU (not scored)", assumed, lambda r: r.reason)
    if implied:
        lines.append("### V1 records without a GPU total (not scored): the total kvfit's reserve implies")
        lines.append("")
        lines.append("| record | vLLM | model | util | logged KV GiB | implied total GiB | note |")
        lines.append("|---|---|---|---|---|---|---|")
        by_id = records_by_id(records)
        for r in implied:
            lines.append(f"| {r.obs_id} | {r.version} | {r.model} | {r.util} | "
                         f"{_fmt(by_id[r.obs_id]['reported']['kv_cache_gib'])} | "
                         f"{_fmt(r.predicted)} | {r.reason} |")
        lines.append("")
    lines.append("### Not scored")
    lines.append("")
    for r in skipped:
        lines.append(f"- {r.obs_id} ({r.confidence}, {r.engine}, {r.model}): {r.reason}")
    if detail:
        lines.append("")
        lines.append("### Sources")
        lines.append("")
        for rec in records:
            lines.append(f"- {rec['obs_id']}: {_source(rec) or '-'}")
    return "\n".join(lines)


def records_by_id(records: list[dict]) -> dict[str, dict]:
    return {r["obs_id"]: r for r in records}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvfit.bench accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--detail", action="store_true", help="also list every record's source")
    ap.add_argument("--data", type=Path, default=DATA, help="directory holding the calibration .jsonl files")
    args = ap.parse_args(argv)
    print(report(args.detail, args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
