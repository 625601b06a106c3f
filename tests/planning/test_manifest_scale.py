"""Long manifests (issue 16): worker processes give the same answers in the same order as one process, a
refused entry still stops the run with exit 2, and progress is shown only on a terminal. (The time a
1,000-entry manifest takes is measured by `python -m kvfit.bench manifest`, never asserted in a test.)"""

from __future__ import annotations

import io

import pytest

from kvfit.app import manifest as M
from kvfit.bench.manifest import build, toml
from kvfit.errors import BadInput


def _strip(data: dict) -> dict:
    for r in data["results"]:
        r.pop("time")
    return data


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    entries = build(40, misfits=3)
    assert len(entries) == 40 and len({e["model"] for e in entries}) > 5
    f = tmp_path_factory.mktemp("m") / "kvfit.toml"
    f.write_text(toml(entries))
    return f


def test_workers_answer_as_one_process_does(generated, monkeypatch):
    monkeypatch.setenv("KVFIT_MANIFEST_WORKERS", "1")
    serial = _strip(M.run_entries(str(generated), offline=True))
    monkeypatch.setenv("KVFIT_MANIFEST_WORKERS", "2")
    parallel = _strip(M.run_entries(str(generated), offline=True))
    assert parallel == serial
    assert serial["failed"] > 0 and serial["passed"] > 0          # both paths of the planner ran


def test_a_refused_entry_stops_a_parallel_run_with_exit_2(tmp_path, monkeypatch):
    entries = build(30, misfits=0)
    entries[27]["tensor_parallel_size"] = 3                        # 3 divides no model's heads here
    f = tmp_path / "kvfit.toml"
    f.write_text(toml(entries))
    monkeypatch.setenv("KVFIT_MANIFEST_WORKERS", "2")
    with pytest.raises(BadInput) as e:
        M.run_entries(str(f), offline=True)
    assert e.value.exit_code == 2 and "check[28] 'e0027'" in e.value.message


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Console:
    def __init__(self, file):
        self.file = file


def test_progress_only_on_a_terminal():
    assert M._progress(_Console(io.StringIO())) is None
    tty = _Tty()
    show = M._progress(_Console(tty))
    show(1, 1000)
    show(1000, 1000)
    assert "kvfit: checked 1 of 1,000" in tty.getvalue() and tty.getvalue().endswith("\r\033[K")
    quiet = _Tty()
    M._progress(_Console(quiet))(5, 10)                            # a short manifest: nothing to wait for
    assert quiet.getvalue() == ""
