"""The bundled catalog's processor files (sources/data/models/*.json `processor`): every multimodal entry says
whether a real copy of the repository's processor files was found and where; a bundled copy is byte-for-byte
the file at the recorded repository, commit and git blob (tests/data/models/<folder>/ keeps the bytes, and
their git blob id is recomputed here); none is written from memory."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from kvfit.memory.encoder import family_of
from kvfit.sources.catalog import entries, processors_of
from kvfit.sources.processor import pick

DATA = Path(__file__).resolve().parents[1] / "data" / "models"
ENTRIES = entries()
MULTIMODAL = [e for e in ENTRIES if family_of(e["config"]) is not None]


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_the_multimodal_entries_are_the_three_known():
    assert sorted(e["id"] for e in MULTIMODAL) == ["Qwen/Qwen2.5-VL-7B-Instruct", "google/gemma-3-4b-it",
                                                   "google/medgemma-27b-it"]


@pytest.mark.parametrize("e", MULTIMODAL, ids=[e["id"] for e in MULTIMODAL])
def test_each_multimodal_entry_records_its_processor_files_or_their_absence(e):
    assert "processor" in e and e["processor_provenance"]
    assert not re.search(r"(?i)reconstructed|written from memory|from knowledge", e["processor_provenance"]
                         .replace("none is written from memory", ""))
    if e["processor"] is None:
        assert e["processor_source"] is None
        assert "No real copy" in e["processor_provenance"]
        pf = processors_of(e)
        assert not pf.found and e["id"] in pf.missing
        return
    src = e["processor_source"]
    assert re.fullmatch(r"[\w.-]+/[\w.-]+", src["repo"]) and re.fullmatch(r"[0-9a-f]{40}", src["commit"])
    folder = DATA / e["id"].replace("/", "__")
    assert set(src["files"]) == set(e["processor"])
    for name, obj in e["processor"].items():
        raw = (folder / name).read_bytes()
        assert json.loads(raw) == obj
        assert git_blob_id(raw) == src["files"][name]["blob"]


def test_text_only_entries_carry_no_processor_files():
    for e in ENTRIES:
        if family_of(e["config"]) is None:
            assert "processor" not in e, e["id"]


def test_medgemma_processor_files_as_transformers_picks_them():
    """processor_config.json has no nested image_processor, so the image processor is preprocessor_config.json;
    no video file, so the video processor falls back to it too."""
    e = next(x for x in MULTIMODAL if x["id"] == "google/medgemma-27b-it")
    procs = pick(processors_of(e))
    assert procs.image == procs.video == e["processor"]["preprocessor_config.json"]
    assert procs.image["image_processor_type"] == "Gemma3ImageProcessor" and procs.image["size"] == {
        "height": 896, "width": 896}
