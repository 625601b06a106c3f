"""Parsing and printing sizes and lengths the way vLLM's CLI reads them."""

from __future__ import annotations

import math
import re

from .errors import BadInput

GiB = 1 << 30
MiB = 1 << 20

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
    "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
}


def parse_size(text: str, what: str = "size") -> int:
    """'24GiB' -> 25769803776, '24GB' -> 24e9, '1000' -> 1000 bytes. Binary units need the 'i'."""
    m = _SIZE.match(str(text))
    if not m:
        raise BadInput(f"{what}: cannot read {text!r} as a size",
                       "Use bytes or a unit: 24GiB, 24GB, 512MiB, 1073741824.")
    number, raw_unit = m.group(1), m.group(2) or ""
    unit = raw_unit.lower()
    if unit not in _SIZE_UNITS:
        raise BadInput(f"{what}: unknown unit in {text!r}", "Units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB.")
    # A bare letter follows vLLM's human_readable_int: k/m/g/t decimal, K/M/G/T binary (4G = 4 GiB).
    factor = _HR_UNITS[raw_unit] if raw_unit in _HR_UNITS else _SIZE_UNITS[unit]
    value = float(number) * factor
    if not math.isfinite(value) or value <= 0:
        raise BadInput(f"{what}: {text!r} must be a positive size")
    return int(value)


# vLLM's utils/argparse_utils.py::human_readable_int: k/m/g/t decimal, K/M/G/T binary.
_HR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtKMGT]?)\s*$")
_HR_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
             "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_human_int(text: str, what: str) -> int:
    """vLLM's human_readable_int: '32k' = 32000, '32K' = 32768, '131072' = 131072."""
    m = _HR.match(str(text))
    if not m:
        raise BadInput(f"{what}: cannot read {text!r} as a whole number",
                       "vLLM accepts plain numbers and suffixes: 32k = 32000, 32K = 32768.")
    number, unit = m.group(1), m.group(2)
    if "." in number and unit == "":
        raise BadInput(f"{what}: {text!r} must be a whole number")
    if "." in number and unit.isupper():
        raise BadInput(f"{what}: decimals are not allowed with binary suffixes like {unit} (vLLM rejects {text!r})",
                       f"Did you mean {number}{unit.lower()}? (k/m/g/t are decimal, K/M/G/T binary.)")
    value = float(number) * _HR_UNITS[unit]
    if value != int(value):
        raise BadInput(f"{what}: {text!r} is not a whole number of tokens")
    return int(value)


def parse_max_model_len(text: str | None) -> int | None:
    """None (not given), -1 (auto-fit), or a positive length. 'auto' and '-1' both mean auto-fit."""
    if text is None:
        return None
    t = str(text).strip()
    if t.lower() == "auto" or t == "-1":
        return -1
    value = parse_human_int(t, "--max-model-len")
    if value <= 0:
        raise BadInput(f"--max-model-len must be positive, -1 or auto (got {text!r})")
    return value


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"
