"""JUnit XML for the CI gate: one <testcase> per manifest entry and GPU, a <failure> when it does not meet
its requirements. The format CI systems (GitHub Actions reporters, GitLab, Jenkins) read."""

from __future__ import annotations

import xml.etree.ElementTree as ET


def junit_xml(data: dict) -> str:
    """`data`: the manifest report (manifest.run_entries' dict)."""
    results = data["results"]
    failures = sum(1 for r in results if not r["ok"])
    total_time = sum(r.get("time", 0.0) for r in results)
    suites = ET.Element("testsuites", name="kvfit", tests=str(len(results)), failures=str(failures), errors="0",
                        time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=f"kvfit {data['manifest']}", tests=str(len(results)),
                          failures=str(failures), errors="0", skipped="0", time=f"{total_time:.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"kvfit.{r['name']}", name=f"{r['name']} on {r['gpu']}",
                             time=f"{r.get('time', 0.0):.3f}", file=str(data["manifest"]), line=str(r.get("line") or 0))
        if not r["ok"]:
            fail = ET.SubElement(case, "failure", message=r["message"] or "does not meet its requirements",
                                 type="DoesNotFit" if not r.get("fits") else "GoalNotMet")
            details = [f"model: {r['model']}", f"gpu: {r['gpu']}", *(f"- {u}" for u in r.get("unmet", []))]
            if r.get("fix"):
                details += ["", "kvfit recommends:", r["fix"]]
            fail.text = "\n".join(details)
        out = ET.SubElement(case, "system-out")
        out.text = (f"max_model_len {r.get('max_model_len')}, gpu_memory_utilization {r.get('gpu_memory_utilization')}, "
                    f"KV tokens {r.get('kv_cache_tokens')}, sequences resident {r.get('sequences_resident')}, "
                    f"vLLM takes {r.get('footprint_bytes')} bytes per GPU")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
