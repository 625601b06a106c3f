"""One JSON contract (issue 17): a versioned JSON Schema (draft 2020-12) for every --json output, shipped in the
package (src/kvfit/schemas) and printed by `kvfit schema [COMMAND]`; with --json, errors are a JSON object on
stdout with exit 2.

Besides the explicit tests here, every JSON document the suite makes kvfit print is validated against its
schema by the shared runners (tests/kvfit_schema.py).

THE VERSION RULE (test_a_schema_changes_only_with_a_new_version): tests/data/schema-hashes.json holds, for
every schema version kvfit has shipped, the SHA-256 of that schema (canonical JSON: sorted keys, no
whitespace). A shipped schema file must hash to the entry of its version. So changing a schema file (a field
added to the document, a type widened, a description reworded) means: give it a new version (its
"x-kvfit-version" and "$id", and the document's own "schema" field where it has one: render/json.py SCHEMA,
...), and add the new version's hash to schema-hashes.json. Never edit or remove an existing entry: a version
means one schema forever. Within a version the documents only gain fields the schema does not list (the
schemas are open), so programs written against a version keep working.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kvfit_harness import invoke, isolate
from kvfit_schema import schema_name, validate

ROOT = Path(__file__).resolve().parents[1]
HASHES = ROOT / "tests" / "data" / "schema-hashes.json"
ORPHEUS = "canopylabs/orpheus-3b-0.1-ft"
V = "0.32.0"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


@pytest.fixture(autouse=True)
def hermetic(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)


def digest(schema: dict) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode()).hexdigest()


def run_json(*args: str, rc=(0, 1), input: str | None = None) -> dict:
    r = invoke(list(args), input=input)
    assert r.rc in ((rc,) if isinstance(rc, int) else rc), r
    return json.loads(r.out)


# --- the schemas --------------------------------------------------------------------------------------

def test_every_schema_is_a_valid_2020_12_schema_with_its_version():
    from jsonschema import Draft202012Validator

    from kvfit import schemas

    versions = set()
    for name in schemas.NAMES:
        s = schemas.load(name)
        Draft202012Validator.check_schema(s)
        Draft202012Validator.check_schema(schemas.load(name, bundled=True))
        assert s["$schema"] == DRAFT
        v = s["x-kvfit-version"]
        assert v == schemas.version(name) and s["$id"] == f"urn:kvfit:schema:{v}"
        assert v.startswith(f"kvfit.{name}/")
        versions.add(v)
    assert len(versions) == len(schemas.NAMES)
    shipped = {p.stem for p in (ROOT / "src" / "kvfit" / "schemas").glob("*.json")}
    assert shipped == set(schemas.NAMES)


def test_a_schema_changes_only_with_a_new_version():
    """See the module docstring: each shipped schema hashes to the entry of its version."""
    from kvfit import schemas

    known = json.loads(HASHES.read_text())
    for name in schemas.NAMES:
        v = schemas.version(name)
        assert v in known, (f"schema {name!r} has version {v}, which tests/data/schema-hashes.json does not list: "
                            f"add \"{v}\": \"{digest(schemas.load(name))}\" (and keep every other entry)")
        assert known[v] == digest(schemas.load(name)), (
            f"schemas/{name}.json changed but kept its version {v}: give it a new version (x-kvfit-version, $id, "
            "the document's schema field) and add that version's hash; the entry of a released version never "
            "changes")


def test_the_code_prints_the_versions_the_schemas_name():
    from kvfit import schemas
    from kvfit.render import json as rjson

    assert rjson.SCHEMA == schemas.version("check")
    doc = run_json("sweep", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, "--utilizations", "0.5,0.9", "--json")
    assert doc["schema"] == schemas.version("sweep")
    doc = run_json("explain", "-", "--offline", "--json", input=(ROOT / "tests/data/logs/cpu_run_a.log").read_text())
    assert doc["schema"] == schemas.version("explain")


def test_a_renamed_field_fails_validation():
    """The contract can fail: the document with one field renamed (or removed) does not validate."""
    doc = run_json("check", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, "--json")
    validate(doc, "check")
    doc["capacity"]["kv_tokens"] = doc["capacity"].pop("kv_cache_tokens")
    with pytest.raises(AssertionError, match="kv_cache_tokens"):
        validate(doc, "check")
    doc = run_json("check", ORPHEUS, "--gpu", "RTX 3090", "--vllm-version", V, "--json")
    doc["verdict"]["fits"] = "yes"
    with pytest.raises(AssertionError):
        validate(doc, "check")


# --- kvfit schema ---------------------------------------------------------------------------------------

def test_kvfit_schema_prints_each_schema_bundled():
    from kvfit import schemas

    every = run_json("schema", rc=0)
    assert list(every) == list(schemas.NAMES)
    for name in schemas.NAMES:
        one = run_json("schema", name, rc=0)
        assert one == every[name] == schemas.load(name, bundled=True)
        assert one["x-kvfit-version"] == schemas.version(name)
    r = invoke(["schema", "chekc"])
    assert r.rc == 2 and "Did you mean 'check'?" in r.err


def test_the_printed_manifest_schema_validates_on_its_own(tmp_path):
    """`kvfit schema manifest` embeds the check schema it refers to: a program validates without kvfit."""
    from jsonschema import Draft202012Validator

    schema = run_json("schema", "manifest", rc=0)
    assert "check" in schema["$defs"]
    doc = run_json("check", "--manifest", str(ROOT / "examples" / "kvfit.toml"), "--json")
    errors = list(Draft202012Validator(schema).iter_errors(doc))
    assert errors == []
    doc["results"][0]["answer"]["capacity"].pop("kv_cache_tokens")
    assert list(Draft202012Validator(schema).iter_errors(doc))
    smoke = run_json("schema", "smoke", rc=0)
    assert "check" in smoke["$defs"] and "manifest" not in smoke["$defs"]


# --- every command's JSON validates (explicitly; the runners also check every other run) -----------------

@pytest.mark.parametrize("args, name", [
    (["check", ORPHEUS, "--gpu", "RTX 3090", "--max-model-len", "32768", "--json"], "check"),
    (["check", ORPHEUS, "--gpu", "RTX 3090", "--context", "131072", "--concurrency", "4", "--json"], "check"),
    (["check", ORPHEUS, "--json"], "check"),                                         # no GPU: the table
    (["check", ORPHEUS, "--gpu", "RTX 4090", "--max-model-len", "8192", "--format", "json"], "check"),
    (["check", "meta-llama/Llama-3.1-70B-Instruct", "--gpu", "H100", "--json"], "check"),
    (["sweep", ORPHEUS, "--gpu", "RTX 3090", "--json"], "sweep"),
    (["sweep", ORPHEUS, "--gpu", "RTX 3090", "--utilizations", "0.05,0.5", "--concurrency", "2", "--json"], "sweep"),
    (["check", "--manifest", str(ROOT / "examples" / "kvfit.toml"), "--json"], "manifest"),
    (["models", "--json"], "models"),
    (["gpus", "--json"], "gpus"),
])
def test_each_command_prints_json_its_schema_describes(args, name):
    doc = run_json(*args, "--vllm-version", V) if args[0] in ("check", "sweep") and "--manifest" not in args \
        else run_json(*args)
    assert schema_name(doc, args) == name
    validate(doc, name)


@pytest.mark.parametrize("log", sorted(p.name for p in (ROOT / "tests" / "data" / "logs").glob("*.log")))
def test_explain_json_validates_for_every_log(log):
    text = (ROOT / "tests" / "data" / "logs" / log).read_text(errors="replace")
    doc = run_json("explain", "-", "--offline", "--json", input=text)
    validate(doc, "explain")


def test_the_smoke_record_validates(tmp_path):
    """A smoke run whose engine cannot import vLLM still prints its record (exit 2), as tests/engine/test_smoke.py
    sets it up: a `vllm` that fails to import, first on the engine's PYTHONPATH. No engine starts."""
    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64, "num_hidden_layers": 3,
        "vocab_size": 1024, "max_position_embeddings": 4096, "torch_dtype": "bfloat16"}))
    fake = tmp_path / "fake"
    (fake / "vllm").mkdir(parents=True)
    (fake / "vllm" / "__init__.py").write_text("raise ImportError('simulated: vllm is broken here')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "KVFIT_", "CUDA_"))}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join([str(fake), env.get("PYTHONPATH", "")])
                .rstrip(os.pathsep)})
    args = ["smoke", str(model), "--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--dummy-weights",
            "--record", str(tmp_path / "runs.jsonl"), "--json"]
    p = subprocess.run([sys.executable, "-m", "kvfit", *args], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
    rec = json.loads(p.stdout)
    assert rec["smoke"]["runner"]["phase"] == "import"
    assert schema_name(rec, args) == "smoke"
    validate(rec, "smoke")
    validate(json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0]), "smoke")


# --- --json errors ----------------------------------------------------------------------------------------

BAD_MANIFEST = '[[check]]\nname = "x"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "RTX 3090"\nmax_model_lenn = 8\n'


@pytest.mark.parametrize("args, kind, flag", [
    (["check", "nonexistent/model-17", "--gpu", "RTX 3090", "--json"], "ModelNotFound", None),
    (["check", ORPHEUS, "--gpu", "RTX 3090", "--max-model-len", "12x", "--json"], "BadFlag", "max_model_len"),
    (["check", ORPHEUS, "--gpu", "RTX 3090", "--gpu-memory-utilization", "2", "--format", "json"], "BadFlag",
     "gpu_memory_utilization"),
    (["check", ORPHEUS, "--gpu", "Voodoo 5", "--json"], "GpuError", None),
    (["check", ORPHEUS, "--gpu", "RTX 3090", "--json", "--bogus"], "BadInput", None),
    (["check", "--gpu", "RTX 3090", "--json", "--", "vllm", "serve", ORPHEUS, "--compilation-config", "{}"],
     "NotModelled", "compilation-config"),
    (["check", "--json", "--launch", "/nonexistent/serve.sh"], "LaunchError", None),
    (["check", "--manifest", "MANIFEST", "--json"], "ManifestError", None),
    (["sweep", ORPHEUS, "--json"], "BadInput", None),
    (["sweep", ORPHEUS, "--gpu", "RTX 3090", "--utilizations", "2", "--json"], "BadFlag", "utilizations"),
    (["explain", "/nonexistent/vllm.log", "--json"], "BadInput", None),
    (["smoke", ORPHEUS, "--device", "cpu", "--kv-cache-memory-bytes", "1GiB", "--timeout", "0", "--json"],
     "BadInput", None),
    (["models", "--json", "--bogus"], "BadInput", None),
    (["gpus", "--bogus", "--json"], "BadInput", None),
    (["schema", "nope", "--json"], "BadInput", None),
    (["--json"], "BadInput", None),
])
def test_json_errors_are_a_json_object_on_stdout(tmp_path, args, kind, flag):
    (tmp_path / "kvfit.toml").write_text(BAD_MANIFEST)
    args = [str(tmp_path / "kvfit.toml") if a == "MANIFEST" else a for a in args]
    r = invoke(args)
    assert r.rc == 2, r
    doc = json.loads(r.out)
    validate(doc, "error")
    err = doc["error"]
    assert err["kind"] == kind and err["exit_code"] == 2
    assert err["message"] and err["message"] in " ".join(r.err.split()) or err["message"][:40] in r.err
    assert err.get("flag") == flag
    if kind == "ModelNotFound":
        assert "hf download" in err["hint"]


def test_without_json_an_error_leaves_stdout_empty():
    r = invoke(["check", "nonexistent/model-17", "--gpu", "RTX 3090"])
    assert r.rc == 2 and r.out == "" and "nonexistent/model-17" in r.err


def _entry(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CUDA_", "KVFIT_", "VLLM_"))}
    env.update({"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hf")})
    return subprocess.run([sys.executable, "-m", "kvfit", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp_path)


@pytest.mark.parametrize("args, kind", [
    (["check", "nonexistent/model", "--gpu", "RTX 3090", "--json"], "ModelNotFound"),      # issue 17's example
    (["check", ORPHEUS, "--gpu", "RTX 3090", "--json", "--max-model-len"], "BadInput"),
])
def test_the_console_entry_point_prints_the_json_error(tmp_path, args, kind):
    """Through `python -m kvfit` (cli/main.py main), as a program runs it."""
    p = _entry(args, tmp_path)
    assert p.returncode == 2, p.stderr
    doc = json.loads(p.stdout)
    validate(doc, "error")
    assert doc["error"]["kind"] == kind and "kvfit:" in p.stderr


def test_an_internal_error_with_json_is_a_json_error(monkeypatch, capsys):
    """A kvfit bug under --json: still one JSON object on stdout (kind InternalError), exit 2, no traceback."""
    from kvfit.cli import commands
    from kvfit.cli import main as M

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(commands, "models", boom)
    with pytest.raises(SystemExit) as ei:
        M.main(["models", "--json"])
    assert ei.value.code == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    validate(doc, "error")
    assert doc["error"]["kind"] == "InternalError" and "simulated bug" in doc["error"]["message"]
    assert "Traceback" not in out + err and "internal error" in err


def test_json_error_redacts_tokens(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_17")
    r = invoke(["check", "hf_secret_token_17/model", "--gpu", "RTX 3090", "--json"])
    assert r.rc == 2 and "hf_secret_token_17" not in r.out and "***" in r.out
