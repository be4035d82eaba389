"""Slurm for real: `aiinfra hosts up` configures five hosts made on this machine, twice.

The hosts are network namespaces with their own address, hostname and key-only sshd
(tests/harness/testbed.py); the blueprint is tests/fixtures/slurm-testbed (the pinned Slurm 24.11.5,
built from its release source by the role's build script, four 8-GPU nodes in two SUs, fake GPU
character devices). The session's bed (tests/conftest.py ``slurm_bed``, shared with the other bed
modules) comes up and runs the playbook once; the tests then check what the cluster does.
Teardown stops every process of every namespace (compute nodes first) even after a failure.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from harness import slurm_testbed as st
from harness.testbed import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bed(slurm_bed):
    return slurm_bed


def test_first_run_configures_every_host(bed):
    first = bed["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    for host in bed["testbed"].hosts:
        assert re.search(rf"{host.name}\s.*\s(changed|ok)\s", first.stdout), first.stdout
    print(f"first run: {bed['first_s']:.1f} s")


def test_every_daemon_runs_the_pinned_release(bed):
    pin = _pin(bed)
    assert pin == "24.11.5"  # the bed runs what production pins, built from its release source
    first = bed["first"].stdout
    assert re.search(r"\| Check the installed Slurm against versions.slurm \(", first), first[-3000:]
    running = {}
    for host in bed["testbed"].hosts:
        # every daemon in the host's network namespace, by its process: the binary it was started
        # from, and what that binary reports
        exes = set()
        for pid in bed["testbed"].pids(host):
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.rsplit("/", 1)[1] in ("slurmctld", "slurmd", "slurmdbd"):
                exes.add(exe)
        running[host.name] = sorted(f"{exe} {_version(bed, host, exe)}" for exe in exes)
    daemons = [line for lines in running.values() for line in lines]
    assert {d.split()[0].rsplit("/", 1)[1] for d in daemons} == {"slurmctld", "slurmd", "slurmdbd"}, running
    assert all(d.split()[0].startswith(f"/opt/slurm/{pin}/sbin/") and d.endswith(f"slurm {pin}") for d in daemons), running
    assert st.on_controller(bed, "sinfo -V").strip() == f"slurm {pin}"


def test_version_check_refuses_a_mismatching_pin(bed):
    # the role's own check, against the binaries the bed runs, with versions.slurm pinned elsewhere
    r = st.aiinfra(bed["root"], "hosts", "up", "--stack", st.STACK, "--tags", "slurm-version",
                   "-e", f"@{bed['extra']}", "-e", "slurm_version=24.11.4")
    out = r.stdout + r.stderr
    assert r.returncode != 0, out[-3000:]
    assert "versions.slurm pins 24.11.4, but ctl01 has" in out and "slurm 24.11.5" in out, out[-3000:]


def test_slurmdbd_finds_the_database_settings_it_asks_for(bed):
    # slurmdbd 24.11 checks the InnoDB settings when it connects and logs what it finds too small
    log = st.on_controller(bed, "cat /var/log/slurm/slurmdbd.log")
    assert "accounting_storage/as_mysql" in log or "slurmdbd version" in log, log[-2000:]
    assert "Database settings not recommended values" not in log, log[-2000:]
    pool = int(st.on_controller(bed, "mysql -NB -e 'SELECT @@innodb_buffer_pool_size'").strip())
    assert pool >= 4 * 2**30  # Slurm's accounting guide: at least 4 GiB


def test_job_mail_has_a_program(bed):
    conf = st.on_controller(bed, "scontrol show config")
    prog = re.search(r"^MailProg\s*=\s*(\S+)", conf, re.M).group(1)
    assert prog == "/usr/bin/mail"
    st.on_controller(bed, f"test -x {prog}")


def _version(bed, host, exe: str) -> str:
    return bed["testbed"].ssh(host, f"{exe} -V", timeout=30).stdout.strip()


def _pin(bed) -> str:
    import yaml
    text = (bed["root"] / "stacks" / f"Pulumi.{st.STACK}.yaml").read_text()
    return str(yaml.safe_load(text)["config"]["aiinfra:cluster"]["versions"]["slurm"])


def test_every_node_idle_with_its_gpus(bed):
    out = wait_until("nodes idle", lambda: _idle(bed), 60, 1)
    assert sorted(out) == bed["nodes"]
    assert set(out.values()) == {"gpu:h100:8"}


def _idle(bed) -> dict[str, str] | None:
    lines = st.on_controller(bed, "timeout 20 sinfo -h -N -o '%N %t %G'").split()
    rows = dict(zip(lines[0::3], zip(lines[1::3], lines[2::3], strict=True), strict=True))
    if all(state == "idle" for state, _ in rows.values()):
        return {n: re.sub(r"\(.*\)$", "", g) for n, (_, g) in rows.items()}
    return None


def test_srun_sees_two_gpus(bed):
    out = st.on_controller(bed, "timeout 60 srun -N1 --gres=gpu:2 env | grep ^CUDA_VISIBLE_DEVICES=")
    assert out.strip() == "CUDA_VISIBLE_DEVICES=0,1"


def test_sbatch_inside_one_switch_and_accounted(bed):
    # job ids restart with a fresh controller state while the accounting database keeps older
    # records: only jobs since this submission count
    since = st.on_controller(bed, "date +%Y-%m-%dT%H:%M:%S").strip()
    # --mpi=none: the test-bed hosts share one /tmp, where PMIx's per-node directories of a two-node
    # step collide (seen as a step "aborted before step completely launched"); real nodes have their own
    job = st.on_controller(
        bed, "timeout 30 sbatch --parsable -N2 --switches=1 --gres=gpu:1 --wrap 'srun --mpi=none hostname'").strip()
    job_id = job.split(";")[0]

    def done():
        out = st.on_controller(bed, f"timeout 20 sacct -n -X -P -S {since} -j {job_id} -o State,NodeList,AllocTRES")
        return out.strip() if out.startswith("COMPLETED") else None

    try:
        state, nodelist, tres = wait_until(f"job {job_id} completed in the accounting", done, 90, 1).split("|")
    except TimeoutError as exc:
        diagnostics = bed["testbed"].ssh(
            bed["controller"], f"squeue -a; scontrol show job {job_id}; sacct -a -P -o JobID,State,ExitCode,Submit,"
            f"NodeList; sinfo -N -o '%N %t %G'", timeout=60, check=False)
        raise AssertionError(f"{exc}\n{diagnostics.stdout}\n{diagnostics.stderr}") from None
    # two nodes of one SU (su01: gpu[01-02], su02: gpu[03-04])
    assert nodelist in ("gpu[01-02]", "gpu[03-04]"), nodelist
    assert "gres/gpu=2" in tres, tres
    topology = st.on_controller(bed, "timeout 20 scontrol show topology")
    assert "SwitchName=spine" in topology and "Switches=su[01-02]" in topology


def test_health_check_drains_a_node_with_a_wrong_gpu_count(bed):
    node = next(h for h in bed["testbed"].hosts if h.name == bed["nodes"][-1])
    st.set_fake_gpus(node.name, 7)
    try:
        result = bed["testbed"].ssh(node, "/usr/local/sbin/aiinfra-nodecheck", check=False)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "7 GPUs, GRES says 8" in result.stdout, result.stdout + result.stderr
        reasons = st.on_controller(bed, "timeout 20 sinfo -R -h -o '%N|%E'")
        assert f"{node.name}|aiinfra-nodecheck: 7 GPUs, GRES says 8" in reasons.splitlines(), (
            reasons + result.stdout + result.stderr + st.on_controller(bed, "sinfo -R; scontrol show node " + node.name))
        state = st.on_controller(bed, f"timeout 20 sinfo -h -n {node.name} -o %t").strip()
        assert state.startswith("drain"), state
    finally:
        st.set_fake_gpus(node.name, 8)
    # healthy again: the check resumes the node it drained itself
    result = bed["testbed"].ssh(node, "/usr/local/sbin/aiinfra-nodecheck", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # resumed: idle again (a loaded machine may show idle* until slurmd's next ping reaches slurmctld)
    wait_until(f"{node.name} idle again",
               lambda: st.on_controller(bed, f"timeout 20 sinfo -h -n {node.name} -o %t").strip() == "idle" or None,
               60, 2)


def test_check_mode_shows_the_diff_and_changes_nothing(bed):
    # A hand edit on the hosts (they share this machine's /etc/slurm): check mode must report it as
    # a change with its diff, and leave the edit in place.
    conf = Path("/etc/slurm/cgroup.conf")
    rendered = conf.read_text()
    edited = rendered + "# hand edit\n"
    conf.write_text(edited)
    try:
        result = st.aiinfra(bed["root"], "hosts", "up", "--stack", st.STACK, "--tags", st.SLURM_LAYER, "--check",
                         "-e", f"@{bed['extra']}")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "would change:" in result.stdout and "-# hand edit" in result.stdout, result.stdout[-3000:]
        assert not re.search(r"\b0 change\(s\)", result.stdout), result.stdout[-1000:]
        assert conf.read_text() == edited  # nothing was written
    finally:
        conf.write_text(rendered)


def test_second_run_changes_nothing(bed):
    started = time.monotonic()
    second = st.aiinfra(bed["root"], "hosts", "up", "--stack", st.STACK, "--tags", st.SLURM_LAYER, "-e", f"@{bed['extra']}")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert re.search(r"\b0 change\(s\)", second.stdout), second.stdout
    runs = sorted((bed["root"] / ".aiinfra" / "runs").iterdir())
    assert len(runs) >= 2 and (runs[-1] / "artifacts").is_dir()
    print(f"second run: {time.monotonic() - started:.1f} s")


def test_no_secret_in_manifests_or_run_logs(bed):
    extra = bed["extra"].read_text()
    secrets = [line.split(":", 1)[1].strip() for line in extra.splitlines()
               if line.startswith(("munge_key:", "slurm_dbd_storage_pass:"))]
    assert len(secrets) == 2
    for folder in (bed["root"] / "manifests", bed["root"] / ".aiinfra" / "runs"):
        for path in folder.rglob("*"):
            if path.is_file() and path.suffix != ".pyc":
                text = path.read_text(errors="replace")
                for secret in secrets:
                    assert secret not in text, f"a secret leaked into {path}"
    dbd = st.on_controller(bed, "stat -c %a /etc/slurm/slurmdbd.conf").strip()
    assert dbd == "600"


# Prod's rendered Slurm files on the pinned slurmctld (24.11.5), changed only in paths and one port:
# slurmctld runs on the bed's controller in a UTS and mount namespace of its own, named as prod's
# primary controller, with prod's rendered hosts file as /etc/hosts (every prod name resolves) and
# prod's controller and accounting addresses added to the controller's loopback, so that the bed's
# slurmdbd answers at prod's AccountingStorageHost. The bed's slurmctld keeps port 6817; prod's
# listens on PROD_PORT.
PROD_PORT = 6917
PROD_PATHS = ("StateSaveLocation", "SlurmctldPidFile", "SlurmctldLogFile")


SUPERPOD = Path(__file__).parents[1] / "fixtures" / "scale" / "Pulumi.superpod-32k.yaml"


@pytest.mark.parametrize("blueprint", ["prod", "superpod-32k"])
def test_slurm_files_run_on_the_pinned_slurmctld(bed, tmp_path, blueprint):
    """Prod's files (two-level tree), and the 32,768-node fixture's (30,720 Slurm nodes, three-level
    tree: SU leaves, spine groups, one core), read by the pinned slurmctld as it starts."""
    from aiinfra.pipeline import build_file
    from aiinfra.render.host_vars import etc_hosts
    from aiinfra.render.slurm import render_slurm
    from conftest import ROOT

    built = build_file(ROOT / "stacks" / "Pulumi.prod.yaml" if blueprint == "prod" else SUPERPOD)
    cluster = built.cluster
    files = render_slurm(cluster, built.plan)
    work = Path("/run/aiinfra-testbed/prod-slurmctld")
    st.on_controller(bed, f"rm -rf {work} && mkdir -p {work}/etc {work}/state && chown slurm: {work}/state")
    changed = {"StateSaveLocation": f"{work}/state", "SlurmctldPidFile": f"{work}/slurmctld.pid",
               "SlurmctldLogFile": f"{work}/slurmctld.log"}
    lines = []
    for line in files["slurm/slurm.conf"].splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={changed[key]}" if key in changed else line)
    lines.append(f"SlurmctldPort={PROD_PORT}")
    (tmp_path / "slurm.conf").write_text("\n".join(lines) + "\n")
    for name in ("gres.conf", "topology.conf", "cgroup.conf"):
        (tmp_path / name).write_text(files[f"slurm/{name}"])
    (tmp_path / "hosts").write_text(etc_hosts(cluster))
    for f in tmp_path.iterdir():
        st.on_controller(bed, f"cp {f} {work}/etc/{f.name}")
    spec = cluster.blueprint.slurm
    primary = cluster.hosts_with_role("slurm_controller")[0]
    dbd = cluster.hosts_with_role("slurmdbd")[0]
    addresses = {cluster.hosts[h].management_address for h in (primary, dbd)}
    ns = f"unshare --uts --mount sh -c 'mount --bind {work}/etc/hosts /etc/hosts && hostname {primary} && exec \"$0\" \"$@\"'"
    try:
        for a in addresses:
            st.on_controller(bed, f"ip addr add {a}/32 dev lo")
        st.on_controller(bed, f"sacctmgr -i add cluster {spec.cluster_name} >/dev/null || true")
        st.on_controller(bed, f"setsid {ns} slurmctld -f {work}/etc/slurm.conf </dev/null >/dev/null 2>&1 &")
        client = f"SLURM_CONF={work}/etc/slurm.conf {ns}"

        def answers():
            r = bed["testbed"].ssh(bed["controller"], f"{client} timeout 10 scontrol ping", timeout=30, check=False)
            return "UP" in r.stdout
        try:
            wait_until(f"{blueprint}'s slurmctld to answer", answers, 120, 1)
        except TimeoutError:
            log = bed["testbed"].ssh(bed["controller"], f"tail -n 40 {work}/slurmctld.log", check=False).stdout
            raise AssertionError(log) from None

        version = st.on_controller(bed, f"{client} scontrol show config | grep ^SLURM_VERSION")
        assert version.split("=")[1].strip() == "24.11.5"
        # every node with its GRES, one short line each (scontrol's full records are ~30 MB at 30,720 nodes)
        rows = st.on_controller(bed, f"{client} sinfo -h -N -o '%N %G'", timeout=120).splitlines()
        gres = {name: re.sub(r"\(.*\)$", "", g) for name, g in (row.split() for row in rows)}
        gpu_nodes = [h for g in cluster.groups_for_scheduler("slurm") if g.gpu is not None for h in g.hosts]
        assert sorted(gres) == sorted(gpu_nodes)
        assert len(gpu_nodes) == {"prod": 480, "superpod-32k": 30720}[blueprint]  # the blueprints' Slurm groups
        assert set(gres.values()) == {"gpu:h100:8"}
        parts = st.on_controller(bed, f"{client} scontrol show partition -o").splitlines()
        assert [re.search(r"PartitionName=(\S+)", p).group(1) for p in parts] == [p.name for p in spec.partitions]
        topo = st.on_controller(bed, f"{client} scontrol show topology", timeout=60)
        levels = Counter(re.findall(r"SwitchName=\S+ Level=(\d)", topo))
        sus = {cluster.hosts[h].su for h in gpu_nodes}
        assert levels["0"] == len(sus)  # one leaf switch per SU
        if blueprint == "prod":  # two levels: the spine above the SUs
            assert levels["1"] == 1 and set(levels) == {"0", "1"}, levels
        else:  # three: a switch per spine group of 32 SUs (30,720 nodes: 960 SUs, 30 groups), one core above
            groups = {cluster.hosts[h].spine_group for h in gpu_nodes}
            assert len(sus) == 960 and len(groups) == 30
            assert (levels["1"], levels["2"]) == (len(groups), 1) and set(levels) == {"0", "1", "2"}, levels
    finally:
        # stopped and gone before the next blueprint's starts on the same port and folder
        bed["testbed"].ssh(bed["controller"], f"pkill -f 'slurmctld -f {work}/etc/slurm.conf'; for _ in $(seq 60); do "
                           f"pgrep -f 'slurmctld -f {work}/etc/slurm.conf' >/dev/null || break; sleep 0.5; done",
                           timeout=60, check=False)
        for a in addresses:
            bed["testbed"].ssh(bed["controller"], f"ip addr del {a}/32 dev lo", check=False)
