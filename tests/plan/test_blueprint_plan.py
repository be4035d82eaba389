"""plan_blueprint: every job of a blueprint, problems at key paths instead of exceptions."""

import time

from aiinfra.plan.cluster import plan_blueprint
from aiinfra.spec.models import Blueprint


def blueprint(training=(), serving=(), power_budget=3000.0):
    return Blueprint.model_validate({
        "name": "test",
        "site": {"power_budget": power_budget},
        "versions": {"os": "ubuntu-22.04", "kernel": "5.15", "nvidia_driver": "550.90.07", "cuda": "12.4",
                     "nccl": "2.21.5", "doca_ofed": "2.7.0"},
        "node_types": {
            "hgx": {"gpu": {"model": "h100-80gb", "count": 8}, "cpu": {"sockets": 2, "cores_per_socket": 56},
                    "memory": "2TiB"},
            "cpu": {"cpu": {"sockets": 2, "cores_per_socket": 32}, "memory": "512GiB"},
        },
        "networks": {"management": {"cidr": "10.0.0.0/16"}, "bmc": {"cidr": "10.1.0.0/16"}},
        "node_groups": [
            {"name": "gpu", "hosts": "gpu[001-480]", "type": "hgx", "scheduler": "slurm"},
            {"name": "serve", "hosts": "srv[01-32]", "type": "hgx", "scheduler": "kubernetes"},
            {"name": "ctl", "hosts": "ctl[1-3]", "type": "cpu"},
        ],
        "storage": {"lustre": {"fsname": "lfs", "mgs_nids": ["10.2.255.1@o2ib"], "capacity": "100PB",
                               "bandwidth": "1TB/s"}},
        "training": list(training),
        "serving": list(serving),
    })


def test_full_512_node_plan_is_fast_and_complete():
    bp = blueprint(
        training=[
            {"name": "l70", "model": "llama3-70b", "node_group": "gpu", "nodes": 256, "tokens": 15e12},
            {"name": "l405", "model": "llama3-405b", "node_group": "gpu", "nodes": 480, "tokens": 15.6e12,
             "tp": 8, "pp": 16, "recompute": "full"},
            {"name": "l8", "model": "llama3-8b", "node_group": "gpu", "nodes": 16, "tokens": 15e12},
        ],
        serving=[
            {"name": "chat", "model": "llama3-70b", "node_group": "serve", "quantization": "awq-int4",
             "target_tokens_per_s": 20000},
            {"name": "big", "model": "llama3-405b", "node_group": "serve", "quantization": "fp8",
             "speculative": {"draft_model": "llama3-8b"}},
        ],
    )
    start = time.perf_counter()
    plan = plan_blueprint(bp)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.5
    assert [t.request.name for t, _ in plan.training] == ["l70", "l405", "l8"]
    assert all(rel is not None and rel.checkpoint_write_s > 0 for _, rel in plan.training)
    assert [s.request.name for s in plan.serving] == ["chat", "big"]
    # 512 x 8 x 700 W + 512 x 2 kW + 3 CPU nodes > 3,000 kW: a warning, not an error
    assert [p.id for p in plan.problems] == ["plan-power-budget"]
    data = plan.to_dict()
    assert data["power"]["it_power_w"] == 512 * 8 * 700 + 512 * 2000 + 3 * 800


def test_problems_carry_key_paths():
    bp = blueprint(
        training=[
            {"name": "bad-tp", "model": "llama3-70b", "node_group": "gpu", "nodes": 3, "tp": 3, "pp": 1,
             "tokens": 1e12},
            {"name": "typo", "model": "llama3-70", "node_group": "gpu", "nodes": 1, "tokens": 1e12},
        ],
        serving=[{"name": "tight", "model": "llama3-70b", "node_group": "serve", "tp": 1}],
        power_budget=10_000,
    )
    plan = plan_blueprint(bp)
    found = {p.key_path: p for p in plan.problems}
    assert "does not divide 64 attention heads" in found["aiinfra:cluster.training[0]"].message
    assert "did you mean 'llama3-70b'" in found["aiinfra:cluster.training[1].model"].message
    assert "141.1 GB" in found["aiinfra:cluster.serving[0]"].message


def test_power_budget_is_judged_against_the_nameplate():
    # 512 HGX H100 nodes at NVIDIA's DGX H100 nameplate, "10.2 kW max" (datasheet / user guide), and 3
    # CPU nodes at 800 W: 5,224.8 kW; busy nodes typically draw 512 x (8 x 700 + 2,000) + 3 x 800 =
    # 3,893.6 kW. A 4.5 MW site holds the typical draw but not what its circuits must carry.
    plan = plan_blueprint(blueprint(power_budget=4500))
    (problem,) = [p for p in plan.problems if p.id == "plan-power-budget"]
    assert problem.level.value == "warning"
    assert problem.message.startswith("nameplate IT power 5,225 kW")
    assert "typical 3,894 kW" in problem.message and "within it" in problem.message
    assert plan.to_dict()["power"]["budget_exceeded_by"] == "nameplate"
    over = plan_blueprint(blueprint(power_budget=3000))
    assert "also over" in next(p.message for p in over.problems if p.id == "plan-power-budget")
    assert not [p for p in plan_blueprint(blueprint(power_budget=5300)).problems if p.id == "plan-power-budget"]
