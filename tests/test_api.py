"""kvfit as a library (README "## Python API", issue 17): kvfit.check, kvfit.check_launch, kvfit.explain.

The rule is one answer: a call is the Request `kvfit check` builds, so every test here compares the call with
the command line on the same launch (the JSON document `--json` prints, or the error `--json` prints), never
with numbers copied from kvfit's output. Every keyword is a flag of the table (kvfit/flags.py) by its dest,
and each one is checked against its command-line flag. The README's example runs as written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kvfit_harness import invoke, isolate

ROOT = Path(__file__).resolve().parents[1]
ORPHEUS = "canopylabs/orpheus-3b-0.1-ft"
V = "0.32.0"
HEAVY = ("torch", "transformers", "vllm", "rich", "huggingface_hub", "yaml")


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)


def cli_json(*args: str):
    r = invoke(list(args))
    assert "Traceback" not in r.out + r.err, r
    return r.rc, json.loads(r.out)


def same_as_cli(call, args: list[str]):
    """Run the API call and `kvfit ARGS --json`: the same document, or the same error."""
    import kvfit

    i = args.index("--") if "--" in args else len(args)
    rc, doc = cli_json(*args[:i], "--json", *args[i:])
    if rc == 2:
        with pytest.raises(kvfit.KvfitError) as ei:
            call()
        err = doc["error"]
        assert type(ei.value).__name__ == err["kind"], (err, ei.value)
        assert ei.value.message == err["message"]
        return None
    r = call()
    assert r.to_dict() == doc
    assert r.exit_code == rc and r.verdict.fits == (rc == 0)
    return r


# --- import kvfit stays light ------------------------------------------------------------------------

def _modules_after(code: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVFIT_", "CUDA_"))}
    env["HF_HUB_OFFLINE"] = "1"
    p = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=ROOT / "tests")
    assert p.returncode == 0, p.stderr[-3000:]
    return set(json.loads(p.stdout.strip().splitlines()[-1]))


def test_import_kvfit_loads_the_errors_only():
    """`import kvfit` (and its error types) loads kvfit, kvfit.errors and the standard library: no torch,
    transformers, vllm, rich, huggingface_hub or yaml. tests/import_time.py measures the time (~10 ms)."""
    mods = _modules_after("import kvfit\nkvfit.KvfitError, kvfit.BadFlag, kvfit.ModelNotFound, kvfit.__version__")
    assert {m for m in mods if m.startswith("kvfit")} == {"kvfit", "kvfit.errors"}
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_a_check_from_python_imports_nothing_heavy():
    """The check path's rule holds for the API too: no torch, transformers or vllm (rich: not for check)."""
    mods = _modules_after(f"import kvfit\nr = kvfit.check({ORPHEUS!r}, gpu='RTX 3090', vllm_version={V!r})\n"
                          "assert r.capacity.kv_cache_tokens > 0")
    assert not {m.split(".")[0] for m in mods} & {"torch", "transformers", "vllm", "rich", "huggingface_hub"}


def test_the_api_is_exported_and_typed():
    import kvfit
    from kvfit import errors

    for name in ("check", "check_launch", "explain", "CheckResult", "Explanation", "KvfitError", "BadInput",
                 "BadFlag", "NotModelled", "ModelNotFound", "ConfigError", "HubError", "GatedModel",
                 "HubUnreachable", "GpuError", "LaunchError"):
        assert name in kvfit.__all__ and getattr(kvfit, name) is not None, name
    assert kvfit.KvfitError is errors.KvfitError and kvfit.BadFlag is errors.BadFlag
    with pytest.raises(AttributeError):
        kvfit.no_such_thing  # noqa: B018
    from importlib import resources

    assert resources.files("kvfit").joinpath("py.typed").is_file()
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["kvfit"]
    assert "py.typed" in data and "schemas/*.json" in data
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(x.startswith("jsonschema") for x in extras)


# --- check(): the same answer as `kvfit check` ---------------------------------------------------------

def test_check_with_a_gpu_is_the_cli_answer():
    import kvfit

    r = same_as_cli(lambda: kvfit.check(ORPHEUS, gpu="RTX 3090", vllm_version=V, max_model_len=32768),
                    ["check", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, "--max-model-len", "32768"])
    d = r.to_dict()
    assert r.capacity.kv_cache_tokens == d["capacity"]["kv_cache_tokens"]
    assert r.capacity.max_concurrency == d["capacity"]["max_concurrency"]
    assert r.memory.kv_cache_bytes == d["memory"]["kv_cache_bytes"]
    assert r.verdict.fits is d["verdict"]["fits"] and r.verdict.reasons == tuple(d["verdict"]["reasons"])
    rec = r.recommendation
    assert rec.command == d["recommendation"]["command"]["text"]
    assert rec.argv == tuple(d["recommendation"]["command"]["argv"])
    assert rec.serve_command == " ".join(d["recommendation"]["command"]["argv"])
    assert len(r.alternatives) == len(d["alternatives"])
    assert r.to_dict() is not r.to_dict()                    # a fresh copy each time


def test_check_that_does_not_fit_recommends_a_command_that_re_checks():
    """The recommended serve_command, checked again through check_launch, fits (one answer, every path)."""
    import kvfit

    r = same_as_cli(lambda: kvfit.check(ORPHEUS, gpu="RTX 3090", vllm_version=V, max_model_len=131072,
                                        gpu_memory_utilization=0.8),
                    ["check", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, "--max-model-len", "131072",
                     "--gpu-memory-utilization", "0.8"])
    assert not r.verdict.fits and r.verdict.reasons
    rec = r.recommendation
    assert rec is not None and not rec.as_given and rec.needs is None and rec.changes
    again = kvfit.check_launch(rec.serve_command, gpu="RTX 3090", vllm_version=V)
    assert again.verdict.fits and again.recommendation.as_given


def test_check_with_goals_is_the_cli_answer():
    import kvfit

    r = same_as_cli(lambda: kvfit.check(ORPHEUS, gpu="RTX 4090", vllm_version=V, context="8K", concurrency=8,
                                        max_vram="9GB", headroom="512MiB"),
                    ["check", ORPHEUS, "--gpu", "RTX 4090", "--vllm-version", V, "--context", "8K", "--concurrency",
                     "8", "--max-vram", "9GB", "--headroom", "512MiB"])
    assert r.to_dict()["goals"]["context"] == 8192


def test_check_without_a_gpu_is_the_cli_table():
    import kvfit

    r = same_as_cli(lambda: kvfit.check(ORPHEUS, vllm_version=V), ["check", ORPHEUS, "--vllm-version", V])
    d = r.to_dict()
    assert r.verdict.table and r.capacity is None and r.recommendation is None
    assert len(r.results) == len(d["results"]) > 1
    assert r.verdict.fits_on == tuple(d["verdict"]["fits_on"])
    for sub, doc in zip(r.results, d["results"]):
        assert sub.gpu["name"] == doc["gpu"]["name"]
        assert sub.capacity.kv_cache_tokens == doc["capacity"]["kv_cache_tokens"]
        assert sub.verdict.fits == doc["verdict"]["fits"]


# every flag of the table, by its dest, against the same flag on the command line: a value each
SAMPLES = {
    "max_model_len": "8192", "gpu_memory_utilization": "0.8", "tensor_parallel_size": "2",
    "pipeline_parallel_size": "2", "dtype": "float16", "kv_cache_dtype": "fp8", "quantization": "fp8",
    "block_size": "32", "max_num_seqs": "64", "max_num_batched_tokens": "4096", "enforce_eager": True,
    "kv_cache_memory_bytes": "8GiB", "num_gpu_blocks_override": "4000", "cpu_offload_gb": "2", "enable_lora": True,
    "max_loras": "2", "max_lora_rank": "32",
    "speculative_config": '{"method": "ngram", "num_speculative_tokens": 3}', "enable_prefix_caching": True,
    "mamba_cache_dtype": "float32", "mamba_ssm_cache_dtype": "float32", "disable_hybrid_kv_cache_manager": True,
    "disable_sliding_window": True, "hf_overrides": '{"max_position_embeddings": 65536}',
    "rope_scaling": '{"rope_type": "dynamic", "factor": 2.0}', "rope_theta": "500000", "device": "cpu",
    "gpu": "RTX 4090", "gpu_memory": "20GiB", "gpu_count": "2", "vllm_version": "0.10.1", "entrypoint": "llm",
    "cpu_isa": "amx", "revision": "main", "offline": True, "context": "16384", "concurrency": "4",
    "max_vram": "20GiB", "headroom": "1GiB",
    "limit_mm_per_prompt": '{"image": 0}', "skip_mm_profiling": True, "mm_processor_kwargs": '{"max_pixels": 1000000}',
    "data_parallel_size": "2", "data_parallel_size_local": "1", "data_parallel_start_rank": "1", "nnodes": "2",
    "node_rank": "1", "gpus_per_node": "4", "distributed_executor_backend": "ray", "enable_expert_parallel": True,
    "decode_context_parallel_size": "2", "dcp_kv_cache_interleave_size": "16",
    "prefill_context_parallel_size": "2", "cp_kv_cache_interleave_size": "16",
}


def test_every_flag_of_the_table_is_a_keyword():
    from kvfit.api import KEYWORDS
    from kvfit.flags import BY_DEST

    assert set(SAMPLES) == set(BY_DEST)
    assert set(KEYWORDS) == set(BY_DEST) - {"gpu", "gpu_memory", "vllm_version"}


@pytest.mark.parametrize("dest", sorted(SAMPLES))
def test_each_keyword_is_its_flag(dest):
    """kvfit.check(MODEL, dest=value) == `kvfit check MODEL --flag value --json` (the document, or the error)."""
    import kvfit
    from kvfit.flags import BY_DEST

    f, value = BY_DEST[dest], SAMPLES[dest]
    kw = {"gpu": "RTX 3090", "vllm_version": V, dest: value}
    base = {"gpu": ["--gpu", "RTX 3090"], "vllm_version": ["--vllm-version", V]}
    args = ["check", ORPHEUS, *[t for k, ts in base.items() if k != dest for t in ts]]
    args += [f.long] if value is True else [f.long, value]
    same_as_cli(lambda: kvfit.check(ORPHEUS, **kw), args)


@pytest.mark.parametrize("typed, text", [
    ({"max_model_len": 8192}, ["--max-model-len", "8192"]),
    ({"max_model_len": -1}, ["--max-model-len", "auto"]),
    ({"gpu_memory_utilization": 0.85}, ["--gpu-memory-utilization", "0.85"]),
    ({"speculative_config": {"method": "ngram", "num_speculative_tokens": 3}},
     ["--speculative-config", '{"method": "ngram", "num_speculative_tokens": 3}']),
    ({"enable_lora": True, "max_lora_rank": 64}, ["--enable-lora", "--max-lora-rank", "64"]),
    ({"enable_prefix_caching": False}, ["--no-enable-prefix-caching"]),
    ({"gpu_memory": 22 << 30}, ["--gpu-memory", "22GiB"]),
    ({"max_vram": 9_000_000_000, "context": 8192}, ["--max-vram", "9GB", "--context", "8192"]),
    ({"headroom": 0, "context": 8192}, ["--headroom", "0", "--context", "8192"]),
    ({"kv_cache_memory_bytes": 4 << 30}, ["--kv-cache-memory-bytes", "4GiB"]),
])
def test_python_values_are_the_flags_values(typed, text):
    """Python's types (ints, floats, bools, dicts; a size as an int is bytes) mean what the flags' text does."""
    import kvfit

    same_as_cli(lambda: kvfit.check(ORPHEUS, gpu="RTX 3090", vllm_version=V, **typed),
                ["check", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, *text])


@pytest.mark.parametrize("kw, hint", [
    ({"max_model_length": 8192}, "max_model_len="),
    ({"max-model-len": 8192}, "max_model_len="),
    ({"gpu_util": 0.9}, "gpu_memory_utilization="),
    ({"kvcache_dtype": "fp8"}, "kv_cache_dtype="),
    ({"zzz": 1}, "vLLM's argument names"),
])
def test_an_unknown_keyword_is_a_bad_flag_naming_it(kw, hint):
    import kvfit

    with pytest.raises(kvfit.BadFlag) as ei:
        kvfit.check(ORPHEUS, gpu="RTX 3090", **kw)
    (name,) = kw
    assert ei.value.flag == name and repr(name) in ei.value.message
    assert hint in ei.value.hint
    assert isinstance(ei.value, kvfit.BadInput) and ei.value.exit_code == 2


@pytest.mark.parametrize("call, kind", [
    (lambda k: k.check("nonexistent/model-17", gpu="RTX 3090"), "ModelNotFound"),
    (lambda k: k.check(ORPHEUS, gpu="Voodoo 5"), "GpuError"),
    (lambda k: k.check(ORPHEUS, gpu="RTX 3090", max_model_len="12x"), "BadFlag"),
    (lambda k: k.check(ORPHEUS, gpu="RTX 3090", gpu_memory_utilization=1.5), "BadFlag"),
    (lambda k: k.check(""), "BadInput"),
    (lambda k: k.check_launch(f"vllm serve {ORPHEUS} --compilation-config '{{}}'", gpu="RTX 3090"), "NotModelled"),
    (lambda k: k.check_launch("   "), "BadInput"),
    (lambda k: k.explain(""), "BadInput"),
])
def test_errors_are_the_typed_family(call, kind):
    import kvfit

    with pytest.raises(kvfit.KvfitError) as ei:
        call(kvfit)
    assert type(ei.value).__name__ == kind or kind in [c.__name__ for c in type(ei.value).__mro__], ei.value
    assert ei.value.message


def test_results_are_frozen():
    import kvfit

    r = kvfit.check(ORPHEUS, gpu="RTX 3090", vllm_version=V, max_model_len=131072)
    for obj, attr in ((r, "verdict"), (r.verdict, "fits"), (r.capacity, "kv_cache_tokens"), (r.memory, "total_bytes"),
                      (r.recommendation, "serve_command")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(obj, attr, None)
    with pytest.raises(TypeError):
        r.recommendation.changes["max-model-len"] = 1          # type: ignore[index]
    with pytest.raises(TypeError):
        r.settings["max_model_len"] = 1                          # type: ignore[index]
    d = r.to_dict()
    d["verdict"]["fits"] = "changed"
    assert r.to_dict()["verdict"]["fits"] is r.verdict.fits


# --- check_launch(): a pasted launch ------------------------------------------------------------------

def test_check_launch_is_the_cli_on_the_same_launch(tmp_path):
    """check_launch(text) is `kvfit check --launch FILE` on a file holding that text."""
    import kvfit

    def launch_file(text: str, name: str = "launch.sh") -> str:
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    serve = f"vllm serve {ORPHEUS} --max-model-len 65536 --kv-cache-dtype fp8 --port 8000"
    same_as_cli(lambda: kvfit.check_launch(serve, gpu="RTX 3090", vllm_version=V),
                ["check", "--gpu", "RTX 3090", "--vllm-version", V, "--launch", launch_file(serve)])
    docker = (f"docker run --gpus all -p 8000:8000 vllm/vllm-openai:v0.10.1 --model {ORPHEUS} "
              "--max-model-len 131072 --gpu-memory-utilization 0.8")
    r = same_as_cli(lambda: kvfit.check_launch(docker, gpu="RTX 3090", vllm_version=V, context=32768),
                    ["check", "--gpu", "RTX 3090", "--vllm-version", V, "--context", "32768", "--launch",
                     launch_file(docker)])
    assert r.recommendation.command.startswith("docker run")                   # the launch's own form
    assert r.recommendation.serve_command.startswith(f"vllm serve {ORPHEUS}")
    yaml_text = f"model: {ORPHEUS}\nmax_model_len: 16384\ngpu_memory_utilization: 0.5\n"
    r = same_as_cli(lambda: kvfit.check_launch(yaml_text, filename="vllm.yaml", gpu="RTX 3090", vllm_version=V),
                    ["check", "--gpu", "RTX 3090", "--vllm-version", V, "--launch", launch_file(yaml_text, "vllm.yaml")])
    assert r.to_dict()["launch"]["form"] == "yaml"


def test_check_launch_keywords_override_the_launch():
    import kvfit

    serve = f"vllm serve {ORPHEUS} --max-model-len 65536"
    r = kvfit.check_launch(serve, gpu="RTX 3090", vllm_version=V, max_model_len=4096)
    assert r.settings["max_model_len"] == 4096


# --- explain() -----------------------------------------------------------------------------------------

LOGS = ROOT / "tests" / "data" / "logs"


@pytest.mark.parametrize("name", ["v1_011_error_util.log", "cpu_run_c_error.log", "oom_profiling.log",
                                  "v032_h100_llama8b.log", "cpu_run_a.log"])
def test_explain_is_the_cli_on_the_same_log(name):
    import kvfit

    text = (LOGS / name).read_text()
    r = invoke(["explain", "-", "--offline", "--json"], input=text)
    assert r.rc in (0, 1), r
    e = kvfit.explain(text, offline=True)
    assert e.to_dict() == json.loads(r.out)
    assert e.exit_code == r.rc
    assert [d.title for d in e.diagnoses] == [d["title"] for d in json.loads(r.out)["diagnoses"]]


def test_explain_names_the_fix_of_a_real_error_line():
    """vLLM 0.11's error (v1/core/kv_cache_utils.py): the estimated maximum model length it prints is the fix."""
    import kvfit

    e = kvfit.explain((LOGS / "v1_011_error_util.log").read_text(), offline=True)
    assert e.diagnosed and e.failed
    assert "--max-model-len 70448" in e.corrected_commands[0] or any(
        "--max-model-len 70448" in c for c in e.corrected_commands)


# --- the README's example, as written ------------------------------------------------------------------

def readme_python_block() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Python API\n")
    end = text.find("\n## ", start + 5)
    section = text[start:end if end != -1 else None]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "README '## Python API' has one python example"
    return blocks[0]


def test_the_readme_example_runs_as_written(tmp_path):
    """The fenced python block of README '## Python API', executed in a fresh interpreter (offline, no GPU)."""
    script = tmp_path / "readme_example.py"
    script.write_text(readme_python_block())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KVFIT_", "CUDA_", "VLLM_"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf"),
                "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "check" / "fake_nvml"),
                                               env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "KVFIT_FAKE_NVML": json.dumps({"fail": "NVML Shared Library Not Found"})})
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "vllm serve canopylabs/orpheus-3b-0.1-ft" in p.stdout
    assert "unknown keyword argument 'max_model_length' - Did you mean max_model_len=?" in p.stdout
