"""Power: GPUs at TDP plus a per-node overhead (CPUs, NICs, fans, NVSwitch), times PUE,
against the site's IT power budget (kW in the blueprint): the typical draw of a busy node. Beside
it, the nameplate: the maximum input power of the server (:data:`NODE_NAMEPLATE_W`), what the
PDUs and circuits must carry at worst. The budget is judged as the facility provisions: against
the nameplate when every node group has one, else against the typical draw
(:attr:`PowerPlan.budget_exceeded_by`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiinfra.catalog.defaults import DEFAULT_NODE_OVERHEAD_W, DEFAULT_PUE
from aiinfra.catalog.gpus import GpuModel
from aiinfra.plan.common import PlanError

DEFAULT_CPU_NODE_W = 800  # a CPU-only node (controllers, login), W

#: Nameplate (maximum input) power of an 8-GPU server, W, by GPU: NVIDIA DGX H100 / H200 user guide
#: and datasheets, "10.2 kW max" (six 3.3 kW supplies, 4 + 2 redundant); DGX A100 datasheet, "6.5 kW
#: max". HGX servers of other vendors are close; a node type's own figure overrides it.
NODE_NAMEPLATE_W: dict[str, int] = {"h100-80gb": 10_200, "h200-141gb": 10_200, "a100-80gb": 6_500,
                                    "a100-40gb": 6_500}
NAMEPLATE_GPUS_PER_NODE = 8  # the servers the table describes


def node_nameplate_w(gpu: GpuModel | None, gpus_per_node: int) -> float | None:
    """The catalog's nameplate of a node (None: no figure for that GPU or node size; CPU nodes:
    DEFAULT_CPU_NODE_W)."""
    if gpu is None:
        return float(DEFAULT_CPU_NODE_W)
    if gpus_per_node != NAMEPLATE_GPUS_PER_NODE or gpu.name not in NODE_NAMEPLATE_W:
        return None
    return float(NODE_NAMEPLATE_W[gpu.name])


@dataclass(frozen=True)
class NodePower:
    """``nodes`` nodes, each with ``gpus_per_node`` GPUs of ``gpu`` (None: CPU-only);
    ``nameplate_w``: the node's maximum input power (None: the catalog's, :func:`node_nameplate_w`)."""

    nodes: int
    gpu: GpuModel | None = None
    gpus_per_node: int = 0
    nameplate_w: float | None = None


@dataclass(frozen=True)
class PowerPlan:
    gpus: int
    nodes: int
    gpu_power_w: float
    node_overhead_power_w: float
    it_power_w: float
    pue: float
    budget_w: float | None
    #: every node at its nameplate maximum (None: a node group has no nameplate figure)
    nameplate_it_power_w: float | None = None

    @property
    def nameplate_fits(self) -> bool | None:
        if self.budget_w is None or self.nameplate_it_power_w is None:
            return None
        return self.nameplate_it_power_w <= self.budget_w

    @property
    def budget_exceeded_by(self) -> str | None:
        """The figure that exceeds the budget, as the facility must provision: ``nameplate`` (every
        node at its maximum input power) when known and over, else ``typical`` when the typical draw
        is over; None within budget or without one."""
        if self.budget_w is None:
            return None
        if self.nameplate_it_power_w is not None and self.nameplate_it_power_w > self.budget_w:
            return "nameplate"
        return "typical" if self.it_power_w > self.budget_w else None

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
            "nameplate_it_power_w": self.nameplate_it_power_w,
            "nameplate_facility_power_w": (None if self.nameplate_it_power_w is None
                                           else self.nameplate_it_power_w * self.pue),
            "nameplate_fits": self.nameplate_fits,
            "budget_exceeded_by": self.budget_exceeded_by,
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
    plates = [g.nameplate_w if g.nameplate_w is not None else
              (cpu_node_w if g.gpu is None else node_nameplate_w(g.gpu, g.gpus_per_node)) for g in groups]
    nameplate = None if any(p is None for p in plates) else sum(g.nodes * p for g, p in zip(groups, plates, strict=True))
    return PowerPlan(
        gpus=gpus, nodes=sum(g.nodes for g in groups), gpu_power_w=gpu_w, node_overhead_power_w=overhead,
        it_power_w=gpu_w + overhead, pue=pue, budget_w=None if budget_kw is None else budget_kw * 1000,
        nameplate_it_power_w=nameplate,
    )
