"""Planning for failure (aiinfra.plan.failures): node failures from the AFR, the spare pool per SU
against a direct Poisson tail, goodput analytic against the seeded Monte-Carlo of the run, and the
`plan-spares-short` warning on prod."""

from __future__ import annotations

import json
import math
import random
import statistics

import pytest

from aiinfra.pipeline import build_text
from aiinfra.plan.common import DAY_S, HOUR_S, YEAR_H
from aiinfra.plan.failures import (
    Run,
    expected_wall_s,
    node_failures_per_year,
    plan_failures,
    plan_group_failures,
    plan_job_goodput,
    poisson_tail,
    simulate,
    simulate_wall_s,
    spares_for,
)
from aiinfra.plan.reliability import daly_interval_s
from aiinfra.plan.reliability import goodput as first_order_goodput
from conftest import ROOT

YEAR_S = YEAR_H * HOUR_S
PROD = ROOT / "stacks" / "Pulumi.prod.yaml"
SITE_AFR_LINE = "      gpu_annual_failure_rate: 0.05"


def prod_with_site(*lines: str):
    """prod with extra ``site:`` keys (each a 'key: value')."""
    text = PROD.read_text()
    assert SITE_AFR_LINE in text
    extra = "".join(f"\n      {line}" for line in lines)
    return build_text(text.replace(SITE_AFR_LINE, SITE_AFR_LINE + extra, 1), "stacks/Pulumi.prod.yaml", "prod")


def direct_tail(mean: float, s: int) -> float:
    """P(N > s), N ~ Poisson(mean), as the textbook writes it: 1 - sum_{k<=s} e^-m m^k / k!."""
    return 1 - sum(math.exp(-mean) * mean**k / math.factorial(k) for k in range(s + 1))


def group_index(built, name: str) -> int:
    return next(i for i, g in enumerate(built.cluster.blueprint.node_groups) if g.name == name)


# ---------------------------------------------------------------- node failures


def test_a_node_fails_when_any_of_its_gpus_does():
    # 8 GPUs at 5 %/GPU-year: the minimum of 8 exponential lifetimes is exponential at the sum of the rates
    assert node_failures_per_year(8, 0.05) == pytest.approx(8 * 0.05)
    # plus failures of other parts, when the site gives a rate for them
    assert node_failures_per_year(8, 0.05, 0.1) == pytest.approx(8 * 0.05 + 0.1)


def test_prod_node_failures_per_month(prod):
    f = prod.plan.failures
    groups = {g.name: g for g in f.groups}
    # only GPU groups: mgmt, login and the control plane have no GPU failure rate
    assert set(groups) == {"gpu-train", "gpu-serve"}
    # gpu-train: 480 nodes x 8 GPUs x 0.05 a year = 192 a year, / 12 = 16 a month
    assert groups["gpu-train"].failures_per_month == pytest.approx(480 * 8 * 0.05 / 12)
    assert groups["gpu-serve"].failures_per_month == pytest.approx(32 * 8 * 0.05 / 12)
    assert f.failures_per_month == pytest.approx((480 + 32) * 8 * 0.05 / 12)
    # gpu200 is down in prod's nodes: section
    assert groups["gpu-train"].out_of_service == 1


def test_site_inputs_reach_the_failure_and_reliability_plans():
    built = prod_with_site("node_non_gpu_annual_failure_rate: 0.25", "job_restart_minutes: 20",
                           "node_repair_days: 14", "job_interruptions_per_gpu_year: 0.1")
    f = built.plan.failures
    train = next(g for g in f.groups if g.name == "gpu-train")
    assert train.node_failures_per_year == pytest.approx(8 * 0.05 + 0.25)
    # mean nodes down in a 32-node SU: 32 x 0.65 a year x 14 days
    assert train.mean_down_per_su == pytest.approx(32 * 0.65 * 14 / 365)
    job = built.plan.jobs[0]
    rel = job.reliability
    # the job's MTBF counts its 3,584 GPUs at the all-cause interruption rate (not the hardware AFR)
    # and the other parts of its 448 nodes
    assert rel.mtbf_s == pytest.approx(YEAR_S / (3584 * 0.1 + 448 * 0.25))
    assert rel.restart_s == 20 * 60
    (goodput,) = f.training
    assert (goodput.run.mtbf_s, goodput.run.restart_s) == (rel.mtbf_s, 20 * 60)
    # the run is the rendered one: --save-interval steps x step time, train_iters in all
    step = job.plan.step_time_s
    assert goodput.run.interval_s == pytest.approx(job.checkpoint.interval_steps * step)
    assert goodput.run.work_s == pytest.approx(job.train_iters * step)


# ---------------------------------------------------------------- spares


@pytest.mark.parametrize("mean", [0.003, 0.105, 0.7, 3.2, 12.0])
def test_poisson_tail_matches_the_textbook_sum(mean):
    for s in range(0, 12):
        direct = direct_tail(mean, s)
        if direct > 1e-9:  # beyond that the textbook sum is all rounding error
            assert poisson_tail(mean, s) == pytest.approx(direct, rel=1e-9, abs=1e-15)


def test_poisson_tail_far_in_the_tail_is_not_rounding_error():
    # P(N > 5) for mean 0.01: the first term dominates, e^-m m^6 / 6!, where 1 - cdf would give ~1e-16 noise
    m = 0.01
    first = math.exp(-m) * m**6 / math.factorial(6)
    assert poisson_tail(m, 5) == pytest.approx(first * (1 + m / 7 + m**2 / 56), rel=1e-9)


@pytest.mark.parametrize("repair_days", [1, 3, 14, 30])
@pytest.mark.parametrize("target", [0.9, 0.99, 0.999, 0.9999])
def test_recommended_spares_are_the_fewest_that_meet_the_target(repair_days, target):
    mean = 32 * 8 * 0.05 * repair_days / 365  # 32-node SU, 0.4 failures per node-year
    s = spares_for(mean, target)
    assert direct_tail(mean, s) <= 1 - target + 1e-12
    if s > 0:
        assert direct_tail(mean, s - 1) > 1 - target


def test_prod_spares_by_hand(prod):
    train = next(g for g in prod.plan.failures.groups if g.name == "gpu-train")
    # 15 SUs of 32 nodes; 32 x 0.4 a year x 3 days of repair = 0.105 nodes down on average
    m = 32 * 8 * 0.05 * 3 / 365
    assert (train.scalable_units, train.nodes_per_su) == (15, 32)
    assert train.mean_down_per_su == pytest.approx(m)
    # none spare: P(N > 0) = 1 - e^-m = 10 %, over 1 %; one: 1 - e^-m (1 + m) = 0.5 %, under
    assert 1 - math.exp(-m) > 0.01 >= 1 - math.exp(-m) * (1 + m)
    assert train.recommended_spares_per_su == 1 == train.spares_per_su
    assert train.spare_coverage == pytest.approx(math.exp(-m) * (1 + m))


def test_group_without_fabric_is_one_su():
    g = plan_group_failures("gpu", 4, 8, [], 0, 0, 0.05, 0.0, 3 * DAY_S, 0.99)
    assert (g.scalable_units, g.nodes_per_su) == (1, 4)
    # uneven SUs: the largest sets the pool
    g = plan_group_failures("gpu", 40, 8, [32, 8], 1, 0, 0.05, 0.0, 3 * DAY_S, 0.99)
    assert (g.scalable_units, g.nodes_per_su) == (2, 32)


# ---------------------------------------------------------------- goodput: analytic vs Monte-Carlo

REGIMES = {
    # name: (MTBF, checkpoint write, restart, work), seconds; the interval is Daly's
    "mtbf-much-longer-than-interval": (48.9 * HOUR_S, 60.0, 600.0, 30 * DAY_S),
    "mtbf-a-few-intervals": (2 * HOUR_S, 300.0, 600.0, 100 * HOUR_S),
    "restart-half-the-mtbf": (1 * HOUR_S, 300.0, 1800.0, 50 * HOUR_S),
}


def regime_run(name: str) -> Run:
    mtbf, write, restart, work = REGIMES[name]
    tau = daly_interval_s(write, mtbf)
    full = int(work // tau)
    return Run(full, tau, work - full * tau, write, mtbf, restart)


@pytest.mark.parametrize("name", sorted(REGIMES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_monte_carlo_mean_agrees_with_the_expected_wall_time(name, seed):
    run = regime_run(name)
    sim = simulate(run, runs=1500, seed=seed)
    expected = expected_wall_s(run)
    # within 4 standard errors of the Monte-Carlo's own mean (two-sided p ~ 6e-5 if the model is right)
    assert abs(sim.wall_mean_s - expected) <= 4 * sim.wall_stderr_s
    assert abs(sim.goodput - run.work_s / expected) <= 4 * sim.goodput_stderr
    # the spread is real: p10 < mean < p90 whenever failures happen
    assert sim.wall_p10_s < sim.wall_mean_s < sim.wall_p90_s
    assert sim.goodput_p10 < sim.goodput < sim.goodput_p90


@pytest.mark.parametrize("name", sorted(REGIMES))
def test_failures_over_the_run_are_wall_time_over_mtbf(name):
    # failures strike at any moment (computing, writing, restarting): E[failures] = E[wall] / M
    run = regime_run(name)
    rng = random.Random(7)
    counts = [simulate_wall_s(run, rng)[1] for _ in range(1500)]
    se = statistics.stdev(counts) / math.sqrt(len(counts))
    assert abs(statistics.fmean(counts) - expected_wall_s(run) / run.mtbf_s) <= 4 * se


def interval_by_interval(run: Run, rng: random.Random) -> float:
    """The reference: every interval (and every restart) tried until it passes, one at a time."""
    wall = 0.0
    spans = [run.interval_s + run.checkpoint_write_s] * run.full_intervals
    if run.last_s > 0:
        spans.append(run.last_s + run.checkpoint_write_s)
    for span in spans:
        while True:
            x = rng.expovariate(1 / run.mtbf_s)
            if x >= span:
                wall += span
                break
            wall += x
            while True:
                y = rng.expovariate(1 / run.mtbf_s)
                if y >= run.restart_s:
                    wall += run.restart_s
                    break
                wall += y
    return wall


def test_the_fast_simulation_is_the_interval_by_interval_run():
    # the planner's simulation skips the intervals between failures; the naive one walks them all
    run = Run(40, 1800.0, 900.0, 120.0, 4 * HOUR_S, 600.0)
    fast = [simulate_wall_s(run, random.Random(s))[0] for s in range(2000)]
    slow = [interval_by_interval(run, random.Random(10_000 + s)) for s in range(2000)]
    se = math.hypot(statistics.stdev(fast), statistics.stdev(slow)) / math.sqrt(2000)
    assert abs(statistics.fmean(fast) - statistics.fmean(slow)) <= 4 * se
    # and without failures both are the work plus one write per interval
    calm = Run(40, 1800.0, 900.0, 120.0, 1e15, 600.0)
    assert simulate_wall_s(calm, random.Random(0))[0] == pytest.approx(40 * 1920 + 1020)
    assert interval_by_interval(calm, random.Random(0)) == pytest.approx(40 * 1920 + 1020)


def test_first_order_goodput_holds_only_when_failures_are_rare():
    rare, frequent = regime_run("mtbf-much-longer-than-interval"), regime_run("mtbf-a-few-intervals")
    for run, close in ((rare, True), (frequent, False)):
        exact = run.work_s / expected_wall_s(run)
        first = first_order_goodput(run.interval_s, run.checkpoint_write_s, run.mtbf_s, run.restart_s)
        sim = simulate(run, runs=1500, seed=1)
        if close:  # (tau + d) / M ~ 0.03: the neglected terms are ~1e-3 of the run
            assert abs(first - exact) < 1e-3
        else:  # M ~ 4 intervals: the first-order figure is many standard errors off; the exact one is not
            assert abs(first - sim.goodput) > 20 * sim.goodput_stderr
            assert abs(exact - sim.goodput) <= 4 * sim.goodput_stderr


@pytest.mark.parametrize(("mtbf_min", "published_min"), [(24 * 60, 117), (6 * 60, 57), (15, 9.1)])
def test_expected_wall_time_is_minimal_at_dalys_published_optimum(mtbf_min, published_min):
    # Daly 2006, FGCS 22(3), Figs. 3-5: delta = 5 min, R = 10 min; the optimum tau he reports
    m, d, r = mtbf_min * 60.0, 300.0, 600.0
    daly = daly_interval_s(d, m)
    digits = 0 if published_min >= 10 else 1
    assert round(daly / 60, digits) == published_min

    def cost(tau: float) -> float:  # wall time per second of work, many intervals
        return expected_wall_s(Run(1000, tau, 0.0, d, m, r)) / (1000 * tau)

    lo, hi = 1.0, 10 * m  # golden-section search of the optimum of the exact expectation
    for _ in range(200):
        a, b = lo + (hi - lo) * 0.382, hi - (hi - lo) * 0.382
        lo, hi = (lo, b) if cost(a) < cost(b) else (a, hi)
    # Daly's higher-order estimate is the optimum of this cost to 0.3 % (his M = 15 min case, d/M = 1/3)
    assert lo == pytest.approx(daly, rel=0.003)


def test_same_seed_same_numbers_other_seed_other_numbers():
    run = regime_run("mtbf-a-few-intervals")
    a = plan_job_goodput("j", 8, run, runs=500, seed=42)
    b = plan_job_goodput("j", 8, run, runs=500, seed=42)
    c = plan_job_goodput("j", 8, run, runs=500, seed=43)
    assert a == b
    assert a.simulation.wall_mean_s != c.simulation.wall_mean_s


def test_prod_plan_is_deterministic(prod):
    again = plan_failures(prod.cluster, prod.plan.jobs)  # its speed: benchmarks/bench_plan.py
    assert again.to_dict() == prod.plan.failures.to_dict()
    (job,) = again.training
    # 3,584 GPUs at the Llama 3 run's all-cause rate (419 unexpected interruptions in 54 days on
    # 16,384 H100, Meta 2024, Table 5): MTBF 14.1 h; the three figures agree
    assert job.run.mtbf_s / HOUR_S == pytest.approx(YEAR_H / (3584 * 419 / (16_384 * 54 / 365)))
    sim = job.simulation
    assert abs(sim.wall_mean_s - job.expected_wall_s) <= 4 * sim.wall_stderr_s
    assert job.first_order_goodput == pytest.approx(job.expected_goodput, abs=1e-3)


def test_unsimulable_run_is_analytic_only():
    # checkpoint interval of 50 MTBFs: e^50 failures per interval, nothing to simulate
    run = Run(10, 50 * 3600.0, 0.0, 60.0, 3600.0, 600.0)
    assert simulate(run) is None
    job = plan_job_goodput("j", 1, run)
    assert job.simulation is None and job.expected_goodput < 1e-15
    assert job.to_dict()["monte_carlo"] is None


# ---------------------------------------------------------------- the warning and the output


def test_prod_as_committed_has_enough_spares(prod):
    assert not [p for p in prod.warnings if p.id == "plan-spares-short"]


def test_spares_short_for_a_demanding_target():
    built = prod_with_site("spare_target_availability: 0.999")
    short = {p.path: p for p in built.warnings if p.id == "plan-spares-short"}
    train, serve = group_index(built, "gpu-train"), group_index(built, "gpu-serve")
    # both GPU groups hold 1 spare per SU (prod); a group without spares (0) is not checked
    assert set(short) == {("node_groups", i, "spares_per_su") for i in (train, serve)}
    p = short[("node_groups", train, "spares_per_su")]
    # 1 spare covers e^-m (1 + m) = 99.48 % of the time; 99.9 % needs 2 (P(N > 2) = 0.02 %)
    assert "99.48%" in p.message and "needs 2" in p.message
    assert "spares_per_su: 2" in p.hint
    assert p.line is not None  # points at the blueprint line


def test_a_group_without_spares_is_not_held_to_the_target():
    text = PROD.read_text().replace(SITE_AFR_LINE, SITE_AFR_LINE + "\n      spare_target_availability: 0.999", 1)
    serve_block = text[text.index("- name: gpu-serve"):]
    spares = serve_block[serve_block.index("spares_per_su: 1"):]
    text = text.replace(serve_block, serve_block.replace(spares, spares.replace("spares_per_su: 1", "spares_per_su: 0", 1), 1), 1)
    built = build_text(text, "stacks/Pulumi.prod.yaml", "prod")
    serve = next(g for g in built.plan.failures.groups if g.name == "gpu-serve")
    assert serve.recommended_spares_per_su == 2 and serve.spares_per_su == 0
    assert not [p for p in built.warnings if p.id == "plan-spares-short"
                and p.path == ("node_groups", group_index(built, "gpu-serve"), "spares_per_su")]


def test_spares_short_can_be_silenced():
    text = PROD.read_text().replace(SITE_AFR_LINE, SITE_AFR_LINE + "\n      spare_target_availability: 0.999", 1)
    if "\n    silence: [" in text:
        text = text.replace("\n    silence: [", "\n    silence: [plan-spares-short, ", 1)
    else:
        text = text.replace("\n    site:\n", "\n    silence: [plan-spares-short]\n    site:\n", 1)
    assert "silence: [plan-spares-short" in text
    built = build_text(text, "stacks/Pulumi.prod.yaml", "prod")
    assert not [p for p in built.warnings if p.id == "plan-spares-short"]
    assert built.plan.failures.groups[0].recommended_spares_per_su == 2  # still short, only silenced


def test_plan_prints_the_failures_tables_and_json(aiinfra):
    r = aiinfra("plan", "--stack", "prod")
    assert r.code == 0, r.stderr
    assert "failures (AFR 5.0% per GPU-year, repair 3 days, spares for 99.00% of the time)" in r.stdout
    assert "goodput under failures llama3-70b-pretrain" in r.stdout
    r = aiinfra("plan", "--stack", "prod", "--json")
    data = json.loads(r.stdout)["failures"]
    assert data["node_repair_days"] == 3 and data["spare_target_availability"] == 0.99
    train = next(g for g in data["groups"] if g["name"] == "gpu-train")
    assert (train["recommended_spares_per_su"], train["spares_per_su"]) == (1, 1)
    (job,) = data["training"]
    mc = job["monte_carlo"]
    assert mc["runs"] == 1000 and mc["wall_p10_days"] < mc["wall_mean_days"] < mc["wall_p90_days"]
    assert job["expected_goodput"] == pytest.approx(job["work_s"] / job["expected_wall_s"])


def test_bad_site_input_is_a_blueprint_error(aiinfra, tmp_path):
    f = tmp_path / "Pulumi.prod.yaml"
    f.write_text(PROD.read_text().replace(SITE_AFR_LINE, SITE_AFR_LINE + "\n      spare_target_availability: 1.5", 1))
    r = aiinfra("validate", "--file", str(f))
    assert r.code != 0
    assert "site.spare_target_availability" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
