"""Security: kvfit reads model repositories as data, keeps HF_TOKEN for the Hub, stays off the network
unless the Hub must answer, and writes nothing but the HF cache and the files the user names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))     # the shared fakes in tests/fuzz (importlib mode)

from fuzz.harness import assert_contract, hermetic, run_direct, run_entry
from fuzz.hub_fake import FakeHub, closed_port_url

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "tests" / "data" / "fuzz_seeds"
LLAMA_TEXT = (SEEDS / "meta-llama__Llama-3.1-8B-Instruct.json").read_text()
TOKEN = "hf_kvfitTestSecret0123456789abcdefXYZ"
KVFIT_SCRIPT = Path(sys.executable).parent / "kvfit"

# A repository that needs trust_remote_code, shipping code that leaves a mark if anything imports it.
# Besides the auto_map modules, files named like modules kvfit imports (json, rich, typer...) would
# shadow them if the model directory were ever put on sys.path.
REMOTE_CONFIG = {
    "architectures": ["EvilForCausalLM"], "model_type": "evil_custom_llm",
    "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                 "AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"},
    "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16, "intermediate_size": 5632,
    "vocab_size": 32000, "max_position_embeddings": 4096, "torch_dtype": "bfloat16",
}
CODE_FILES = ["configuration_evil.py", "modeling_evil.py", "tokenization_evil.py", "__init__.py", "json.py",
              "rich.py", "typer.py", "kvfit.py", "huggingface_hub.py", "pynvml.py", "sitecustomize.py",
              "usercustomize.py", "safetensors.py", "transformers.py"]


def remote_code_repo(root: Path) -> tuple[Path, Path]:
    repo, marks = root / "evil-model", root / "marks"
    repo.mkdir()
    marks.mkdir()
    (repo / "config.json").write_text(json.dumps(REMOTE_CONFIG, indent=2))
    for name in CODE_FILES:
        (repo / name).write_text(f"open({str(marks / name)!r}, 'w').write('imported')\n"
                                 "raise SystemExit('model repository code ran')\n")
    return repo, marks


def clean_env(tmp_path: Path, **extra: str) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("HF_", "HUGGINGFACE_", "CUDA_", "KVFIT_", "XDG_", "VLLM_"))}
    e.update(HOME=str(home), TMPDIR=str(tmp_path / "tmp"), PYTHONDONTWRITEBYTECODE="1", COLUMNS="200")
    e.update(extra)
    return e


def kvfit(args: list[str], env: dict, cwd: Path, script: bool = False) -> subprocess.CompletedProcess:
    head = [str(KVFIT_SCRIPT)] if script else [sys.executable, "-m", "kvfit"]
    p = subprocess.run(head + args, capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    from kvfit_schema import check_output

    check_output(args, p.stdout)                      # any JSON it printed validates against the shipped schema
    return p


# --- no code from a model repository -----------------------------------------------------------------

@pytest.mark.parametrize("how", ["console-script-in-repo", "module-elsewhere"])
def test_remote_code_repository_is_read_as_data(tmp_path, how):
    """`kvfit check` on a repository whose code would mark the disk if imported.

    (`python -m kvfit` run *inside* such a directory is another matter: Python itself puts the current
    directory first on sys.path for -m, before kvfit runs. The `kvfit` command, or `python -P -m kvfit`,
    does not.)"""
    repo, marks = remote_code_repo(tmp_path)
    if how == "console-script-in-repo":
        if not KVFIT_SCRIPT.exists():
            from tests.engine.engine_oracle import in_ci

            if in_ci():                    # CI installs kvfit (pip install -e .): the script must be there
                pytest.fail(f"CI is set and there is no kvfit console script at {KVFIT_SCRIPT}", pytrace=False)
            pytest.skip("no kvfit console script next to this Python")
        cwd, script = repo, True           # the user runs kvfit from inside the downloaded repository
    else:
        cwd, script = tmp_path, False
    env = clean_env(tmp_path, HF_HUB_OFFLINE="1")
    for args in (["check", str(repo), "--gpu", "RTX 3090", "--json"], ["check", ".", "--gpu", "H100"],
                 ["check", str(repo / "config.json"), "--gpu-memory", "24GiB", "--max-model-len", "auto"]):
        if args[1] == "." and not script:
            args = ["check", str(repo), *args[2:]]
        p = kvfit(args, env, repo if args[1] == "." else cwd, script=script)
        assert p.returncode in (0, 1), p.stderr
        assert "model repository code ran" not in p.stdout + p.stderr
        if "--json" in args:
            inferred = json.loads(p.stdout)["model"]["inferred"]
            assert any("auto_map" in x and "ran none" in x for x in inferred), inferred
            assert any(x.startswith("KV heads = attention heads (16)") for x in inferred), inferred
            assert any(x.startswith("head size = hidden_size / num_attention_heads = 128") for x in inferred)
        else:
            assert "inferred: config.json has auto_map" in p.stdout
    assert sorted(os.listdir(marks)) == []


def test_remote_code_repository_in_process(tmp_path):
    """Through the typer app in this process: no module of the repository is ever imported."""
    repo, marks = remote_code_repo(tmp_path)
    with hermetic(tmp_path):
        before = set(sys.modules)
        o = run_direct(["check", str(repo), "--gpu", "H100", "--json"])
        assert_contract(o, json_out=True)
        new = set(sys.modules) - before
    assert not {m for m in new if m.split(".")[0] in ("configuration_evil", "modeling_evil", "tokenization_evil")}
    assert os.listdir(marks) == []
    assert json.loads(o.out)["model"]["model_type"] == "evil_custom_llm"


# --- HF_TOKEN goes to the Hub only -----------------------------------------------------------------------

def test_token_is_never_printed(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(LLAMA_TEXT)
    env = clean_env(tmp_path, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="1")
    runs = [["check", str(tmp_path / "model"), "--gpu", "H100", "--json"],
            ["check", str(tmp_path / "model"), "--gpu", "H100"],
            ["check", "Qwen/Qwen3-8B", "--gpu", "RTX 3090", "--json"],
            ["check", "someone/private-model", "--gpu", "H100"],                 # offline: not found
            ["check", "someone/private-model", "--gpu", "H100", "--json"],
            ["check", "Qwen/Qwen3-8B", "--gpu", "nope"],
            ["check", "Qwen/Qwen3-8B", "-tp", "x"],
            ["models", "--json"], ["gpus", "--json"]]
    for args in runs:
        p = kvfit(args, env, tmp_path)
        assert TOKEN not in p.stdout + p.stderr, args
        assert TOKEN[3:15] not in p.stdout + p.stderr, args


@pytest.mark.parametrize("mode", ["ok", "private"])
def test_token_goes_to_the_hub_and_nowhere_else(tmp_path, mode):
    """With the Hub answering (a local stand-in), the token travels in the Authorization header to the
    Hub endpoint, the only host contacted, and never appears in the output, --json included."""
    files = {"config.json": LLAMA_TEXT}
    with FakeHub(files, mode="ok" if mode == "ok" else "private", token=None) as hub:
        env = clean_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=hub.url)
        p = kvfit(["check", "someone/some-model", "--gpu", "H100", "--json"], env, tmp_path)
    out = p.stdout + p.stderr
    assert TOKEN not in out
    if mode == "ok":
        assert p.returncode in (0, 1), p.stderr
        assert json.loads(p.stdout)["model"]["source"] == "hub"
    else:
        assert p.returncode == 2 and "not found on the Hugging Face Hub" in p.stderr
    model_requests = [r for r in hub.requests if "/someone/some-model/" in r["path"]]
    assert model_requests, "the Hub was never asked"
    assert all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in model_requests)
    # (huggingface_hub also fetches its own registry from the Hub endpoint, without the token)
    assert all(r["headers"].get("authorization") in (None, f"Bearer {TOKEN}") for r in hub.requests)


def test_token_in_a_hub_error_is_redacted(tmp_path, monkeypatch):
    """An HTTP library error quoting the request headers (httpx does, for an illegal header value) must
    not carry the token to the terminal."""
    import huggingface_hub

    def leaky(*a, **k):
        raise ValueError(f"Illegal header value b'Bearer {TOKEN}'")

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", leaky)
    with hermetic(tmp_path) as (mp, guard):
        mp.delenv("HF_HUB_OFFLINE")
        mp.setenv("HF_TOKEN", TOKEN)
        for runner in (run_direct, run_entry):
            o = runner(["check", "someone/some-model", "--gpu", "H100"])
            assert_contract(o)
            assert o.code == 2 and "Illegal header value" in o.err
            assert TOKEN not in o.out + o.err


# --- the network only when the Hub must answer ---------------------------------------------------------

@pytest.fixture
def online(tmp_path, monkeypatch):
    """In-process, not offline, with every socket and huggingface_hub entry point recorded (and refused)."""
    import huggingface_hub

    with hermetic(tmp_path) as (mp, guard):
        mp.delenv("HF_HUB_OFFLINE")
        hub_calls = []
        for name in ("hf_hub_download", "get_hf_file_metadata", "get_safetensors_metadata", "model_info",
                     "snapshot_download"):
            def record(*a, _name=name, **k):
                hub_calls.append(_name)
                raise ConnectionError("the Hub is off in this test")
            monkeypatch.setattr(huggingface_hub, name, record)
        cache = tmp_path / "hf-cache"
        snap = cache / "models--kvfit-test--cached" / "snapshots" / ("c" * 40)
        snap.mkdir(parents=True)
        (snap / "config.json").write_text(LLAMA_TEXT)
        (snap.parent.parent / "refs").mkdir()
        (snap.parent.parent / "refs" / "main").write_text("c" * 40)
        local = tmp_path / "local-model"
        local.mkdir()
        (local / "config.json").write_text(LLAMA_TEXT)
        yield {"mp": mp, "guard": guard, "hub": hub_calls, "local": str(local)}


@pytest.mark.parametrize("model,source", [("local", "local"), ("kvfit-test/cached", "hf-cache"),
                                          ("meta-llama/Llama-3.1-8B-Instruct", "catalog"),
                                          ("META-LLAMA/llama-3.1-8b-instruct", "catalog")])
def test_no_network_for_local_cached_or_bundled_models(online, model, source):
    model = online["local"] if model == "local" else model
    for runner in (run_direct, run_entry):
        o = runner(["check", model, "--gpu", "H100", "--json"])
        assert_contract(o, json_out=True)
        assert json.loads(o.out)["model"]["source"] == source
    assert online["guard"].calls == [] and online["hub"] == []


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE=true", "HF_HUB_OFFLINE=YES"])
def test_offline_is_honoured(online, how):
    args = ["check", "someone/not-anywhere", "--gpu", "H100"]
    if how == "--offline":
        args.append("--offline")
    else:
        online["mp"].setenv("HF_HUB_OFFLINE", how.split("=", 1)[1])
    o = run_entry(args)
    assert_contract(o)
    assert o.code == 2 and ("--offline" if how == "--offline" else "HF_HUB_OFFLINE") in o.err
    o = run_entry(["check", "Qwen/Qwen3-8B", "--revision", "v2", "--gpu", "H100", "--json", *args[4:]])
    assert_contract(o, json_out=True)
    assert json.loads(o.out)["model"]["source"] == "catalog"          # the bundled fallback, offline
    assert online["guard"].calls == [] and online["hub"] == []


def test_the_network_guard_sees_a_hub_lookup(online):
    """The control: a model that is nowhere local does reach for the Hub (so the tests above can fail)."""
    o = run_entry(["check", "someone/not-anywhere", "--gpu", "H100"])
    assert_contract(o)
    assert o.code == 2 and online["hub"], o


def test_malformed_ids_never_reach_the_network(online):
    for ref in ("a/b c", "org/na..me", "x" * 97 + "/y", "org/-bad"):
        o = run_entry(["check", ref, "--gpu", "H100"])
        assert_contract(o)
        assert o.code == 2
    assert online["guard"].calls == [] and online["hub"] == []


# --- nothing written but the HF cache and the files named --------------------------------------------------

def tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return out


def test_check_writes_nothing(tmp_path):
    """HOME, cwd and TMPDIR in a scratch tree; every offline command leaves it exactly as it was."""
    work = tmp_path / "work"
    work.mkdir()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(LLAMA_TEXT)
    env = clean_env(tmp_path)
    snap = Path(env["HOME"]) / ".cache" / "huggingface" / "hub" / "models--kvfit-test--cached" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(LLAMA_TEXT)
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("c" * 40)
    before = tree(tmp_path)
    runs = [["check", str(model), "--gpu", "H100", "--json"], ["check", str(model), "--gpu", "H100"],
            ["check", "kvfit-test/cached", "--gpu", "RTX 3090"], ["check", "Qwen/Qwen3-8B", "--json"],
            ["check", "Qwen/Qwen3-8B", "--gpu", "A100", "--max-model-len", "auto"],
            ["check", "someone/nowhere", "--offline"], ["check", str(model / "missing.json")],
            ["check", "Qwen/Qwen3-8B", "--gpu", "H100", "-tp", "3"], ["models"], ["gpus", "--json"]]
    for args in runs:
        p = kvfit(args, env, work)
        assert p.returncode in (0, 1, 2), (args, p.stderr)
        if "kvfit-test/cached" in args:
            assert "hf-cache" in p.stdout, p.stdout          # the cache was found where HOME puts it
    assert tree(tmp_path) == before


def test_the_named_file_is_the_only_one_written(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = clean_env(tmp_path, HF_HUB_OFFLINE="1")
    before = tree(tmp_path)
    p = kvfit(["check", "Qwen/Qwen3-8B", "--gpu", "H100", "--svg", "report.svg"], env, work)
    assert p.returncode in (0, 1), p.stderr
    after = tree(tmp_path)
    assert set(after) - set(before) == {"work/report.svg"}
    assert {k: v for k, v in after.items() if k != "work/report.svg"} == before


def test_hub_download_writes_only_into_the_hf_cache(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    with FakeHub({"config.json": LLAMA_TEXT}) as hub:
        env = clean_env(tmp_path, HF_ENDPOINT=hub.url)
        before = tree(tmp_path)
        p = kvfit(["check", "someone/some-model", "--gpu", "H100", "--json"], env, work)
    assert p.returncode in (0, 1), p.stderr
    assert json.loads(p.stdout)["model"]["source"] == "hub"
    new = set(tree(tmp_path)) - set(before)
    hf_home = str(Path("home") / ".cache" / "huggingface")
    assert new and all(n.startswith(hf_home) or hf_home.startswith(n) for n in new), sorted(new)
    assert any(n.endswith("config.json") for n in new)
    # and the next run reads the cache, without the Hub
    p = kvfit(["check", "someone/some-model", "--gpu", "H100", "--json"],
              clean_env(tmp_path, HF_ENDPOINT=closed_port_url()), work)
    assert p.returncode in (0, 1) and json.loads(p.stdout)["model"]["source"] == "hf-cache", p.stderr
