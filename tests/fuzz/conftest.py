"""Reports how many generated inputs the fuzz suite ran, and fails a full run of it (every test of
test_fuzz_config.py and test_fuzz_cli.py selected, KVFIT_FUZZ_SCALE unset or >= 1) that fed kvfit fewer
than 10,000."""

from __future__ import annotations

import os

from .harness import COUNTS

FLOOR = 10_000
GENERATORS = ("test_fuzz_config.py", "test_fuzz_cli.py")
_collected: dict[str, int] = {}
_selected: dict[str, int] = {}


def _name(node) -> str | None:
    path = str(getattr(node, "fspath", "") or getattr(node, "path", ""))
    base = os.path.basename(path)
    return base if base in GENERATORS and os.path.dirname(path) == os.path.dirname(__file__) else None


def pytest_collectreport(report):
    if report.passed:
        for item in report.result:
            name = _name(item)
            if name and hasattr(item, "runtest"):
                _collected[name] = _collected.get(name, 0) + 1


def pytest_collection_finish(session):
    for item in session.items:
        name = _name(item)
        if name:
            _selected[name] = _selected.get(name, 0) + 1


def _full_run() -> bool:
    return (float(os.environ.get("KVFIT_FUZZ_SCALE", "1")) >= 1
            and all(_collected.get(g) and _selected.get(g) == _collected[g] for g in GENERATORS))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    total = COUNTS["config"] + COUNTS["cli"]
    if total:
        terminalreporter.write_line(
            f"kvfit fuzz: {total:,} generated inputs ({COUNTS['config']:,} to the config reader, "
            f"{COUNTS['cli']:,} command lines)")


def pytest_sessionfinish(session, exitstatus):
    total = COUNTS["config"] + COUNTS["cli"]
    if session.config.option.collectonly:
        return
    if _full_run() and exitstatus == 0 and total < FLOOR:
        print(f"\nkvfit fuzz: only {total:,} generated inputs ran; the suite promises at least {FLOOR:,}")
        session.exitstatus = 1
