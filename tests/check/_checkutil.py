"""Helpers for the `kvfit check` tests (imported by conftest.py and the test modules)."""


from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE / "data"
FAKE_NVML = HERE / "fake_nvml"
ORPHEUS = "canopylabs/orpheus-3b-0.1-ft"
GiB = 1 << 30

# vLLM's CPU ground-truth model (spec Appendix A, llama_a): runs A, C and D of spec §7.3.
LLAMA_A = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
           "intermediate_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64,
           "num_hidden_layers": 3, "vocab_size": 1024, "max_position_embeddings": 4096,
           "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
           "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2}


def fixture_dir(name: str) -> Path:
    """A real config.json copied from shared/models (see its source.json)."""
    return DATA / name


def fixture_config(name: str) -> dict:
    return json.loads((DATA / name / "config.json").read_text())


def write_config(directory: Path, config: dict | str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = config if isinstance(config, str) else json.dumps(config)
    (directory / "config.json").write_text(text)
    return directory


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict | None = None) -> Path:
    """A real safetensors file: 8-byte little-endian header length, JSON header, zero-filled data."""
    size = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
            "F8_E4M3": 1, "BOOL": 1}
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        nbytes = n * size[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)          # the format pads the header to 8 bytes with spaces
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.write(b"\0" * offset)
    return path


class Run:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc, self.out, self.err = proc.returncode, proc.stdout, proc.stderr
        from kvfit_schema import check_output

        check_output(proc.args[3:], proc.stdout)      # [python, -m, kvfit, ARGS...]: JSON validates (schema)

    @property
    def json(self) -> dict:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<rc={self.rc}\nstdout:\n{self.out[-3000:]}\nstderr:\n{self.err[-3000:]}>"


class InProc:
    def __init__(self, result):
        self.rc = result.exit_code
        self.out = result.stdout
        self.err = result.stderr
        self.exception = result.exception

    @property
    def json(self) -> dict:
        return json.loads(self.out)

    def __repr__(self) -> str:
        return f"<rc={self.rc} exception={self.exception!r}\nstdout:\n{self.out[-3000:]}\nstderr:\n{self.err[-3000:]}>"


def no_traceback(r) -> None:
    assert "Traceback" not in r.err and "Traceback" not in r.out, r


def flat(text: str) -> str:
    """Text with rich's line wrapping undone."""
    return " ".join(text.split())
