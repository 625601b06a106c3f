"""`python -m kvfit.bench accuracy`: kvfit against every real vLLM observation with a known GPU total.

Reads tests/data/calibration/observations.jsonl (a copy of ../shared/calibration/observations.jsonl)
and tests/data/calibration/spec_8_3.jsonl (the public logs of the spec's §8.3 in the same schema),
runs each launch through kvfit.plan.evaluate, and prints predicted against reported KV capacity:
tokens when the log printed them (V0: blocks x block_size; V1: "GPU KV cache size"), else the KV GiB
("the rest of the memory reserved for KV Cache" / "Available KV cache memory"). Median and max
absolute error are given for V0 and V1 separately. A script that prints, not a timed test.

Scored: confidence high or medium (the data set's README), a GPU total in the log, a model kvfit can
read, a CUDA platform, a launch kvfit check can express. Everything else is listed with the reason.
V1 records whose GPU is not known are shown apart with the GPU total kvfit's reserve implies for them.

Fit, not validation: a record whose log the constants of memory/overhead.py were fitted on (FIT_RECORDS:
gt-046 for every V1 term) is shown apart, labelled "fit", and kept out of the V1 figure; reproducing it
only checks the fit. The V0 constants are medians over several V0 records (overhead.py names them), so
the V0 figure is in-sample too, and says so.
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
FILES = ("observations.jsonl", "spec_8_3.jsonl")

# Inputs the records give only in prose, each with the record text it comes from.
MODEL_ALIAS = {
    # "meta-llama/Meta-Llama-3-8B" (gt-003): the base model; the bundled Instruct entry has the same
    # config and the same 8,030,261,248 parameters.
    "gt-003": "meta-llama/Meta-Llama-3-8B-Instruct",
    # DeepSeek-Coder-V2-Lite-Instruct (gt-029) has DeepSeek-V2-Lite's architecture (27 layers, MLA 512+64,
    # 64 routed experts) and its 15,706,484,224 parameters.
    "gt-029": "deepseek-ai/DeepSeek-V2-Lite",
    # Qwen2.5-Math-1.5B (gt-033): Qwen2.5-1.5B's shape and 1,543,714,304 parameters.
    "gt-033": "Qwen/Qwen2.5-1.5B-Instruct",
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
    "gt-043": "in-flight bitsandbytes quantization of a bf16 checkpoint (--quantization bitsandbytes): "
              "kvfit check takes no quantization flag, so it would size 14.7B bf16 parameters",
    "gt-017": "the engine ran out of memory before allocating KV (0.04-0.13 GiB left per rank); its "
              "multimodal V0 profile (vision encoder dummy batch) is not modelled",
}
NON_CUDA = ("rocm", "dcu", "amd", "xpu", "intel", "hygon")
# Records a constant was fitted on (memory/overhead.py): their agreement is a fit check, not a validation.
FIT_RECORDS = {
    "gt-046": "memory/overhead.py's V1 terms (non-torch 0.27 GiB, sampler 32 B per logit, CUDA graphs per "
              "graph and layer, CUDA context) are fitted on this log: reproducing it checks the fit only",
}


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
    shown_version: str = ""      # the version as the record has it when approximate ("~0.7")

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


def load_model(rec: dict, data: Path = DATA):
    from ..arch.normalize import normalize
    from ..memory.weights import Inventory
    from ..plan.evaluate import Model
    from ..sources import catalog

    wanted = MODEL_ALIAS.get(rec["obs_id"]) or rec.get("arch_key") or rec.get("model_id") or ""
    for f in sorted((data / "models").glob("*.json")):
        entry = json.loads(f.read_text(encoding="utf-8"))
        if entry["id"] == wanted:
            inv = Inventory({k: int(v) for k, v in entry["params"].items()}, "calibration models/")
            return Model(entry["id"], "calibration", f.name, normalize(entry["config"]), inv)
    src = catalog.load(wanted.split(" ")[0])
    if src is None:
        return None
    return Model(src.id, src.source, src.detail, normalize(src.config, hf_quant_config=src.hf_quant_config),
                 src.inventory)


def pick_gpu(rec: dict, total_gib: float):
    """The catalog GPU when its total matches the log (exact bytes), else the logged total."""
    from ..gpu.catalog import catalog, from_entry
    from ..gpu.model import Gpu

    name = (rec.get("gpu") or {}).get("name") or ""
    low = name.lower()
    for e in catalog():
        keys = [e["name"].lower()] + [a.lower() for a in e.get("aliases", [])]
        if any(k in low for k in keys if len(k) > 3) and abs(e["total_bytes"] / GiB - total_gib) < 0.006:
            return from_entry(e)
    cc = (8, 0)
    for key, cap in (("t4", (7, 5)), ("turing", (7, 5)), ("2080", (7, 5)), ("2060", (7, 5)),
                     ("v100", (7, 0)), ("volta", (7, 0)), ("h200", (9, 0)), ("h100", (9, 0))):
        if key in low:
            cc = cap
            break
    return Gpu(name or f"{total_gib} GiB GPU", round(total_gib * GiB), cc, source="calibration record")


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
              entrypoint=ENTRYPOINT.get(rec["obs_id"], "serve"),
              enable_lora=bool(rec.get("enable_lora")))
    return Settings(**{k: v for k, v in kw.items() if k in fields})


def profile_for_record(version: str, gpu, engine: str):
    from ..memory.profiles import profile_for

    try:
        return profile_for(version, gpu=gpu, engine="V0" if engine.startswith("V0") else None)
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


def _logged_breakdown(rec: dict, res) -> dict:
    rep = rec["reported"]
    m = res.memory
    out = {"weights": (m.weights_bytes / GiB, rep.get("model_weights_gib") or rep.get("model_loading_gib")
                       or rep.get("model_weights_gb_logged") or rep.get("model_loading_gb_logged")),
           "activation": (m.activation_bytes / GiB, rep.get("activation_peak_gib")),
           "non-torch": (m.non_torch_bytes / GiB, rep.get("non_torch_memory_gib")),
           "mnbt/seqs": (f"{res.resolved.max_num_batched_tokens}/{res.resolved.max_num_seqs}", None)}
    if "peak_torch_memory_gib" in rep and out["weights"][1]:
        out["activation"] = (m.activation_bytes / GiB, round(rep["peak_torch_memory_gib"] - out["weights"][1], 2))
    if rep.get("cuda_graph_gib") and res.profile.engine == "V1":
        out["CUDA graphs"] = (m.cudagraph_bytes / GiB, rep["cuda_graph_gib"])
    return out


def run_records(records: list[dict], data: Path = DATA) -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    """(scored, not scored, implied-total rows, assumed-GPU rows)."""
    from ..errors import KvfitError

    scored, skipped, implied, assumed = [], [], [], []
    for rec in records:
        oid, conf = rec["obs_id"], rec.get("confidence", "low")
        engine = (rec.get("engine") or "V1").split(" ")[0]
        total = _total_gib(rec)
        row = Row(oid, conf, engine, _version(rec.get("vllm_version"), engine),
                  (rec.get("model_id") or "?").split(" (")[0][:44], total, rec.get("max_model_len"),
                  rec.get("gpu_memory_utilization"))
        raw = rec.get("vllm_version") or ""
        m = re.search(r"~?\d+\.\d+(?:\.(?:\d+|x))?", raw)
        row.shown_version = m.group(0) if m and ("~" in m.group(0) or m.group(0).endswith("x")) else ""
        platform = f"{(rec.get('gpu') or {}).get('name', '')} {rec.get('vllm_version', '')}".lower()
        if rec.get("duplicate_of"):
            row.reason = f"the same log as {rec['duplicate_of']}"
        elif oid in NOT_SCORED:
            row.reason = NOT_SCORED[oid]
        elif any(k in platform for k in NON_CUDA):
            row.reason = "not a CUDA platform (ROCm/DCU/XPU): kvfit models CUDA"
        elif conf not in ("high", "medium"):
            row.reason = f"{conf} confidence"
        if row.reason:
            skipped.append(row)
            continue
        model = load_model(rec, data)
        if model is None:
            row.reason = "model not known to kvfit"
            skipped.append(row)
            continue
        if total is None and oid in ASSUMED_GPU:
            assumed.append(_assumed(rec, row, model, ASSUMED_GPU[oid]))
            continue
        if total is None:
            if engine == "V1" and rec.get("gpu_memory_utilization") and rec["reported"].get("kv_cache_gib"):
                implied.append(_implied(rec, row, model))
            else:
                row.reason = "GPU total not in the log"
                skipped.append(row)
            continue
        gpu = pick_gpu(rec, total)
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
        row.detail = _logged_breakdown(rec, res)
        row.detail["profile"] = (res.profile.name, None)
        scored.append(row)
    return scored, skipped, implied, assumed


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

    util = rec["gpu_memory_utilization"]
    kv = rec["reported"]["kv_cache_gib"] * GiB
    guess = 48 * GiB
    total = guess
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


def table(rows: list[Row], detail: bool) -> list[str]:
    head = "| record | conf | vLLM | model | GPU GiB | max_model_len | util | metric | reported | kvfit | error |"
    sep = "|---|---|---|---|---|---|---|---|---|---|---|"
    out = [head, sep]
    for r in rows:
        out.append(f"| {r.obs_id}{' (fit)' if r.fit else ''} | {r.confidence} | {r.shown_version or r.version} | {r.model} | {_fmt(r.gpu_gib)} | "
                   f"{r.length or '-'} | {'-' if r.util is None else f'{r.util:.3g}'} | {r.metric} | "
                   f"{_fmt(r.reported)} | {_fmt(r.predicted)} | {r.error_pct:+.2f}% |")
    if detail:
        out.append("")
        out.append("| record | profile | mnbt/seqs | weights kvfit / logged | activation kvfit / logged | "
                   "non-torch kvfit / logged | CUDA graphs kvfit / logged |")
        out.append("|---|---|---|---|---|---|---|")
        for r in rows:
            d = r.detail
            cell = lambda k: ("-" if k not in d else f"{_fmt(d[k][0])} / {_fmt(d[k][1])}")  # noqa: E731
            out.append(f"| {r.obs_id} | {d['profile'][0]} | {d['mnbt/seqs'][0]} | {cell('weights')} | "
                       f"{cell('activation')} | {cell('non-torch')} | {cell('CUDA graphs')} |")
    return out


def report(detail: bool = False, data: Path = DATA) -> str:
    records = load_records(data)
    scored, skipped, implied, assumed = run_records(records, data)
    lines = [f"kvfit accuracy on {len(records)} calibration records ({', '.join(FILES)})", ""]
    for engine in ("V1", "V0"):
        rows = [r for r in scored if r.engine == engine and not r.fit]
        note = (" (in-sample: memory/overhead.py's V0 constants are medians over these records' breakdowns)"
                if engine == "V0" else " (validation: records no constant was fitted on)")
        fitted = [r.obs_id for r in scored if r.engine == engine and r.fit]
        if not rows and fitted:
            note = f" to validate on: the only one is {', '.join(fitted)}, the fit record (below)"
        lines.append(f"### {engine}: {summary(rows)}{note}")
        lines.append("")
        if rows:
            lines.extend(table(rows, detail))
            lines.append("")
    fits = [r for r in scored if r.fit]
    if fits:
        lines.append(f"### Fit check, not validation: {summary(fits)} on the record(s) the constants were fitted on")
        lines.append("")
        lines.extend(table(fits, detail))
        for r in fits:
            lines.append(f"\n{r.obs_id}: {FIT_RECORDS[r.obs_id]}")
        lines.append("")
    if assumed:
        lines.append("### On an assumed GPU (not scored)")
        lines.append("")
        lines.extend(table(assumed, False))
        for r in assumed:
            lines.append(f"\n{r.obs_id}: {r.reason}")
        lines.append("")
    if implied:
        lines.append("### V1 records without a GPU total (not scored): the total kvfit's reserve implies")
        lines.append("")
        lines.append("| record | vLLM | model | util | logged KV GiB | implied total GiB | note |")
        lines.append("|---|---|---|---|---|---|---|")
        for r in implied:
            lines.append(f"| {r.obs_id} | {r.version} | {r.model} | {r.util} | "
                         f"{_fmt(records_by_id(records)[r.obs_id]['reported']['kv_cache_gib'])} | "
                         f"{_fmt(r.predicted)} | {r.reason} |")
        lines.append("")
    lines.append("### Not scored")
    lines.append("")
    for r in skipped:
        lines.append(f"- {r.obs_id} ({r.confidence}, {r.engine}, {r.model}): {r.reason}")
    return "\n".join(lines)


def records_by_id(records: list[dict]) -> dict[str, dict]:
    return {r["obs_id"]: r for r in records}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kvfit.bench accuracy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--detail", action="store_true", help="also print kvfit's breakdown against the logged one")
    ap.add_argument("--data", type=Path, default=DATA, help="directory holding the calibration .jsonl files")
    args = ap.parse_args(argv)
    print(report(args.detail, args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
