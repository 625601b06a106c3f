"""kvfit's KV numbers equal vLLM's, launch by launch, on the real CPU engine. Zero tolerance.

For every case of engine_cases.py vLLM 0.32's CPU backend builds the tiny dummy-weight model and
reports num_gpu_blocks, the "CPU KV cache size" token count and the maximum concurrency (from
cache_config, as update_kv_cache_capacity stores them), the max_model_len it settled on
(auto-fit), or refuses the launch with its estimated maximum model length. kvfit must say the same:

    num_blocks                 == cache_config.num_gpu_blocks
    kv_cache_tokens            == cache_config.kv_cache_size_tokens
    f"{max_concurrency:.2f}"   == what vLLM prints (and the float itself)
    resolved max_model_len     == model_config.max_model_len (derived / auto-fitted)
    block size                 == cache_config.block_size
    estimated max length       == "the estimated maximum model length is N" (0: no estimate printed)

kvfit is told the CPU path vLLM saw for that case (the torch probes engine_runner.py recorded): the host's,
or, for the "@avx512_bf16" / "@avx2" cases, a lower path (engine_cases.ISA_PATH_CASES). A case whose
helper died after vLLM sized the cache is still compared on the numbers recorded before the death.
"""

from __future__ import annotations

import pytest

from engine_cases import CASES, ENCODER_ONLY
from engine_kvfit import evaluate

from kvfit.errors import BadInput, ConfigError


def _engine_numbers(got: dict) -> dict | None:
    """vLLM's numbers for a launch it sized: from cache_config after LLM(...) returned, or as recorded
    when update_kv_cache_capacity ran if a later step (a CPU kernel) refused the model."""
    if got.get("ok"):
        return got
    cap = got.get("captured") or {}       # also what a crashed helper had recorded before it died
    if "kv_cache_tokens" in cap:
        return {"num_blocks": cap["num_gpu_blocks"], "kv_cache_tokens": cap["kv_cache_tokens"],
                "max_concurrency": cap["max_concurrency"], "max_model_len": cap["max_model_len"],
                "block_size": cap["block_size"], "max_num_batched_tokens": cap["max_num_batched_tokens"]}
    return None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_kv_numbers_equal_vllm(case, engine_results):
    got = engine_results[case.id]
    if got.get("not_run"):
        pytest.skip(f"{got['not_run']} (tests/kv/test_cpu_host.py covers the path from vLLM's code)")
    numbers = _engine_numbers(got)
    assert not got.get("crashed") or numbers is not None, \
        f"the engine helper died on {case.id} before vLLM sized the KV cache (rc {got.get('rc')}; see the engine log)"
    probes = got["probes"]
    if numbers is not None:
        res = evaluate(case, probes)
        cap = res.capacity
        ours = {"num_blocks": cap.num_blocks, "kv_cache_tokens": cap.kv_cache_tokens,
                "concurrency": f"{cap.max_concurrency:.2f}", "max_model_len": res.resolved.max_model_len,
                "block_size": res.layout.block_size, "fits": cap.fits}
        theirs = {"num_blocks": numbers["num_blocks"], "kv_cache_tokens": numbers["kv_cache_tokens"],
                  "concurrency": f"{numbers['max_concurrency']:.2f}", "max_model_len": numbers["max_model_len"],
                  "block_size": numbers["block_size"], "fits": True}
        assert ours == theirs, (case.why, got.get("captured", {}).get("kv"))
        assert cap.max_concurrency == numbers["max_concurrency"]
        assert res.resolved.max_num_batched_tokens == numbers["max_num_batched_tokens"]
        return
    message = got.get("error", "")
    kv_refusal = ("To serve at least one request" in message or "No available memory for the cache blocks" in message
                  or "Cannot auto-fit max_model_len" in message)
    if not kv_refusal:
        # vLLM refused the launch while configuring it: kvfit must refuse it too.
        with pytest.raises(BadInput):
            evaluate(case, probes)
        return
    try:
        res = evaluate(case, probes)
    except BadInput as e:       # kvfit refuses the same launch before sizing
        pytest.fail(f"kvfit refused the launch ({e}) where vLLM sized it and found it too small")
    cap = res.capacity
    if "Cannot auto-fit" in message:
        assert res.resolved.auto_fit and cap.max_model_len_fit <= 0
        return
    assert not cap.fits
    assert cap.max_model_len_fit == (got["estimated_max_model_len"] or 0), message
    if "No available memory" in message:
        assert cap.check_bytes <= 0


def test_encoder_only_model_has_no_kv_cache(engine_results):
    """BERT: vLLM's KV cache groups are empty (one null block); kvfit says it allocates no KV cache."""
    got = engine_results[ENCODER_ONLY.id]
    kv = (got.get("captured") or {}).get("kv")
    assert kv is not None, got.get("error")
    assert kv["workers"] == [{"num_blocks": 1, "groups": []}]
    import json

    from engine_kvfit import DATA
    from kvfit.arch.normalize import normalize

    with pytest.raises(ConfigError, match="encoder-only.*no KV cache"):
        normalize(json.loads((DATA / ENCODER_ONLY.model / "config.json").read_text()))


def test_kvfit_reads_the_cpu_path_vllm_sees(engine_results, host_probes):
    """kv/cpu_host.detect() (from /proc/cpuinfo, no torch) answers as torch's probes do on this host, and the
    cases run on the host's path saw exactly those answers; the lower-path cases saw less, never more."""
    from kvfit.kv import cpu_host

    host = cpu_host.detect()
    assert {"amx_tile": host.amx_tile, "avx512_bf16": host.avx512_bf16, "avx512": host.avx512} == host_probes
    for case in CASES:
        got = engine_results[case.id]
        if got.get("not_run") or "probes" not in got:
            continue
        if case.isa is None:
            assert got["probes"] == host_probes, case.id
        else:
            want = cpu_host.CpuHost.from_isa(case.isa)
            assert got["probes"] == {"amx_tile": want.amx_tile, "avx512_bf16": want.avx512_bf16,
                                     "avx512": want.avx512 and host_probes["avx512"]}, case.id
