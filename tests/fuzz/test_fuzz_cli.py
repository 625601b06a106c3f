"""Fuzz the command line: `kvfit check` (and the other commands) with generated configs and flags.

In process for speed: through the console entry point (kvfit.cli.main.main) and directly through
kvfit.cli.main.run with only kvfit's own errors reported (any other exception re-raised: a crash); a few
through a real subprocess. Property: exit 0, 1 or 2, a message, never a traceback or an internal
error, an answer within the time limit, no network (HF_HUB_OFFLINE=1 and sockets refused).
The NVML probe answers from a fake pynvml (sys.modules["pynvml"]), drawn per example.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from . import nvml_fake
from .harness import assert_contract, count, hermetic, run_direct, run_entry
from .strategies import (BUNDLED, GPUS, MODEL_REFS, ODD, QUANT, SEED_TEXTS, SIZES, check_options, dumps,
                         mutated_config, mutated_text)

SCALE = float(os.environ.get("KVFIT_FUZZ_SCALE", "1"))


def n(k: int) -> int:
    return max(1, int(k * SCALE))


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                  HealthCheck.function_scoped_fixture],
            derandomize=os.environ.get("KVFIT_FUZZ_RANDOM") is None,
            phases=[Phase.explicit, Phase.generate] if os.environ.get("KVFIT_FUZZ_NO_SHRINK") else list(Phase))
GiB = 1 << 30


@pytest.fixture(scope="module")
def env():
    with tempfile.TemporaryDirectory(prefix="kvfit-fuzz-") as tmp:
        with hermetic(Path(tmp)) as (mp, guard):
            yield Path(tmp), mp, guard


# --- generated inputs ---------------------------------------------------------------------------

def safetensors_bytes(header) -> bytes:
    raw = dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(raw)) + raw


SAFETENSORS_HEADERS = st.one_of(
    st.fixed_dictionaries({"w": st.fixed_dictionaries({"dtype": st.sampled_from(["BF16", "F32", "I8", "F8_E4M3", "XX"]) | ODD,
                                                      "shape": st.lists(st.integers(-3, 10**6) | ODD, max_size=3) | ODD,
                                                      "data_offsets": ODD})}),
    ODD, st.binary(max_size=30))


@st.composite
def model_dir(draw, root: Path) -> str:
    """A local model directory: a mutated config.json (or damaged text), maybe safetensors, an index,
    an hf_quant_config.json. Returns the argument to pass (the directory or the config path)."""
    d = root / "model"
    if d.exists():
        for f in d.iterdir():
            f.unlink()
    else:
        d.mkdir()
    if draw(st.integers(0, 3)) == 0:
        text = draw(mutated_text())
    else:
        text = dumps(draw(mutated_config()))
    (d / "config.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        header = draw(SAFETENSORS_HEADERS)
        data = header if isinstance(header, bytes) else safetensors_bytes(header)
        if draw(st.booleans()):
            data = data[:draw(st.integers(0, len(data)))]
        (d / "model-00001-of-00001.safetensors").write_bytes(data)
        if draw(st.booleans()):
            (d / "model.safetensors.index.json").write_text(dumps(draw(st.one_of(
                ODD, st.fixed_dictionaries({"weight_map": ODD | st.dictionaries(st.text(max_size=5), st.sampled_from(
                    ["model-00001-of-00001.safetensors", "missing.safetensors"]) | ODD, max_size=3)})))))
    if draw(st.integers(0, 5)) == 0:
        (d / "hf_quant_config.json").write_text(dumps(draw(QUANT | st.fixed_dictionaries({"quantization": QUANT}))))
    return str(d / "config.json") if draw(st.integers(0, 4)) == 0 else str(d)


@st.composite
def nvml_spec(draw):
    """What NVML answers on this imaginary machine (None: nvidia-ml-py is not installed)."""
    kind = draw(st.sampled_from(["missing", "init_error", "query_error", "gpus", "gpus", "gpus"]))
    if kind == "missing":
        return None
    if kind == "init_error":
        return {"init_error": draw(st.sampled_from(["LibraryNotFound", "DriverNotLoaded", "LibRmVersionMismatch",
                                                     "NoPermission", "Unknown", "GpuIsLost"]))}
    spec = {"gpus": []}
    if kind == "query_error":
        spec["errors"] = {draw(st.sampled_from(["nvmlDeviceGetCount", "nvmlDeviceGetName", "nvmlDeviceGetUUID",
                                                "nvmlDeviceGetHandleByIndex", "nvmlDeviceGetMemoryInfo"])):
                          draw(st.sampled_from(["Unknown", "GpuIsLost", "NotSupported", "FunctionNotFound"]))}
    for i in range(draw(st.integers(0 if kind == "gpus" else 1, 3))):
        total = draw(st.sampled_from([0, 1, 2 * GiB, 16 * GiB, 23.6 * GiB, 79.2 * GiB, 139.8 * GiB])
                     | st.floats(0, 200 * GiB))
        free = draw(st.sampled_from([total, total * 0.95, total * 0.5, total * 0.1, 0, total * 1.5])
                    | st.floats(0, max(total, 1)))
        name = draw(st.sampled_from(["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA GeForce RTX 3090",
                                     "Tesla T4", "NVIDIA L4", "[/]weird", ""]) | st.text(max_size=10))
        mig = None
        if draw(st.integers(0, 3)) == 0:
            mig = [nvml_fake.mig_instance(name, p, t / GiB * total / (80 * GiB) if total else 0,
                                          uuid=f"MIG-{i}{j}") for j, (p, t) in enumerate(
                draw(st.lists(st.sampled_from([("1g.10gb", 9.75 * GiB), ("3g.40gb", 39.5 * GiB),
                                               ("7g.80gb", 79.2 * GiB)]), max_size=3)))]
        g = nvml_fake.gpu(name, total / GiB, free / GiB,
                          cc=draw(st.sampled_from([(9, 0), (8, 0), (8, 6), (7, 5), (7, 0), (6, 1), (10, 0), (0, 0)])),
                          uuid=f"GPU-{i:04d}", mig=mig,
                          procs=draw(st.lists(st.tuples(st.integers(1, 99999), st.integers(0, 2**40)), max_size=2)))
        if draw(st.booleans()):
            g["reserved"] = draw(st.sampled_from([0, 512 << 20, 2**40]))
        spec["gpus"].append(g)
    return spec


GPU_CHOICE = st.integers(0, 15).flatmap(lambda k: (
    st.sampled_from(GPUS).map(lambda g: ["--gpu", g]) if k < 8 else
    st.sampled_from(SIZES).map(lambda s: ["--gpu-memory", s]) if k < 12 else
    st.tuples(st.sampled_from(GPUS), st.sampled_from(SIZES)).map(lambda t: ["--gpu", t[0], "--gpu-memory", t[1]])
    if k < 14 else st.just([])))    # no GPU named: the NVML probe (fake) decides; the slowest path
CUDA_VISIBLE = st.sampled_from([None, None, None, "", "0", "1", "0,1", "1,0", "-1", "GPU-0000", "MIG-00",
                                "MIG-", "GPU-", "abc", "3,0", "0,,1"])


def with_nvml(mp, spec, visible):
    nvml_fake.install(mp, spec)
    if visible is None:
        mp.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        mp.setenv("CUDA_VISIBLE_DEVICES", visible)


def run_checked(argv, env, *, direct=False, counted=True):
    if counted:
        count("cli")
    _, _, guard = env
    before = len(guard.calls)
    o = (run_direct if direct else run_entry)(argv)
    assert_contract(o, json_out="--json" in argv and "--help" not in argv and "-h" not in argv)
    assert len(guard.calls) == before, f"network used: {guard.calls[before:]}\n{o}"
    return o


# --- the tests -------------------------------------------------------------------------------------

@settings(max_examples=n(1200), **FUZZ)
@given(data=st.data())
def test_check_on_generated_local_configs(env, data):
    """Generated config.json files (and safetensors, index, quant files) with generated flags."""
    root, mp, _ = env
    target = data.draw(model_dir(root))
    argv = ["check", target, *data.draw(GPU_CHOICE), *data.draw(check_options(allow_odd=False))]
    if data.draw(st.booleans()):
        argv.append("--json")
    with pytest.MonkeyPatch.context() as m:
        with_nvml(m, data.draw(nvml_spec()), data.draw(CUDA_VISIBLE))
        run_checked(argv, env)


@settings(max_examples=n(1200), **FUZZ)
@given(model=st.sampled_from(BUNDLED), gpu=GPU_CHOICE, opts=check_options(), spec=nvml_spec(),
       visible=CUDA_VISIBLE)
def test_check_flags_on_bundled_models(env, model, gpu, opts, spec, visible):
    """Every flag with valid, borderline and invalid values, conflicting pairs, odd tokens."""
    with pytest.MonkeyPatch.context() as m:
        with_nvml(m, spec, visible)
        o = run_checked(["check", model, *gpu, *opts], env)
    if o.code in (0, 1) and "--json" in opts and "--help" not in opts and "-h" not in opts:
        report = json.loads(o.out)
        assert report["schema"] == "kvfit.check/2"
        verdict = report["verdict"]["fits"]
        assert verdict is (o.code == 0), o              # one verdict: the JSON and the exit code agree


@settings(max_examples=n(400), **FUZZ)
@given(ref=MODEL_REFS, opts=st.lists(st.sampled_from(["--json", "--offline"]), unique=True),
       gpu=st.sampled_from([["--gpu", "H100"], ["--gpu-memory", "24GiB"]]))
def test_check_on_odd_model_references(env, ref, opts, gpu):
    """Paths, ids and junk as the MODEL argument; the Hub is off, so unknown ids exit 2 offline."""
    if ref.startswith("-"):
        argv = ["check", *gpu, *opts, "--", ref]
    else:
        argv = ["check", ref, *gpu, *opts]
    o = run_checked(argv, env)
    if o.code == 2 and ref.strip() and "/" in ref and "--" not in argv:
        assert "kvfit:" in o.err or "Error" in o.err, o


@settings(max_examples=n(300), **FUZZ)
@given(data=st.data())
def test_direct_path_on_generated_configs(env, data):
    """kvfit.cli.main.run itself: a raised exception other than kvfit's own errors is a crash, un-wrapped."""
    root, _, _ = env
    target = data.draw(model_dir(root)) if data.draw(st.booleans()) else data.draw(st.sampled_from(BUNDLED))
    argv = ["check", target, *data.draw(GPU_CHOICE), *data.draw(check_options())]
    with pytest.MonkeyPatch.context() as m:
        with_nvml(m, data.draw(nvml_spec()), None)
        run_checked(argv, env, direct=True)


@settings(max_examples=n(250), **FUZZ)
@given(spec=nvml_spec(), visible=CUDA_VISIBLE, model=st.sampled_from(BUNDLED[:6]),
       opts=st.lists(st.sampled_from(["--json", "-tp", "2", "--gpu-memory-utilization", "0.5", "--max-model-len",
                                      "4096", "--kv-cache-memory-bytes", "2GiB"]), max_size=4))
def test_check_with_nvml_faults(env, spec, visible, model, opts):
    """No GPU named: whatever NVML answers (missing, driver errors, MIG, busy, zero-sized) is handled."""
    with pytest.MonkeyPatch.context() as m:
        with_nvml(m, spec, visible)
        run_checked(["check", model, *opts], env)
        run_checked(["gpus", "--json"] if "--json" in opts else ["gpus"], env, counted=False)


@settings(max_examples=n(60), **FUZZ)
@given(argv=st.lists(st.sampled_from(["models", "gpus", "check", "--json", "--help", "-h", "nope", "", "--",
                                      "--version", "Qwen/Qwen3-8B", "--gpu", "H100", "bench"]), max_size=4))
def test_any_command_line(env, argv):
    with pytest.MonkeyPatch.context() as m:
        with_nvml(m, None, None)
        run_checked(argv, env)


# --- a few through a real process ------------------------------------------------------------------

SUBPROCESS_CASES = [
    ("nemotron-infinity", SEED_TEXTS["nvidia__Nemotron-H-56B-Base-8K"], ["--gpu", "H100", "--json"]),
    ("broken-json", SEED_TEXTS["meta-llama__Llama-3.1-8B-Instruct"][:200], ["--gpu", "H100"]),
    ("nan-layers", SEED_TEXTS["meta-llama__Llama-3.1-8B-Instruct"].replace('"num_hidden_layers": 32',
                                                                            '"num_hidden_layers": NaN'), []),
    ("huge-layers", SEED_TEXTS["meta-llama__Llama-3.1-8B-Instruct"].replace('"num_hidden_layers": 32',
                                                                             '"num_hidden_layers": 1e18'), []),
    ("text-config-list", '{"model_type": "llava", "text_config": [1, 2]}', ["--json"]),
    ("deep-nesting", '{"model_type": "llama", "x": ' + "[" * 100000 + "]" * 100000 + "}", []),
    ("huge-flags", SEED_TEXTS["meta-llama__Llama-3.1-8B-Instruct"],
     ["-pp", "999999999999", "--max-num-seqs", "9" * 30, "--gpu", "H100"]),
    ("conflicting", SEED_TEXTS["meta-llama__Llama-3.1-8B-Instruct"],
     ["--device", "cpu", "--gpu", "H100", "--kv-cache-memory-bytes", "nan"]),
]


@pytest.mark.parametrize("name,text,flags", SUBPROCESS_CASES, ids=[c[0] for c in SUBPROCESS_CASES])
def test_subprocess_contract(tmp_path, name, text, flags):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CUDA_", "KVFIT_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "cache"))
    count("cli")
    p = subprocess.run([sys.executable, "-m", "kvfit", "check", str(d), *flags], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode in (0, 1, 2), p
    assert "Traceback" not in p.stdout + p.stderr and "internal error" not in p.stderr, p.stderr
    assert (p.stderr if p.returncode == 2 else p.stdout).strip(), p
