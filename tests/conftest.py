"""Session-wide: what the engine suites found out about this host, in pytest's terminal summary.

tests/engine/conftest.py probes once per session whether vLLM's build can generate here
(engine_oracle.run_generation_probe) and which CPU paths its engine cases ran on; the notes go to a file
named by $KVFIT_PROBE_FILE, set here in the controlling process (pytest-xdist workers inherit it), and are
printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import tempfile

PROBE_FILE_ENV = "KVFIT_PROBE_FILE"


def pytest_configure(config):
    if hasattr(config, "workerinput"):       # a pytest-xdist worker: the controller chose the file
        return
    fd, path = tempfile.mkstemp(prefix="kvfit-engine-notes-", suffix=".json")
    os.close(fd)
    os.environ[PROBE_FILE_ENV] = path
    config._kvfit_notes_file = path


def pytest_unconfigure(config):
    path = getattr(config, "_kvfit_notes_file", None)
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    path = getattr(config, "_kvfit_notes_file", None)
    try:
        notes = json.loads(open(path).read()) if path and os.path.getsize(path) else {}
    except (OSError, ValueError):
        notes = {}
    if not notes:
        return
    tr = terminalreporter
    tr.write_sep("-", "vLLM engine on this host (tests/engine)")
    probe = notes.get("probe")
    if probe:
        if probe.get("can_generate"):
            tr.write_line(f"generation probe: vLLM CAN generate here ({probe['reason']}, {probe['seconds']} s)")
        else:
            tr.write_line(f"generation probe: vLLM CANNOT generate here: {probe['reason']}")
            tr.write_line("  the smoke tests assert kvfit's diagnosis of that death instead of generated tokens; "
                          "every KV number is still compared with the engine")
    paths = notes.get("cpu_paths")
    if paths:
        tr.write_line(f"CPU paths the engine cases ran on: {paths}")
