"""The JSON contract: one JSON Schema (draft 2020-12) per --json output, shipped with kvfit and printed by
`kvfit schema [COMMAND]`.

Each file is one version of one document: its "$id" is urn:kvfit:schema:<version> and "x-kvfit-version" the
version (kvfit.check/2, ...), the value of the document's own "schema" field where it has one. The schemas are
open: within a version fields are only added, never renamed or removed, and a program ignores the fields it
does not know. Changing a schema file means a new version (tests/test_schemas.py holds each version to the
hash it was released with).

Pure data: reading a file of the package, no other import.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

NAMES: tuple[str, ...] = ("check", "cluster", "sweep", "explain", "smoke", "manifest", "models", "gpus", "error")
"""The documents kvfit prints with --json, by the command that prints them (`error`: any command's error)."""


@lru_cache(maxsize=None)
def _text(name: str) -> str:
    if name not in NAMES:
        raise KeyError(f"no kvfit schema {name!r}; schemas: {', '.join(NAMES)}")
    return resources.files(__name__).joinpath(f"{name}.json").read_text(encoding="utf-8")


def version(name: str) -> str:
    """'kvfit.check/2' for 'check'."""
    return json.loads(_text(name))["x-kvfit-version"]


def load(name: str, *, bundled: bool = False) -> dict[str, Any]:
    """The schema of `name` (a fresh copy). bundled: with every schema it refers to by $id embedded under
    "$defs" (2020-12 bundling), so it validates on its own."""
    schema = json.loads(_text(name))
    if bundled:
        by_id = {json.loads(_text(n))["$id"]: n for n in NAMES}
        seen: set[str] = {schema["$id"]}
        todo = [schema]
        while todo:
            for target in list(_refs(todo.pop())):
                base = target.split("#", 1)[0]
                if base and base not in seen and base in by_id:
                    seen.add(base)
                    embedded = json.loads(_text(by_id[base]))
                    schema.setdefault("$defs", {})[by_id[base]] = embedded
                    todo.append(embedded)
    return copy.deepcopy(schema)


def _refs(node: Any):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


__all__ = ["NAMES", "load", "version"]
