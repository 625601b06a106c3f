"""The issue's "done when": over generated models (layers, heads, head_dim, vocab, parameter counts), GPUs and
goals, every launch kvfit prints, fed back into `kvfit check`, fits and meets the goals it was made for."""

from __future__ import annotations

import json
import math
import struct

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kvfit.plan.goals import Goals, judge
from kvfit.plan.planner import plan as plan_for
from kvfit import launch as L
from kvfit.arch.normalize import normalize
from kvfit.errors import KvfitError
from kvfit.gpu.model import Gpu
from kvfit.memory.profiles import profile_for
from kvfit.memory.weights import Inventory
from kvfit.plan import evaluate as plan
from kvfit.settings import Settings

GiB = 1 << 30
P = profile_for("0.32.0")


@st.composite
def model_configs(draw):
    kv = draw(st.sampled_from([1, 2, 4, 8]))
    heads = kv * draw(st.sampled_from([1, 2, 4, 8]))
    head_dim = draw(st.sampled_from([64, 80, 96, 128, 256]))
    hidden = draw(st.sampled_from([heads * head_dim, 1024, 2048, 4096]))
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": hidden * draw(st.sampled_from([2, 3, 4])), "num_attention_heads": heads,
        "num_key_value_heads": kv, "head_dim": head_dim, "num_hidden_layers": draw(st.integers(1, 48)),
        "vocab_size": draw(st.integers(1000, 200_000)),
        "max_position_embeddings": draw(st.sampled_from([2048, 4096, 8192, 32768, 131072])),
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "torch_dtype": draw(st.sampled_from(["bfloat16", "float16", "float32"])),
        "tie_word_embeddings": draw(st.booleans()),
    }
    params = draw(st.one_of(st.none(), st.integers(10**7, 4 * 10**10)))
    return cfg, params


def write_model(root, cfg, params) -> str:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(cfg))
    if params is not None:        # a safetensors header alone: kvfit reads headers, never tensor data
        header = json.dumps({"weight": {"dtype": "BF16", "shape": [params], "data_offsets": [0, 2 * params]}}).encode()
        header += b" " * (-len(header) % 8)
        (root / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return str(root)


@st.composite
def scenarios(draw):
    cfg, params = draw(model_configs())
    total_gib = draw(st.floats(8, 192))
    max_pos = cfg["max_position_embeddings"]
    launch = []
    if draw(st.booleans()):
        launch += ["--gpu-memory-utilization", f"{draw(st.integers(30, 95)) / 100:g}"]
    if draw(st.booleans()):
        launch += ["--max-model-len", str(draw(st.integers(256, max_pos)))]
    if cfg["num_key_value_heads"] % 2 == 0 and draw(st.booleans()):
        launch += ["--tensor-parallel-size", "2"]
    if draw(st.booleans()):
        launch += ["--kv-cache-dtype", "fp8"]
    if draw(st.booleans()):
        launch += ["--quantization", "fp8"]
    if draw(st.booleans()):
        launch += ["--max-num-seqs", str(draw(st.integers(1, 64)))]
    goals = []
    if draw(st.booleans()):
        goals += ["--context", str(draw(st.integers(256, max_pos)))]
    if draw(st.booleans()):
        goals += ["--concurrency", str(draw(st.integers(1, 16)))]
    if draw(st.booleans()):
        goals += ["--max-vram", f"{int(total_gib * GiB * draw(st.floats(0.2, 1.0)))}B"]
    goals += draw(st.sampled_from([[], ["--headroom", "0"], ["--headroom", "128MiB"], ["--headroom", "3%"]]))
    return cfg, params, int(total_gib * GiB), launch, goals


def printed_launches(d: dict) -> list[dict]:
    out = [d["recommendation"], d["kv_pinned"], *d["alternatives"]]
    return [o for o in out if o is not None and o["meets"] and o["command"] is not None and not o["needs"]]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(scenarios())
def test_every_printed_recommendation_fits_when_fed_back(cli, tmp_path_factory, scenario):
    cfg, params, total, launch, goal_args = scenario
    path = write_model(tmp_path_factory.mktemp("model"), cfg, params)
    gpu = ["--gpu-memory", f"{total}B", "--vllm-version", "0.32.0"]
    r = cli("check", path, *gpu, *launch, *goal_args, "--format", "json")
    if r.rc == 2:                   # vLLM would refuse the launch outright (a bad combination): nothing printed
        assert "kvfit:" in r.err
        return
    assert r.rc in (0, 1), r
    d = r.json
    assert (r.rc == 0) == d["verdict"]["fits"]
    for o in printed_launches(d):
        # the printed launch says what the option says
        v = L.read_values(L.parse(o["command"]["text"], o["command"]["form"])).values
        assert v.get("max_model_len", o["max_model_len"]) == o["max_model_len"] or o["max_model_len"] is None
        if o["gpu_memory_utilization"] is not None and "gpu_memory_utilization" in v:
            assert v["gpu_memory_utilization"] == o["gpu_memory_utilization"]
        # ... and fed back into kvfit check (after `--`, with the same goals), it fits and meets the goals
        back = cli("check", path, "--json", *gpu, *goal_args, "--", *o["command"]["argv"])
        assert back.rc == 0, (o["label"], o["command"]["argv"], back)
        b = back.json
        assert b["verdict"]["fits"]
        if d["goals"] and d["goals"]["max_vram_bytes"]:
            assert b["as_given"]["footprint_bytes"] <= d["goals"]["max_vram_bytes"]
        if d["goals"] and d["goals"]["context"]:
            assert b["settings"]["max_model_len"] >= d["goals"]["context"]
        if d["goals"] and d["goals"]["concurrency"] and b["as_given"]["sequences_resident"] is not None:
            assert b["as_given"]["sequences_resident"] >= d["goals"]["concurrency"]


@st.composite
def planner_cases(draw):
    cfg, params = draw(model_configs())
    total = int(draw(st.floats(8, 192)) * GiB)
    free = draw(st.one_of(st.none(), st.integers(total // 10, total)))
    gpu = Gpu("generated GPU", total, (8, 0), free_bytes=free, used_bytes=None if free is None else total - free,
              source="NVML" if free is not None else "catalog")
    s = Settings(gpu_memory_utilization=draw(st.one_of(st.none(), st.integers(30, 95).map(lambda x: x / 100))),
                 kv_cache_dtype=draw(st.sampled_from(["auto", "fp8"])))
    goals = Goals(context=draw(st.one_of(st.none(), st.integers(256, cfg["max_position_embeddings"]))),
                    concurrency=draw(st.one_of(st.none(), st.integers(1, 16))),
                    max_vram_bytes=draw(st.one_of(st.none(), st.integers(total // 5, total))))
    return cfg, params, gpu, s, goals


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planner_cases())
def test_planner_never_proposes_more_than_free_memory_or_the_budget(case):
    cfg, params, gpu, s, goals = case
    arch = normalize(cfg)
    inv = Inventory({"BF16": params}, "test") if params else None
    model = plan.Model("generated", "local", "test", arch, inv)
    try:
        pl = plan_for(model, gpu, s, P, goals)
    except KvfitError:
        assume(False)
        return
    options = [o for o in (pl.recommended, pl.kv_pinned, *pl.alternatives) if o is not None and o.meets]
    for o in options:
        c = o.check
        again = judge(c.model, c.gpu, c.settings, P, goals, pl.policy.headroom_bytes)
        assert again.meets, (o.label, again.unmet)
        if c.gpu is gpu and c.settings.kv_cache_memory_bytes is None and o.requires is None and o.label != "as given":
            assert c.utilization <= pl.policy.ceiling
            if gpu.free_bytes is not None:
                assert math.ceil(gpu.total_bytes * c.utilization) <= gpu.free_bytes
        if goals.max_vram_bytes is not None:
            assert c.footprint_bytes <= goals.max_vram_bytes
        if goals.concurrency and c.resident is not None:
            assert c.resident >= goals.concurrency
