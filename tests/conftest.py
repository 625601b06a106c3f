"""Session-wide: how pytest-xdist shares the work, and what the engine suites found out about this host.

Scheduling: with `-n N` (scripts/test), every test under tests/engine/ runs in ONE worker (test_config_reader.py
in another): the engine batch and the generation probe are session fixtures, and engines run one at a time
(the machine-wide lock), so splitting them over workers would only run the batch twice and leave workers
waiting on the lock. Every other test is scheduled on its own, as with `--dist load`. (pytest-xdist's
`xdist_group` marks are not used: --dist loadgroup rewrites item._nodeid, which pytest 9.2 no longer reads.)

tests/engine/conftest.py probes once per session whether vLLM's build can generate here
(engine_oracle.run_generation_probe) and which CPU paths its engine cases ran on; the notes go to a file
named by $KVFIT_PROBE_FILE, set here in the controlling process (pytest-xdist workers inherit it), and are
printed at the end of the run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))      # tests import kvfit_harness (the in-process command line)

from kvfit_harness import invoke  # noqa: E402

PROBE_FILE_ENV = "KVFIT_PROBE_FILE"
ENGINE_DIR = "tests/engine/"


def work_group(nodeid: str) -> str:
    """The xdist work unit of a test: the engine tests together, vLLM's config reader together, others alone."""
    if nodeid.startswith(ENGINE_DIR + "test_config_reader.py"):
        return "vllm-config"
    if nodeid.startswith(ENGINE_DIR):
        return "engine"
    return nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's hook for a custom scheduler: its load-scope scheduler with work_group() as the scope."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None                              # an explicit --dist loadfile/loadscope/each is kept
    from xdist.scheduler import LoadScopeScheduling

    class EngineGroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_group(nodeid)

    return EngineGroupScheduling(config, log)


def pytest_configure(config):
    if hasattr(config, "workerinput"):       # a pytest-xdist worker: the controller chose the file
        # Workers start with COLUMNS=80 / LINES=24 in their environment; kvfit's rich consoles take their width
        # from COLUMNS when created, so restore the controller's terminal environment (tests that need a width
        # set COLUMNS themselves, as in a serial run).
        for k in ("COLUMNS", "LINES"):
            v = os.environ.get(f"KVFIT_PYTEST_{k}")
            if v == "":
                os.environ.pop(k, None)
            elif v is not None:
                os.environ[k] = v
        return
    for k in ("COLUMNS", "LINES"):
        os.environ[f"KVFIT_PYTEST_{k}"] = os.environ.get(k, "")
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


@pytest.fixture
def kvfit_invoke():
    return invoke
