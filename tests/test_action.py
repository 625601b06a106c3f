"""The GitHub Action (action.yml) and the workflow that uses it (examples/github-actions/kvfit.yml), read with
PyYAML: the action installs kvfit from its own checkout, never PyPI's unrelated `kvfit`; every input is used,
only through the environment (no `${{ inputs.* }}` inside a script); the workflow passes inputs the action has.
tests/planning/test_examples.py runs the action's kvfit step as the workflow configures it."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((REPO / "action.yml").read_text())
WORKFLOW = yaml.safe_load((REPO / "examples" / "github-actions" / "kvfit.yml").read_text())
_EXPR = re.compile(r"\$\{\{\s*([^}]*?)\s*\}\}")


def _strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)
    elif isinstance(node, str):
        yield node


def test_a_composite_action_with_the_documented_inputs():
    assert ACTION["runs"]["using"] == "composite"
    assert ACTION["name"] and ACTION["description"]
    inputs = ACTION["inputs"]
    assert {"manifest", "junit", "svg", "python-version", "vllm-version"} <= set(inputs)
    assert inputs["manifest"]["required"] is True
    for name, spec in inputs.items():
        assert spec.get("description"), name
    for step in ACTION["runs"]["steps"]:
        assert "uses" in step or step.get("shell") == "bash", step     # composite run steps need a shell


def test_every_input_is_used_and_every_reference_exists():
    used = {m.group(1).split(".", 1)[1] for s in _strings(ACTION["runs"]) for m in _EXPR.finditer(s)
            if m.group(1).startswith("inputs.")}
    used |= {m.group(1) for s in _strings(ACTION["runs"]) for m in re.finditer(r"inputs\.([\w-]+)", s)}
    assert used == set(ACTION["inputs"])


def test_inputs_reach_scripts_only_through_the_environment():
    for step in ACTION["runs"]["steps"]:
        for m in _EXPR.finditer(step.get("run", "")):
            assert not m.group(1).startswith("inputs."), f"{m.group(0)} pasted into a script: use env"


def test_it_installs_this_checkout_not_pypi_kvfit():
    runs = [s["run"] for s in ACTION["runs"]["steps"] if "run" in s]
    installs = [ln for r in runs for ln in r.splitlines() if re.search(r"\bpip\b.*\binstall\b", ln)]
    assert installs and all("${{ github.action_path }}" in ln for ln in installs), installs
    for ln in installs:
        words = [w.strip("\"'") for w in ln.split()]
        assert not any(re.fullmatch(r"kvfit(\[[\w,-]*\])?", w) for w in words), ln
    # the kvfit step runs the command the install put on PATH
    assert any(re.search(r"^\s*kvfit\b", ln, re.M) for ln in runs)
    assert any("GITHUB_PATH" in r for r in runs)


def test_the_example_workflow_uses_the_action_with_a_manifest_that_exists():
    steps = [s for job in WORKFLOW["jobs"].values() for s in job["steps"]]
    (uses,) = [s for s in steps if s.get("uses", "").startswith("OWNER/REPO@")]
    assert re.fullmatch(r"OWNER/REPO@\S+", uses["uses"])        # a placeholder to fill in, said in a comment
    assert set(uses["with"]) <= set(ACTION["inputs"])
    assert (REPO / uses["with"]["manifest"]).is_file()
    assert not any(re.search(r"\binstall\b[^\n]*(?<![\w/.-])kvfit(?![\w.-])", s.get("run", "")) for s in steps)
    assert steps.index(uses) > next(i for i, s in enumerate(steps) if s.get("uses", "").startswith("actions/checkout"))
