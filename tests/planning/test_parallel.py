"""Data, expert, decode- and prefill-context parallelism and multi-node launches (issue 16), per rank.

Every expected number is derived here by hand from config.json (shared/models/<id>/config.json, the bundled
catalog's copy) and vLLM 0.32.0's code, cited at each test; 0.33.0 places ranks the same way (its
config/parallel.py, fused_moe/config.py, expert_map_manager.py and kv_cache_interface.py differ from 0.32's only
in code that does not touch placement: diffed for this issue). The kvfit numbers they are compared with come
out of `kvfit check --json`, the path users run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kvfit import launch as L
from kvfit.memory.parallel import local_experts
from tests.kvfit_harness import invoke

GiB = 1 << 30
QWEN = "Qwen/Qwen3-235B-A22B"          # bf16, 94 layers, 128 experts of gate/up/down 4096 x 1536, no shared
DSV3 = "deepseek-ai/DeepSeek-V3"       # FP8 128x128 blocks, 61 layers (3 dense + 58 MoE), 256 + 1 shared expert

# Qwen3-235B-A22B (config.json): one routed expert = gate, up, down of 4096 x 1536 in bf16
QWEN_EXPERT = 3 * 4096 * 1536 * 2
QWEN_ROUTED = 94 * 128 * QWEN_EXPERT
# DeepSeek-V3: one routed (or the shared) expert = 3 FP8 matrices 7168 x 2048 (1 B each) + one float32
# weight_scale_inv per 128 x 128 block of each (16 x 56 blocks, three times): fp8.py Fp8LinearMethod /
# Fp8MoEMethod create_weights
DS_EXPERT = 3 * 7168 * 2048 + 3 * 16 * 56 * 4
DS_MOE_LAYERS = 61 - 3                 # first_k_dense_replace 3


def check(*args) -> dict:
    r = invoke(["check", *args, "--offline", "--json"])
    assert r.rc in (0, 1), r
    return r.json


def refused(*args) -> str:
    r = invoke(["check", *args, "--offline"])
    assert r.rc == 2, r
    return " ".join(r.err.split())


# --- expert placement: fused_moe/expert_map_manager.py determine_expert_map --------------------------------

def test_local_experts_as_determine_expert_map_places_them():
    # base = E // EP each, one more for ranks < E % EP ("linear" placement)
    assert [local_experts(256, 16, r) for r in range(16)] == [16] * 16
    assert [local_experts(128, 12, r) for r in range(12)] == [11] * 8 + [10] * 4
    assert local_experts(128, 1, 0) == 128


# --- data parallel: MoE sliced over TP x DP (fused_moe/config.py flatten_tp_across_dp_and_pcp) ------------

def test_data_parallel_slices_experts_over_tp_x_dp_and_keeps_the_rest_per_engine():
    one = check(QWEN, "--gpu", "H100", "-tp", "8")
    two = check(QWEN, "--gpu", "H100", "-tp", "8", "-dp", "2")
    # only the routed experts move: each GPU holds 1/16 of every expert instead of 1/8
    drop = one["memory"]["weights_bytes"] - two["memory"]["weights_bytes"]
    assert abs(drop - (QWEN_ROUTED / 8 - QWEN_ROUTED / 16)) <= 2
    lay = two["layout"]
    assert (lay["gpus"], lay["nodes"], lay["gpus_per_node"], lay["engines"]) == (16, 2, 8, 2)
    # every engine sizes its own KV cache for its own requests: the launch holds both
    assert lay["kv_cache_tokens_total"] == 2 * two["capacity"]["kv_cache_tokens"]
    assert [r["dp_rank"] for r in lay["ranks"]] == [0] * 8 + [1] * 8
    assert [r["node"] for r in lay["ranks"]] == [0] * 8 + [1] * 8


def test_a_dense_model_under_data_parallel_is_replicas_with_the_same_numbers_per_gpu():
    # config/parallel.py reconfigure_for_independent_dp_rank: a dense model's DP ranks are independent engines
    one = check("meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S")
    four = check("meta-llama/Llama-3.1-8B-Instruct", "--gpu", "L40S", "-dp", "4")
    assert four["memory"] == one["memory"] and four["capacity"] == one["capacity"]
    assert four["layout"]["gpus"] == 4 and four["layout"]["kv_cache_tokens_total"] == 4 * one["capacity"]["kv_cache_tokens"]


# --- expert parallel: whole experts per rank ------------------------------------------------------------

def test_expert_parallel_places_whole_experts_and_the_first_ranks_hold_one_more():
    d = check(QWEN, "--gpu", "H100", "-tp", "4", "-dp", "3", "-ep")
    ranks = d["layout"]["ranks"]
    # EP = TP x DP = 12 ranks; 128 = 10 x 12 + 8: ranks 0-7 hold 11 experts, 8-11 hold 10
    assert [r["experts"] for r in ranks] == [11] * 8 + [10] * 4
    # one expert of every one of the 94 MoE layers more on the first ranks
    assert ranks[0]["weights_bytes"] - ranks[11]["weights_bytes"] == pytest.approx(94 * QWEN_EXPERT, abs=2)
    # memory.* is the bottleneck rank's: the heaviest, rank 0
    assert d["layout"]["bottleneck_rank"] == 0
    assert d["memory"]["weights_bytes"] == ranks[0]["weights_bytes"]
    assert d["capacity"]["num_blocks"] == ranks[0]["blocks"]
    # engine 0 holds ranks 0-3 (11 experts), engine 1 ranks 4-7 (11 too), engine 2 ranks 8-11 (10): the lighter
    # engine has the larger KV budget (its own profile, v1/engine/core.py), so more blocks
    assert ranks[8]["blocks"] > ranks[0]["blocks"] == ranks[4]["blocks"]


def test_expert_parallel_over_tp_x_dp_holds_what_slicing_holds_when_experts_divide():
    sliced = check(QWEN, "--gpu", "H100", "-tp", "8", "-dp", "2")
    whole = check(QWEN, "--gpu", "H100", "-tp", "8", "-dp", "2", "-ep")
    # 128 experts / 16 ranks = 8 whole experts = 1/16 of every expert
    assert {r["experts"] for r in whole["layout"]["ranks"]} == {8}
    assert abs(whole["memory"]["weights_bytes"] - sliced["memory"]["weights_bytes"]) <= 2


def test_deepseek_v3_on_two_nodes_of_eight_h100_with_expert_parallel():
    """DeepSeek-V3 does not fit 8 x H100 (78.6 GiB of weights per GPU at TP 8); 2 x 8 H100 serve it."""
    single = check(DSV3, "--gpu", "H100", "-tp", "8")
    assert single["verdict"]["launch_fits"] is False
    tp16 = check(DSV3, "--gpu", "H100", "-tp", "16")
    sliced = check(DSV3, "--gpu", "H100", "-tp", "8", "-dp", "2")
    ep = check(DSV3, "--gpu", "H100", "-tp", "8", "-dp", "2", "-ep")
    lay = ep["layout"]
    assert (lay["gpus"], lay["nodes"], lay["expert_parallel_size"]) == (16, 2, 16)
    assert {r["experts"] for r in lay["ranks"]} == {16}                 # 256 / 16
    # TP 16 and TP 8 x DP 2 put the same 1/16 of the routed experts on a GPU; the rest (attention, dense
    # layers, shared expert, vocabulary) is / 16 against / 8, so TP 16 holds less
    assert tp16["memory"]["weights_bytes"] < sliced["memory"]["weights_bytes"]
    # With expert parallel, TP 8 > 1 and DP 2 > 1 the MoE runs sequence parallel (config/parallel.py
    # use_sequence_parallel_moe, default all2all_backend allgather_reducescatter) and DeepseekV2MLP builds the
    # shared expert with disable_tp=True (models/deepseek_v2.py): 7/8 of it more per GPU, 58 MoE layers
    extra = ep["memory"]["weights_bytes"] - sliced["memory"]["weights_bytes"]
    assert extra == pytest.approx(DS_MOE_LAYERS * DS_EXPERT * 7 / 8, abs=2)
    # MLA: one latent (512 + 64) of bf16 per token per layer, not divided by TP; each engine keeps its own
    assert ep["kv"]["bytes_per_token"] == 61 * 576 * 2
    assert ep["verdict"]["launch_fits"] is True
    assert lay["kv_cache_tokens_total"] == 2 * ep["capacity"]["kv_cache_tokens"]
    assert [n["fits"] for n in lay["per_node"]] == [True, True]


def test_qwen3_235b_on_two_nodes_of_eight_h100():
    d = check(QWEN, "--gpu", "H100", "-tp", "8", "-dp", "2", "-ep", "--context", "32768", "--concurrency", "40")
    # 40 sequences over 2 engines: each GPU needs the KV of 20
    assert d["verdict"]["fits"] is True and d["layout"]["engines"] == 2
    assert d["as_given"]["sequences_resident"] % 2 == 0 and d["as_given"]["sequences_resident"] >= 40


# --- decode context parallel: v1/kv_cache_interface.py FullAttentionSpec.max_memory_usage_bytes ----------

def test_decode_context_parallel_shards_tokens_and_vllm_reports_that_capacity():
    base = check(DSV3, "--gpu", "H200", "-tp", "8")
    dcp = check(DSV3, "--gpu", "H200", "-tp", "8", "-dcp", "8")
    # pages are unchanged (MLA: the whole latent per token), so the blocks are too
    assert dcp["capacity"]["num_blocks"] == base["capacity"]["num_blocks"]
    length, block = 163840, dcp["kv"]["block_size"]
    # a request needs cdiv(cdiv(max_model_len, DCP), block_size) blocks per rank
    per_req = -(-(-(-length // 8)) // block)
    assert dcp["capacity"]["blocks_per_request"] == per_req
    assert base["capacity"]["blocks_per_request"] == -(-length // block)
    # get_kv_cache_capacity: int(num_blocks / blocks_per_request x max_model_len)
    n = dcp["capacity"]["num_blocks"]
    assert dcp["capacity"]["kv_cache_tokens"] == int(n / per_req * length)


def test_decode_context_parallel_for_gqa_within_vllms_bounds():
    # Qwen3-235B: 4 KV heads; TP 8 replicates them (2 ranks per head), so DCP may be at most 8 // 4 = 2
    d = check(QWEN, "--gpu", "H100", "-tp", "8", "-dcp", "2")
    assert d["capacity"]["blocks_per_request"] == -(-(40960 // 2) // 16)
    msg = refused(QWEN, "--gpu", "H100", "-tp", "8", "-dcp", "4")
    assert "exceeds the maximum (2)" in msg and "config/model.py" in msg


@pytest.mark.parametrize("args,words", [
    ((QWEN, "-tp", "8", "-dcp", "3"), ("tp_size=8 must be divisible by dcp_size=3", "config/parallel.py")),
    (("meta-llama/Llama-3.1-70B-Instruct", "-tp", "8", "-dcp", "2"), ("greater than the model's 8 KV heads",)),
    (("Qwen/Qwen3-8B", "-tp", "2", "-ep"), ("Number of experts in the model must be greater than 0",)),
    (("google/gemma-2-9b-it", "-tp", "16", "-dcp", "2"), ("DCP not support sliding window",)),
    ((DSV3, "-tp", "8", "-dp", "4"), ("validate_fp8_block_shape_moe", "64")),
    ((QWEN, "-tp", "8", "-dp", "2", "--nnodes", "3"), ("--nnodes must evenly divide the total world size",)),
    ((QWEN, "-tp", "8", "-dp", "2", "--nnodes", "2", "--distributed-executor-backend", "ray"),
     ("nnodes > 1 can only be set when distributed executor backend is mp",)),
    ((QWEN, "-tp", "8", "-dp", "2", "--data-parallel-size-local", "4"), ("data_parallel_size_local",)),
    ((QWEN, "-tp", "8", "-dp", "2", "--nnodes", "2", "--node-rank", "2"), ("--node-rank 2",)),
    # config/model.py verify_with_parallel_config: Qwen3-8B's config.json has num_attention_heads 32
    (("Qwen/Qwen3-8B", "-tp", "3"), ("Total number of attention heads (32) must be divisible by tensor parallel "
                                     "size (3)",)),
    (("Qwen/Qwen3-8B", "-tp", "1000000"), ("must be divisible by tensor parallel size (1000000)",)),
    # engine/arg_utils.py create_engine_config: data_parallel_size_local = max(local_world_size //
    # world_size_within_dp, 1) = max(14 // 2 // 2, 1) = 3 engines per node, 6 in all for --data-parallel-size 7
    ((DSV3, "-pp", "2", "-dp", "7", "-ep", "--nnodes", "2"), ("max(7 // 2, 1) = 3 engine(s)", "6 in all, not 7")),
    # kvfit's own bound (it lists every rank): refused, not sized, not hung
    (("Qwen/Qwen3-8B", "-tp", "8", "-dp", "4096"), ("32,768 GPUs", "up to 16,384")),
])
def test_what_vllm_refuses_is_refused_with_its_reason(args, words):
    msg = refused(*args, "--gpu", "H100")
    for w in words:
        assert w in msg, msg


# --- multi-node launches ----------------------------------------------------------------------------------

def test_a_pasted_multi_node_launch_is_read_node_by_node():
    r = invoke(["check", "--gpu", "H100", "--offline", "--json", "--", "vllm", "serve", DSV3, "-tp", "8", "-dp", "2",
                "-ep", "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--headless"])
    assert r.rc in (0, 1), r
    lay = r.json["layout"]
    assert (lay["nodes"], lay["gpus_per_node"], lay["this_node"], lay["nodes_from"]) == (2, 8, 1, "--nnodes")
    assert [(n["first_rank"], n["last_rank"], n["engines"]) for n in lay["per_node"]] == [(0, 7, [0]), (8, 15, [1])]


def test_data_parallel_multi_node_form_and_ray_layouts():
    # vLLM's DP multi-node form: each node starts --data-parallel-size-local engines, the second from rank 2
    r = invoke(["check", "--gpu", "H100", "--offline", "--json", "--", "vllm", "serve", QWEN, "-tp", "4", "-dp", "4",
                "-ep", "--data-parallel-size-local", "2", "--data-parallel-start-rank", "2", "--headless"])
    lay = r.json["layout"]
    assert (lay["nodes"], lay["gpus_per_node"], lay["this_node"]) == (2, 8, 1)
    # Ray: one launch, TP 16 over the Ray cluster: nodes from the GPUs per node
    ray = check(QWEN, "--gpu", "H100", "-tp", "16", "--distributed-executor-backend", "ray", "--gpus-per-node", "4")
    assert (ray["layout"]["gpus"], ray["layout"]["nodes"]) == (16, 4)


def test_parallel_flags_reach_the_evaluation_on_every_path(tmp_path: Path):
    flags = check(QWEN, "--gpu", "H100", "-tp", "8", "--data-parallel-size", "2", "--enable-expert-parallel")
    pasted = invoke(["check", "--gpu", "H100", "--offline", "--json", "--", "vllm", "serve", QWEN,
                     "--tensor-parallel-size=8", "-dp", "2", "-ep"]).json
    m = tmp_path / "kvfit.toml"
    m.write_text(f'[[check]]\nname = "q"\nmodel = "{QWEN}"\ngpu = "H100"\ntensor_parallel_size = 8\n'
                 'data_parallel_size = 2\nenable_expert_parallel = true\n')
    man = invoke(["check", "--manifest", str(m), "--offline", "--json"]).json["results"][0]["answer"]
    for d in (pasted, man):
        assert d["memory"] == flags["memory"] and d["layout"] == flags["layout"]
    a = L.parse(f"vllm serve {QWEN} -tp 8 -dp 2 -ep -dcp 2 --nnodes 2 --node-rank 1 --headless --port 9000")
    assert L.read_values(a).values == {"tensor_parallel_size": 8, "data_parallel_size": 2,
                                       "enable_expert_parallel": True, "decode_context_parallel_size": 2,
                                       "nnodes": 2, "node_rank": 1}


def test_the_report_says_the_layout_in_one_line():
    r = invoke(["check", DSV3, "--gpu", "H100", "-tp", "8", "-dp", "2", "-ep", "--offline"])
    lines = [ln for ln in r.out.replace("\n", " ").split("layout: ")[1:]]
    assert lines and lines[0].startswith("2 nodes x 8 GPUs (TP 8 x DP 2, expert parallel), bottleneck rank 0: 16 experts")
    one = invoke(["check", "Qwen/Qwen3-8B", "--gpu", "H100", "--offline"])
    assert "layout:" not in one.out          # one GPU: nothing to lay out


def test_json_layout_for_one_gpu_is_one_rank():
    d = check("Qwen/Qwen3-8B", "--gpu", "H100")
    lay = d["layout"]
    assert (lay["gpus"], lay["nodes"], len(lay["ranks"])) == (1, 1, 1)
    assert lay["ranks"][0]["weights_bytes"] == d["memory"]["weights_bytes"]
    assert lay["ranks"][0]["kv_bytes"] == d["memory"]["kv_cache_bytes"]
    json.dumps(d)


def test_prefill_context_parallel_adds_ranks_that_replicate_attention_and_kv():
    # config/parallel.py: world_size = PP x TP x PCP; "PCP ... does not increase the KV-cache shard count";
    # MoE layers shard over TP x PCP x DP (flatten_tp_across_dp_and_pcp)
    tp4 = check(QWEN, "--gpu", "H200", "-tp", "4")
    pcp = check(QWEN, "--gpu", "H200", "-tp", "4", "-pcp", "2")
    assert pcp["layout"]["gpus"] == 8 and [r["pcp_rank"] for r in pcp["layout"]["ranks"]] == [0] * 4 + [1] * 4
    drop = tp4["memory"]["weights_bytes"] - pcp["memory"]["weights_bytes"]
    assert abs(drop - (QWEN_ROUTED / 4 - QWEN_ROUTED / 8)) <= 2
    assert pcp["kv"]["bytes_per_token"] == tp4["kv"]["bytes_per_token"] == 94 * 1 * 2 * 128 * 2
    assert pcp["capacity"]["blocks_per_request"] == tp4["capacity"]["blocks_per_request"]


def test_rank_weights_by_hand_for_qwen3_235b_tp8_dp2_ep():
    """Rank 0 of TP 8 x DP 2 with expert parallel, from config.json: the vocabulary (151,936, already a multiple
    of 64: vocab_parallel_embedding.py pad_vocab_size) / 8 for embed_tokens and for lm_head, the final norm,
    8 whole experts of each of the 94 layers (determine_expert_map over EP 16), everything else of a layer / 8,
    except k_proj and v_proj: 4 KV heads over TP 8 are replicated, each rank holds one whole head of 128 rows
    (layers/linear.py QKVParallelLinear: num_kv_head_replicas = tp // total_num_kv_heads), i.e. 1/4 of them
    instead of 1/8; and the rotary cos/sin cache [40,960 x 128] bf16. (vLLM keeps the layer norms, q/k norms and the router
    whole on every rank, 94 x (2 x 4096 + 2 x 128 + 128 x 4096) x 2 B x 7/8 = 87.6 MiB more than the / 8 that
    kvfit charges them, as it does for every TP launch.)"""
    h, v = 4096, 151936
    total = 235093634560 * 2                       # the catalog's bf16 count, counted from config.json
    embed = head = v * h * 2
    norm = h * 2
    layers_rest = total - embed - head - norm - QWEN_ROUTED
    kv_rows = 94 * 2 * (4 * 128) * h * 2             # k_proj + v_proj of every layer, bf16
    expect = (embed / 8 + head / 8 + norm + layers_rest / 8 + kv_rows * (1 / 4 - 1 / 8) + 8 * 94 * QWEN_EXPERT
              + 40960 * 128 * 2)
    d = check(QWEN, "--gpu", "H100", "-tp", "8", "-dp", "2", "-ep")
    assert d["layout"]["ranks"][0]["weights_bytes"] == pytest.approx(expect, abs=4)


def test_a_vllm_log_with_data_and_decode_context_parallel_is_read():
    """vLLM 0.32 prints the engine config with data_parallel_size and decode_context_parallel_size
    (config/vllm.py VllmConfig.__str__); `kvfit explain` re-checks with them."""
    from kvfit.logs.parse import parse_log
    from kvfit.logs.recheck import settings_from_log

    line = ("INFO 05-01 10:00:00 [core.py:93] Initializing a V1 LLM engine (v0.32.0) with config: "
            "model='deepseek-ai/DeepSeek-V3', speculative_config=None, tokenizer='deepseek-ai/DeepSeek-V3', "
            "dtype=torch.bfloat16, max_seq_len=163840, tensor_parallel_size=8, pipeline_parallel_size=1, "
            "data_parallel_size=2, decode_context_parallel_size=8, dcp_comm_backend=ag_rs, "
            "quantization=fp8, enforce_eager=False, kv_cache_dtype=auto\n")
    s = settings_from_log(parse_log(line))
    assert (s.tensor_parallel_size, s.data_parallel_size, s.decode_context_parallel_size) == (8, 2, 8)


# --- planning across a cluster (app/cluster.py, plan/cluster.py) -----------------------------------------

def test_cluster_plan_gives_the_smallest_layouts_each_rechecked_from_its_printed_launch():
    goals = ["--context", "32768", "--concurrency", "64"]
    r = invoke(["check", DSV3, "--gpu", "H100", "--gpu-count", "16", "--cluster", *goals, "--offline", "--json"])
    assert r.rc == 0, r
    lays = r.json["layouts"]
    assert lays and [x["gpus"] for x in lays] == sorted(x["gpus"] for x in lays)
    for lay in lays:
        assert lay["gpus"] <= 16 and len(lay["launches"]) == lay["nodes"]
        if lay["nodes"] > 1:
            assert "--headless" in lay["launches"][1] and "--node-rank 1" in lay["launches"][1]
        # the printed launch, pasted back, meets the goals with the same numbers
        again = invoke(["check", "--gpu", "H100", *goals, "--offline", "--json", "--",
                        *lay["launches"][0].split()])
        assert again.rc == 0, again
        assert again.json["capacity"] == lay["result"]["capacity"]
        assert again.json["layout"]["gpus"] == lay["gpus"]
    # the first is the fewest data-parallel engines of its shape: one engine less does not meet the goals
    v = L.read_values(L.parse(lays[0]["launches"][0])).values
    if v.get("data_parallel_size", 1) > 1:
        fewer = ["-tp", v.get("tensor_parallel_size", 1), "-pp", v.get("pipeline_parallel_size", 1),
                 "-dp", v["data_parallel_size"] - 1, "-dcp", v.get("decode_context_parallel_size", 1)]
        fewer += ["-ep"] if v.get("enable_expert_parallel") else []
        r2 = invoke(["check", DSV3, "--gpu", "H100", *goals, *fewer, "--offline", "--json"])
        assert r2.rc == 1 and r2.json["verdict"]["fits"] is False


def test_cluster_plan_needs_a_gpu_count():
    r = invoke(["check", QWEN, "--gpu", "H100", "--cluster", "--offline"])
    assert r.rc == 2 and "--gpu-count" in r.err
