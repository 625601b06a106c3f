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
import re
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import BadFlag, LaunchError, NotModelled
from ..flags import BY_DEST, BY_VLLM, changed_flags, vllm_values
from ..memory.profiles import release_of
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
    notes: tuple[str, ...] = ()           # what vLLM decides for the launch that kvfit takes over (said in the answer)

    def require_resolved(self, given: set[str]) -> None:
        """Refuse a non-literal Python value of a flag kvfit models unless kvfit's own flags give it."""
        for dest, src in self.unresolved.items():
            if dest in given:
                continue
            flag = "MODEL (before `--`)" if dest == "model" else BY_DEST[dest].long
            ref = _REF.search(src)
            if ref:
                name = next(g for g in ref.groups() if g)
                raise LaunchError(f"launch: {'the model' if dest == 'model' else BY_DEST[dest].long} {src}: kvfit "
                                  f"cannot resolve {name} (kvfit reads literal values, and of the LeaderWorkerSet's "
                                  "variables LWS_GROUP_SIZE and LWS_WORKER_INDEX)",
                                  f"Write the value in the command, or give it with {flag}.")
            raise LaunchError(f"launch: {dest}={src} is not a literal; kvfit reads only literal values",
                              f"Give its value with {flag}.")


def _shown(a: Arg) -> str:
    if a.spelling and a.spelling != POSITIONAL and not a.spelling.startswith("#"):
        return a.spelling
    return "--" + a.key


# 0.32's --spec-method / --spec-model / --spec-tokens fill --speculative-config (engine/arg_utils.py
# create_speculative_config); a key given both ways is an error there.
_SPEC_PARTS = {"spec-method": "method", "spec-model": "model", "spec-tokens": "num_speculative_tokens"}


LWS_VARS = ("LWS_GROUP_SIZE", "LWS_WORKER_INDEX")     # set by LeaderWorkerSet in every pod (launch/kube.py)
# $(VAR): Kubernetes expands it in a container's command and args from the container's env ($$ escapes it);
# ${VAR} / $VAR: the shell of a `sh -c` script expands them from the same env; $((...)): shell arithmetic
_REF = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)"
                  r"|\$\(\((.*?)\)\)")


def _expand(a: Arg, env: dict[str, str]) -> Arg | Expr:
    """An argument with its variable references replaced by their values in `env`, or the Expr of one kvfit
    cannot resolve (another variable, shell arithmetic)."""
    def one(v: str) -> str | None:
        missing = False

        def sub(m: re.Match) -> str:
            nonlocal missing
            name = m.group(1) or m.group(2) or m.group(3)
            if name is None or name not in env:
                missing = True
                return m.group(0)
            return env[name]

        out = _REF.sub(sub, v)
        return None if missing else out

    v = a.value
    if isinstance(v, str) and "$" in v:
        new = one(v)
        return Expr(v) if new is None else replace(a, value=new)
    if isinstance(v, tuple) and any("$" in x for x in v if isinstance(x, str)):
        parts = tuple(one(x) if isinstance(x, str) else x for x in v)
        return Expr(" ".join(map(str, v))) if None in parts else replace(a, value=parts)
    return a


def read(launch: Launch, version: str | None = None) -> LaunchValues:
    """The launch as kvfit's flag table reads it. Later occurrences win (argparse). `version`: the vLLM release
    it runs on, where vLLM's choice differs per release (a LeaderWorkerSet's implied Ray backend)."""
    raw: dict[str, tuple[Arg, Any]] = {}
    spec_parts: dict[str, Any] = {}
    dotted: dict[str, tuple[Arg, dict]] = {}
    unresolved: dict[str, str] = {}
    model = config = None
    # a LeaderWorkerSet's leader: $(LWS_GROUP_SIZE) and $(LWS_WORKER_INDEX) (0) are known; any other reference in
    # a value kvfit reads is refused naming it (kvfit reads literal values)
    lws = {k: v for k, v in launch.env if k in LWS_VARS} if launch.group is not None else None
    for a in launch.args:
        if lws is not None and (a.key == "model" or a.key.split(".", 1)[0] in BY_VLLM):
            x = _expand(a, lws)
            a = replace(a, value=x) if isinstance(x, Expr) else x
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
    notes: list[str] = []
    if launch.group is not None and launch.gpus:
        _check_group(launch, values, unresolved, version, notes)
        values["gpus_per_node"] = launch.gpus           # one pod of the group = one node
    return LaunchValues(model, values, config, entrypoint, unresolved, tuple(notes))


def _check_group(launch: Launch, values: dict[str, Any], unresolved: dict[str, str], version: str | None = None,
                 notes: list[str] | None = None) -> None:
    """A LeaderWorkerSet's pods against what the leader's vLLM command needs; what vLLM would do when they do
    not match, refused (exit 2). `launch.gpus`: GPUs per pod, `launch.group`: pods in the group. Up to 0.11 a
    leader that starts a Ray cluster gets the Ray backend from vLLM itself (values and `notes` say so)."""
    parallel = ("tensor_parallel_size", "pipeline_parallel_size", "prefill_context_parallel_size",
                "data_parallel_size", "data_parallel_size_local", "nnodes", "distributed_executor_backend")
    if any(d in unresolved for d in parallel):
        return                                          # refused by require_resolved unless kvfit's flags give it
    size, per_pod = launch.group, launch.gpus
    v = lambda dest, default=1: values.get(dest) if values.get(dest) is not None else default
    world = v("tensor_parallel_size") * v("pipeline_parallel_size") * v("prefill_context_parallel_size")
    dp, nnodes, dp_local = v("data_parallel_size"), v("nnodes"), values.get("data_parallel_size_local")
    total = world * dp
    shape = f"TP {v('tensor_parallel_size')} x PP {v('pipeline_parallel_size')}" + (
        f" x PCP {v('prefill_context_parallel_size')}" if v("prefill_context_parallel_size") > 1 else "") + (
        f" x DP {dp}" if dp > 1 else "")
    group = f"the LeaderWorkerSet's {size} pod{'s' if size != 1 else ''} of {per_pod} GPUs (nvidia.com/gpu)"
    if size > 1 and launch.worker_gpus != per_pod:
        raise LaunchError(f"launch: the leader pod asks for {per_pod} GPUs and each worker pod for "
                          f"{launch.worker_gpus or 0}; kvfit lays a group out as nodes of equal GPUs",
                          "Give the leader and worker containers the same nvidia.com/gpu limit.")
    backend = values.get("distributed_executor_backend")
    if nnodes > 1:
        if nnodes != size:
            what = (f"the leader waits for {nnodes - size} node(s) no pod starts (torch.distributed's rendezvous "
                    "times out)" if nnodes > size else
                    f"the pods with LWS_WORKER_INDEX {nnodes} and above start a --node-rank vLLM refuses "
                    "(engine/arg_utils.py: --node-rank must be between 0 and nnodes - 1)")
            raise BadFlag(f"launch: --nnodes {nnodes} but {group}: vLLM's launcher runs one node per pod, so {what}",
                          "Pass --nnodes $(LWS_GROUP_SIZE), or set leaderWorkerTemplate.size to --nnodes.",
                          flag="nnodes")
        share = total // nnodes if total % nnodes == 0 else None
        if share is not None and share > per_pod:
            raise BadFlag(f"launch: {shape} = {total} GPUs over --nnodes {nnodes} puts {share} ranks on each node, "
                          f"but {group}: vLLM starts {share} workers per node, one per local GPU, and the pod "
                          f"has {per_pod}", f"Set nvidia.com/gpu to {share} in the leader and worker templates.",
                          flag="nnodes")
        return
    if dp_local is not None and dp_local < dp:
        nodes = -(-dp // dp_local)
        if nodes != size:
            raise BadFlag(f"launch: --data-parallel-size {dp} with --data-parallel-size-local {dp_local} runs on "
                          f"{nodes} nodes, but {group}: the engines of the missing nodes never start, or the extra "
                          "pods' engines are ones vLLM does not expect",
                          f"Set leaderWorkerTemplate.size to {nodes}.", flag="data_parallel_size_local")
        if dp_local * world > per_pod:
            raise BadFlag(f"launch: --data-parallel-size-local {dp_local} engines of {world} GPUs need "
                          f"{dp_local * world} GPUs on each node, but {group}",
                          f"Set nvidia.com/gpu to {dp_local * world}.", flag="data_parallel_size_local")
        return
    if backend is None and launch.ray and world > per_pod and version is not None \
            and release_of(version) < (0, 12, 0):
        # <= 0.11 config/parallel.py ParallelConfig.__post_init__: no backend and a world size over the node's GPUs
        # (cuda_device_count_stateless() < world_size) with Ray installed: backend = "ray". 0.12 raises instead.
        backend = values["distributed_executor_backend"] = "ray"
        if notes is not None:
            notes.append(f"vLLM {version} picks the Ray backend itself for {shape} on one pod's {per_pod} GPUs (the "
                         "leader starts a Ray cluster; config/parallel.py); kvfit lays the ranks over the group's "
                         "pods as Ray does")
    if backend == "ray":
        if total > size * per_pod:
            raise BadFlag(f"launch: {shape} needs {total} GPUs, but {group} give the Ray cluster {size * per_pod}: "
                          "vLLM waits for a placement group of GPUs that never come and fails after 30 minutes "
                          "(v1/executor/ray_utils.py _wait_until_pg_ready, PG_WAIT_TIMEOUT 1800: \"Cannot provide a "
                          f"placement group requiring {total} GPUs\")",
                          f"Set leaderWorkerTemplate.size to {-(-total // per_pod)}, or lower the parallel sizes.",
                          flag="distributed_executor_backend")
        return
    if total > per_pod and world <= per_pod:
        raise BadFlag(f"launch: {shape} needs {total} GPUs on the leader's node, but {group}: the data-parallel "
                      "engines run on the leader's pod only without --nnodes or --data-parallel-size-local",
                      "Spread them with --data-parallel-size-local and --data-parallel-start-rank per pod, or "
                      "vLLM's launcher (--nnodes $(LWS_GROUP_SIZE) --node-rank $(LWS_WORKER_INDEX)).",
                      flag="data_parallel_size")
    if total > per_pod:
        ray = (" The leader starts a Ray cluster, but vLLM 0.12 and later do not pick Ray by themselves (0.11 and "
               "earlier did)." if launch.ray else "")
        r = release_of(version) if version else (0, 32, 0)
        said = (f"\"Tensor parallel size ({world}) cannot be larger than the number of available GPUs ({per_pod}).\""
                if r < (0, 13, 0) else
                f"\"World size ({world}) is larger than the number of available GPUs ({per_pod}) in this node\"")
        raise BadFlag(f"launch: {shape} needs {total} GPUs, and the leader's vLLM runs on its pod's {per_pod} "
                      f"(one node of {group}): vLLM {version or '0.32'} refuses it (config/parallel.py "
                      f"ParallelConfig.__post_init__: {said}).{ray}",
                      "Add --distributed-executor-backend ray to the leader's vllm command (Ray over the group's "
                      "pods), or use vLLM's launcher: --nnodes $(LWS_GROUP_SIZE) --node-rank $(LWS_WORKER_INDEX) "
                      "--master-addr $(LWS_LEADER_ADDRESS), --headless on the workers.",
                      flag="distributed_executor_backend")


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
