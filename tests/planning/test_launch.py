"""The launch model (kvfit.launch): real commands from vLLM's docs, model cards, issues and the calibration
logs parse to what vLLM would read, and every form round-trips: parse(render(parse(x))) == parse(x)."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvfit import launch as L
from kvfit.errors import BadInput

from .conftest import LAUNCHES, command_blocks

SERVE = command_blocks(LAUNCHES / "serve.txt")
DOCKER = command_blocks(LAUNCHES / "docker.txt")
FILES = sorted(p for d in ("python", "yaml", "env") for p in (LAUNCHES / d).iterdir())


def ids(blocks):
    return [f"{i}:{src[:40]}" for i, (src, _) in enumerate(blocks)]


# --- every real launch, every form -------------------------------------------------------------------

@pytest.mark.parametrize("source,cmd", SERVE + DOCKER, ids=ids(SERVE + DOCKER))
def test_real_commands_round_trip_in_their_form(source, cmd):
    a = L.parse(cmd)
    assert a.form == ("docker" if cmd.startswith("docker") else "serve")
    text = L.render(a)
    assert L.parse(text) == a, text
    assert L.parse(L.render(L.parse(text))) == a


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_files_round_trip_in_their_form(path):
    text = path.read_text()
    a = L.parse(text, filename=path.name)
    assert a.form == {"python": "python", "yaml": "yaml", "env": "env"}[path.parent.name]
    out = L.render(a)
    again = L.parse(out, a.form)
    assert again == a, out
    assert L.parse(L.render(again), a.form) == again


@pytest.mark.parametrize("source,cmd", SERVE + DOCKER, ids=ids(SERVE + DOCKER))
@pytest.mark.parametrize("form", L.FORMS)
def test_every_form_keeps_what_kvfit_reads(source, cmd, form):
    """Converted to any form, the launch still means the same settings to kvfit (and to vLLM)."""
    a = L.parse(cmd)
    b = L.parse(L.render(a, form), form)
    assert L.parse(L.render(b, form), form) == b
    try:
        before = L.read_values(a)
    except BadInput as e:               # a launch kvfit refuses (a flag it does not model) is refused in every form
        with pytest.raises(BadInput) as again:
            L.read_values(b)
        assert again.value.flag == e.flag
        return
    after = L.read_values(b)
    assert after.model == before.model
    if form == "helm" and "enable_prefix_caching" not in before.values:
        # production-stack's template writes --no-enable-prefix-caching unless enablePrefixCaching is true, so a
        # launch at vLLM's default (on) is written with it true
        assert after.values.pop("enable_prefix_caching") is True
    assert after.values == before.values


# --- what the parsers read from real launches (values stated in the commands themselves) -----------------

def test_calibration_gt025_model_last_underscores_and_equals():
    a = L.parse(SERVE[14][1])
    ea = L.read_values(a)
    assert ea.model == "/root/autodl-tmp/deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert ea.values == {"tensor_parallel_size": 2, "gpu_memory_utilization": 0.98}
    assert a.get("trust-remote-code") is True
    # rendered back with the user's spelling: underscores and --flag=value survive
    text = L.render(L.updated(a, {"max-num-seqs": 8}))
    assert "--tensor_parallel_size 2" in text and "--gpu_memory_utilization=0.98" in text


def test_docker_docs_command():
    a = L.parse(DOCKER[0][1])
    assert a.image == "vllm/vllm-openai:latest"
    assert a.model == "mistralai/Mistral-7B-v0.1"
    assert ("-v", "~/.cache/huggingface:/root/.cache/huggingface") in a.docker
    assert ("--ipc=host",) in a.docker
    assert a.environment["HUGGING_FACE_HUB_TOKEN"] == "<secret>"
    assert L.render(a) == DOCKER[0][1]             # unchanged: printed back as written
    text = L.render(L.updated(a, {"max-model-len": 4096}))
    assert "~/.cache/huggingface" in text          # not quoted: the shell must still expand ~
    assert "'HUGGING_FACE_HUB_TOKEN=<secret>'" in text


def test_docker_switches_and_attached_values():
    a = L.parse(DOCKER[4][1])
    assert ("-it",) in a.docker and ("--rm",) in a.docker and ("--shm-size=16g",) in a.docker
    assert L.read_values(a).values == {"tensor_parallel_size": 2}


def test_env_prefix_and_old_entry_point():
    a = L.parse(SERVE[-1][1])
    assert a.prefix == ("CUDA_VISIBLE_DEVICES=0",)
    assert a.environment == {"CUDA_VISIBLE_DEVICES": "0"}
    assert L.read_values(a).values == {"max_model_len": 131072, "gpu_memory_utilization": 0.9}
    b = L.parse(SERVE[16][1])
    assert b.program == ("python", "-m", "vllm.entrypoints.openai.api_server")
    assert b.model == "/models--Qwen--Qwen1.5-7B-Chat"
    assert b.get("served-model-name") == ("Qwen1.5-7B-Chat",)


def test_json_and_multi_valued_flags():
    a = L.parse(SERVE[5][1])
    assert json.loads(a.get("speculative-config")) == {"model": "facebook/opt-125m", "num_speculative_tokens": 5}
    assert a.get("tensor-parallel-size") == "1"          # -tp alias
    assert L.read_values(a).values["gpu_memory_utilization"] == 0.8
    lora = L.parse(SERVE[7][1])
    assert lora.get("enable-lora") is True
    assert lora.get("lora-modules")[0].startswith("sql-lora=$HOME/")
    assert "sql-lora=$HOME/" in L.render(L.updated(lora, {"max-model-len": 4096}))   # $HOME stays expandable


def test_flags_without_memory_effect_pass_through_untouched():
    a = L.parse("vllm serve x/y --max-model-len 4096 --port 8000 --served-model-name tts --trust-remote-code")
    assert L.read_values(a).values == {"max_model_len": 4096}
    text = L.render(L.updated(a, {"max-model-len": 2048}))
    assert "--port 8000" in text and "--served-model-name tts" in text and "--max-model-len 2048" in text


@pytest.mark.parametrize("cmd,flag", [
    ("vllm serve x/y --my-plugin-flag on", "--my-plugin-flag"),             # vLLM would refuse it too
    ("vllm serve x/y --mm-encoder-tp-mode data", "--mm-encoder-tp-mode"),
    ("vllm serve x/y --kv-offloading-size 8", "--kv-offloading-size"),
    ("vllm serve x/y --compilation-config '{\"cudagraph_mode\": \"NONE\"}'", "--compilation-config"),
    ("vllm serve x/y --enable-eplb", "--enable-eplb"),
])
def test_unknown_and_unmodelled_flags_are_refused_naming_the_flag(cmd, flag):
    """One a kvfit does not model is refused with exit 2 naming it, never dropped (issue 11)."""
    with pytest.raises(BadInput) as e:
        L.read_values(L.parse(cmd))
    assert flag in e.value.message and e.value.exit_code == 2


def test_unmodelled_flags_at_vllms_default_change_nothing():
    a = L.parse("vllm serve x/y --no-enable-eplb --no-enable-dbo --max-model-len 1024")
    assert L.read_values(a).values == {"max_model_len": 1024}


def test_flags_kvfit_models_are_read_on_every_path():
    """LoRA, speculative decoding, prefix caching, mamba dtypes, the hybrid manager, sliding window: read from a
    pasted launch exactly as from kvfit's own flags (the same parsers)."""
    a = L.parse("vllm serve x/y --enable-lora --max-loras 4 --max-lora-rank 64 --speculative-config "
                "'{\"method\": \"ngram\", \"num_speculative_tokens\": 4}' --no-enable-prefix-caching "
                "--mamba-ssm-cache-dtype float32 --disable-hybrid-kv-cache-manager --disable-sliding-window -q fp8 "
                "--cpu-offload-gb 2")
    assert L.read_values(a).values == {
        "enable_lora": True, "max_loras": 4, "max_lora_rank": 64,
        "speculative_config": {"method": "ngram", "num_speculative_tokens": 4, "model": None},
        "enable_prefix_caching": False, "mamba_ssm_cache_dtype": "float32", "disable_hybrid_kv_cache_manager": True,
        "disable_sliding_window": True, "quantization": "fp8", "cpu_offload_gb": 2.0}


def test_spec_shorthands_fill_the_speculative_config():
    """0.32's --spec-method / --spec-tokens (engine/arg_utils.py create_speculative_config)."""
    a = L.parse("vllm serve x/y --spec-method ngram --spec-tokens 3")
    assert L.read_values(a).values["speculative_config"] == {"method": "ngram", "num_speculative_tokens": 3,
                                                             "model": None}


def test_non_nvidia_devices_are_refused():
    with pytest.raises(BadInput, match="--device"):
        L.read_values(L.parse(SERVE[15][1]))


def test_python_literals_only_and_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    code = (f"from vllm import LLM\nimport os\nctx = 4096\n"
            f"llm = LLM(model='a/b', max_model_len=ctx, gpu_memory_utilization=0.5, "
            f"seed=open({str(marker)!r}, 'w').write('x'))\n")
    a = L.parse(code, "python")
    ea = L.read_values(a)
    assert ea.values == {"gpu_memory_utilization": 0.5}
    assert ea.unresolved == {"max_model_len": "ctx"}
    with pytest.raises(BadInput, match="max_model_len=ctx is not a literal"):
        ea.require_resolved(set())
    ea.require_resolved({"max_model_len"})          # kvfit's --max-model-len gives the value: fine
    assert not marker.exists()
    # the corrected launch is written back into the file, the rest untouched
    out = L.render(L.updated(a, {"max-model-len": 2048}))
    assert "import os\nctx = 4096\n" in out and "max_model_len=2048" in out and "open(" in out
    assert not marker.exists()


def test_python_positional_model_and_engine_args():
    a = L.parse((LAUNCHES / "python" / "fp8_weights.py").read_text(), "python")
    assert a.model == "facebook/opt-125m" and a.program == ("LLM",)
    ea = L.read_values(a)
    assert ea.values == {"quantization": "fp8"} and ea.entrypoint == "llm"
    b = L.parse((LAUNCHES / "python" / "orpheus_engine.py").read_text(), "python")
    assert b.program == ("AsyncEngineArgs",)
    eb = L.read_values(b)
    assert eb.entrypoint == "serve" and eb.model is None and eb.values == {}
    assert set(eb.unresolved) == {"model", "dtype", "max_model_len", "gpu_memory_utilization"}    # attributes


def test_env_forms():
    a = L.parse((LAUNCHES / "env" / "gt031.env").read_text(), "env")
    assert L.read_values(a).values == {"dtype": "float16", "max_num_seqs": 1, "max_model_len": 10000}
    b = L.parse((LAUNCHES / "env" / "runpod.env").read_text(), "env")
    assert b.model == "meta-llama/Llama-3.1-8B-Instruct"
    assert L.read_values(b).values == {"max_model_len": 8192, "gpu_memory_utilization": 0.95, "enforce_eager": True}
    assert b.env == (("HF_TOKEN", "<secret>"),)            # not an engine argument


def test_yaml_config_merges_like_vllm():
    """vLLM inserts the config file's arguments before the command line's: the command line wins."""
    cfg = L.parse("model: a/b\nmax-model-len: 8192\ntensor-parallel-size: 4\n", "yaml")
    cmd = L.parse("vllm serve --config cfg.yaml -tp 2")
    merged = L.with_config(cmd, cfg)
    assert L.read_values(merged).values == {"max_model_len": 8192, "tensor_parallel_size": 2}
    assert L.read_values(merged).model == "a/b"
    cmd2 = L.parse("vllm serve c/d --config cfg.yaml")
    assert L.read_values(L.with_config(cmd2, cfg)).model == "c/d"       # the positional model wins


# --- YAML: PyYAML, as vLLM's --config reader ------------------------------------------------------------

def test_yaml_errors_are_bad_input():
    with pytest.raises(BadInput):
        L.parse("model: a/b\n  bad: [unclosed\n", "yaml")
    with pytest.raises(BadInput):
        L.parse("- just\n- a list\n", "yaml")


# --- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "vllm serve a/b --max-model-len", "docker run --gpus all", "ls -la", "vllm serve a/b --max-model-len 'unterminated",
    "llm = LLM(", "x = 1\n",
])
def test_malformed_launches_are_bad_input(text):
    with pytest.raises(BadInput):
        L.parse(text)


@pytest.mark.parametrize("text", ["vllm serve a/b --max-model-len lots", "vllm serve a/b --gpu-memory-utilization high",
                                  "vllm serve a/b -tp two", "vllm serve a/b --enforce-eager=maybe"])
def test_bad_values_name_the_flag(text):
    with pytest.raises(BadInput) as e:
        L.read_values(L.parse(text))
    assert "--" in e.value.message and e.value.flag


# --- generated launches round-trip in every form ------------------------------------------------------------

_word = st.text(string.ascii_letters + string.digits + "._/-", min_size=1, max_size=12).filter(
    lambda s: not s.startswith("-"))
_value = st.one_of(_word, st.integers(0, 10**9).map(str), st.sampled_from(["0.9", "auto", "fp8", "a b", "x=y", "{\"a\": 1}"]))
_key = st.sampled_from(["max-model-len", "gpu-memory-utilization", "tensor-parallel-size", "dtype", "kv-cache-dtype",
                        "max-num-seqs", "port", "host", "my-unknown-flag", "served-model-name", "enforce-eager",
                        "trust-remote-code", "speculative-config", "seed", "block-size"])


@st.composite
def launches(draw):
    args = [L.Arg("model", draw(_word), L.POSITIONAL)]
    for key in draw(st.lists(_key, max_size=8)):
        kind = L.kind_of(key)
        if kind in ("bool", "true"):
            args.append(L.Arg(key, True))
        elif kind == "multi":
            args.append(L.Arg(key, tuple(draw(st.lists(_word, min_size=1, max_size=3)))))
        else:
            args.append(L.Arg(key, draw(_value)))
    return L.Launch("serve", tuple(args), ("vllm", "serve"))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(launches(), st.sampled_from(L.FORMS))
def test_generated_launches_round_trip(launch, form):
    text = L.render(launch, form)
    parsed = L.parse(text, form)
    assert L.parse(L.render(parsed, form), form) == parsed
    if form == "serve":
        assert parsed == launch


# --- corrections keep the user's file ------------------------------------------------------------------------

def test_corrected_yaml_and_env_keep_comments_and_order():
    text = "# my deployment\nmodel: a/b   # the model\nmax-model-len: 131072  # too long\nport: 8000\n"
    a = L.parse(text, "yaml")
    out = L.render(L.updated(a, {"max-model-len": 32768, "gpu-memory-utilization": 0.85}))
    assert out == ("# my deployment\nmodel: a/b   # the model\nmax-model-len: 32768  # too long\nport: 8000\n"
                   "gpu-memory-utilization: 0.85\n")
    env = "# worker\nexport MODEL_NAME=a/b\nMAX_MODEL_LEN=131072\nHF_TOKEN=x\n"
    e = L.parse(env, "env")
    out = L.render(L.updated(e, {"max-model-len": 32768, "enforce-eager": True}))
    assert out == "# worker\nexport MODEL_NAME=a/b\nMAX_MODEL_LEN=32768\nHF_TOKEN=x\nENFORCE_EAGER=true\n"
    assert L.parse(out, "env") == L.updated(e, {"max-model-len": 32768, "enforce-eager": True})


_CHANGE_VALUES = {   # what kvfit's planner sets each flag to (None: remove it)
    "max-model-len": st.integers(1, 10**6), "gpu-memory-utilization": st.sampled_from([0.35, 0.9, 0.95]),
    "kv-cache-memory-bytes": st.integers(2**20, 2**40), "tensor-parallel-size": st.sampled_from([1, 2, 4, 8]),
    "kv-cache-dtype": st.sampled_from(["fp8", "auto"]), "max-num-seqs": st.integers(1, 1024),
    "enforce-eager": st.booleans(), "quantization": st.sampled_from(["fp8", "awq"]),
    "cpu-offload-gb": st.sampled_from([1.0, 2.5, 10.0]),
}
_changes = st.dictionaries(st.sampled_from(sorted(_CHANGE_VALUES)), st.none(), max_size=5).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.one_of(st.none(), _CHANGE_VALUES[k]) for k in keys}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(launches(), st.sampled_from(L.FORMS), _changes)
def test_corrected_launches_round_trip_in_every_form(launch, form, changes):
    base = L.parse(L.render(launch, form), form)          # as a user's file in that form
    fixed = L.updated(base, changes)
    text = L.render(fixed, form)
    assert L.parse(text, form) == fixed, text
    for key, value in changes.items():
        if value is None or value is False:
            assert not fixed.has(key) or fixed.get(key) in (False, "false")
        else:
            got = L.parse(text, form).get(key)
            assert str(got).lower() == str(value).lower() or got == value, (key, value, got)


# --- the release a container image names ----------------------------------------------------------------------

@pytest.mark.parametrize("image, flag, version, said", [
    ("vllm/vllm-openai:v0.10.2", (), "0.10.2", "vLLM 0.10.2: the release the launch's image names"),
    ("docker.io/vllm/vllm-openai:v0.31.0-ubuntu2404", (), "0.31.0", "the release the launch's image names"),
    ("vllm/vllm-openai:v0.10.2", ("--vllm-version", "0.20.0"), "0.20.0",
     "vLLM 0.20.0 (--vllm-version) in place of the 0.10.2 the launch's image names"),
    ("vllm/vllm-openai:v0.10.2", ("--vllm-version", "0.10.2"), "0.10.2", None),
    ("vllm/vllm-openai:latest", ("--vllm-version", "0.20.0"), "0.20.0", None),
])
def test_a_docker_launch_is_answered_with_its_images_release(image, flag, version, said):
    from kvfit_harness import invoke

    r = invoke(["check", "--gpu", "H100", "--offline", "--json", *flag, "--", "docker", "run", "--gpus", "all",
                image, "--model", "meta-llama/Llama-3.1-8B-Instruct", "--max-model-len", "8192"])
    assert r.rc == 0, r
    assert r.json["vllm"]["version"] == version
    image_notes = [n for n in r.json["notes"] if "image names" in n]
    assert (said in image_notes[0] if said else not image_notes), image_notes
