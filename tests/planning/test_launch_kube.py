"""Kubernetes manifests and vLLM production-stack Helm values as launches (forms k8s and helm): real files
(production-stack's tutorials and deployments, a layout from vLLM's Kubernetes guide, examples/kubernetes)
parse to what the chart or the container passes to vLLM, round-trip byte for byte, and a correction edits only
the lines of the values it changes, leaving the rest of the YAML document as it was."""

from __future__ import annotations

import copy
import difflib

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvfit import launch as L
from kvfit.errors import BadInput

from .conftest import EXAMPLES, LAUNCHES, ORPHEUS, command_blocks

K8S = sorted((LAUNCHES / "k8s").iterdir())
HELM = sorted((LAUNCHES / "helm").iterdir())
KUBE_EXAMPLES = sorted((EXAMPLES / "kubernetes").glob("*.yaml"))
ALL = K8S + HELM + KUBE_EXAMPLES


def form_of(path) -> str:
    return "helm" if path.parent.name == "helm" or "values" in path.name else "k8s"


def load(path):
    text = path.read_text()
    return text, L.parse(text, filename=path.name)


def diff(before: str, after: str) -> list[str]:
    """The removed ('-line') and added ('+line') lines."""
    return [ln[0] + ln[2:] for ln in difflib.ndiff(before.splitlines(), after.splitlines()) if ln[:1] in "+-"]


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    """(old line, new line) pairs; fails when lines were added or removed."""
    a, b = before.splitlines(), after.splitlines()
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        assert tag == "replace" and i2 - i1 == j2 - j1, (tag, a[i1:i2], b[j1:j2])
        out += list(zip(a[i1:i2], b[j1:j2]))
    return out


# --- detection ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_detected_from_the_name_and_from_the_text_alone(path):
    text = path.read_text()
    assert L.detect(text, path.name) == form_of(path)
    assert L.detect(text) == form_of(path)          # stdin: even with `vllm serve` lines inside a script


VLLM_CONFIGS = sorted((LAUNCHES / "yaml").iterdir()) + [EXAMPLES / "orpheus" / "vllm.yaml"]


@pytest.mark.parametrize("path", VLLM_CONFIGS, ids=lambda p: p.name)
def test_a_vllm_config_file_is_not_taken_for_kubernetes(path):
    text = path.read_text()
    assert L.detect(text, path.name) == "yaml"
    assert L.parse(text, filename=path.name).form == "yaml"


def test_a_config_file_with_a_comment_naming_kind_stays_yaml():
    text = "# kind: Deployment\n# apiVersion: apps/v1\nmodel: Qwen/Qwen3-8B\nmax-model-len: 8192\n"
    assert L.detect(text, "vllm.yaml") == L.detect(text) == "yaml"


# --- round trip ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_unchanged_renders_the_file_byte_for_byte(path):
    text, a = load(path)
    assert a.form == form_of(path)
    assert L.render(a) == text
    assert L.parse(L.render(a), a.form) == a


def _first_number(a: L.Launch) -> tuple[str, str]:
    for key, new in (("max-model-len", "3072"), ("max-num-batched-tokens", "2048"), ("max-num-seqs", "3"),
                     ("gpu-memory-utilization", "0.5"), ("max-loras", "3"), ("pipeline-parallel-size", "3")):
        if a.has(key):
            return key, new
    raise AssertionError("no numeric vLLM argument to change")


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_a_changed_value_edits_only_its_line(path):
    text, a = load(path)
    key, new = _first_number(a)
    out = L.render(L.updated(a, {key: new}))
    (pair,) = changed_lines(text, out)
    old_value = str(a.get(key))
    assert old_value in pair[0] and new in pair[1] and old_value not in pair[1].replace(new, ""), pair
    again = L.parse(out, a.form)
    assert again.get(key) == new and again == L.updated(a, {key: new})


# --- what is read (the values stated in the files) -------------------------------------------------------------

def test_vllm_guide_layout_shell_flow_list():
    a = L.parse((LAUNCHES / "k8s" / "docs-style-gpu.yaml").read_text())
    ea = L.read_values(a)
    assert ea.model == "mistralai/Mistral-7B-Instruct-v0.3"
    assert ea.values == {"max_num_batched_tokens": 1024}
    assert a.get("trust-remote-code") is True and a.get("enable-chunked-prefill") is True
    assert a.program == ("vllm", "serve") and a.image == "vllm/vllm-openai:latest"
    assert a.gpus == a.gpu_count == 1


def test_gateway_deployment_python_entrypoint_block_list():
    a = L.parse((LAUNCHES / "k8s" / "gateway-gpu-deployment.yaml").read_text())
    assert a.program == ("python3", "-m", "vllm.entrypoints.openai.api_server")
    assert a.model == "meta-llama/Llama-3.2-1B-Instruct"
    assert a.get("tensor-parallel-size") == "1"
    with pytest.raises(BadInput, match="--compilation-config"):    # CUDA-graph settings kvfit does not model
        L.read_values(a)
    assert (a.get("enable-lora"), a.get("max-loras"), a.get("max-lora-rank")) == (True, "2", "32")
    assert a.environment["VLLM_USE_V1"] == "1" and "HUGGING_FACE_HUB_TOKEN" not in a.environment  # a secret
    assert a.gpus == 1 and a.image == "lmcache/vllm-openai:2025-05-05-v1"


def test_a_script_in_a_bash_exc_block_is_found_by_its_vllm_line():
    a = L.parse((LAUNCHES / "k8s" / "pd-decode-deploy.yaml").read_text())
    assert a.image == "ubuntu:22.04"                      # found by the command, not by the image
    assert a.program == ("python", "-m", "vllm.entrypoints.openai.api_server")
    assert a.model == "${MODEL_ID}" and a.get("max-model-len") == "${MAX_SEQ_LEN}"
    assert a.environment["MAX_SEQ_LEN"] == "512"
    assert a.gpus is None and a.gpu_count is None        # the file asks for no GPU resource
    with pytest.raises(BadInput, match=r"--max-model-len.*\$\{MAX_SEQ_LEN\}"):
        L.read_values(a)                                 # one clear message, no guess


def test_picks_the_vllm_container_past_a_router_and_a_sidecar():
    a = L.parse((LAUNCHES / "k8s" / "router-and-sidecar.yaml").read_text())
    assert a.image == "registry.example.com/ml/vllm-openai:v0.32.0" and a.program == ()
    ea = L.read_values(a)
    assert ea.model == "Qwen/Qwen2.5-32B-Instruct"
    assert ea.values == {"tensor_parallel_size": 4, "max_model_len": 32768, "enable_prefix_caching": True}
    assert a.environment["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert a.gpus == a.gpu_count == 4                     # the pod's limit, not the env's two ids
    with pytest.raises(BadInput, match="no vLLM container named"):
        L.parse_k8s((LAUNCHES / "k8s" / "router-and-sidecar.yaml").read_text(), "router")
    assert L.parse_k8s((LAUNCHES / "k8s" / "router-and-sidecar.yaml").read_text(), "qwen-32b").model \
        == "Qwen/Qwen2.5-32B-Instruct"


def test_gpu_count_from_cuda_visible_devices_for_the_other_forms():
    assert L.parse("CUDA_VISIBLE_DEVICES=0,1 vllm serve Qwen/Qwen3-8B -tp 2").gpu_count == 2
    assert L.parse("vllm serve Qwen/Qwen3-8B").gpu_count is None


def test_production_stack_basic_config():
    a = L.parse((LAUNCHES / "helm" / "values-02-basic-config.yaml").read_text())
    ea = L.read_values(a)
    assert ea.model == "meta-llama/Llama-3.1-8B-Instruct"
    # production-stack's template writes --no-enable-prefix-caching unless enablePrefixCaching is true
    assert ea.values == {"max_model_len": 4096, "gpu_memory_utilization": 0.8, "dtype": "bfloat16",
                         "enable_prefix_caching": False}
    # deployment-vllm-multi.yaml: enableChunkedPrefill false -> --no-enable-chunked-prefill,
    # enablePrefixCaching false -> --no-enable-prefix-caching
    assert a.get("enable-chunked-prefill") is False and a.get("enable-prefix-caching") is False
    assert L.argv(a)[:1] == ["meta-llama/Llama-3.1-8B-Instruct"]
    assert "--no-enable-prefix-caching" in L.argv(a)
    assert a.gpus == 1 and a.image == "vllm/vllm-openai:latest"


def test_production_stack_several_models_first_or_named():
    text = (LAUNCHES / "helm" / "values-04-multiple-models.yaml").read_text()
    first = L.read_values(L.parse(text))
    assert first.model == "meta-llama/Llama-3.1-8B-Instruct" and first.values["gpu_memory_utilization"] == 0.8
    second = L.parse_helm(text, "mistral")
    assert second.model == "mistralai/Mistral-7B-Instruct-v0.2"
    assert L.read_values(second).values == {"max_model_len": 4096, "max_num_seqs": 32,
                                              "gpu_memory_utilization": 0.95, "max_loras": 4,
                                              "enable_prefix_caching": False}
    assert L.render(second) == text
    out = L.render(L.updated(second, {"gpu-memory-utilization": 0.9}))
    (pair,) = changed_lines(text, out)
    assert pair == ("      gpuMemoryUtilization: 0.95", "      gpuMemoryUtilization: 0.9")


def test_production_stack_tp2_and_lmcache():
    a = L.parse((LAUNCHES / "helm" / "values-25-v100-multi-gpu-tp2.yaml").read_text())
    ea = L.read_values(a)
    assert ea.values == {"max_model_len": 8192, "gpu_memory_utilization": 0.9, "tensor_parallel_size": 2,
                           "dtype": "half", "enforce_eager": True, "enable_prefix_caching": False}
    assert a.gpus == 2 and a.environment == {"VLLM_ENABLE_CUDA_COMPATIBILITY": "1"}
    lm = L.parse((LAUNCHES / "helm" / "values-05-cpu-offloading.yaml").read_text())
    assert lm.get("kv-transfer-config") == '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'
    with pytest.raises(BadInput, match="lmcacheConfig"):              # KV offloading: refused, never dropped
        L.read_values(lm)


def test_production_stack_ray_entry_passes_pipeline_parallel_and_no_prefix_caching_flag():
    text = (LAUNCHES / "helm" / "values-15-b-pipeline-parallel-ray.yaml").read_text()
    ray = L.parse(text)
    assert ray.model == "distilbert/distilgpt2"
    assert L.read_values(ray).values == {"tensor_parallel_size": 1, "pipeline_parallel_size": 2}
    assert not ray.has("enable-prefix-caching") and ray.gpus is None
    plain = L.parse_helm(text, "opt125m-deployment")
    assert plain.get("enable-prefix-caching") is False and not plain.has("pipeline-parallel-size")


# --- corrections --------------------------------------------------------------------------------------------

def test_more_gpus_for_tensor_parallel_edits_the_limit_and_the_request():
    path = EXAMPLES / "kubernetes" / "orpheus-deployment.yaml"
    text, a = load(path)
    b = L.updated(a, {"tensor-parallel-size": 2})
    assert b.gpus == 2
    out = L.render(b)
    assert sorted(diff(text, out)) == sorted(
        ['-              nvidia.com/gpu: "1"', '+              nvidia.com/gpu: "2"',
         '-              nvidia.com/gpu: "1"', '+              nvidia.com/gpu: "2"',
         '+            - --tensor-parallel-size', '+            - "2"'])
    again = L.parse(out)
    assert again == b and again.gpus == 2
    assert L.updated(a, {"tensor-parallel-size": 1}).gpus == 1   # never lowered, never raised needlessly


def test_removing_an_argument_drops_its_lines_only():
    text, a = load(EXAMPLES / "kubernetes" / "orpheus-deployment.yaml")
    out = L.render(L.updated(a, {"quantization": None}))
    assert diff(text, out) == ["-            - --quantization", "-            - fp8"]


def test_helm_new_chart_keys_go_to_vllm_config_others_to_extra_args():
    text, a = load(LAUNCHES / "helm" / "values-02-basic-config.yaml")
    b = L.updated(a, {"max-num-seqs": 16, "kv-cache-dtype": "fp8", "gpu-memory-utilization": 0.85})
    out = L.render(b)
    assert diff(text, out) == ['-      extraArgs: ["--gpu-memory-utilization", "0.8"]',
                    '+      extraArgs: ["--gpu-memory-utilization", "0.85", "--kv-cache-dtype", "fp8"]',
                    '+      maxNumSeqs: 16']
    again = L.parse(out)
    assert again == b
    assert L.read_values(again).values == {"max_model_len": 4096, "gpu_memory_utilization": 0.85,
                                             "dtype": "bfloat16", "max_num_seqs": 16, "kv_cache_dtype": "fp8",
                                             "enable_prefix_caching": False}


def test_helm_tp_raises_request_gpu():
    text, a = load(EXAMPLES / "kubernetes" / "production-stack-values.yaml")
    b = L.updated(a, {"tensor-parallel-size": 2})
    out = L.render(b)
    assert diff(text, out) == ["-    requestGPU: 1", "+    requestGPU: 2", "+      tensorParallelSize: 2"]
    assert L.parse(out) == b and L.parse(out).gpus == 2


def _without(docs, form):
    """The YAML documents without what a correction may change: the vLLM container's command/args and GPU
    resources (k8s), the modelSpec entries' vllmConfig and requestGPU (helm)."""
    docs = copy.deepcopy(docs)
    for d in docs:
        if not isinstance(d, dict):
            continue
        if form == "helm":
            for e in d.get("servingEngineSpec", {}).get("modelSpec", []):
                e.pop("vllmConfig", None)
                e.pop("requestGPU", None)
            continue
        lws = d.get("spec", {}).get("leaderWorkerTemplate", {})         # LeaderWorkerSet: leader and workers
        pods = [d.get("spec", {}).get("template", {})] + [lws.get(t) or {}
                                                          for t in ("leaderTemplate", "workerTemplate")]
        for c in [c for pod in pods for c in pod.get("spec", {}).get("containers", [])]:
            if "vllm" in str(c.get("image", "")) + str(c.get("command", "")) + str(c.get("args", "")):
                c.pop("args", None)
                c.pop("command", None)
                for part in ("limits", "requests"):
                    c.get("resources", {}).get(part, {}).pop("nvidia.com/gpu", None)
    return docs


_VALUES = {"max-model-len": st.integers(1, 1 << 17), "max-num-seqs": st.integers(1, 1024),
           "max-num-batched-tokens": st.integers(16, 1 << 16), "tensor-parallel-size": st.integers(1, 8),
           "gpu-memory-utilization": st.sampled_from([0.35, 0.5, 0.9, 0.95]), "enforce-eager": st.just(True),
           "kv-cache-dtype": st.sampled_from(["fp8", "auto"]), "quantization": st.sampled_from(["fp8", "awq"]),
           "dtype": st.sampled_from(["half", "bfloat16", "auto"])}
_CHANGES = st.lists(st.sampled_from(sorted(_VALUES)), max_size=4, unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({k: st.one_of(st.none(), _VALUES[k]) for k in keys}))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_CHANGES)
def test_any_correction_reparses_and_leaves_the_rest_of_the_document(path, changes):
    text, a = load(path)
    b = L.updated(a, changes)
    out = L.render(b)
    assert L.parse(out, a.form) == b, out
    assert _without(list(yaml.safe_load_all(out)), a.form) == _without(list(yaml.safe_load_all(text)), a.form)


# --- other forms, both ways -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
@pytest.mark.parametrize("form", L.FORMS)
def test_every_form_keeps_what_kvfit_reads(path, form):
    text, a = load(path)
    b = L.parse(L.render(a, form), form)
    assert L.parse(L.render(b, form), form) == b
    try:
        before = L.read_values(a)
    except BadInput as e:     # refused (shell variables such as ${MAX_SEQ_LEN}, a flag kvfit does not model): in
        with pytest.raises(BadInput) as again:     # every form alike
            L.read_values(b)
        assert again.value.flag == e.flag
        return
    after = L.read_values(b)
    if a.group is not None and form != a.form:          # a LeaderWorkerSet's GPUs per pod: one node of the group
        assert before.values.pop("gpus_per_node") == a.gpus
    if form == "helm" and "enable_prefix_caching" not in before.values:
        assert after.values.pop("enable_prefix_caching", True) is True   # the chart's template: see test_launch.py
    assert (after.model, after.values) == (before.model, before.values)


@pytest.mark.parametrize("source,cmd", command_blocks(LAUNCHES / "serve.txt")[:12])
def test_a_serve_command_as_a_new_manifest_asks_for_its_gpus(source, cmd):
    a = L.parse(cmd)
    try:
        ea = L.read_values(a)
    except BadInput:
        return                     # a launch kvfit refuses (tests/planning/test_launch.py says which)
    world = ea.values.get("tensor_parallel_size", 1) * ea.values.get("pipeline_parallel_size", 1)
    for form in ("k8s", "helm"):
        b = L.parse(L.render(a, form), form)
        assert b.gpus == world
        after = dict(L.read_values(b).values)
        if form == "helm" and "enable_prefix_caching" not in ea.values:
            after.pop("enable_prefix_caching")
        assert after == ea.values


def test_orpheus_serve_as_k8s_is_a_deployment_kubectl_would_take():
    text = L.render(L.parse((EXAMPLES / "orpheus" / "serve.sh").read_text()), "k8s")
    (doc,) = list(yaml.safe_load_all(text))
    assert doc["kind"] == "Deployment" and doc["apiVersion"] == "apps/v1"
    c = doc["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["vllm", "serve"] and c["args"][0] == ORPHEUS
    assert all(isinstance(x, str) for x in c["args"])            # the API takes only strings
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert doc["spec"]["selector"]["matchLabels"] == doc["spec"]["template"]["metadata"]["labels"]


# --- bad input ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", "no container in this Kubernetes manifest runs vLLM"),
    ("apiVersion: apps/v1\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n"
     "        - {name: web, image: nginx:1.27}\n", "no container in this Kubernetes manifest runs vLLM"),
    ("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: vllm/vllm-openai\n    args: [--model, x]\n"
     "    resources: {limits: {nvidia.com/gpu: two}}\n", "nvidia.com/gpu must be a whole number"),
    ("apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - image: vllm/vllm-openai\n    args: {model: x}\n",
     "args must be a list of strings"),
    ("servingEngineSpec:\n  runtimeClassName: ''\n", "no servingEngineSpec.modelSpec entry"),
    ("servingEngineSpec:\n  modelSpec:\n  - name: a\n    vllmConfig: {maxModelLen: 4096}\n", "has no modelURL"),
])
def test_bad_manifests_are_one_clear_message(text, message):
    with pytest.raises(BadInput, match=message):
        L.parse(text)


def test_bad_manifest_through_the_cli_exits_2(cli, tmp_path):
    p = tmp_path / "deploy.yaml"
    p.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    r = cli("check", "--launch", str(p), "--gpu", "L4")
    assert r.rc == 2, r
    assert "no container in this Kubernetes manifest runs vLLM" in " ".join((r.out + r.err).split())
