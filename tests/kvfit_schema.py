"""Every JSON document the suite makes kvfit print is validated against the schema kvfit ships for it
(src/kvfit/schemas, `kvfit schema COMMAND`).

`check_output(argv, stdout)` is called by the runners the tests share: kvfit_harness.invoke (in process) and
the subprocess helpers (tests/check/_checkutil.Run, tests/planning/conftest.kvfit_proc, tests/fuzz/harness,
test_security, test_faults, the engine suites' helpers). When argv asks for JSON (`--json`, `--format json`)
and stdout parses as JSON, the document must validate against the schema of what it is: its own "schema"
field names it (kvfit.check/2, kvfit.sweep/2, kvfit.explain/1, kvfit.manifest/2); an error object
(`{"error": {...}}`) is kvfit.error/1; `models`, `gpus` and the smoke record (`smoke`, `check --smoke`) carry
no field and are known by their command. A JSON output none of these describe fails: every JSON output
kvfit prints has a schema.
"""

from __future__ import annotations

import json
from functools import lru_cache

VALIDATED: dict[str, int] = {}        # schema name -> documents validated this session (tests read it)


def wants_json(argv) -> bool:
    own = list(argv)
    if "--" in own:
        own = own[:own.index("--")]
    own = [str(a) for a in own]
    if "--json" in own or "--format=json" in own:
        return True
    return any(a == "--format" and b == "json" for a, b in zip(own, own[1:]))


def command_of(argv) -> str | None:
    for a in argv:
        a = str(a)
        if not a.startswith("-"):
            return a
    return None


@lru_cache(maxsize=None)
def registry():
    from referencing import Registry, Resource

    from kvfit import schemas

    return Registry().with_resources(
        (s["$id"], Resource.from_contents(s)) for s in (schemas.load(n) for n in schemas.NAMES))


@lru_cache(maxsize=None)
def validator(name: str):
    from jsonschema import Draft202012Validator

    from kvfit import schemas

    s = schemas.load(name)
    Draft202012Validator.check_schema(s)
    return Draft202012Validator(s, registry=registry())


def schema_name(doc, argv=()) -> str:
    """Which shipped schema describes `doc`, printed for `kvfit ARGV`."""
    from kvfit import schemas

    if isinstance(doc, dict) and set(doc) == {"error"}:
        return "error"
    if isinstance(doc, dict) and isinstance(doc.get("schema"), str):
        by_id = {schemas.version(n): n for n in schemas.NAMES}
        assert doc["schema"] in by_id, f"kvfit printed schema {doc['schema']!r}, which no shipped schema is"
        return by_id[doc["schema"]]
    cmd = command_of(argv)
    if cmd == "smoke" or (cmd == "check" and "--smoke" in [str(a) for a in argv]):
        return "smoke"
    if cmd in ("models", "gpus"):
        return cmd
    raise AssertionError(f"`kvfit {' '.join(map(str, argv))}` printed JSON that no shipped schema describes")


def validate(doc, name: str) -> None:
    errors = sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]]
        raise AssertionError(f"JSON output does not validate against the shipped schema {name!r} "
                             f"({len(errors)} errors):\n" + "\n".join(lines))
    VALIDATED[name] = VALIDATED.get(name, 0) + 1


def check_output(argv, stdout: str) -> None:
    """Validate stdout when `kvfit ARGV` asked for JSON and printed JSON (else nothing to check)."""
    if not wants_json(argv) or not stdout or not stdout.strip():
        return
    try:
        doc = json.loads(stdout)
    except ValueError:
        return          # not JSON (e.g. --help); the tests that expect JSON say so themselves
    validate(doc, schema_name(doc, argv))
