"""The CI gate: `kvfit check --manifest kvfit.toml`: exit codes, the errors that name the entry and field,
JSON, JUnit XML, GitHub annotations and the step summary."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from .conftest import ORPHEUS

PASSING = f'''
[defaults]
vllm_version = "0.32.0"

[[check]]
name = "tts"
model = "{ORPHEUS}"
gpu = "RTX 4090"
max_model_len = 8192
context = 8192
concurrency = 2

[[check]]
name = "chat"
launch = "vllm serve meta-llama/Llama-3.1-8B-Instruct --max-model-len 32768"
gpus = ["A100 80GB", "H100"]
'''

FAILING = PASSING + f'''
[[check]]
name = "too-long"
model = "{ORPHEUS}"
gpu = "RTX 3060"
max_model_len = 131072
'''


def write(tmp_path, text, name="kvfit.toml"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_all_pass_exit_0(cli, tmp_path):
    f = write(tmp_path, PASSING)
    r = cli("check", "--manifest", str(f))
    assert r.rc == 0, r
    assert "3 passed, 0 failed" in r.out
    d = cli("check", "--manifest", str(f), "--json").json
    assert d["schema"] == "kvfit.manifest/2" and d["ok"] and d["passed"] == 3
    assert [(x["name"], x["gpu"]) for x in d["results"]] == [
        ("tts", "NVIDIA GeForce RTX 4090"), ("chat", "NVIDIA A100-SXM4-80GB"), ("chat", "NVIDIA H100 80GB HBM3")]
    tts = d["results"][0]
    assert tts["goals"]["context"] == 8192 and tts["sequences_resident"] >= 2
    assert d["results"][1]["goals"] is None            # no goals: the launch must fit


def test_a_failure_exits_1_with_the_fix(cli, tmp_path):
    f = write(tmp_path, FAILING)
    r = cli("check", "--manifest", str(f), "--json")
    assert r.rc == 1
    d = r.json
    bad = [x for x in d["results"] if not x["ok"]]
    assert [x["name"] for x in bad] == ["too-long"]
    assert bad[0]["fix"] and bad[0]["fix"].startswith("vllm serve")
    lines = FAILING.splitlines()
    assert lines[bad[0]["line"] - 1] == "[[check]]" and lines[bad[0]["line"]] == 'name = "too-long"'
    human = cli("check", "--manifest", str(f))
    assert human.rc == 1 and "FAIL" in human.out and "kvfit recommends" in human.out


def test_junit_xml(cli, tmp_path):
    f = write(tmp_path, FAILING)
    j = tmp_path / "junit.xml"
    r = cli("check", "--manifest", str(f), "--junit", str(j))
    assert r.rc == 1
    root = ET.parse(j).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "4" and root.get("failures") == "1"
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 4
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1 and failed[0].get("classname") == "kvfit.too-long"
    assert "kvfit recommends" in failed[0].find("failure").text


def test_github_annotations_and_step_summary(cli, tmp_path, monkeypatch, capfd):
    f = write(tmp_path, FAILING)
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    from kvfit.app.manifest import run_entries
    from kvfit.render.ci import github_annotations

    data = run_entries(str(f))
    ann = github_annotations(data)
    assert len(ann) == 1
    line = FAILING.splitlines().index('name = "too-long"')          # the [[check]] header is the line before
    assert ann[0].startswith(f"::error file={f},line={line},title=kvfit too-long on NVIDIA GeForce RTX 3060::")
    assert "\n" not in ann[0] and "%0A" in ann[0]
    r = cli("check", "--manifest", str(f))
    assert r.rc == 1
    assert "| too-long | NVIDIA GeForce RTX 3060 | ❌ fail |" in summary.read_text()


def test_svg(cli, tmp_path):
    f = write(tmp_path, PASSING)
    s = tmp_path / "gate.svg"
    assert cli("check", "--manifest", str(f), "--svg", str(s)).rc == 0
    root = ET.fromstring(s.read_text())
    assert "3 passed" in " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))


def test_launch_file_relative_to_the_manifest(cli, tmp_path):
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "serve.sh").write_text(f"#!/bin/sh\nexec vllm serve {ORPHEUS} --max-model-len 4096\n")
    f = write(tmp_path, '[[check]]\nname = "s"\nlaunch_file = "deploy/serve.sh"\ngpu = "RTX 4090"\n')
    d = cli("check", "--manifest", str(f), "--json").json
    assert d["ok"] and d["results"][0]["max_model_len"] == 4096


@pytest.mark.parametrize("body,entry,field", [
    ('[[check]]\nname = "a"\nmodel = "x/y"\ngpu = "A10"\ncontxt = 5\n', "'a'", "contxt"),
    ('[[check]]\nname = "a"\nmodel = 5\ngpu = "A10"\n', "'a'", "model"),
    ('[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\n', "'a'", "gpu"),
    ('[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "Voodoo 5"\n', "'a'", "gpu"),
    ('[[check]]\nname = "a"\nmodel = "nobody/no-such-model"\ngpu = "A10"\n', "'a'", "model"),
    ('[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "A10"\ngpu_memory_utilization = 1.5\n',
     "'a'", "gpu_memory_utilization"),
    ('[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "A10"\nconcurrency = true\n', "'a'",
     "concurrency"),
    ('[[check]]\nname = "a"\nlaunch = "vllm serve x/y --max-model-len"\ngpu = "A10"\n', "'a'", "launch"),
    ('[[check]]\nname = "a"\nlaunch_file = "missing.sh"\ngpu = "A10"\n', "'a'", "launch_file"),
    ('[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "A10"\n'
     '[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "A10"\n', "check[2] 'a'", "name"),
    ('[[check]]\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpu = "A10"\n', "check[1]", "name"),
    ('[[check]]\nname = "a"\ngpu = "A10"\n', "'a'", "'model'"),
    ('[[check]]\nname = "a"\nmodel = "canopylabs/orpheus-3b-0.1-ft"\ngpus = []\n', "'a'", "gpus"),
])
def test_bad_manifest_exits_2_naming_entry_and_field(cli, tmp_path, body, entry, field):
    f = write(tmp_path, body)
    r = cli("check", "--manifest", str(f))
    assert r.rc == 2, r
    msg = " ".join(r.err.split())
    assert entry in msg and field in msg, msg
    assert "Traceback" not in msg


@pytest.mark.parametrize("text,words", [
    ("[[check]\nname = 'a'\n", "not valid TOML"), ("", "no [[check]] entries"), ("title = 'x'\n", "unknown top-level"),
    ("[defaults]\nbogus = 1\n[[check]]\nname='a'\nmodel='x/y'\ngpu='A10'\n", "[defaults]: unknown field 'bogus'"),
])
def test_bad_manifest_structure(cli, tmp_path, text, words):
    f = write(tmp_path, text)
    r = cli("check", "--manifest", str(f))
    assert r.rc == 2 and words in " ".join(r.err.split()), r


def test_missing_manifest_file(cli, tmp_path):
    r = cli("check", "--manifest", str(tmp_path / "nope.toml"))
    assert r.rc == 2 and "cannot read" in r.err


def test_manifest_with_a_model_is_refused(cli, tmp_path):
    f = write(tmp_path, PASSING)
    assert cli("check", ORPHEUS, "--manifest", str(f)).rc == 2
