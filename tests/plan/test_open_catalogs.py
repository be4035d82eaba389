"""Open catalogs: GPU types and model architectures a blueprint declares under ``catalog:`` flow into
the planner (memory, FLOPs, the NVLink domain), the Kubernetes topology labels and the Megatron-LM
arguments, without changing the built-in catalog.

Flag names are Megatron-LM core_r0.12.0's (megatron/training/arguments.py): --rotary-base (int,
default 10000), --norm-epsilon (default 1e-5), --add-qkv-bias, --disable-bias-linear,
--untie-embeddings-and-output-weights, --normalization, --position-embedding-type, --swiglu.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from aiinfra.catalog import gpus as builtin_gpus
from aiinfra.errors import BlueprintError
from aiinfra.pipeline import build_data
from conftest import ROOT, render

# Qwen2.5-72B-Instruct, https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/config.json:
# num_hidden_layers 80, hidden_size 8192, intermediate_size 29568, num_attention_heads 64,
# num_key_value_heads 8, vocab_size 152064, rope_theta 1000000.0, rms_norm_eps 1e-06,
# tie_word_embeddings false, max_position_embeddings 32768; Qwen2 attention has q/k/v biases
# (Megatron-LM core_r0.12.0 examples/multimodal/nvlm/pretrain_qwen20_72b_internvit_6b.sh runs the
# same shape with --add-qkv-bias --rotary-base 1000000 --norm-epsilon 1e-06).
QWEN = {"family": "qwen2", "layers": 80, "hidden": 8192, "ffn_hidden": 29568, "heads": 64, "kv_heads": 8,
        "vocab": 152064, "rope_theta": 1000000, "norm_epsilon": "1e-6", "qkv_bias": True,
        "tied_embeddings": False, "max_context": 32768}
# GB200 NVL72 (NVIDIA GB200 NVL72 product page: 72 Blackwell GPUs in one NVLink domain, 1.8 TB/s
# NVLink per GPU, 18 compute trays of 4 GPUs); per-GPU rates are the rack's divided by 72, dense
# (half the sparse figures): illustrative inputs of this test, not a catalog entry.
GB200 = {"product": "NVIDIA-GB200", "memory": "186GB", "memory_bandwidth": "8TB/s", "bf16_dense_tflops": 2500,
         "fp8_dense_tflops": 5000, "int8_dense_tops": 5000, "tdp_w": 1200, "nvlink_bandwidth": "1.8TB/s",
         "nvlink_domain_gpus": 72, "compute_capability": "10.0"}
# AMD Instinct MI300X data sheet: 192 GB HBM3, 5.3 TB/s, BF16 1307.4 TFLOP/s dense, FP8 2614.9,
# INT8 2614.9 TOPS, 750 W, Infinity Fabric 896 GB/s, 8 GPUs per platform.
MI300X = {"product": "AMD-Instinct-MI300X", "vendor": "amd", "memory": "192GB", "memory_bandwidth": "5.3TB/s",
          "bf16_dense_tflops": 1307.4, "fp8_dense_tflops": 2614.9, "int8_dense_tops": 2614.9, "tdp_w": 750,
          "nvlink_bandwidth": "896GB/s", "nvlink_domain_gpus": 8}


def dev_raw() -> dict:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aiinfra:cluster"]


def megatron_job(raw: dict, **changes) -> dict:
    job = copy.deepcopy(next(j for j in raw["training"] if j["framework"] == "megatron"))
    job.update(changes)
    return job


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.fixture(scope="module")
def qwen_built():
    raw = dev_raw()
    raw["catalog"] = {"models": {"qwen2.5-72b": QWEN}}
    next(g for g in raw["node_groups"] if g["name"] == "gpu-train")["hosts"] = "gpu[01,03-09]"
    raw["training"] = [megatron_job(raw, name="qwen-pretrain", model="qwen2.5-72b", nodes=8, seq_len=4096,
                                    global_batch=128, recompute="full")]
    raw["serving"] = []
    return build_data(raw, "open-catalogs.yaml", "dev")


def test_a_qwen_style_model_renders_its_own_architecture(qwen_built):
    job = qwen_built.plan.jobs[0]
    args = job.args
    assert flag(args, "--rotary-base") == str(QWEN["rope_theta"])
    assert float(flag(args, "--norm-epsilon")) == float(QWEN["norm_epsilon"])
    assert "--add-qkv-bias" in args and "--disable-bias-linear" in args  # biases on QKV only
    assert "--untie-embeddings-and-output-weights" in args and "--swiglu" in args
    assert flag(args, "--normalization") == "RMSNorm" and flag(args, "--position-embedding-type") == "rope"
    assert flag(args, "--num-query-groups") == str(QWEN["kv_heads"])
    script = render(qwen_built, only=["jobs"])[f"jobs/{job.name}/sbatch.sh"]
    assert "--rotary-base 1000000" in script and "--add-qkv-bias" in script


def test_qkv_bias_is_counted_by_the_planner(qwen_built):
    m = qwen_built.plan.jobs[0].model
    no_bias = m.__class__(**{**m.__dict__, "qkv_bias": False})
    # one bias per Q, K and V output feature in every layer
    assert m.params - no_bias.params == QWEN["layers"] * (QWEN["hidden"] + 2 * QWEN["kv_heads"] * QWEN["hidden"] // QWEN["heads"])
    # https://huggingface.co/Qwen/Qwen2.5-72B-Instruct (model card): "Number of Parameters: 72.7B"
    assert abs(m.params - 72.7e9) / 72.7e9 < 0.001


def test_llama3_renders_its_published_rope_base(dev):
    args = next(j for j in dev.plan.jobs if j.framework == "megatron").args
    # Llama 3 config.json: rope_theta 500000.0, rms_norm_eps 1e-05 (not Megatron's default base 10000)
    assert flag(args, "--rotary-base") == "500000"
    assert float(flag(args, "--norm-epsilon")) == 1e-5
    assert "--add-qkv-bias" not in args


def test_tied_embeddings_are_not_untied():
    raw = dev_raw()
    raw["catalog"] = {"models": {"tiny-tied": {**QWEN, "layers": 4, "hidden": 1024, "ffn_hidden": 2816,
                                               "heads": 16, "kv_heads": 2, "tied_embeddings": True}}}
    raw["training"] = [megatron_job(raw, model="tiny-tied")]
    raw["serving"] = []
    args = build_data(raw, "tied.yaml", "dev").plan.jobs[0].args
    assert "--untie-embeddings-and-output-weights" not in args and "--swiglu" in args


def gb200_raw(tp: int, nodes: int = 4, model: str = "llama3-70b", **layout) -> dict:
    raw = dev_raw()
    raw["catalog"] = {"gpus": {"gb200": GB200}}
    raw["node_types"]["gb200-tray"] = {"gpu": {"model": "gb200", "count": 4},
                                       "cpu": {"sockets": 2, "cores_per_socket": 72},
                                       "memory": "960GiB", "rails": {"hcas": "mlx5_[0-3]", "rate": "ndr400"},
                                       "storage_hca": "mlx5_4"}
    raw["fabric"]["su_nodes"] = 18
    raw["node_groups"] = [g for g in raw["node_groups"] if g["name"] == "mgmt"]
    raw["node_groups"].append({"name": "gpu-nvl", "hosts": "nvl[01-36]", "type": "gb200-tray", "address_index": 20,
                               "scheduler": "kubernetes", "roles": ["lustre_client"]})
    del raw["node_types"]["gpu"]
    raw["kubernetes"]["rdma_shared_max_pods"] = 8  # room for the pods' rail addresses of 36 nodes
    raw["networks"]["ipoib"] = {"cidr": "10.20.0.0/18", "rail_prefix": 21}
    raw["slurm"] = None
    raw["versions"].pop("slurm")
    for g in raw["node_groups"]:
        g["roles"] = [r for r in g.get("roles", []) if not r.startswith("slurm")]
    raw["training"] = [megatron_job(raw, name="nvl-tp", model=model, node_group="gpu-nvl", nodes=nodes,
                                    **{"tp": tp, "pp": "auto", "dp": "auto", "seq_len": 4096, "global_batch": 64,
                                       "virtual_pipeline_stages": 1, "launcher": "torchrun", **layout})]
    raw["serving"] = []
    return raw


def test_gb200_nvl72_lets_tensor_parallelism_span_nodes_of_one_domain():
    built = build_data(gb200_raw(tp=8), "gb200.yaml", "dev")
    plan, _ = built.plan.training[0]
    assert plan.layout.tp == 8 and plan.request.gpus_per_node == 4
    assert plan.memory.gpu_memory_bytes == 186 * 10**9  # the declared memory, not an H100's
    assert plan.estimate.tp_comm_s > 0 and any("NVLink domain" in w for w in plan.warnings)
    assert flag(built.plan.jobs[0].args, "--tensor-model-parallel-size") == "8"
    # the same TP over InfiniBand is slower: the planner used the NVLink bandwidth
    from aiinfra.plan.training import step_time, with_overrides
    ib_only = with_overrides(plan.request, gpu=builtin_gpus.GpuModel(**{**plan.request.gpu.__dict__,
                                                                          "nvlink_domain_gpus": 4}),
                             allow_tp_across_nodes=True)
    assert step_time(ib_only, plan.layout).tp_comm_s > plan.estimate.tp_comm_s


def test_an_hgx_node_keeps_tensor_parallelism_inside_the_node():
    raw = dev_raw()
    raw["node_groups"][1]["hosts"] = "gpu[01,03]"
    raw["training"] = [megatron_job(raw, model="llama2-7b", nodes=2, tp=16, pp=1, dp=1)]  # 32 heads
    raw["serving"] = []
    with pytest.raises(BlueprintError) as exc:
        build_data(raw, "h100.yaml", "dev")
    assert any("NVLink domain (8 GPUs)" in p.message for p in exc.value.problems)


def test_tensor_parallelism_may_not_leave_the_nvlink_domain():
    with pytest.raises(BlueprintError) as exc:
        build_data(gb200_raw(tp=16, model="llama2-7b", pp=1, dp=1), "gb200.yaml", "dev")  # 72 / 16 is not whole
    assert any("does not divide the 72-GPU NVLink domain" in p.message for p in exc.value.problems)


def test_kubernetes_nvlink_domain_labels_follow_the_declared_domain():
    from aiinfra.render.k8s_topology import NVLINK_DOMAIN_LABEL, node_labels

    built = build_data(gb200_raw(tp=8), "gb200.yaml", "dev")
    domains = {h: node_labels(built.cluster, h)[NVLINK_DOMAIN_LABEL] for h in built.cluster.groups["gpu-nvl"].hosts}
    assert len(set(domains.values())) == 2  # 36 nodes of 4 GPUs: two 72-GPU domains
    assert domains["nvl01"] == domains["nvl18"] != domains["nvl19"] == domains["nvl36"]
    assert node_labels(built.cluster, "nvl01")["aiinfra.io/gpu-product"] == GB200["product"]


def test_the_builtin_catalog_is_not_changed():
    build_data(gb200_raw(tp=8), "gb200.yaml", "dev")
    assert "gb200" not in builtin_gpus.GPUS
    raw = gb200_raw(tp=8)
    del raw["catalog"]
    with pytest.raises(BlueprintError) as exc:
        build_data(raw, "no-catalog.yaml", "dev")
    assert any(p.id == "unknown-gpu-model" for p in exc.value.problems)


def test_an_amd_gpu_is_declared_for_sizing_but_refused_in_a_node_type():
    raw = dev_raw()
    raw["catalog"] = {"gpus": {"mi300x": MI300X}}
    built = build_data(raw, "amd.yaml", "dev")  # declared only: valid
    from aiinfra.catalog.gpus import resolve_gpu
    assert resolve_gpu("mi300x", built.cluster.blueprint.catalog.gpus).memory_bytes == 192 * 10**9
    raw["node_types"]["gpu"]["gpu"]["model"] = "mi300x"
    with pytest.raises(BlueprintError) as exc:
        build_data(raw, "amd.yaml", "dev")
    assert [p.id for p in exc.value.problems if p.level.value == "error"] == ["gpu-vendor-unsupported"]
