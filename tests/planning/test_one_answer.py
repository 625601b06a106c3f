"""One launch, one answer (issue 11 item 8): generated launches over the bundled models, the catalog's GPUs,
kvfit's flags and goals, each answered through every path a launch can take:

  the report, --json, --format serve and one other form, --svg, the same launch pasted after `--` as a
  `vllm serve` line, a manifest entry, and (for one launch in eight) a `kvfit sweep` point,

must give the same exit code, the same verdict (the report's headline, the JSON's verdict.fits, the SVG's
headline, the manifest's ok) and the same recommended command; and that command, fed back into `kvfit check`
with the same goals, must fit. KVFIT_ONE_ANSWER_SCALE scales the number of launches (default: 4 x 500).

The planner is a pure function of its inputs, so within one launch its answer is remembered across the paths
(keyed by everything it reads: model, GPU, Settings, release, goals): a path whose request builder made
different inputs misses the memory and is planned afresh, and would then show up as a different answer.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvfit import launch as L
from kvfit.arch.normalize import normalize
from kvfit.errors import KvfitError
from kvfit.gpu.catalog import catalog
from kvfit.sources.catalog import entries

from kvfit_harness import invoke

SCALE = float(os.environ.get("KVFIT_ONE_ANSWER_SCALE", "1"))
N = max(1, int(500 * SCALE))


def _bundled() -> list[tuple[str, int, int, bool]]:
    """(id, derived max length, attention heads, unquantized) of every bundled model kvfit models."""
    out = []
    for e in entries():
        try:
            a = normalize(e["config"], hf_quant_config=e.get("hf_quant_config"))
        except KvfitError:
            continue
        out.append((e["id"], a.derived_max_len, a.num_attention_heads, not a.quantization))
    return sorted(out)


MODELS = _bundled()
GPUS = sorted(e["name"] for e in catalog())
FORMS = [f for f in L.FORMS if f != "serve"]


@st.composite
def launches(draw):
    model, top, heads, unquantized = draw(st.sampled_from(MODELS))
    flags: list[str] = []
    if draw(st.booleans()):
        flags += ["--max-model-len", str(draw(st.sampled_from([1024, 4096, 8192, 32768, top, top + 1])))]
    if draw(st.booleans()):
        flags += ["--gpu-memory-utilization", str(draw(st.sampled_from([0.5, 0.8, 0.9, 0.92, 0.95, 0.98])))]
    tp = draw(st.sampled_from([1, 1, 2, 4]))
    if tp > 1 and heads % tp == 0:
        flags += ["--tensor-parallel-size", str(tp)]
    if draw(st.integers(0, 3)) == 0:
        flags += ["--kv-cache-dtype", "fp8"]
    if draw(st.integers(0, 3)) == 0:
        flags += ["--max-num-seqs", str(draw(st.sampled_from([8, 64, 256])))]
    if draw(st.integers(0, 5)) == 0:
        flags += ["--enforce-eager"]
    if unquantized and draw(st.integers(0, 5)) == 0:
        flags += ["--quantization", "fp8"]
    if draw(st.integers(0, 7)) == 0:
        flags += ["--no-enable-prefix-caching"]
    goals: list[str] = []
    if draw(st.integers(0, 2)) == 0:
        goals += ["--context", str(draw(st.sampled_from([2048, 8192, 32768])))]
    if draw(st.integers(0, 2)) == 0:
        goals += ["--concurrency", str(draw(st.sampled_from([1, 4, 16])))]
    if draw(st.integers(0, 5)) == 0:
        goals += ["--max-vram", draw(st.sampled_from(["9GB", "20GiB", "60GiB"]))]
    if draw(st.integers(0, 5)) == 0:
        goals += ["--headroom", draw(st.sampled_from(["0", "1GiB", "5%"]))]
    return model, draw(st.sampled_from(GPUS)), flags, goals, draw(st.sampled_from(FORMS)), draw(st.integers(0, 7))


@pytest.fixture
def remembered_plans(monkeypatch):
    """The planner's answer remembered across the paths of one launch (see the module docstring)."""
    import kvfit.app.check as check

    real = check.plan
    memo: dict = {}

    def plan(model, gpu, s, profile, goals, **kw):
        key = (model.id, model.source, model.detail, gpu, s, profile, goals, kw.get("gpu_count"))
        if key not in memo:
            memo[key] = real(model, gpu, s, profile, goals, **kw)
        return memo[key]

    monkeypatch.setattr(check, "plan", plan)
    return memo


def flat(text: str) -> str:
    return " ".join(text.split())


def meaning(argv: list[str]) -> tuple:
    """What a `vllm serve` command means to vLLM: its model and its flag values (order aside)."""
    v = L.read_values(L.parse_argv(argv))
    return v.model, v.values


def one_launch(case, tmp: Path) -> None:
    model, gpu, flags, goals, form, nth = case
    base = ["check", model, "--gpu", gpu, *flags, *goals]
    js = invoke([*base, "--json"])
    rc = js.rc
    report = invoke(base)
    assert report.rc == rc, (case, report, js)
    if rc == 2:                  # refused (vLLM would refuse the launch, or a goal cannot be): refused on every path
        for extra in (["--format", "serve"], ["--svg", str(tmp / "r.svg")]):
            assert invoke([*base, *extra]).rc == 2, (case, extra)
        pasted = invoke(["check", "--gpu", gpu, *goals, "--json", "--", "vllm", "serve", model, *flags])
        assert pasted.rc == 2, (case, pasted)
        return
    d = js.json
    fits = d["verdict"]["fits"]
    assert fits is (rc == 0), case
    head = flat(report.out)
    assert head.startswith("✔") is fits, (case, report.out[:400])
    rec = d["recommendation"]
    cmd = rec["command"] if rec else None
    if cmd:                               # the report prints the command as plain lines, outside any box
        text = L.render(L.parse(cmd["text"]))
        assert flat(text.replace("\\\n", " ")) in flat(report.out.replace("\\\n", " ")), (case, report.out)
        assert "│" not in report.out
    # --format serve: only the launch on stdout, the same command; the same exit code
    fs = invoke([*base, "--format", "serve"])
    assert fs.rc == rc, (case, fs)
    if cmd:
        assert shlex.split(fs.out) == cmd["argv"], (case, fs.out, cmd)           # the same path: the same text
        # another form: the same flags read back
        fo = invoke([*base, "--format", form])
        assert fo.rc == rc, (case, form, fo)
        if form not in ("k8s", "helm"):
            back = L.read_values(L.parse(fo.out, form)).values
            serve = L.read_values(L.parse(fs.out)).values
            back.pop("entrypoint", None)
            assert back == serve, (case, form, fo.out)
    else:
        assert fs.out == "" and fs.rc == rc
    # --svg: the same verdict
    svg = tmp / "r.svg"
    sv = invoke([*base, "--svg", str(svg)])
    assert sv.rc == rc and (("✔ " in svg.read_text()) is fits), case
    # the same launch pasted after `--` as a vllm serve line
    pasted = invoke(["check", "--gpu", gpu, *goals, "--json", "--", "vllm", "serve", model, *flags])
    assert pasted.rc == rc, (case, pasted)
    p = pasted.json
    assert p["verdict"] == d["verdict"], case
    prec = p["recommendation"]
    if cmd:
        assert prec and prec["command"], (case, prec, rec)
        assert meaning(prec["command"]["argv"]) == meaning(cmd["argv"]), (case, prec["command"], cmd)
    else:
        assert not prec or not prec["command"], (case, prec)
    # a manifest entry
    entry = {"name": "x", "model": model, "gpu": gpu}
    for words in (flags, goals):
        i = 0
        while i < len(words):
            key = words[i][2:].replace("-", "_")
            if key == "no_enable_prefix_caching":
                entry["enable_prefix_caching"] = False
                i += 1
            elif i + 1 < len(words) and not words[i + 1].startswith("--"):
                v = words[i + 1]
                entry[key] = json.loads(v) if v.replace(".", "", 1).isdigit() else v
                i += 2
            else:
                entry[key] = True
                i += 1
    toml = "[[check]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entry.items())
    (tmp / "kvfit.toml").write_text(toml)
    man = invoke(["check", "--manifest", str(tmp / "kvfit.toml"), "--json"])
    assert man.rc == rc, (case, toml, man)
    r0 = man.json["results"][0]
    assert r0["ok"] is fits, (case, toml)
    if not fits and cmd:
        assert meaning(shlex.split(r0["fix"].replace("\\\n", " "))) == meaning(cmd["argv"]), (case, r0["fix"], cmd)
    # a sweep point (one launch in eight): vLLM's numbers at the launch's own utilization and length
    if nth == 0 and not goals and "--kv-cache-memory-bytes" not in flags:
        util = d["settings"]["gpu_memory_utilization"]
        sw = invoke(["sweep", model, "--gpu", gpu, *flags, "--utilizations", f"{util:g}", "--json"])
        assert sw.rc == 0, (case, sw)
        row = sw.json["utilization"][0]
        assert row["fits"] is d["verdict"]["launch_fits"], (case, row)
        assert row["kv_cache_tokens"] == d["capacity"]["kv_cache_tokens"], (case, row)
    # the recommended command, fed back with the same goals, fits
    if cmd and not rec["needs"]:
        again = invoke(["check", "--gpu", gpu, *goals, "--json", "--", *cmd["argv"]])
        assert again.rc == 0 and again.json["verdict"]["fits"], (case, cmd["argv"], again)


SETTINGS = dict(max_examples=N, deadline=None, derandomize=os.environ.get("KVFIT_FUZZ_RANDOM") is None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])


@pytest.fixture
def hermetic_tmp(tmp_path_factory):
    return tmp_path_factory.mktemp("one-answer")


# four tests of N launches each, so pytest-xdist can spread them over the workers

@settings(**SETTINGS)
@given(case=launches())
def test_one_answer_a(case, remembered_plans, hermetic_tmp):
    remembered_plans.clear()
    one_launch(case, hermetic_tmp)


@settings(**{**SETTINGS, "database": None})
@given(case=launches().filter(lambda c: c[3]))         # with goals
def test_one_answer_goals(case, remembered_plans, hermetic_tmp):
    remembered_plans.clear()
    one_launch(case, hermetic_tmp)


@settings(**{**SETTINGS, "database": None})
@given(case=launches().filter(lambda c: not c[3]))     # without goals: vLLM's own question
def test_one_answer_no_goals(case, remembered_plans, hermetic_tmp):
    remembered_plans.clear()
    one_launch(case, hermetic_tmp)


@settings(**{**SETTINGS, "database": None})
@given(case=launches().filter(lambda c: "--tensor-parallel-size" in c[2] or "--quantization" in c[2]))
def test_one_answer_parallel_and_quantized(case, remembered_plans, hermetic_tmp):
    remembered_plans.clear()
    one_launch(case, hermetic_tmp)


def test_counts_at_least_2000_launches_per_run():
    assert 4 * N >= 2000 or SCALE < 1, N
