"""A Hub lookup keeps the parameter counts (safetensors metadata) in kvfit's cache, so a later offline
run of the same model is exact instead of estimated.

The Hub is the local stand-in of tests/fuzz/hub_fake.py (HF_ENDPOINT): real huggingface_hub requests,
no network. get_safetensors_metadata asks for model.safetensors (HEAD, then a ranged GET of its
header); the stand-in serves a header only, which is all kvfit ever reads.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from fuzz.hub_fake import COMMIT, FakeHub  # noqa: E402

from kvfit.sources import paramcache  # noqa: E402
from kvfit.sources.safetensors import vllm_skips  # noqa: E402

LLAMA_TEXT = (ROOT / "tests" / "data" / "fuzz_seeds" / "meta-llama__Llama-3.1-8B-Instruct.json").read_text()

# A header with the shapes of three Llama-3.1-8B tensors, and one of an extra decoder layer 32 (the
# config has 32 layers, 0-31: an MTP-style layer vLLM does not load).
TENSORS = {
    "model.embed_tokens.weight": ("BF16", [128256, 4096]),
    "model.layers.0.self_attn.q_proj.weight": ("BF16", [4096, 4096]),
    "model.layers.0.input_layernorm.weight": ("F32", [4096]),
    "model.layers.32.mlp.up_proj.weight": ("BF16", [14336, 4096]),
}
# what vLLM loads: 128256 x 4096 + 4096 x 4096 = 542,113,792 BF16, 4,096 F32 (layer 32 left out)
EXPECTED = {"BF16": 128256 * 4096 + 4096 * 4096, "F32": 4096}


def safetensors_header(tensors: dict) -> bytes:
    header, off = {}, 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        size = n * (4 if dtype == "F32" else 2)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + size]}
        off += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw


def env_for(tmp: Path, **extra: str) -> dict:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("HF_", "HUGGINGFACE_", "CUDA_", "KVFIT_", "XDG_", "VLLM_"))}
    e.update(HOME=str(tmp / "home"), HF_HUB_CACHE=str(tmp / "hf-cache"), COLUMNS="200",
             PYTHONDONTWRITEBYTECODE="1")
    e.update(extra)
    return e


def check_json(env: dict, cwd: Path) -> dict:
    p = subprocess.run([sys.executable, "-m", "kvfit", "check", "acme/tiny-llama", "--gpu", "H100",
                        "--max-model-len", "8192", "--vllm-version", "0.32.0", "--json"],
                       capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    assert "Traceback" not in p.stderr
    return json.loads(p.stdout)


def test_hub_lookup_caches_counts_and_offline_run_is_exact(tmp_path):
    (tmp_path / "home").mkdir()
    files = {"config.json": LLAMA_TEXT, "model.safetensors": safetensors_header(TENSORS)}
    before = {p for p in tmp_path.rglob("*")}
    with FakeHub(files) as hub:
        online = check_json(env_for(tmp_path, HF_ENDPOINT=hub.url), tmp_path)
    # it wrote into the HF cache (config.json) and kvfit's own cache, nowhere else; no weights were fetched
    written = {p.relative_to(tmp_path).as_posix() for p in set(tmp_path.rglob("*")) - before if p.is_file()}
    assert written and all(w.startswith(("hf-cache/", "home/.cache/kvfit/params/")) for w in written), written
    assert not any(w.endswith(".safetensors") for w in written)
    assert not any(r["method"] == "GET" and "model.safetensors" in r["path"] and "range" not in r["headers"]
                   for r in hub.requests)
    assert online["model"]["source"] == "hub"
    assert online["memory"]["weights_estimated"] is False
    assert online["memory"]["weights_source"] == "Hub safetensors metadata"
    # the counts went to $HOME/.cache/kvfit/params/<org>--<name>/<commit>.json (no XDG_CACHE_HOME set)
    cached = tmp_path / "home" / ".cache" / "kvfit" / "params" / "acme--tiny-llama" / f"{COMMIT}.json"
    assert json.loads(cached.read_text())["params"] == EXPECTED

    # offline, the HF cache holds config.json only: the counts come back from kvfit's cache, exactly
    offline = check_json(env_for(tmp_path, HF_HUB_OFFLINE="1"), tmp_path)
    assert offline["model"]["source"] == "hf-cache"
    assert offline["memory"]["weights_estimated"] is False
    assert offline["memory"]["weights_source"] == "Hub safetensors metadata (cached by kvfit)"
    assert offline["memory"]["weights_bytes"] == online["memory"]["weights_bytes"]

    # without that cache (another XDG_CACHE_HOME) the same offline run can only estimate
    other = check_json(env_for(tmp_path, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp_path / "elsewhere")), tmp_path)
    assert other["memory"]["weights_estimated"] is True
    assert other["memory"]["weights_source"].startswith("estimated from the architecture in config.json")


def test_cache_honours_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    f = paramcache.store("acme/m", "a" * 40, {"BF16": 10, "F8_E4M3": 20})
    assert f == tmp_path / "xdg" / "kvfit" / "params" / "acme--m" / ("a" * 40 + ".json")
    inv = paramcache.load("acme/m", "a" * 40)
    assert inv is not None and inv.params_by_dtype == {"BF16": 10, "F8_E4M3": 20} and not inv.estimated
    assert paramcache.load("acme/m", "b" * 40) is None


def test_cache_ignores_odd_files_and_names(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    d = tmp_path / "xdg" / "kvfit" / "params" / "acme--m"
    d.mkdir(parents=True)
    for commit, text in (("c1", "{not json"), ("c2", '{"params": {"BF16": -5}}'), ("c3", '{"params": []}'),
                         ("c4", '{"params": {"BF16": true}}'), ("c5", "[1, 2]")):
        (d / f"{commit}.json").write_text(text)
        assert paramcache.load("acme/m", commit) is None
    # names that could leave the cache directory are refused, never written
    assert paramcache.store("../evil", "x", {"BF16": 1}) is None
    assert paramcache.store("acme/m", "../../x", {"BF16": 1}) is None
    assert paramcache.load("acme/m", "..") is None


def test_vllm_skips_mtp_layers_and_a_tied_head():
    # deepseek_v2.py skips the MTP layer (layers.61 of a 61-layer model); qwen3.py skips lm_head.weight
    # when the embeddings are tied
    deepseek = vllm_skips({"num_hidden_layers": 61, "tie_word_embeddings": False})
    assert deepseek("model.layers.61.eh_proj.weight") and not deepseek("model.layers.60.mlp.gate.weight")
    assert not deepseek("lm_head.weight")
    qwen3 = vllm_skips({"num_hidden_layers": 28, "tie_word_embeddings": True})
    assert qwen3("lm_head.weight") and not qwen3("model.embed_tokens.weight")
    # multimodal wrappers: the language model's layers under model.language_model; towers untouched
    vl = vllm_skips({"text_config": {"num_hidden_layers": 2}, "vision_config": {"depth": 32}})
    assert vl("model.language_model.layers.2.mlp.up_proj.weight")
    assert not vl("model.visual.blocks.31.attn.qkv.weight")
    assert vllm_skips({"num_hidden_layers": 2})("mtp.layers.0.mlp.up_proj.weight")
