"""A launch read through kvfit's flag table, and Settings written back into a launch.

Reading: every argument of a launch is one of
  * the model (positional, --model, MODEL_NAME, `model=`),
  * a vLLM flag kvfit models (kvfit/flags.py): parsed by that flag's parser, exactly as `kvfit check --flag`,
  * --config (a vLLM YAML file, merged by the caller as vLLM merges it),
  * a vLLM flag that changes GPU memory in a way kvfit does not model (grammar.NOT_MODELLED): refused,
  * any other flag vLLM knows (--port, --served-model-name, ...): it does not touch GPU memory; kept as
    written and rendered back untouched,
  * anything else (a flag vLLM does not know, a stray word, a non-literal Python value of a flag kvfit
    models): refused, because vLLM would refuse it too or kvfit cannot know what it does.

Writing: `apply` sets the flags whose value differs between two Settings, keeping the user's spelling,
order, comments and every other argument; `compose` writes a fresh `vllm serve MODEL ...`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import LaunchError, NotModelled
from ..flags import BY_DEST, BY_VLLM, changed_flags, vllm_values
from ..settings import Settings
from ..units import parse_human_int
from .grammar import NOT_MODELLED, NOT_MODELLED_DEFAULTS, is_known
from .model import POSITIONAL, Arg, Expr, Launch
from .write import updated


@dataclass(frozen=True)
class LaunchValues:
    """What a launch sets, as typed flag values (flag dest -> value), ready for the request builder."""

    model: str | None
    values: dict[str, Any]
    config: str | None                    # a --config file the launch names
    entrypoint: str                       # "serve" | "llm"
    unresolved: dict[str, str] = field(default_factory=dict)   # flag dest (or "model") -> a non-literal's source

    def require_resolved(self, given: set[str]) -> None:
        """Refuse a non-literal Python value of a flag kvfit models unless kvfit's own flags give it."""
        for dest, src in self.unresolved.items():
            if dest in given:
                continue
            flag = "MODEL (before `--`)" if dest == "model" else BY_DEST[dest].long
            raise LaunchError(f"launch: {dest}={src} is not a literal; kvfit reads only literal values",
                              f"Give its value with {flag}.")


def _shown(a: Arg) -> str:
    if a.spelling and a.spelling != POSITIONAL and not a.spelling.startswith("#"):
        return a.spelling
    return "--" + a.key


# 0.32's --spec-method / --spec-model / --spec-tokens fill --speculative-config (engine/arg_utils.py
# create_speculative_config); a key given both ways is an error there.
_SPEC_PARTS = {"spec-method": "method", "spec-model": "model", "spec-tokens": "num_speculative_tokens"}


def read(launch: Launch) -> LaunchValues:
    """The launch as kvfit's flag table reads it. Later occurrences win (argparse)."""
    raw: dict[str, tuple[Arg, Any]] = {}
    spec_parts: dict[str, Any] = {}
    dotted: dict[str, tuple[Arg, dict]] = {}
    unresolved: dict[str, str] = {}
    model = config = None
    for a in launch.args:
        if a.key == "":
            raise LaunchError(f"launch: unexpected argument {a.value!r}",
                              "vLLM takes one positional argument, the model; it would refuse this launch.")
        if a.key in ("*", "**"):
            raise LaunchError(f"launch: {a.key}{a.value.src if isinstance(a.value, Expr) else a.value}: kvfit cannot "
                              "see which arguments it holds", "Write the arguments out as literals.")
        if a.key == "model":
            if isinstance(a.value, Expr):
                unresolved["model"] = a.value.src
                continue
            if not isinstance(a.value, str):
                raise LaunchError(f"launch: the model must be a string (got {_value_text(a.value)})")
            model = a.value
            continue
        if a.key == "config":
            if not isinstance(a.value, str):
                raise LaunchError(f"launch: --config must be a file name (got {a.value!r})")
            config = a.value
            continue
        base = a.key.split(".", 1)[0]
        if "." in a.key and base in BY_VLLM:
            # utils/argparse_utils.py FlexibleArgumentParser: `--flag.k1.k2 v` builds {"k1": {"k2": v}} (v read
            # as JSON, else a human-readable int, else text), merged over the flag's other dotted keys and
            # passed after every other argument, so it replaces a JSON value given whole.
            if isinstance(a.value, Expr):
                unresolved[BY_VLLM[base].dest] = a.value.src
                continue
            node = dotted.setdefault(base, (a, {}))[1]
            *path, last = a.key.split(".")[1:]
            for k in path:
                if not isinstance(node.get(k), dict):
                    node[k] = {}
                node = node[k]
            node[last] = _dotted_value(a.value)
            continue
        if base in _SPEC_PARTS:
            spec_parts[_SPEC_PARTS[base]] = a.value
            continue
        if a.key in BY_VLLM:
            if isinstance(a.value, Expr):
                unresolved[BY_VLLM[a.key].dest] = a.value.src
                raw.pop(a.key, None)
                continue
            raw[a.key] = (a, a.value)
            unresolved.pop(BY_VLLM[a.key].dest, None)
            continue
        if base in NOT_MODELLED:
            if str(a.value) in NOT_MODELLED_DEFAULTS.get(base, ()) or a.value is False:
                continue
            raise NotModelled(f"launch: {_shown(a)} changes GPU memory ({NOT_MODELLED[base]}) in a way kvfit does "
                              "not model yet", "Check the launch without it; kvfit will not guess its effect.",
                              flag=base)
        if not is_known(a.key):
            raise LaunchError(f"launch: {_shown(a)} is not a vLLM flag (vLLM would refuse it: unrecognized "
                              "arguments)", "Check the spelling; `vllm serve --help` lists the flags.")
    raw.update(dotted)
    values: dict[str, Any] = {}
    for key, (a, v) in raw.items():
        f = BY_VLLM[key]
        if v is None:
            continue
        if f.switch and not isinstance(v, bool):
            v = _switch_text(a, v)
        values[f.dest] = f.parse(v)
    if spec_parts:
        spec = dict(values.get("speculative_config") or {})
        for k, v in spec_parts.items():
            if k in spec and values.get("speculative_config"):
                raise LaunchError(f"launch: --spec-{k.split('_')[-1]} and --speculative-config['{k}'] are mutually "
                                  "exclusive (vLLM refuses both)")
            spec[k] = int(v) if k == "num_speculative_tokens" and str(v).isdigit() else v
        values["speculative_config"] = BY_VLLM["speculative-config"].parse(spec)
    entrypoint = "llm" if launch.form == "python" and launch.program[:1] == ("LLM",) else "serve"
    return LaunchValues(model, values, config, entrypoint, unresolved)


def _dotted_value(v: Any) -> Any:
    if not isinstance(v, str):
        return v
    try:
        return json.loads(v)
    except ValueError:
        pass
    try:
        return parse_human_int(v, "value")
    except Exception:
        return v


def _switch_text(a: Arg, v: Any) -> Any:
    if isinstance(v, str):
        return v
    raise LaunchError(f"launch: {_shown(a)} takes no value (got {v!r})")


def _value_text(v: Any) -> str:
    return v.src if isinstance(v, Expr) else repr(v)


def with_config(launch: Launch, config: Launch) -> Launch:
    """A serve / docker launch with its --config file's arguments, as vLLM merges them: the file's arguments
    first, the command line's after (the command line wins)."""
    cli = tuple(a for a in launch.args if a.key != "config")
    model_first = tuple(a for a in cli if a.spelling == POSITIONAL)
    rest = tuple(a for a in cli if a.spelling != POSITIONAL)
    cfg = tuple(a for a in config.args if not (a.key == "model" and model_first))
    return replace(launch, args=model_first + cfg + rest)


# --- writing Settings back ------------------------------------------------------------------------

def _as_written(launch: Launch, key: str, v: Any) -> Any:
    """A typed flag value in the launch's form: typed for YAML / Python, vLLM's text for the shell forms."""
    if v is None or isinstance(v, bool) or launch.form in ("yaml", "python"):
        return v
    return BY_VLLM[key].text(v)


def apply(launch: Launch, before: Settings, after: Settings, extra: dict[str, Any] | None = None) -> Launch:
    """The launch with every modelled flag that differs between `before` and `after` set (spelled the user's
    way, in place), removed when it returns to vLLM's default."""
    ch = changed_flags(before, after)
    if extra:
        ch.update(extra)
    return updated(launch, {k: _as_written(launch, k, v) for k, v in ch.items()})


def compose(model: str, settings: Settings, extra: dict[str, Any] | None = None) -> Launch:
    """`vllm serve MODEL` with the flags of `settings` that differ from vLLM's defaults."""
    base = Launch("serve", (Arg("model", model, POSITIONAL),), ("vllm", "serve"))
    vals = vllm_values(settings)
    if extra:
        vals.update(extra)
    return updated(base, {k: _as_written(base, k, v) for k, v in vals.items()})
