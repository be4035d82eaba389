"""Hardware sanity of the node types: what an HGX baseboard and a rail-optimised fabric can hold.

- A node carries at most one NVLink domain's GPUs (``nvlink_domain_gpus`` of the catalog: 8 on
  an HGX H100/H200/A100 baseboard), so 16 or 80 GPUs on one node type is a typo.
- Rails pair with GPUs: one HCA per GPU (rail-optimised), or a whole number of GPUs per HCA.
  Seven HCAs for eight GPUs leaves a GPU without its rail.
- The GPUs are NVIDIA's (the driver, CUDA, NCCL, DOCA and the GPU Operator are): a blueprint may
  declare another vendor's GPU type in ``catalog.gpus`` for sizing, not put it in a node type.
- An NVLink domain larger than a node (GB200 NVL72: 72 GPUs, 18 nodes of 4) is whole nodes.
- The storage HCA is a port of its own: naming one of the rail HCAs would put storage traffic on
  a compute rail and the same netdev in two networks.
"""

from __future__ import annotations

from collections.abc import Iterator

from ClusterShell.NodeSet import NodeSet

from aiinfra.catalog.gpus import resolve_gpu
from aiinfra.checks.registry import BlueprintView, error, validator
from aiinfra.errors import Problem


@validator()
def node_type_hardware(v: BlueprintView) -> Iterator[Problem]:
    for name, nt in v.bp.node_types.items():
        try:
            model = resolve_gpu(nt.gpu.model, v.bp.catalog.gpus) if nt.gpu else None
        except KeyError:  # unknown-gpu-model says so
            model = None
        if nt.gpu and model and model.vendor != "nvidia":
            yield error(("node_types", name, "gpu", "model"), "gpu-vendor-unsupported",
                        f"'{model.name}' is not an NVIDIA GPU (vendor {model.vendor}): aiinfra renders an NVIDIA stack (driver, "
                        "CUDA, NCCL, DOCA, GPU Operator, DCGM exporter, NGC and vLLM CUDA images)",
                        "keep the GPU type in catalog.gpus for sizing, and give node types NVIDIA GPUs")
        if nt.gpu and model and model.nvlink_domain_gpus > nt.gpu.count and model.nvlink_domain_gpus % nt.gpu.count:
            yield error(("node_types", name, "gpu", "count"), "nvlink-domain-not-whole-nodes",
                        f"{nt.gpu.count} GPUs per node do not divide the {model.nvlink_domain_gpus}-GPU NVLink domain "
                        f"of {model.name}: a domain must be whole nodes",
                        "give the GPUs per node of the system (GB200 NVL72: 4), or correct nvlink_domain_gpus")
        if nt.gpu and model and nt.gpu.count > model.nvlink_domain_gpus:
            yield error(("node_types", name, "gpu", "count"), "gpu-count-exceeds-baseboard",
                        f"{nt.gpu.count} GPUs on one node: a {model.name} baseboard holds at most "
                        f"{model.nvlink_domain_gpus}", f"give the GPUs of one node (at most {model.nvlink_domain_gpus});"
                        " more nodes are more hosts in a node group")
        if not nt.rails:
            continue
        hcas = list(NodeSet(nt.rails.hcas))
        if nt.gpu and not (len(hcas) % nt.gpu.count == 0 or nt.gpu.count % len(hcas) == 0):
            yield error(("node_types", name, "rails", "hcas"), "rails-gpu-mismatch",
                        f"{len(hcas)} rail HCAs for {nt.gpu.count} GPUs: a rail-optimised node has one HCA per "
                        "GPU, or a whole number of GPUs per HCA", f"list {nt.gpu.count} HCAs, e.g. "
                        f"'mlx5_[0-{nt.gpu.count - 1}]'")
        if nt.storage_hca and nt.storage_hca in hcas:
            yield error(("node_types", name, "storage_hca"), "storage-hca-is-a-rail",
                        f"storage HCA '{nt.storage_hca}' is also a compute rail HCA",
                        "name the separate storage port (e.g. the ninth HCA, mlx5_8)")
