"""Power: GPUs at TDP plus a per-node overhead (CPUs, NICs, fans, NVSwitch), times PUE,
against the site's IT power budget (kW in the blueprint)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.defaults import DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE
from aiinfra.catalog.gpus import GpuModel
from aiinfra.plan.common import PlanError

DEFAULT_CPU_NODE_W = 800  # a CPU-only node (controllers, login), W


@dataclass(frozen=True)
class NodePower:
    """``nodes`` nodes, each with ``gpus_per_node`` GPUs of ``gpu`` (None: CPU-only)."""

    nodes: int
    gpu: GpuModel | None = None
    gpus_per_node: int = 0


@dataclass(frozen=True)
class PowerPlan:
    gpus: int
    nodes: int
    gpu_power_w: float
    node_overhead_power_w: float
    it_power_w: float
    pue: float
    budget_w: float | None

    @property
    def facility_power_w(self) -> float:
        return self.it_power_w * self.pue

    @property
    def headroom_w(self) -> float | None:
        return None if self.budget_w is None else self.budget_w - self.it_power_w

    @property
    def fits(self) -> bool:
        return self.budget_w is None or self.it_power_w <= self.budget_w

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "power",
            "gpus": self.gpus,
            "nodes": self.nodes,
            "gpu_power_w": self.gpu_power_w,
            "node_overhead_power_w": self.node_overhead_power_w,
            "it_power_w": self.it_power_w,
            "pue": self.pue,
            "facility_power_w": self.facility_power_w,
            "budget_w": self.budget_w,
            "headroom_w": self.headroom_w,
            "fits": self.fits,
        }


def plan_power(
    groups: list[NodePower],
    node_overhead_w: float = DEFAULT_NODE_OVERHEAD_W,
    pue: float = DEFAULT_PUE,
    budget_kw: float | None = None,
    cpu_node_w: float = DEFAULT_CPU_NODE_W,
) -> PowerPlan:
    """IT power = sum(GPUs x TDP) + GPU nodes x node_overhead_w + CPU nodes x cpu_node_w."""
    if pue < 1:
        raise PlanError(f"PUE must be at least 1, got {pue}")
    gpus = sum(g.nodes * g.gpus_per_node for g in groups if g.gpu is not None)
    gpu_w = sum(g.nodes * g.gpus_per_node * g.gpu.tdp_w for g in groups if g.gpu is not None)
    overhead = sum(g.nodes * (node_overhead_w if g.gpu is not None else cpu_node_w) for g in groups)
    return PowerPlan(
        gpus=gpus, nodes=sum(g.nodes for g in groups), gpu_power_w=gpu_w, node_overhead_power_w=overhead,
        it_power_w=gpu_w + overhead, pue=pue, budget_w=None if budget_kw is None else budget_kw * 1000,
    )
