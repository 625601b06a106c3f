"""Re-check a failed vLLM log's advice with the model it names: kvfit's exact KV arithmetic and memory model
on the settings and the KV memory the log shows (see app/explain.py for how). Pure: the model loader is
passed in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..errors import BadInput, KvfitError
from ..gpu.model import Gpu
from ..memory.profiles import CURRENT_VERSION, profile_for
from ..plan import evaluate as plan
from ..plan.goals import Goals
from ..plan.policy import UNPROBED_CEILING
from ..plan.search import longest_length
from ..settings import DTYPES, KV_CACHE_DTYPES, Settings
from .diagnose import FAILURE_KINDS, Explanation, Fix
from .parse import LogFacts

GIB = 1 << 30
KV_KINDS = {"v0_max_seq_len", "v1_max_seq_len", "no_cache_memory", "cannot_autofit", "ok"}


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
        data_parallel_size=_pos_int(s.get("data_parallel_size")) or 1,
        decode_context_parallel_size=_pos_int(s.get("decode_context_parallel_size")) or 1,
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
        raise ValueError("recheck needs a model loader")
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


def _null_in_check(res: plan.Result) -> bool:
    """Whether this release's capacity check holds back the null block (0.29+, profiles.kv_layout_rule)."""
    from ..memory.profiles import kv_layout_rule

    return res.profile.engine == "V1" and kv_layout_rule(res.profile).null_block_in_check


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
    report = res0.profile.tokens_report
    if tokens and report in ("blocks", "groups") and bs:
        # "GPU KV cache size" = num_blocks x block size (0.8.0-0.9.0), or num_blocks // groups x the smallest
        # block size (0.9.1-0.20.0): profiles.reported_tokens
        groups = max(1, len(res0.layout.groups)) if report == "groups" else 1
        if tokens % bs == 0:
            lo_b, hi_b = tokens // bs * groups, tokens // bs * groups + groups - 1
            where = (f"{lo_b:,} blocks (the log's {tokens:,} tokens / {bs})" if groups == 1 else
                     f"{lo_b:,} to {hi_b:,} blocks (the log's {tokens:,} tokens / {bs} x {groups} groups)")
            return lo_b * bpb, (hi_b + 1) * bpb - 1, where, groups == 1
    if tokens and length and report == "concurrency":
        per_req = res0.layout.blocks_per_request(plan.request_context(res0.resolved, res0.settings, res0.model.arch,
                                                                      length=length, profile=res0.profile))
        if per_req:
            b0 = tokens * per_req // length
            for b in range(max(1, b0 - 2), b0 + 4):
                if int(b / per_req * length) == tokens:
                    return (b * bpb, (b + 1) * bpb - 1,
                            f"{b:,} blocks (from the log's {tokens:,} tokens at {length:,} per request)", True)
    v1 = _first_error(facts, "v1_max_seq_len")
    if v1 is not None:
        have = float(v1.numbers["available_gib"])
        extra = bpb if _null_in_check(res0) else 0
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
    lo_len, hi_len = _longest(m, gpu, settings, profile, lo), _longest(m, gpu, settings, profile, hi)
    if exact or lo_len == hi_len:
        rc.longest_len = lo_len or None
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
        a, b = lo_len, hi_len
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
    need = rlo.capacity.needed_bytes + (lay.bytes_per_block if _null_in_check(rlo) else 0)
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
    limit = UNPROBED_CEILING            # plan/policy.py: the ceiling kvfit proposes on a GPU it has not probed
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
        longest = _longest(m, gpu, settings, profile, None)
        if not res.fits and longest:
            rc.lines.append(f"kvfit's estimate of the longest max_model_len at "
                            f"{res.resolved.gpu_memory_utilization:g}: {longest:,}")
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
    n = _longest(m, gpu, replace(settings, gpu_memory_utilization=proposal), profile, None)
    if res.memory.kv_available_bytes > 0 and n:
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


def _longest(m, gpu, settings: Settings, profile, budget: int | None) -> int:
    """vLLM's longest max_model_len for this launch (with `budget` bytes of KV cache when given): the same
    search `kvfit check` uses (plan/search.py), no headroom."""
    s = settings
    if budget is not None:
        s = replace(s, kv_cache_memory_bytes=max(1, int(budget)), gpu_memory_utilization=None)
    n, _ = longest_length(m, gpu, s, profile, Goals(), 0)
    return n


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
