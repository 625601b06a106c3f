"""`python -m kvfit.bench accuracy` runs and reads the calibration copies in tests/data.

The only V1 record with a GPU total, gt-046, is the log memory/overhead.py's V1 constants were fitted on:
reproducing it is a fit check (does the code still compute what was fitted?), not a validation, and the
benchmark labels it so."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from kvfit.bench import accuracy

DATA = Path(__file__).resolve().parents[1] / "data" / "calibration"


def test_calibration_copies_are_in_the_repository():
    ids = [json.loads(x)["obs_id"] for x in (DATA / "observations.jsonl").read_text().splitlines() if x.strip()]
    assert len(ids) == 39 and "gt-021" in ids and "gt-046" in ids
    spec = [json.loads(x) for x in (DATA / "spec_8_3.jsonl").read_text().splitlines() if x.strip()]
    assert {r["obs_id"] for r in spec} == {"spec-8.3-1", "spec-8.3-3", "spec-8.3-4", "spec-8.3-5", "spec-8.3-6"}
    first = set(json.loads((DATA / "observations.jsonl").read_text().splitlines()[0]))
    for r in spec:                                   # the same schema (plus duplicate_of where it applies)
        assert first <= set(r) | {"max_num_seqs", "enable_prefix_caching"}, set(first) - set(r)


def test_fit_check_v1_constants_reproduce_their_fit_record_gt_046():
    """Fit check, not validation: gt-046 is the record the V1 terms were fitted on (accuracy.FIT_RECORDS)."""
    scored, skipped, implied, assumed = accuracy.run_records(accuracy.load_records(DATA), DATA)
    v1 = [r for r in scored if r.engine == "V1"]
    assert [r.obs_id for r in v1] == ["gt-046"]       # the only V1 log naming its GPU total
    assert all(r.fit for r in v1) and set(accuracy.FIT_RECORDS) == {"gt-046"}
    errs = [abs(r.error_pct) for r in v1]
    assert statistics.median(errs) <= 1.0 and max(errs) <= 3.0
    assert v1[0].reported == 460_496                 # "GPU KV cache size: 460,496 tokens"
    # the spec's copy of the same log is not counted twice
    assert any(r.obs_id == "spec-8.3-1" and "gt-046" in r.reason for r in skipped)


def test_v0_records_are_reported_with_their_own_figures():
    scored, skipped, implied, assumed = accuracy.run_records(accuracy.load_records(DATA), DATA)
    v0 = {r.obs_id: r for r in scored if r.engine == "V0"}
    assert {"gt-001", "gt-039", "gt-041", "gt-047"} <= set(v0)
    assert v0["gt-047"].reported == 107_984          # "# GPU blocks: 6749" x 16
    # their models left the bundled catalog (no real copy of Qwen3-4B, Qwen2.5-1.5B-Instruct, Qwen2.5-0.5B-Instruct
    # or DeepSeek-V2-Lite config.json was found), so the records are listed, not scored
    why = {r.obs_id: r.reason for r in skipped}
    for oid in ("gt-029", "gt-031", "gt-033", "gt-037"):
        assert oid not in v0 and why[oid] == "model not known to kvfit", (oid, why.get(oid))
    orpheus = [r for r in assumed if r.obs_id == "gt-021"][0]
    assert orpheus.reported == 126_208 and abs(orpheus.error_pct) < 3


def test_module_runs_and_imports_no_ml_stack():
    code = ("import sys, runpy; sys.argv = ['kvfit.bench', 'accuracy']; "
            "from kvfit.bench.__main__ import main; rc = main(['accuracy']); "
            "bad = [m for m in ('torch', 'vllm', 'transformers') if m in sys.modules]; "
            "assert not bad, bad; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "### V1:" in r.stdout and "### V0:" in r.stdout and "median |error|" in r.stdout
    # gt-046 only in the fit section, labelled "fit", never in the V1 validation figure
    assert "| gt-046 |" not in r.stdout and r.stdout.count("| gt-046 (fit) |") == 1
    v1_line = next(ln for ln in r.stdout.splitlines() if ln.startswith("### V1:"))
    assert v1_line.startswith("### V1: no records") and "gt-046, the fit record" in v1_line
    fit_at = r.stdout.index("### Fit check, not validation")
    assert fit_at < r.stdout.index("| gt-046 (fit) |")
