"""examples/ run as written: every example launch parses (and the Orpheus deployment says the same thing in
every form), the manifest passes through the installed CLI, and the kvfit commands in the GitHub Actions
workflow and the pre-commit hooks run as they are written there."""

from __future__ import annotations

import shlex
import shutil
import xml.etree.ElementTree as ET

import pytest

from kvfit import launch as L

from .conftest import EXAMPLES, ORPHEUS

ORPHEUS_FILES = sorted((EXAMPLES / "orpheus").iterdir())


@pytest.mark.parametrize("path", ORPHEUS_FILES, ids=lambda p: p.name)
def test_each_example_launch_parses_and_round_trips(path):
    text = path.read_text()
    a = L.parse(text, filename=path.name)
    assert a.model == ORPHEUS
    assert L.parse(L.render(a), a.form) == a
    assert L.render(a) == text                       # unchanged: written back exactly as it was
    changed = L.updated(a, {"max-num-seqs": 4})
    again = L.parse(L.render(changed), a.form)
    assert again == changed and again.get("max-num-seqs") in (4, "4")


def test_the_orpheus_deployment_is_the_same_in_every_form():
    seen = {}
    for path in ORPHEUS_FILES:
        v = L.read_values(L.parse(path.read_text(), filename=path.name))
        seen[path.name] = (v.model, v.values)
    values = set(map(repr, seen.values()))
    assert len(values) == 1, seen
    model, settings = next(iter(seen.values()))
    # the seed case: FP8 weights at gpu_memory_utilization 0.35
    assert settings["quantization"] == "fp8" and settings["gpu_memory_utilization"] == 0.35
    assert settings["max_model_len"] == 8192


def test_manifest_passes_through_the_installed_cli(kvfit_proc):
    r = kvfit_proc("check", "--manifest", str(EXAMPLES / "kvfit.toml"), "--json")
    assert r.rc == 0, r
    d = r.json
    assert d["ok"] and d["failed"] == 0
    names = {x["name"] for x in d["results"]}
    assert {"orpheus-serve", "orpheus-docker", "orpheus-python", "orpheus-config", "orpheus-env"} <= names
    for x in d["results"]:
        if x["name"].startswith("orpheus"):
            assert x["footprint_bytes"] <= 9 * 10**9 and x["sequences_resident"] >= 8


def _copy_examples(tmp_path):
    dst = tmp_path / "repo"
    shutil.copytree(EXAMPLES, dst / "examples")
    return dst


def _kvfit_words(command: str) -> list[list[str]]:
    """The kvfit invocations in a shell step (one per line), without the `kvfit` itself."""
    out = []
    for line in command.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "kvfit":
            out.append(words[1:])
    return out


def test_github_actions_workflow_runs_as_written(kvfit_proc, tmp_path):
    wf = L.yaml_load((EXAMPLES / "github-actions" / "kvfit.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = [w for s in steps if "run" in s for w in _kvfit_words(s["run"])]
    assert runs, "the workflow runs kvfit"
    repo = _copy_examples(tmp_path)
    for words in runs:
        r = kvfit_proc(*words, cwd=repo, env={"GITHUB_ACTIONS": "true"})
        assert r.rc == 0, (words, r)
        assert "::error" not in r.out
    uploaded = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    for path in uploaded[0]["with"]["path"].split():
        assert (repo / path).is_file(), path                           # the report files the job keeps
    assert ET.parse(repo / "kvfit-junit.xml").getroot().get("failures") == "0"


def test_pre_commit_hooks_run_as_written(kvfit_proc, tmp_path):
    hooks = L.yaml_load((EXAMPLES / "pre-commit" / ".pre-commit-hooks.yaml").read_text())
    config = L.yaml_load((EXAMPLES / "pre-commit" / ".pre-commit-config.yaml").read_text())
    repo = _copy_examples(tmp_path)
    # the hook a repository offers: entry + args, run where kvfit.toml sits
    (hook,) = hooks
    words = shlex.split(hook["entry"]) + list(hook.get("args", []))
    assert words[0] == "kvfit" and hook["pass_filenames"] is False
    r = kvfit_proc(*words[1:], cwd=repo / "examples")
    assert r.rc == 0, r
    # the local hook a deploying repository configures
    local = config["repos"][0]["hooks"][0]
    words = shlex.split(local["entry"])
    r = kvfit_proc(*words[1:], cwd=repo)
    assert r.rc == 0, r


@pytest.mark.parametrize("path", [p for p in ORPHEUS_FILES], ids=lambda p: p.name)
def test_each_orpheus_form_meets_the_seed_goals_via_check(cli, path):
    r = cli("check", "--gpu", "RTX 4090", "--max-vram", "9GB", "--context", "8192", "--concurrency", "8",
            "--launch", str(path), "--json")
    assert r.rc == 0, r
    d = r.json
    assert d["verdict"]["fits"] and d["recommendation"]["as_given"]
