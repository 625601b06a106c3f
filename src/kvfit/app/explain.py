"""`kvfit explain [LOGFILE|-]`: a vLLM log or traceback in, the diagnosis and corrected flags out.

kvfit.engine.logs parses the text, kvfit.engine.explain diagnoses it from the log's own numbers. When the log
names the model (a path or Hugging Face id kvfit can resolve: local, HF cache, bundled catalog, the Hub unless
--offline), this module re-checks the advice with the model's real KV layout (app_check.load_model +
plan.evaluate), using the settings and the KV memory the log shows:

* the KV memory of the run is rebuilt from the log's block count (exact: vLLM's checks depend on the
  block count only), or its token count, or its GiB figures (to 0.01 GiB);
* it is checked against the model: the log's GiB figures must match blocks x bytes per block, and vLLM's
  "needed" figure must match one request's bytes; if they do not, the log is from another checkpoint or other
  settings and the advice stays the log-only one (said so);
* then the longest max_model_len that fits that memory is vLLM's own arithmetic (exact), the CPU budget that
  serves the asked length is exact in bytes, and the utilisation that serves it is computed from the exact
  bytes, rounded up for the log's 0.01-GiB GPU total.

Exit codes: 0 a diagnosis was made (an error explained, or a healthy start summarised; --json says whether
the log shows a failure); 1 the text holds no vLLM error or KV-cache line kvfit recognises; 2 the input cannot
be read (missing file, a directory, empty or binary data).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..plan import evaluate as plan
from ..logs.diagnose import FAILURE_KINDS, Explanation, Fix, explain
from ..logs.parse import LogFacts, parse_log
from ..errors import BadInput, KvfitError
from ..gpu.model import Gpu
from ..memory.profiles import CURRENT_VERSION, profile_for
from ..settings import DTYPES, KV_CACHE_DTYPES, Settings

GIB = 1 << 30
MAX_BYTES = 64 << 20          # larger inputs keep their first 16 MiB and last 48 MiB
KV_KINDS = {"v0_max_seq_len", "v1_max_seq_len", "no_cache_memory", "cannot_autofit", "ok"}


# --- input ------------------------------------------------------------------------------------------

def read_text(source: str | None, stdin=None) -> tuple[str, str]:
    """(text, label). Raises BadInput (exit 2) for anything that is not readable text."""
    stdin = stdin if stdin is not None else sys.stdin
    if source is None or source == "-":
        if source is None and getattr(stdin, "isatty", lambda: False)():
            raise BadInput("no log given", "Pass a file (kvfit explain vllm.log) or pipe one (... | kvfit explain -).")
        buf = getattr(stdin, "buffer", None)
        try:
            data = buf.read() if buf is not None else stdin.read()
        except (OSError, ValueError) as e:
            raise BadInput(f"cannot read standard input: {e}") from e
        label = "standard input"
    else:
        p = Path(source).expanduser()
        if p.is_dir():
            raise BadInput(f"{source} is a directory, not a log file")
        try:
            with p.open("rb") as fh:
                data = fh.read(MAX_BYTES + 1)
                if len(data) > MAX_BYTES:
                    fh.seek(-(48 << 20), 2)
                    data = data[: 16 << 20] + b"\n" + fh.read()
        except OSError as e:
            raise BadInput(f"cannot read {source}: {e.strerror or e}") from e
        label = source
    if isinstance(data, str):
        text = data
    else:
        if len(data) > MAX_BYTES:
            data = data[: 16 << 20] + b"\n" + data[-(48 << 20):]
        if data[:8192].count(b"\0") > 16:
            raise BadInput(f"{label} is binary data, not a vLLM log")
        text = data.decode("utf-8", errors="replace")
    if not text.strip():
        raise BadInput(f"{label} is empty", "Paste the vLLM output, including the error or the KV-cache lines.")
    return text, label


# --- settings and GPU from the log --------------------------------------------------------------------

def _pos_int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def settings_from_log(facts: LogFacts) -> Settings:
    s = facts.settings
    dtype = str(s.get("dtype") or "auto").replace("torch.", "")
    kvd = str(s.get("kv_cache_dtype") or "auto")
    device = "cpu" if (facts.device_label or "").upper() == "CPU" else "cuda"
    bs = _pos_int(facts.block_size)
    if bs and device == "cuda" and bs % 16:
        bs = None
    mnbt, mns = _pos_int(s.get("max_num_batched_tokens")), _pos_int(s.get("max_num_seqs"))
    if mnbt and mns and mnbt < mns:
        mnbt = None
    util = facts.gpu_memory_utilization
    kw = dict(
        max_model_len=_pos_int(facts.max_model_len),
        gpu_memory_utilization=util if isinstance(util, float) and 0 < util <= 1 else None,
        tensor_parallel_size=_pos_int(facts.tensor_parallel_size) or 1,
        pipeline_parallel_size=_pos_int(facts.pipeline_parallel_size) or 1,
        dtype=dtype if dtype in DTYPES else "auto",
        kv_cache_dtype=kvd if kvd in KV_CACHE_DTYPES else "auto",
        block_size=bs, max_num_seqs=mns, max_num_batched_tokens=mnbt,
        enforce_eager=s.get("enforce_eager") is True,
        kv_cache_memory_bytes=_pos_int(s.get("kv_cache_memory_bytes")),
        device=device,
    )
    try:
        return Settings(**kw).validate()
    except BadInput:
        for k in ("max_num_batched_tokens", "max_num_seqs", "block_size", "kv_cache_dtype", "dtype"):
            kw[k] = "auto" if k in ("dtype", "kv_cache_dtype") else None
            try:
                return Settings(**kw).validate()
            except BadInput:
                continue
        return Settings(device=device)


def gpu_from_log(facts: LogFacts, device: str) -> tuple[Gpu, bool]:
    """The GPU the log ran on (total as vLLM printed it), and whether the total is known."""
    if device == "cpu":
        return Gpu("CPU (vLLM CPU backend)", 0, (0, 0), source="log"), False
    total = facts.total_gpu_memory_gib
    if total:
        free = facts.free_gpu_memory_gib
        where = "as named" if any("--gpu" in d for d in facts.derived) else "from the log"
        return Gpu(f"GPU with {total:.2f} GiB ({where})", int(round(total * GIB)), (8, 0),
                   free_bytes=int(free * GIB) if free else None, source="log"), True
    return Gpu("GPU (total not in the log)", 80 * GIB, (8, 0), source="log"), False


def profile_from_log(facts: LogFacts):
    if facts.vllm_version:
        try:
            return profile_for(facts.vllm_version), f"vLLM {facts.vllm_version}"
        except BadInput:
            pass
    if facts.engine == "V0":
        return profile_for("0.6.0"), "a V0-engine vLLM (version not in the log)"
    return profile_for(CURRENT_VERSION), f"vLLM {CURRENT_VERSION} rules (version not in the log)"


# --- the re-check ------------------------------------------------------------------------------------

@dataclass
class Recheck:
    model_ref: str
    ok: bool
    summary: str
    model_id: str | None = None
    source: str | None = None
    bytes_per_token: int | None = None
    bytes_per_block: int | None = None
    block_size: int | None = None
    budget_bytes: int | None = None
    budget_from: str | None = None
    consistent: bool | None = None
    longest_len: int | None = None
    fixes: list[Fix] = field(default_factory=list)     # the first keeps the asked length when that is possible
    lines: list[str] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)    # flags of the log-only fixes that kvfit predicts fail


def _ceil2(x: float) -> float:
    return math.ceil(round(x * 100, 6)) / 100


def _floor2(x: float) -> float:
    return math.floor(round(x * 100, 6)) / 100


def _first_error(facts: LogFacts, kind: str):
    return next((e for e in facts.errors if e.kind == kind), None)


def _evaluate(m, gpu, settings, profile, budget: int | None, length: int | None = None):
    s = settings
    if budget is not None:
        s = replace(s, kv_cache_memory_bytes=max(1, int(budget)), gpu_memory_utilization=None)
    if length is not None:
        s = replace(s, max_model_len=length)
    return plan.evaluate(m, gpu, s, profile)


def recheck(facts: LogFacts, expl: Explanation, *, offline: bool = False, load=None) -> Recheck | None:
    """Redo the arithmetic behind the diagnosis with the model named in the log. None: no model named."""
    ref = facts.model or expl.model
    if not ref:
        return None
    if load is None:
        from .check import load_model as load
    try:
        m = load(ref, facts.settings.get("revision") if isinstance(facts.settings.get("revision"), str) else None,
                 offline)
    except KvfitError as e:
        return Recheck(ref, False, f"could not re-check with {ref}: {e.message}")
    settings = settings_from_log(facts)
    gpu, total_known = gpu_from_log(facts, settings.device)
    profile, version_note = profile_from_log(facts)
    rc = Recheck(ref, False, "", model_id=m.id, source=f"{m.source}: {m.detail}")
    try:
        _recheck_into(rc, m, facts, settings, gpu, total_known, profile)
    except KvfitError as e:
        rc.summary = f"could not re-check with {m.id}: {e.message}"
        return rc
    rc.ok = True
    rc.lines.insert(0, f"rules: {version_note}; settings from the log: max_model_len "
                       f"{settings.max_model_len or 'derived'}, TP {settings.tensor_parallel_size}"
                       + (f", PP {settings.pipeline_parallel_size}" if settings.pipeline_parallel_size > 1 else "")
                       + (f", dtype {settings.dtype}" if settings.dtype != "auto" else "")
                       + (f", KV dtype {settings.kv_cache_dtype}" if settings.kv_cache_dtype != "auto" else "")
                       + f", {'CPU backend' if settings.device == 'cpu' else gpu.name}")
    return rc


def _budget(facts: LogFacts, res0: plan.Result, profile) -> tuple[int | None, int | None, str | None, bool]:
    """(low, high, where from, exact) bytes of KV memory the logged run had, on the fullest rank."""
    bpb, bs = res0.layout.bytes_per_block, res0.layout.block_size
    v0 = _first_error(facts, "v0_max_seq_len")
    if v0 is not None:
        y = int(v0.numbers["kv_tokens"])
        blocks = y // bs if y % bs == 0 else facts.num_gpu_blocks
        if blocks:
            return blocks * bpb, (blocks + 1) * bpb - 1, f"{blocks:,} blocks (the error's {y:,} tokens / {bs})", True
    if facts.num_gpu_blocks:
        b = facts.num_gpu_blocks
        return b * bpb, (b + 1) * bpb - 1, f"the log's {b:,} blocks", True
    tokens, length = facts.kv_cache_tokens, facts.max_concurrency_len or facts.max_model_len
    if tokens and length and res0.profile.tokens_report == "concurrency":
        per_req = res0.layout.blocks_per_request(plan.request_context(res0.resolved, res0.settings, res0.model.arch,
                                                                      length=length))
        if per_req:
            b0 = tokens * per_req // length
            for b in range(max(1, b0 - 2), b0 + 4):
                if int(b / per_req * length) == tokens:
                    return (b * bpb, (b + 1) * bpb - 1,
                            f"{b:,} blocks (from the log's {tokens:,} tokens at {length:,} per request)", True)
    v1 = _first_error(facts, "v1_max_seq_len")
    if v1 is not None:
        have = float(v1.numbers["available_gib"])
        extra = bpb if profile.null_block_reserved else 0
        lo, hi = max(0.0, have - 0.005) * GIB + extra, (have + 0.005) * GIB + extra
        return int(lo), int(hi), f"the error's {have:.2f} GiB available (+ vLLM's null block)", False
    if facts.available_kv_gib is not None and facts.available_kv_gib > 0:
        have = facts.available_kv_gib
        return int(max(0.0, have - 0.005) * GIB), int((have + 0.005) * GIB), f"the log's {have:.2f} GiB", False
    return None, None, None, False


def _recheck_into(rc: Recheck, m, facts: LogFacts, settings: Settings, gpu: Gpu, total_known: bool, profile) -> None:
    arch = m.arch
    kinds = {d for d in (e.kind for e in facts.errors)}
    ulen = _first_error(facts, "user_max_len_too_long")
    if ulen is not None:
        asked = int(ulen.numbers["max_model_len"])
        limit = arch.derived_max_len
        logged = ulen.numbers.get("derived_max_len")
        same = logged is None or int(logged) == limit
        rc.consistent = same
        rc.summary = (f"{m.id}'s config.json gives {arch.derived_max_len_key}={limit:,}"
                      + (", as in the log" if same and logged is not None else
                         (f", not the log's {int(logged):,}: the log is from another checkpoint" if not same else "")))
        if same:
            rc.fixes.append(Fix(f"--max-model-len {limit} is the model's own limit (checked in its config.json)",
                                {"--max-model-len": str(limit)}, exact=True))
            rc.longest_len = limit
        if asked <= limit:
            rc.lines.append(f"note: {asked:,} is within this config's limit; the logged run read another config")
        return
    length = settings.max_model_len
    if length is not None and length > max(arch.derived_max_len, arch.model_max_length or 0):
        raise BadInput(f"the log's max_model_len {length:,} exceeds {m.id}'s limit ({arch.derived_max_len:,}): "
                       "not the same model")
    res0 = _evaluate(m, gpu, settings, profile, budget=GIB)
    lay = res0.layout
    rc.bytes_per_token, rc.bytes_per_block, rc.block_size = lay.kv_bytes_per_token, lay.bytes_per_block, lay.block_size
    L = res0.resolved.max_model_len
    rc.lines.append(f"{m.id}: {lay.kv_bytes_per_token:,} B of KV per token per GPU, blocks of {lay.block_size} "
                    f"tokens = {lay.bytes_per_block:,} B; one {L:,}-token request needs "
                    f"{res0.capacity.needed_bytes / GIB:.2f} GiB ({res0.capacity.blocks_per_request:,} blocks)")
    if not lay.groups:
        rc.summary = f"{m.id} keeps no KV cache (attention-free); vLLM's KV checks do not apply"
        return
    if kinds & {"free_memory_startup", "cuda_oom", "profiling_memory_changed"} or not (
            kinds & KV_KINDS or facts.kv_cache_tokens or facts.num_gpu_blocks or facts.available_kv_gib):
        _prediction_lines(rc, m, facts, settings, gpu, total_known, profile)
        return

    lo, hi, where, exact = _budget(facts, res0, profile)
    if lo is None:
        rc.summary = "the log shows no KV memory figure to re-check against"
        _prediction_lines(rc, m, facts, settings, gpu, total_known, profile)
        return
    rc.budget_bytes, rc.budget_from = lo, where
    # consistency: the log's own figures against this model's bytes
    checks: list[bool] = []
    if exact and facts.available_kv_gib is not None:
        checks.append(abs(lo / GIB - facts.available_kv_gib) <= 0.006 + lay.bytes_per_block / GIB)
    v1 = _first_error(facts, "v1_max_seq_len")
    if v1 is not None:
        checks.append(abs(res0.capacity.needed_bytes / GIB - float(v1.numbers["needed_gib"])) <= 0.0051)
    rlo = _evaluate(m, gpu, settings, profile, budget=lo)
    rhi = _evaluate(m, gpu, settings, profile, budget=hi)
    est = v1.numbers.get("estimated_max_len") if v1 is not None else None
    if est:
        checks.append(rlo.capacity.max_model_len_fit <= int(est) <= rhi.capacity.max_model_len_fit)
    if facts.kv_cache_tokens and not exact and facts.max_concurrency_len == L:
        checks.append(rlo.capacity.kv_cache_tokens <= facts.kv_cache_tokens <= rhi.capacity.kv_cache_tokens)
    rc.consistent = all(checks) if checks else None
    if rc.consistent is False:
        rc.summary = (f"the log's figures do not match {m.id} with these settings ({lay.kv_bytes_per_token:,} B per "
                      "token): another checkpoint, TP size, dtype or KV dtype? The advice above uses the log's numbers "
                      "only")
        return
    basis = "matches the log's figures" if rc.consistent else "assuming the log's model and settings"
    if exact or (rlo.recommendation.max_model_len == rhi.recommendation.max_model_len):
        rc.longest_len = rlo.recommendation.max_model_len
    top = max(arch.derived_max_len, L)
    fits_now = rlo.capacity.fits
    rc.summary = (f"re-checked with {m.id} ({basis}): the run had {where}"
                  + (f" = {lo / GIB:.3f} GiB" if exact else "") + " of KV memory")
    length_fix: Fix | None = None
    if rc.longest_len:
        cap_txt = "the model's full context" if rc.longest_len >= top else f"{rc.longest_len:,} tokens"
        rc.lines.append(f"longest max_model_len that fits in that memory: {cap_txt} "
                        "(vLLM's own check, computed exactly)" + (f"; vLLM estimated {int(est):,}" if est else ""))
        if not fits_now and rc.longest_len < L:
            length_fix = Fix(f"--max-model-len {rc.longest_len}: the longest context that fits this memory "
                             f"({m.id}, exact KV arithmetic)", {"--max-model-len": str(rc.longest_len)}, exact=True)
    else:
        a, b = rlo.recommendation.max_model_len or 0, rhi.recommendation.max_model_len or 0
        rc.lines.append(f"longest max_model_len that fits: between {a:,} and {b:,} (the log's GiB figure is rounded "
                        "to 0.01)" + (f"; vLLM's own estimate, {int(est):,}, is the exact value" if est else ""))
    if fits_now:
        rc.lines.append(f"at {L:,} tokens: {rlo.capacity.num_blocks:,} blocks, {rlo.capacity.kv_cache_tokens:,} KV "
                        f"tokens, {rlo.capacity.max_concurrency:.2f}x concurrency")
        return
    keep_fix = _keep_length_fix(rc, m, facts, settings, gpu, profile, rlo, lo, L)
    rc.fixes = [f for f in (keep_fix, length_fix) if f is not None]


def _keep_length_fix(rc: Recheck, m, facts: LogFacts, settings: Settings, gpu: Gpu, profile, rlo: plan.Result,
                     lo: int, L: int) -> Fix | None:
    """The flag that keeps max_model_len L: exact KV bytes for one request (+ vLLM's null block on V1)."""
    lay = rlo.layout
    need = rlo.capacity.needed_bytes + (lay.bytes_per_block if profile.null_block_reserved else 0)
    if profile.engine == "V0":
        need = math.ceil(L / lay.block_size) * lay.bytes_per_block
    if settings.device == "cpu":
        b = need
        while b < need + 64 * lay.bytes_per_block and not _evaluate(m, gpu, settings, profile, budget=b).capacity.fits:
            b += lay.bytes_per_block
        return Fix(f"--kv-cache-memory-bytes {b} (= {b / GIB:.4f} GiB): the smallest CPU KV budget that holds one "
                   f"{L:,}-token request of {m.id}, exact; or VLLM_CPU_KVCACHE_SPACE={math.ceil(b / GIB)} (whole GiB)",
                   {"--kv-cache-memory-bytes": str(b)}, exact=True)
    util, total = facts.gpu_memory_utilization, facts.total_gpu_memory_gib
    util_note = ""
    if util is None and total:
        util, util_note = profile.default_gpu_memory_utilization, f" (the log does not show the utilization; " \
                                                                  f"assumed the default {profile.default_gpu_memory_utilization})"
    extra = need - lo
    if util is None or not total:
        rc.lines.append(f"keeping {L:,} tokens needs {extra / GIB:.3f} GiB more KV memory ({m.id}, exact); the log "
                        "does not show the GPU total to turn that into a utilization (name the GPU: --gpu or "
                        "--gpu-memory)")
        return None
    new = _ceil2(util + extra / ((total - 0.005) * GIB))
    limit = 0.99
    if facts.free_gpu_memory_gib is not None:
        limit = min(limit, _floor2(facts.free_gpu_memory_gib / total))
    if new > limit:
        rc.lines.append(f"keeping {L:,} tokens needs {extra / GIB:.3f} GiB more, i.e. --gpu-memory-utilization "
                        f"{new:.2f}, above the {limit:.2f} this GPU can give{util_note}")
        rc.rejected.add("--gpu-memory-utilization")
        return None
    return Fix(f"--gpu-memory-utilization {new:g} keeps max_model_len {L:,}: it adds {extra / GIB:.3f} GiB, what one "
               f"request of {m.id} still needs (the smallest value by exact KV arithmetic, rounded up for the log's "
               f"0.01-GiB GPU total; vLLM's memory outside the KV cache can drift by a few MiB between launches)"
               + util_note, {"--gpu-memory-utilization": f"{new:g}"}, exact=False)


def _prediction_lines(rc: Recheck, m, facts: LogFacts, settings: Settings, gpu: Gpu, total_known: bool,
                      profile) -> None:
    """No KV figure to rebuild from: show what kvfit's memory model predicts for the logged launch."""
    if settings.device == "cuda" and not total_known:
        if not rc.summary:
            rc.summary = (f"re-checked the KV layout of {m.id}; the log lacks the GPU total for a memory prediction "
                          "(name the GPU: --gpu or --gpu-memory)")
        return
    rc.summary = rc.summary or f"kvfit's prediction for this launch of {m.id} (its memory model: an estimate, not exact)"
    fsu = _first_error(facts, "free_memory_startup")
    if fsu is None:
        res = plan.evaluate(m, gpu, settings, profile)
        rc.lines.append(_predicted(res, gpu))
        if not res.fits and res.recommendation.max_model_len:
            rc.lines.append(f"kvfit's estimate of the longest max_model_len at "
                            f"{res.resolved.gpu_memory_utilization:g}: {res.recommendation.max_model_len:,}")
        return
    # the startup check failed: would the utilization that passes it leave room for the model?
    free, total = float(fsu.numbers["free_gib"]), float(fsu.numbers["total_gib"])
    proposal = round(_floor2(free / total) - 0.01, 2)
    asked = replace(settings, gpu_memory_utilization=float(fsu.numbers["utilization"]))
    whole = plan.evaluate(m, replace(gpu, free_bytes=None), asked, profile)
    rc.lines.append("if the other processes freed the GPU: " + _predicted(whole, gpu))
    if proposal <= 0.05:
        return
    res = plan.evaluate(m, gpu, replace(settings, gpu_memory_utilization=proposal), profile)
    rc.lines.append(_predicted(res, gpu))
    if res.fits:
        rc.fixes.append(Fix(f"--gpu-memory-utilization {proposal:g} passes the startup check, and kvfit predicts "
                            f"{res.capacity.kv_cache_tokens:,} KV tokens at max_model_len {res.resolved.max_model_len:,} "
                            "(kvfit's estimate)", {"--gpu-memory-utilization": f"{proposal:g}"}))
        return
    rc.rejected.add("--gpu-memory-utilization")
    if res.memory.kv_available_bytes > 0 and res.recommendation.max_model_len:
        n = res.recommendation.max_model_len
        rc.fixes.append(Fix(f"--gpu-memory-utilization {proposal:g} with --max-model-len {n}: what the free memory can "
                            f"serve (kvfit's estimate)", {"--gpu-memory-utilization": f"{proposal:g}",
                                                          "--max-model-len": str(n)}))
    else:
        rc.fixes.append(Fix(f"No utilization fits in the {free:.2f} GiB that is free: free the memory other processes "
                            f"hold, then keep --gpu-memory-utilization {fsu.numbers['utilization']:g}", {}))


def _predicted(res: plan.Result, gpu: Gpu) -> str:
    u = res.resolved.gpu_memory_utilization
    mem = res.memory
    if mem.kv_available_bytes <= 0:
        return (f"at --gpu-memory-utilization {u:g} ({mem.requested_bytes / GIB:.2f} GiB) nothing is left for KV cache: "
                f"weights {mem.weights_bytes / GIB:.2f} GiB + vLLM's other memory "
                f"{(mem.activation_bytes + mem.cudagraph_bytes + mem.non_torch_bytes) / GIB:.2f} GiB (kvfit's estimate)")
    verdict = "fits" if res.fits else "does not fit"
    return (f"at --gpu-memory-utilization {u:g}: {verdict}, {res.capacity.kv_cache_tokens:,} KV tokens at "
            f"max_model_len {res.resolved.max_model_len:,} ({mem.kv_available_bytes / GIB:.2f} GiB of KV memory; "
            "kvfit's estimate)")


# --- output ------------------------------------------------------------------------------------------

_BOOL_FLAGS = {"--enforce-eager"}


def corrected_command(facts: LogFacts, settings: Settings, fix: Fix | None) -> str | None:
    """`vllm serve MODEL ...` with the log's settings and the fix applied (None when there is no fix)."""
    if fix is None or (not fix.flags and not fix.env):
        return None
    flags: dict[str, str] = {}
    if settings.max_model_len:
        flags["--max-model-len"] = str(settings.max_model_len)
    if facts.gpu_memory_utilization is not None and settings.device == "cuda":
        flags["--gpu-memory-utilization"] = f"{facts.gpu_memory_utilization:g}"
    if settings.kv_cache_memory_bytes:
        flags["--kv-cache-memory-bytes"] = str(settings.kv_cache_memory_bytes)
    if settings.tensor_parallel_size > 1:
        flags["--tensor-parallel-size"] = str(settings.tensor_parallel_size)
    if settings.pipeline_parallel_size > 1:
        flags["--pipeline-parallel-size"] = str(settings.pipeline_parallel_size)
    if settings.kv_cache_dtype != "auto":
        flags["--kv-cache-dtype"] = settings.kv_cache_dtype
    if settings.enforce_eager:
        flags["--enforce-eager"] = ""
    for k, v in fix.flags.items():
        if k == "--kv-cache-memory-bytes":
            flags.pop("--gpu-memory-utilization", None)
        if k == "--gpu-memory-utilization":
            flags.pop("--kv-cache-memory-bytes", None)
        flags[k] = v
    env = " ".join(f"{k}={v}" for k, v in fix.env.items())
    parts = ([env] if env else []) + [f"vllm serve {facts.model or 'MODEL'}"]
    parts += [k if (k in _BOOL_FLAGS or v == "") else f"{k} {v}" for k, v in flags.items()]
    return " ".join(parts)


def candidate_fixes(expl: Explanation, rc: Recheck | None) -> list[Fix]:
    """Fixes with flags for the first failure, best first: the re-check's, then the log-only ones kvfit did not
    reject (a log-only fix whose flag the re-check replaced is dropped)."""
    first = next((d for d in expl.diagnoses if d.kind != "ok"), None)
    if first is None:
        return []
    out: list[Fix] = []
    rejected: set[str] = set()
    if rc is not None and rc.ok and rc.consistent is not False:
        out += [f for f in rc.fixes if f.flags or f.env]
        rejected = set(rc.rejected) | {k for f in out for k in f.flags}
    out += [f for f in first.fixes if (f.flags or f.env) and not (set(f.flags) & rejected)]
    return out


def primary_fix(expl: Explanation, rc: Recheck | None) -> Fix | None:
    fixes = candidate_fixes(expl, rc)
    return fixes[0] if fixes else None


def _failed(expl: Explanation) -> bool:
    return any(d.kind in FAILURE_KINDS for d in expl.diagnoses)


def explanation_dict(facts: LogFacts, expl: Explanation, rc: Recheck | None, command: str | None,
                     label: str) -> dict:
    keys = ("model", "vllm_version", "engine", "device_label", "max_model_len", "gpu_memory_utilization",
            "tensor_parallel_size", "total_gpu_memory_gib", "free_gpu_memory_gib", "model_weights_gib",
            "activation_peak_gib", "available_kv_gib", "num_gpu_blocks", "kv_cache_tokens", "max_concurrency",
            "max_concurrency_len", "block_size")
    return {
        "schema": "kvfit.explain/1",
        "input": label,
        "diagnosed": bool(expl.diagnoses),
        "failed": _failed(expl),
        "facts": {k: getattr(facts, k) for k in keys},
        "diagnoses": [asdict(d) for d in expl.diagnoses],
        "warnings": list(expl.warnings),
        "recheck": None if rc is None else {
            "model": rc.model_ref, "model_id": rc.model_id, "source": rc.source, "ok": rc.ok,
            "summary": rc.summary, "consistent": rc.consistent, "bytes_per_token": rc.bytes_per_token,
            "bytes_per_block": rc.bytes_per_block, "block_size": rc.block_size, "budget_bytes": rc.budget_bytes,
            "budget_from": rc.budget_from, "longest_max_model_len": rc.longest_len,
            "fixes": [asdict(f) for f in rc.fixes], "lines": rc.lines},
        "corrected_command": command,
    }


def _fix_line(i: int, f: Fix) -> str:
    tag = " [green](exact)[/]" if f.exact else ""
    env = " ".join(f"{k}={v}" for k, v in f.env.items())
    return f"  {i}. {escape(f.description)}{tag}" + (f"  [dim]env: {escape(env)}[/]" if env else "")


def render(out: Console, facts: LogFacts, expl: Explanation, rc: Recheck | None, commands: list[str],
           label: str) -> None:
    head = [f"vLLM {facts.vllm_version}" if facts.vllm_version else None,
            f"{facts.engine} engine" if facts.engine else None,
            f"model {facts.model}" if facts.model else None,
            "CPU backend" if (facts.device_label or "").upper() == "CPU" else None]
    out.print(f"[bold]kvfit explain[/] {escape(label)}" + (": " + ", ".join(escape(h) for h in head if h)
                                                             if any(head) else ""))
    for d in expl.diagnoses:
        mark = "[green]✔[/]" if d.kind == "ok" else "[red]✘[/]"
        out.print(f"\n{mark} [bold]{escape(d.title)}[/]")
        out.print(f"  {escape(d.explanation)}")
        if d.fixes:
            out.print("  [bold]Fixes:[/]")
            for i, f in enumerate(d.fixes, 1):
                out.print(_fix_line(i, f))
    if rc is not None:
        out.print(f"\n[bold]Re-check[/] ({escape(rc.model_ref)}"
                  + (f", {escape(rc.source)}" if rc.source else "") + "):")
        if rc.summary:
            out.print(f"  {escape(rc.summary)}")
        for ln in rc.lines:
            out.print(f"  - {escape(ln)}")
        if rc.fixes and rc.consistent is not False:
            out.print(f"  [bold]Advice re-checked with {escape(rc.model_id or rc.model_ref)}:[/]")
            for i, f in enumerate(rc.fixes, 1):
                out.print(_fix_line(i, f))
    elif any(d.kind != "ok" for d in expl.diagnoses):
        out.print("\n[dim]The log does not name the model; include the `vllm serve` command or the "
                  "'Initializing ... with config: model=...' line and kvfit re-checks the advice with the "
                  "model's KV layout.[/]")
    if commands:
        out.print("\n[bold]Corrected launch:[/]")
        out.print(f"  {escape(commands[0])}")
        for c in commands[1:]:
            out.print(f"  [dim]or[/] {escape(c)}")
    for w in expl.warnings:
        out.print(f"[yellow]warning:[/] {escape(w)}")


def run(*, source: str | None, as_json: bool, offline: bool, out: Console, err: Console, stdin=None,
        gpu: str | None = None, gpu_memory: str | None = None) -> int:
    text, label = read_text(source, stdin)
    facts = parse_log(text)
    if (gpu or gpu_memory) and facts.total_gpu_memory_gib is None:
        from .check import pick_gpus

        named = pick_gpus(gpu, gpu_memory, "cuda", 1)[0][0]
        facts.total_gpu_memory_gib = round(named.total_bytes / GIB, 2)
        facts.derived.append("total_gpu_memory_gib (--gpu/--gpu-memory)")
    expl = explain(facts)
    rc = recheck(facts, expl, offline=offline) if expl.diagnoses else None
    settings = settings_from_log(facts)
    fixes = candidate_fixes(expl, rc)
    commands = []
    for f in fixes:
        c = corrected_command(facts, settings, f)
        if c and c not in commands:
            commands.append(c)
        if len(commands) == 2:
            break
    if as_json:
        d = explanation_dict(facts, expl, rc, commands[0] if commands else None, label)
        d["corrected_commands"] = commands
        out.print_json(json.dumps(d, default=str))
    else:
        render(out, facts, expl, rc, commands, label)
    return 0 if expl.diagnoses else 1
