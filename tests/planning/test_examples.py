"""examples/ run as written: every example launch parses (and the Orpheus deployment says the same thing in
every form), the manifest passes through the installed CLI, and the kvfit commands in the GitHub Actions
workflow and the pre-commit hooks run as they are written there."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from kvfit import launch as L

from .conftest import EXAMPLES, ORPHEUS, REPO

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


ACTION = REPO / "action.yml"
_INPUT = re.compile(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}")


def _action_kvfit_steps(step: dict) -> list[tuple[str, dict]]:
    """This repository's action (action.yml) used by a workflow step: its shell steps that run kvfit, each
    with the environment GitHub gives it for the step's `with:` (the inputs' defaults filled in)."""
    action = L.yaml_load(ACTION.read_text())
    inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
    unknown = set(step.get("with", {})) - set(inputs)
    assert not unknown, f"the workflow passes inputs the action does not have: {unknown}"
    inputs.update({k: str(v) for k, v in step.get("with", {}).items()})
    out = []
    for s in action["runs"]["steps"]:
        if "run" in s and _kvfit_words(s["run"]):
            env = {k: _INPUT.sub(lambda m: inputs[m.group(1)], str(v)) for k, v in s.get("env", {}).items()}
            out.append((s["run"], env))
    return out


def _run_step(script: str, env: dict, cwd, tmp_path):
    """A workflow / action shell step under bash, as GitHub runs it (GITHUB_ACTIONS=true), with this
    checkout's kvfit first on PATH (the offline, no-GPU environment of kvfit_proc)."""
    shim = tmp_path / "bin"
    shim.mkdir(exist_ok=True)
    (shim / "kvfit").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kvfit "$@"\n')
    (shim / "kvfit").chmod(0o755)
    e = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "VLLM_", "KVFIT_", "GITHUB_"))}
    e.update({"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "GITHUB_ACTIONS": "true",
              "GITHUB_ACTION_PATH": str(REPO), "PATH": f"{shim}{os.pathsep}{e.get('PATH', '')}",
              "PYTHONPATH": os.pathsep.join([str(REPO / "tests" / "check" / "fake_nvml"),
                                             e.get("PYTHONPATH", "")]).rstrip(os.pathsep),
              "KVFIT_FAKE_NVML": json.dumps({"fail": "NVML Shared Library Not Found"})})
    e.update(env)
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True, env=e,
                          cwd=cwd, timeout=300)


def test_github_actions_workflow_runs_as_written(tmp_path):
    wf = L.yaml_load((EXAMPLES / "github-actions" / "kvfit.yml").read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    repo = _copy_examples(tmp_path)
    ran = 0
    for s in steps:
        if "run" in s and _kvfit_words(s["run"]):
            scripts = [(s["run"], {})]
        elif s.get("uses", "").split("@")[0] == "OWNER/REPO":        # this repository's action
            scripts = _action_kvfit_steps(s)
            assert scripts, "the action runs kvfit"
        else:
            continue
        for script, env in scripts:
            r = _run_step(script, env, repo, tmp_path)
            assert r.returncode == 0, (script, env, r.stdout[-3000:], r.stderr[-3000:])
            assert "::error" not in r.stdout + r.stderr
            ran += 1
    assert ran, "the workflow runs kvfit"
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


# --- examples/kubernetes: a Deployment, a StatefulSet (TP 2), production-stack Helm values -----------------

KUBE_FILES = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))


def _documented_check(path) -> list[str]:
    """The `kvfit check ...` command a file's header comment documents (with its continuation lines)."""
    lines, on = [], False
    for ln in path.read_text().splitlines():
        body = ln.lstrip("#").strip()
        if body.startswith("kvfit check"):
            on = True
        if on:
            lines.append(body.rstrip("\\").strip())
            if not body.endswith("\\"):
                break
    words = shlex.split(" ".join(lines))
    assert words[:2] == ["kvfit", "check"] and str(path.relative_to(EXAMPLES.parent)) in words, words
    return words[2:]


@pytest.mark.parametrize("path", KUBE_FILES, ids=lambda p: p.name)
def test_each_kubernetes_example_parses_and_round_trips(path):
    text = path.read_text()
    a = L.parse(text, filename=path.name)
    assert a.form == ("helm" if "values" in path.name else "k8s")
    assert L.render(a) == text
    v = L.read_values(a).values
    assert a.gpu_count == v.get("tensor_parallel_size", 1) * v.get("pipeline_parallel_size", 1)   # the pods ask for it


@pytest.mark.parametrize("path", KUBE_FILES, ids=lambda p: p.name)
def test_each_kubernetes_example_meets_its_documented_goals(cli, path, monkeypatch):
    monkeypatch.chdir(EXAMPLES.parent)
    words = _documented_check(path)
    r = cli("check", *words, "--json")
    assert r.rc == 0, r
    d = r.json
    assert d["verdict"]["fits"] and d["recommendation"]["as_given"]
    form = L.parse(path.read_text(), filename=path.name).form
    r = cli("check", *words, "--format", form)
    assert r.rc == 0, r
    assert r.out == path.read_text()               # met as given: the file comes back byte for byte


def test_orpheus_serve_script_written_as_a_deployment_meets_the_seed_goals(cli, tmp_path):
    r = cli("check", "--gpu", "RTX 4090", "--max-vram", "9GB", "--context", "8192", "--concurrency", "8",
            "--launch", str(EXAMPLES / "orpheus" / "serve.sh"), "--format", "k8s")
    assert r.rc == 0, r
    deploy = tmp_path / "orpheus.yaml"
    deploy.write_text(r.out)
    assert L.parse(r.out).form == "k8s"
    r = cli("check", "--gpu", "RTX 4090", "--max-vram", "9GB", "--context", "8192", "--concurrency", "8",
            "--launch", str(deploy), "--json")
    assert r.rc == 0 and r.json["verdict"]["fits"], r
