"""Sizes (24GiB / 24GB / bytes) and lengths the way vLLM's CLI reads them
(utils/argparse_utils.py::human_readable_int: k/m/g/t decimal, K/M/G/T binary, no decimals with a
binary suffix; -1 and auto for --max-model-len).
"""

from __future__ import annotations

import pytest

from _checkutil import ORPHEUS, flat
from kvfit.errors import BadInput
from kvfit.units import parse_human_int, parse_max_model_len, parse_size


@pytest.mark.parametrize("text, want", [
    ("24GiB", 24 * 2**30),           # 25,769,803,776
    ("24 GiB", 24 * 2**30),
    ("24gib", 24 * 2**30),
    ("24GB", 24 * 10**9),            # 24,000,000,000
    ("24gb", 24 * 10**9),
    ("79.25GiB", 85_094_039_552),    # 79.25 x 2^30 = 85,094,039,552 (the A100 80GB as CUDA reports it)
    ("512MiB", 512 * 2**20),
    ("512MB", 512 * 10**6),
    ("1073741824", 1_073_741_824),
    ("1073741824B", 1_073_741_824),
    ("1TiB", 2**40),
    ("2KiB", 2048),
    ("2kb", 2000),
    # vLLM's suffixes without B (--kv-cache-memory-bytes 4G = 4 GiB, 4g = 4e9)
    ("4G", 4 * 2**30),
    ("4g", 4 * 10**9),
    ("512M", 512 * 2**20),
    ("512m", 512 * 10**6),
    ("1K", 1024),
    ("1k", 1000),
])
def test_parse_size(text, want):
    assert parse_size(text, "--x") == want


@pytest.mark.parametrize("text", ["", "GiB", "-1GiB", "0", "0GiB", "1.5.3GB", "24 parsecs", "24Gi", "nan", "inf",
                                  "1e9", "24 G iB"])
def test_parse_size_rejects(text):
    with pytest.raises(BadInput):
        parse_size(text, "--x")


@pytest.mark.parametrize("text, want", [
    ("32768", 32768), ("32k", 32000), ("32K", 32768), ("128k", 128_000), ("128K", 131_072),
    ("1m", 1_000_000), ("1M", 1_048_576), ("25.6k", 25_600), (" 4096 ", 4096),
])
def test_parse_human_int(text, want):
    assert parse_human_int(text, "--x") == want


@pytest.mark.parametrize("text", ["1.5K", "0.5M", "12.5", "abc", "-5", "1e4", "32kb", "", "k"])
def test_parse_human_int_rejects(text):
    # vLLM: "Decimals are not allowed with binary suffixes"; a plain number must be an int
    with pytest.raises(BadInput):
        parse_human_int(text, "--x")


@pytest.mark.parametrize("text, want", [
    (None, None), ("-1", -1), ("auto", -1), ("AUTO", -1), (" auto ", -1), ("32k", 32000), ("32K", 32768),
    ("131072", 131072),
])
def test_parse_max_model_len(text, want):
    assert parse_max_model_len(text) == want


@pytest.mark.parametrize("text", ["0", "-2", "auto-fit", "1.5K", "none"])
def test_parse_max_model_len_rejects(text):
    with pytest.raises(BadInput):
        parse_max_model_len(text)


# --- through the CLI -----------------------------------------------------------------------------

def test_gpu_memory_bare_number_is_refused_with_a_hint(cli):
    """`--gpu-memory 24` was read as 24 bytes (exit 1, "needs gpu_memory_utilization 1462785706.63")."""
    r = cli("check", ORPHEUS, "--gpu-memory", "24")
    assert r.rc == 2 and "24GiB" in r.err and "24GB" in r.err, r
    for flag in ("--max-vram", "--headroom"):
        r = cli("check", ORPHEUS, "--gpu", "L4", flag, "9")
        assert r.rc == 2 and "needs a unit" in r.err, r
    r = cli("check", ORPHEUS, "--gpu", "L4", "--kv-cache-memory-bytes", "24")      # 24 bytes of KV: a mistake
    assert r.rc == 2 and "24GiB" in r.err, r


@pytest.mark.parametrize("size, total", [
    ("24GiB", 25_769_803_776),
    ("24GB", 24_000_000_000),
    ("25318916096B", 25_318_916_096),
    ("23.58GiB", 25_318_832_209),    # int(23.58 x 2^30) = int(25,318,832,209.92)
])
def test_gpu_memory_units(check_json, size, total):
    j = check_json(ORPHEUS, "--gpu-memory", size, "--max-model-len", "8192")
    assert j["gpu"]["total_bytes"] == total
    assert j["gpu"]["source"] == "--gpu-memory"


@pytest.mark.parametrize("flag, want", [("32k", 32000), ("32K", 32768), ("8192", 8192), ("128K", 131072)])
def test_max_model_len_forms(check_json, flag, want):
    j = check_json(ORPHEUS, "--gpu", "H100", "--max-model-len", flag)
    assert j["settings"]["max_model_len"] == want
    assert j["settings"]["auto_fit"] is False


def test_max_model_len_32k_blocks(check_json):
    j = check_json(ORPHEUS, "--gpu", "H100", "--max-model-len", "32k", "--kv-cache-memory-bytes", "1GiB")
    # 32k = 32,000 tokens -> cdiv(32000, 16) = 2000 blocks per request; 585 blocks -> does not fit
    assert j["capacity"]["blocks_per_request"] == 2000
    j = check_json(ORPHEUS, "--gpu", "H100", "--max-model-len", "32K", "--kv-cache-memory-bytes", "1GiB")
    assert j["capacity"]["blocks_per_request"] == 2048        # 32,768 / 16


@pytest.mark.parametrize("flag", ["-1", "auto"])
def test_max_model_len_auto(check_json, flag):
    j = check_json(ORPHEUS, "--gpu", "H100", "--max-model-len", flag)
    assert j["settings"]["auto_fit"] is True


def test_kv_cache_memory_bytes_units(check_json):
    # 1GiB, 1G (vLLM: binary), 1073741824 are the same budget: 585 orpheus blocks
    for text in ("1GiB", "1G", "1073741824"):
        j = check_json(ORPHEUS, "--gpu", "H100", "--kv-cache-memory-bytes", text, "--max-model-len", "8192")
        assert j["memory"]["kv_available_bytes"] == 1_073_741_824
        assert j["capacity"]["num_blocks"] == 585
    # 1GB = 10^9 B -> floor(1e9 / 1,835,008) = 544 blocks
    j = check_json(ORPHEUS, "--gpu", "H100", "--kv-cache-memory-bytes", "1GB", "--max-model-len", "8192")
    assert j["capacity"]["num_blocks"] == 544


def test_max_num_batched_tokens_forms(check_json):
    j = check_json(ORPHEUS, "--gpu", "H100", "--max-num-batched-tokens", "8K", "--max-model-len", "8192")
    assert j["settings"]["max_num_batched_tokens"] == 8192
    j = check_json(ORPHEUS, "--gpu", "H100", "--max-num-batched-tokens", "8k", "--max-model-len", "8192")
    assert j["settings"]["max_num_batched_tokens"] == 8000


def test_bad_length_message_mentions_vllm_forms(cli):
    r = cli("check", ORPHEUS, "--gpu", "H100", "--max-model-len", "lots")
    assert r.rc == 2
    assert "32k = 32000" in flat(r.err)
