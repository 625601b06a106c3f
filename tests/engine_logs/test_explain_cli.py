"""`kvfit explain` end to end: the CLI wiring, exit codes, --json, the corrected launch, and the re-check with
the model named in the log (app_check.load_model + plan.evaluate). The pure diagnosis logic is tested in
test_explain.py; here every verbatim error line of the calibration data goes through the command.

Runs offline with an empty Hugging Face cache: models named in the logs come from kvfit's bundled catalog or
from config.json files written to tmp_path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kvfit_harness import invoke, isolate

HERE = Path(__file__).resolve()
DATA = HERE.parents[1] / "data" / "logs"
SHARED_OBS = HERE.parents[2].parent / "shared" / "calibration" / "observations.jsonl"
CATALOG = HERE.parents[2] / "src" / "kvfit" / "sources" / "data" / "models"
GiB = 1 << 30

LLAMA_A = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
           "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
           "num_hidden_layers": 3, "vocab_size": 1024, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}

V0_ERROR = re.compile(r"max seq len \((\d+)\) is larger than the maximum number of tokens that can be stored in "
                      r"KV cache \((\d+)\)")


def _records() -> list[dict]:
    path = DATA / "observations.jsonl"
    if not path.exists():
        path = SHARED_OBS
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


RECORDS = _records()
CATALOG_IDS = {p.stem.replace("__", "/") for p in CATALOG.glob("*.json")}
ERROR_LINES = [(r["obs_id"], i, line) for r in RECORDS for i, line in enumerate(r["log_lines_verbatim"])
               if V0_ERROR.search(line)]


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path, columns=250)


def explain(text: str | None = None, *args: str, path: Path | None = None):
    """(exit code, stdout) of `kvfit explain` reading `text` on stdin (or `path`)."""
    argv = ["explain", str(path) if path else "-", "--offline", *args]
    result = invoke(argv, input=text)
    return result.rc, result.out


def explain_json(text: str, *args: str) -> dict:
    code, output = explain(text, "--json", *args)
    assert code == 0, output
    return json.loads(output)


def flags_of(command: str) -> dict[str, str]:
    toks = command.split()
    out, i = {}, 0
    while i < len(toks):
        if toks[i].startswith("--"):
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if nxt and not nxt.startswith("--"):
                out[toks[i]] = nxt
                i += 2
                continue
            out[toks[i]] = ""
        i += 1
    return out


def llama_dir(tmp_path: Path, **over) -> Path:
    d = tmp_path / "llama_a"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({**LLAMA_A, **over}))
    return d


# --- every verbatim error line of the calibration data ------------------------------------------------

def test_the_calibration_data_has_error_lines():
    assert len(ERROR_LINES) >= 15


@pytest.mark.parametrize("obs_id, i, line", ERROR_LINES, ids=[f"{o}-{i}" for o, i, _ in ERROR_LINES])
def test_every_verbatim_error_line_alone(obs_id, i, line):
    """The error line by itself: V0's check failed; the exact fix is --max-model-len <the KV capacity>."""
    x, y = map(int, V0_ERROR.search(line).groups())
    d = explain_json(line)
    assert d["failed"] is True and d["diagnosed"] is True
    first = d["diagnoses"][0]
    assert first["kind"] == "v0_max_seq_len"
    assert f"{x:,}" in first["title"] and f"{y:,}" in first["title"]
    assert flags_of(d["corrected_command"])["--max-model-len"] == str(y)
    assert first["fixes"][0]["exact"] is True


@pytest.mark.parametrize("rec", RECORDS, ids=[r["obs_id"] for r in RECORDS])
def test_every_record_is_diagnosed(rec):
    """All of a record's verbatim lines together: a diagnosis (exit 0), failure iff the record says so."""
    text = "\n".join(rec["log_lines_verbatim"])
    d = explain_json(text)
    assert d["diagnosed"]
    errors = [ln for ln in rec["log_lines_verbatim"] if V0_ERROR.search(ln)]
    if errors:
        x, y = map(int, V0_ERROR.search(errors[0]).groups())
        assert d["failed"] is True
        assert d["diagnoses"][0]["kind"] == "v0_max_seq_len"
        assert flags_of(d["corrected_command"])["--max-model-len"] == str(y)
    else:
        assert d["failed"] is False
        assert d["diagnoses"][0]["kind"] == "ok"
        assert d["corrected_command"] is None
    tokens = rec["reported"].get("kv_cache_tokens")
    if tokens and (f"{tokens:,}" in text or f"({tokens})" in text):   # printed, not derived from blocks
        assert d["facts"]["kv_cache_tokens"] == tokens


def test_plain_text_output_names_the_fix():
    line = next(ln for _, _, ln in ERROR_LINES if "(126208)" in ln)        # gt-021, the canonical case
    code, out = explain(line)
    assert code == 0
    flat = " ".join(out.split())
    assert "max_model_len 131,072 does not fit: the KV cache holds only 126,208 tokens" in flat
    assert "Corrected launch: vllm serve MODEL --max-model-len 126208" in flat
    assert "The log does not name the model" in flat


# --- every other kind of failure (tests/data/logs) ------------------------------------------------------

CASES = [
    # file, first diagnosis kind, flags the corrected launch must carry
    ("cpu_run_c_error.log", "v1_max_seq_len", {"--max-model-len": "3072"}),
    ("cpu_user_max_len.log", "user_max_len_too_long", {"--max-model-len": "6144"}),
    ("v1_011_error_util.log", "v1_max_seq_len", {"--max-model-len": "70448"}),
    ("v1_old_gb_error.log", "v1_max_seq_len", {"--max-model-len": "76768"}),
    ("v0_error_util_fix.log", "v0_max_seq_len", {"--max-model-len": "237040"}),
    ("oom_graph_capture.log", "cuda_oom", {"--enforce-eager": ""}),
    ("oom_loading.log", "cuda_oom", {"--tensor-parallel-size": "2"}),
    ("oom_sampling.log", "cuda_oom", {"--max-num-seqs": "512"}),
    ("oom_profiling.log", "cuda_oom", {}),
    ("env_util_export.log", "v1_max_seq_len", {}),
    ("free_memory_startup.log", "free_memory_startup", None),
]


@pytest.mark.parametrize("name, kind, flags", CASES, ids=[c[0] for c in CASES])
def test_failure_logs(name, kind, flags):
    code, out = explain(path=DATA / name)
    assert code == 0, out
    d = explain_json((DATA / name).read_text(encoding="utf-8"))
    assert d["failed"] is True and d["diagnoses"][0]["kind"] == kind
    if flags is None:
        return
    got = flags_of(d["corrected_command"])
    for k, v in flags.items():
        assert got.get(k) == v, (k, d["corrected_command"])


def test_cuda_oom_phase_reaches_the_output():
    d = explain_json((DATA / "oom_profiling.log").read_text())
    assert "--max-num-batched-tokens" in flags_of(d["corrected_command"])
    assert "during profiling" in d["diagnoses"][0]["title"]


def test_env_variable_vllm_ignores_is_warned_about():
    code, out = explain(path=DATA / "env_util_export.log")
    flat = " ".join(out.split())
    assert code == 0
    assert "VLLM_GPU_MEMORY_UTILIZATION=0.95 is set, but vLLM reads no such environment variable" in flat


def test_healthy_logs_exit_0_without_a_correction():
    for name in ("v032_h100_llama8b.log", "cpu_run_a.log", "v0_045.log", "v1_010_two_line.log"):
        d = explain_json((DATA / name).read_text())
        assert d["failed"] is False and d["diagnoses"][0]["kind"] == "ok", name
        assert d["corrected_command"] is None


# --- the re-check with the model the log names ---------------------------------------------------------

def _with_command(cmd: str, name: str) -> str:
    return f"$ {cmd}\n" + (DATA / name).read_text(encoding="utf-8")


def test_recheck_v1_error_gives_the_exact_utilization():
    """v1_011_error_util: 81,920 tokens of Llama-3.1-8B need 10.00 GiB, 8.60 GiB available on a 23.52 GiB card
    at 0.8. One request is 5,120 blocks of 2 MiB, plus vLLM's null block: 5,121 x 2 MiB; the error's 8.60 GiB is
    at least 8.595 GiB + 2 MiB, so 1.405 GiB more; 0.8 + 1.405/23.515 = 0.8598 -> 0.86 (the log-only fix, from
    rounded GiB figures plus a margin, says 0.87)."""
    text = _with_command("vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 81920 "
                         "--gpu-memory-utilization 0.8", "v1_011_error_util.log")
    d = explain_json(text)
    rc = d["recheck"]
    assert rc["ok"] and rc["consistent"] is True and rc["model_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert rc["bytes_per_token"] == 131072 and rc["bytes_per_block"] == 2 * 1024 * 1024
    assert rc["fixes"][0]["flags"] == {"--gpu-memory-utilization": "0.86"}
    assert flags_of(d["corrected_command"]) == {"--max-model-len": "81920", "--gpu-memory-utilization": "0.86"}
    assert flags_of(d["corrected_commands"][1])["--max-model-len"] == "70448"   # vLLM's own estimate
    code, out = explain(text)
    flat = " ".join(out.split())
    assert "Re-check (meta-llama/Llama-3.1-8B-Instruct" in flat and "matches the log's figures" in flat
    assert "vLLM's own estimate, 70,448, is the exact value" in flat


def test_recheck_gt021_orpheus_v0_with_a_named_gpu():
    """The canonical case: 7,888 blocks x 16 = 126,208 < 131,072. Orpheus 3B has 28 layers x 8 KV heads x 128 x 2
    x 2 B = 114,688 B/token. Keeping 131,072 needs 8,192 - 7,888 = 304 more blocks of 1,835,008 B = 0.5195 GiB;
    on an RTX 3090 (23.58 GiB) at V0's default 0.9: 0.9 + 0.5195/23.575 = 0.922 -> 0.93."""
    rec = next(r for r in RECORDS if r["obs_id"] == "gt-021")
    text = "$ vllm serve canopylabs/orpheus-3b-0.1-ft --max-model-len 131072\n" + "\n".join(rec["log_lines_verbatim"])
    d = explain_json(text)
    rc = d["recheck"]
    assert rc["ok"] and rc["longest_max_model_len"] == 126208
    assert rc["budget_bytes"] == 7888 * 1835008
    assert flags_of(d["corrected_command"])["--max-model-len"] == "126208"
    assert any("the log does not show the GPU total" in ln for ln in rc["lines"])

    d = explain_json(text, "--gpu", "RTX 3090")
    rc = d["recheck"]
    assert rc["fixes"][0]["flags"] == {"--gpu-memory-utilization": "0.93"}
    assert "assumed the default 0.9" in rc["fixes"][0]["description"]
    assert rc["fixes"][1] == {**rc["fixes"][1], "flags": {"--max-model-len": "126208"}, "exact": True}
    assert flags_of(d["corrected_command"]) == {"--max-model-len": "131072", "--gpu-memory-utilization": "0.93"}


# gt-031 (Qwen3-4B) left the list with its catalog entry: no real copy of Qwen3-4B's config.json was found
@pytest.mark.parametrize("obs_id", ["gt-001", "gt-007", "gt-046", "gt-047"])
def test_recheck_agrees_with_real_logs(obs_id):
    """Records whose model is bundled and whose log shows both a block/token count and a GiB figure: kvfit's KV
    layout for the model reproduces them (blocks x bytes per block = the GiB figure, to its rounding)."""
    rec = next(r for r in RECORDS if r["obs_id"] == obs_id)
    assert rec["model_id"] in CATALOG_IDS
    cmd = f"$ vllm serve {rec['model_id']} --max-model-len {rec['max_model_len']}"
    d = explain_json(cmd + "\n" + "\n".join(rec["log_lines_verbatim"]))
    rc = d["recheck"]
    assert rc["ok"] and rc["consistent"] is True, rc["summary"]
    if rec["derived"].get("expected_bytes_per_token_per_rank"):
        assert rc["bytes_per_token"] == rec["derived"]["expected_bytes_per_token_per_rank"]
    assert d["diagnoses"][0]["kind"] == "ok" and d["corrected_command"] is None


@pytest.mark.parametrize("rec", [r for r in RECORDS if r["model_id"] in CATALOG_IDS],
                         ids=[r["obs_id"] for r in RECORDS if r["model_id"] in CATALOG_IDS])
def test_recheck_never_breaks_a_real_log(rec):
    """Every record of a bundled model, named: exit 0; an exact fix only when the figures agree."""
    cmd = f"$ vllm serve {rec['model_id']}" + (f" --max-model-len {rec['max_model_len']}" if rec["max_model_len"] else "")
    if rec["tensor_parallel_size"] > 1:
        cmd += f" --tensor-parallel-size {rec['tensor_parallel_size']}"
    d = explain_json(cmd + "\n" + "\n".join(rec["log_lines_verbatim"]))
    rc = d["recheck"]
    assert rc is not None and rc["model"] == rec["model_id"]
    if rc["consistent"] is False:
        assert rc["fixes"] == []                              # no "exact" advice from figures that disagree
    errors = [ln for ln in rec["log_lines_verbatim"] if V0_ERROR.search(ln)]
    if errors and rc["ok"]:
        y = int(V0_ERROR.search(errors[0]).group(2))
        assert rc["longest_max_model_len"] == y            # V0: max_model_len <= block_size x blocks, exactly


def test_recheck_cpu_error_gives_the_exact_budget(tmp_path):
    """Spec §7.3 run C: 4,096 tokens of llama_a need 32 blocks of 196,608 B plus vLLM's null block:
    33 x 196,608 = 6,488,064 bytes, exactly (the log-only fix can only scale rounded GiB figures)."""
    model = llama_dir(tmp_path)
    text = _with_command(f"vllm serve {model} --max-model-len 4096 --kv-cache-memory-bytes 5000000",
                         "cpu_run_c_error.log")
    d = explain_json(text)
    rc = d["recheck"]
    assert rc["ok"] and rc["consistent"] is True
    assert rc["bytes_per_block"] == 196608 and rc["block_size"] == 128
    fix = rc["fixes"][0]
    assert fix["flags"] == {"--kv-cache-memory-bytes": "6488064"} and fix["exact"] is True
    assert "VLLM_CPU_KVCACHE_SPACE=1" in fix["description"]
    assert flags_of(d["corrected_command"]) == {"--max-model-len": "4096", "--kv-cache-memory-bytes": "6488064"}
    assert flags_of(d["corrected_commands"][1])["--max-model-len"] == "3072"


def test_recheck_cpu_run_a_reproduces_the_engine(tmp_path):
    """Spec §7.3 run A: 682,625 tokens at 3,000 per request = 5,461 blocks = 1.0 GiB, as the log says."""
    model = llama_dir(tmp_path)
    text = (DATA / "cpu_run_a.log").read_text().replace("/tmp/kvfit-cpu/run_a", str(model))
    d = explain_json(text)
    rc = d["recheck"]
    assert rc["ok"] and rc["consistent"] is True and rc["budget_bytes"] == 5461 * 196608
    assert any("5,461 blocks, 682,625 KV tokens, 227.54x" in ln for ln in rc["lines"])


def test_recheck_user_max_len_reads_the_models_config(tmp_path):
    model = llama_dir(tmp_path, max_position_embeddings=6144)
    d = explain_json(_with_command(f"vllm serve {model} --max-model-len 8192", "cpu_user_max_len.log"))
    rc = d["recheck"]
    assert rc["ok"] and rc["consistent"] is True
    assert rc["fixes"][0]["flags"] == {"--max-model-len": "6144"} and rc["fixes"][0]["exact"]
    assert "max_position_embeddings=6,144" in rc["summary"]


def test_recheck_rejects_a_utilization_that_cannot_work():
    """Free memory 10.45 of 79.25 GiB: the log-only fix is --gpu-memory-utilization 0.12 (9.5 GiB), but
    Llama-3.1-8B's weights alone are 15 GiB, so kvfit drops it and says to free the GPU instead."""
    d = explain_json((DATA / "free_memory_startup.log").read_text())
    rc = d["recheck"]
    assert rc["ok"] and rc["model_id"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert any("nothing is left for KV cache" in ln for ln in rc["lines"])
    assert "--gpu-memory-utilization" not in json.dumps(d["corrected_commands"])
    assert "free the memory other processes hold" in rc["fixes"][0]["description"]
    assert d["diagnoses"][0]["fixes"][0]["flags"] == {"--gpu-memory-utilization": "0.12"}   # log-only advice


def test_recheck_notices_a_log_from_another_model():
    """The same V1 error, but naming Llama-3.2-1B (32,768 B/token, not Llama-3.1-8B's 131,072): the figures do not
    match, so no 'exact' advice is claimed and the log-only fix stands."""
    text = _with_command("vllm serve meta-llama/Llama-3.2-1B-Instruct --max-model-len 81920", "v1_011_error_util.log")
    d = explain_json(text)
    rc = d["recheck"]
    assert rc["consistent"] is False and rc["fixes"] == []
    assert "do not match" in rc["summary"]
    assert flags_of(d["corrected_command"])["--max-model-len"] == "70448"


def test_recheck_model_that_cannot_be_found_is_said_not_fatal():
    text = _with_command("vllm serve someone/not-a-bundled-model --max-model-len 81920", "v1_011_error_util.log")
    code, out = explain(text)
    assert code == 0
    assert "could not re-check with someone/not-a-bundled-model" in " ".join(out.split())


# --- input handling and exit codes --------------------------------------------------------------------

def test_unreadable_inputs_exit_2(tmp_path):
    code, _ = explain(path=tmp_path / "missing.log")
    assert code == 2
    code, _ = explain(path=tmp_path)
    assert code == 2
    empty = tmp_path / "empty.log"
    empty.write_text("  \n")
    code, _ = explain(path=empty)
    assert code == 2
    binary = tmp_path / "core.bin"
    binary.write_bytes(b"\x7fELF" + b"\0" * 200)
    code, _ = explain(path=binary)
    assert code == 2


def test_text_without_anything_vllm_exits_1():
    code, out = explain("hello, this is not a vLLM log\n")
    assert code == 1
    assert "No vLLM error or KV-cache capacity line was recognised" in " ".join(out.split())


def test_file_and_stdin_agree():
    text = (DATA / "v0_error_util_fix.log").read_text()
    a = explain(path=DATA / "v0_error_util_fix.log")
    b = explain(text)
    assert a[0] == b[0] == 0
    assert a[1].split("\n", 1)[1] == b[1].split("\n", 1)[1]     # only the first line names the input


def test_json_schema():
    d = explain_json((DATA / "v032_h100_llama8b.log").read_text())
    assert d["schema"] == "kvfit.explain/1"
    assert {"input", "diagnosed", "failed", "facts", "diagnoses", "warnings", "recheck", "corrected_command",
            "corrected_commands"} <= set(d)
    assert d["facts"]["kv_cache_tokens"] == 460496 and d["facts"]["total_gpu_memory_gib"] == 79.25


def test_explain_does_not_import_vllm_or_torch():
    import subprocess
    import sys

    code = ("import sys; from kvfit.cli.main import main; sys.argv=['kvfit','explain',%r,'--offline']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "bad=[m for m in ('vllm','torch','transformers') if m in sys.modules]\n"
            "assert not bad, bad\n") % str(DATA / "v032_h100_llama8b.log")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
