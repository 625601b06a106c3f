"""Kubernetes LeaderWorkerSet manifests (leaderworkerset.x-k8s.io/v1) as multi-node vLLM launches: the leader's
vLLM command is the launch, leaderWorkerTemplate.size the nodes, each pod's `nvidia.com/gpu` the GPUs of a node.

One launch, one answer: `kvfit check --json` on the manifest gives the same answer as the equivalent `vllm serve`
line pasted with the same GPUs (`--gpu-count` = pods x GPUs per pod, `--gpus-per-node` = GPUs per pod), apart
from where the launch came from. A group that does not match the leader's parallel flags is refused with
vLLM's reason; a variable kvfit cannot resolve is refused naming it. Expected numbers come from the manifests
(read here with PyYAML), not from kvfit."""

from __future__ import annotations

import json

import pytest
import yaml

from kvfit import launch as L
from kvfit.errors import BadInput

from kvfit_harness import invoke

from .conftest import EXAMPLES, LAUNCHES

LWS = LAUNCHES / "lws"
RAY = LWS / "ray-pipeline-parallel.yaml"
NNODES = LWS / "vllm-launcher-nnodes.yaml"
DP = LWS / "data-parallel-local.yaml"
DOCS = LWS / "ray-docs-command.yaml"
EXAMPLE = EXAMPLES / "kubernetes" / "qwen3-235b-leaderworkerset.yaml"


def group_of(path) -> tuple[int, int, int]:
    """(size, leader pod GPUs, worker pod GPUs) as the manifest says them."""
    lws = next(d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "LeaderWorkerSet")
    t = lws["spec"]["leaderWorkerTemplate"]
    gpus = lambda pod: int(pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    return t["size"], gpus(t.get("leaderTemplate") or t["workerTemplate"]), gpus(t["workerTemplate"])


# the same launches as `vllm serve` lines: the leader's command with LWS_GROUP_SIZE and LWS_WORKER_INDEX as
# LeaderWorkerSet sets them in the leader's pod
PASTED = {
    RAY: "vllm serve Qwen/Qwen3-235B-A22B --port 8080 --tensor-parallel-size 8 --pipeline-parallel-size 2 "
         "--distributed-executor-backend ray",
    NNODES: "vllm serve Qwen/Qwen3-235B-A22B --tensor-parallel-size 8 --data-parallel-size 2 "
            "--enable-expert-parallel --nnodes 2 --node-rank 0 --master-addr $(LWS_LEADER_ADDRESS)",
    DP: "vllm serve Qwen/Qwen3-30B-A3B --data-parallel-size 16 --data-parallel-size-local 8 "
        "--data-parallel-address $(LWS_LEADER_ADDRESS) --data-parallel-rpc-port 13345 --enable-expert-parallel",
    EXAMPLE: "vllm serve Qwen/Qwen3-235B-A22B --port 8000 --tensor-parallel-size 8 --pipeline-parallel-size 2 "
             "--distributed-executor-backend ray --max-model-len 32768 --kv-cache-dtype fp8",
}


def _without_source(answer: dict, substitutions: dict[str, str]) -> dict:
    """The answer minus where the launch came from: the launch's text and form, each command's text and form;
    argv kept, with the variables LWS sets replaced by their values."""
    a = json.loads(json.dumps(answer))
    a.pop("launch", None)

    def strip(x):
        if isinstance(x, dict):
            if "argv" in x and "text" in x:
                x.pop("text")
                x.pop("form", None)
                x["argv"] = [substitutions.get(t, t) for t in x["argv"]]
            for v in x.values():
                strip(v)
        elif isinstance(x, list):
            for v in x:
                strip(v)
    strip(a)
    return a


# --- reading ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [RAY, NNODES, DP, DOCS, EXAMPLE], ids=lambda p: p.name)
def test_detected_read_and_written_back_as_it_was(path):
    text = path.read_text()
    assert L.detect(text) == "k8s" and L.detect(text, path.name) == "k8s"
    a = L.parse(text)
    size, leader, worker = group_of(path)
    assert (a.group, a.gpus, a.worker_gpus) == (size, leader, worker)
    assert a.gpu_pin == (size * leader, f"LeaderWorkerSet size {size} x nvidia.com/gpu {leader}")
    assert a.environment["LWS_GROUP_SIZE"] == str(size) and a.environment["LWS_WORKER_INDEX"] == "0"
    assert L.render(a) == text                          # byte for byte


def test_the_ray_leader_script_is_found_after_multi_node_serving_sh():
    a = L.parse(RAY.read_text())
    assert a.ray and a.program == ("python3", "-m", "vllm.entrypoints.openai.api_server")
    v = L.read_values(a)
    assert v.model == "Qwen/Qwen3-235B-A22B"
    assert v.values == {"tensor_parallel_size": 8, "pipeline_parallel_size": 2,
                        "distributed_executor_backend": "ray", "gpus_per_node": 8}


def test_the_leader_is_node_0_of_lws_group_size_nodes():
    a = L.parse(NNODES.read_text())
    assert not a.ray and a.get("nnodes") == "$(LWS_GROUP_SIZE)"       # kept as written
    v = L.read_values(a).values
    assert (v["nnodes"], v["node_rank"], v["gpus_per_node"]) == (2, 0, 8)
    assert "headless" not in {x.key for x in a.args}                 # the leader's container, not a worker's


def test_no_leader_template_means_the_worker_template_leads():
    text = NNODES.read_text()
    doc = yaml.safe_load(text)
    t = doc["spec"]["leaderWorkerTemplate"]
    del t["leaderTemplate"]
    t["workerTemplate"]["spec"]["containers"][0]["args"].remove("--headless")
    a = L.parse(yaml.safe_dump(doc))
    assert (a.group, a.gpus, a.worker_gpus) == (2, 8, 8)
    assert L.read_values(a).values["nnodes"] == 2


# --- one launch, one answer ----------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [RAY, NNODES, DP, EXAMPLE], ids=lambda p: p.name)
def test_the_manifest_answers_as_the_pasted_launch_with_the_same_gpus(path):
    size, per_pod, _ = group_of(path)
    manifest = invoke(["check", "--gpu", "H100", "--offline", "--json", "--launch", path])
    assert manifest.rc == 0, manifest.err
    pasted = invoke(["check", "--gpu", "H100", "--offline", "--json", "--gpu-count", size * per_pod,
                     "--gpus-per-node", per_pod, "--", *PASTED[path].split()])
    assert pasted.rc == 0, pasted.err
    a, b = json.loads(manifest.out), json.loads(pasted.out)
    assert a["launch"]["form"] == "k8s" and b["launch"]["form"] == "serve"
    subs = {"$(LWS_GROUP_SIZE)": str(size), "$(LWS_WORKER_INDEX)": "0"}
    # the manifest's image names its release (vllm/vllm-openai:vX.Y.Z): said once, the same rules as the pasted
    # line answered with that release
    image = [n for n in a["notes"] if "the release the launch's image names" in n]
    a["notes"] = [n for n in a["notes"] if n not in image]
    assert len(image) == 1 and a["vllm"]["version"] == b["vllm"]["version"] == image[0].split()[1].rstrip(":")
    assert _without_source(a, subs) == _without_source(b, {})
    lay = a["layout"]
    assert (lay["gpus"], lay["nodes"], lay["gpus_per_node"]) == (size * per_pod, size, per_pod)
    assert [n["gpus"] for n in lay["per_node"]] == [per_pod] * size
    assert all(n["fits"] for n in lay["per_node"])


def test_the_report_says_each_node():
    r = invoke(["check", "--gpu", "H100", "--offline", "--details", "--launch", NNODES])
    assert r.rc == 0, r.err
    assert "layout: 2 nodes x 8 GPUs (TP 8 x DP 2, expert parallel)" in " ".join(r.out.split())
    assert "this line starts node 0" in " ".join(r.out.split())


# --- a group that does not match the launch -----------------------------------------------------------------

def _check(text: str):
    return invoke(["check", "--gpu", "H100", "--offline", "--launch", "-"], input=text)


def test_ray_without_the_backend_flag_is_refused_as_vllm_032_refuses_it():
    r = _check(DOCS.read_text())
    assert r.rc == 2
    msg = " ".join(r.err.split())
    assert "World size (16) is larger than the number of available GPUs (8) in this node" in msg
    assert "--distributed-executor-backend ray" in msg
    j = invoke(["check", "--gpu", "H100", "--offline", "--json", "--launch", DOCS])   # as JSON, schema-checked
    assert j.rc == 2 and json.loads(j.out)


def test_ray_without_the_backend_flag_is_ray_up_to_0_11():
    """0.11 config/parallel.py ParallelConfig.__post_init__: no backend and world size 16 over the node's 8 GPUs
    (cuda_device_count_stateless() < world_size) with Ray installed: backend = "ray" (the leader started the
    Ray cluster). 0.12 raises "Tensor parallel size (16) cannot be larger than the number of available GPUs (8).";
    0.13 and later "World size (16) is larger than the number of available GPUs (8) in this node"."""
    j = invoke(["check", "--gpu", "H100", "--offline", "--json", "--vllm-version", "0.11.0", "--launch", DOCS])
    assert j.rc in (0, 1), j
    assert any("picks the Ray backend itself" in n for n in j.json["notes"])
    assert j.json["layout"]["nodes"] == 2
    small = invoke(["check", "--gpu", "H100", "--offline", "--vllm-version", "0.11.0", "--launch", "-"],
                   input=DOCS.read_text().replace("size: 2", "size: 1"))
    assert small.rc == 2 and "Cannot provide a placement group" in " ".join(small.err.split())
    r = invoke(["check", "--gpu", "H100", "--offline", "--vllm-version", "0.12.0", "--launch", DOCS])
    assert r.rc == 2
    assert "Tensor parallel size (16) cannot be larger than the number of available GPUs (8)." in " ".join(r.err.split())


def test_a_ray_group_with_too_few_gpus_never_gets_its_placement_group():
    r = _check(RAY.read_text().replace("size: 2", "size: 1"))
    assert r.rc == 2
    msg = " ".join(r.err.split())
    assert "needs 16 GPUs" in msg and "give the Ray cluster 8" in msg and "Cannot provide a placement group" in msg


def test_nnodes_other_than_the_group_size_is_refused():
    r = _check(NNODES.read_text().replace("$(LWS_GROUP_SIZE)", "4"))
    assert r.rc == 2
    assert "--nnodes 4 but the LeaderWorkerSet's 2 pods of 8 GPUs" in " ".join(r.err.split())


def test_a_pod_with_fewer_gpus_than_its_node_share_is_refused():
    r = _check(NNODES.read_text().replace("nvidia.com/gpu: 8", "nvidia.com/gpu: 4"))
    assert r.rc == 2
    msg = " ".join(r.err.split())
    assert "puts 8 ranks on each node" in msg and "2 pods of 4 GPUs" in msg


def test_data_parallel_nodes_other_than_the_group_size_are_refused():
    r = _check(DP.read_text().replace("size: 2", "size: 3"))
    assert r.rc == 2
    assert "runs on 2 nodes, but the LeaderWorkerSet's 3 pods" in " ".join(r.err.split())


def test_leader_and_workers_with_different_gpus_are_refused():
    text = RAY.read_text()
    i = text.index("workerTemplate")
    r = _check(text[:i] + text[i:].replace('nvidia.com/gpu: "8"', 'nvidia.com/gpu: "4"'))
    assert r.rc == 2
    assert "the leader pod asks for 8 GPUs and each worker pod for 4" in " ".join(r.err.split())


# --- variables ---------------------------------------------------------------------------------------------

def test_a_variable_kvfit_cannot_resolve_is_refused_naming_it():
    text = NNODES.read_text().replace("- --enable-expert-parallel\n              - --nnodes",
                                      "- --enable-expert-parallel\n              - --max-model-len\n"
                                      "              - $(MAX_LEN)\n              - --nnodes", 1)
    r = _check(text)
    assert r.rc == 2
    assert "--max-model-len $(MAX_LEN): kvfit cannot resolve MAX_LEN" in " ".join(r.err.split())
    r = invoke(["check", "--gpu", "H100", "--offline", "--max-model-len", "8192", "--launch", "-"], input=text)
    assert r.rc == 0, r.err                           # kvfit's own flag gives the value


def test_shell_arithmetic_is_refused_naming_it():
    text = DP.read_text()
    i = text.index("workerTemplate")
    leader = text[:i].replace("--data-parallel-size-local 8 \\",
                              "--data-parallel-size-local 8 \\\n                  "
                              "--data-parallel-start-rank $((LWS_WORKER_INDEX*8)) \\")
    with pytest.raises(BadInput, match=r"--data-parallel-start-rank \$\(\(LWS_WORKER_INDEX\*8\)\): kvfit cannot resolve "
                                       r"LWS_WORKER_INDEX\*8"):
        v = L.read_values(L.parse(leader + text[i:]))
        v.require_resolved(set())


# --- corrections --------------------------------------------------------------------------------------------

def test_a_correction_keeps_the_variables_and_edits_only_the_leader():
    text = NNODES.read_text()
    a = L.parse(text)
    b = L.updated(a, {"max-model-len": "8192"})
    out = L.render(b)
    assert out.count("$(LWS_GROUP_SIZE)") == 2 and out.count("--max-model-len") == 1
    assert L.read_values(L.parse(out)).values["max_model_len"] == 8192


def test_more_gpus_are_asked_for_in_every_pod_of_the_group():
    text = RAY.read_text()
    a = L.parse(text)
    b = L.with_gpus(a, 32)                              # 2 pods: 16 each
    assert (b.gpus, b.gpu_count) == (16, 32)
    out = L.render(b)
    assert out.count('nvidia.com/gpu: "16"') == 2 and 'nvidia.com/gpu: "8"' not in out
    c = L.updated(a, {"tensor-parallel-size": "16"})    # TP 16 x PP 2 = 32 GPUs over the 2 pods
    assert c.gpus == 16


def test_as_a_serve_line_the_variables_lws_sets_are_written_as_their_values():
    a = L.parse(NNODES.read_text())
    line = " ".join(L.render(a, "serve").replace("\\\n", " ").split())
    assert "--nnodes 2 --node-rank 0" in line and "LWS_GROUP_SIZE" not in line
    assert "'$(LWS_LEADER_ADDRESS)'" in line                 # a DNS name only the cluster knows: kept
    b = L.parse(line)
    v = L.read_values(b).values
    assert (v["nnodes"], v["node_rank"]) == (2, 0)
