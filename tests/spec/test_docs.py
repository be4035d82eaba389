"""The reference docs stay equal to the code."""

from __future__ import annotations

import json
import re

from aiinfra.checks import registry
from aiinfra.spec.reference import blueprint_reference
from conftest import ROOT


def test_blueprint_reference_is_generated_from_the_models():
    committed = (ROOT / "docs" / "blueprint.md").read_text()
    assert committed == blueprint_reference(), "run: aiinfra schema --markdown > docs/blueprint.md"


def test_every_problem_id_is_documented():
    doc = (ROOT / "docs" / "validation.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M))
    source = "".join(p.read_text() for p in [*(ROOT / "src" / "aiinfra" / "spec").glob("*.py"), *(ROOT / "src" / "aiinfra" / "checks").glob("*.py")])
    used = set(re.findall(r'(?:error|warning|Problem)\([^"]*?"([a-z0-9]+(?:-[a-z0-9]+)+)"', source))
    used |= registry.ERROR_IDS | registry.KNOWN_WARNINGS
    missing = sorted(used - documented)
    assert not missing, f"document these ids in docs/validation.md: {missing}"


def test_ids_reported_for_the_broken_fixtures_are_documented():
    from aiinfra.errors import BlueprintError
    from aiinfra.pipeline import build_file

    doc = (ROOT / "docs" / "validation.md").read_text()
    seen = set()
    for path in (ROOT / "tests" / "fixtures" / "broken").glob("*.yaml"):
        try:
            build_file(path)
        except BlueprintError as exc:
            seen |= {p.id for p in exc.problems}
    assert seen and all(f"`{i}`" in doc for i in seen), sorted(i for i in seen if f"`{i}`" not in doc)


# ------------------------------------------------------------------ docs/host-roles.md


def _table(doc: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table after ``heading``: cells, stripped."""
    text = doc[doc.index(heading):]
    lines = text[text.index("\n|"):].strip().splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return rows


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _site_plays() -> list[dict]:
    import yaml

    return yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())


def _host_roles(doc: str) -> list[str]:
    return [_ticked(row[0])[0] for row in _table(doc, "# Host roles")]


def test_host_roles_table_and_plays_are_site_yml():
    import yaml

    doc = (ROOT / "docs" / "host-roles.md").read_text()
    roles = _host_roles(doc)
    plays = [p for p in _site_plays() if any(r["role"] in roles for r in p.get("roles") or [])]
    hosts = {r["role"]: p["hosts"] for p in plays for r in p["roles"]}
    assert sorted(hosts) == sorted(roles), "every documented role has a play in site.yml"
    for row in _table(doc, "# Host roles"):
        role = _ticked(row[0])[0]
        assert _ticked(row[2])[0] == hosts[role], f"{role}: the hosts column is not its play's hosts"
    heading = doc.index("## Their plays in playbooks/site.yml")
    block = doc[doc.index("```yaml\n", heading) + 8:doc.index("```\n", doc.index("```yaml\n", heading) + 8)]
    assert yaml.safe_load(block) == plays, "the plays block is not site.yml's plays of these roles"


def test_host_roles_tags_are_the_roles_tags():
    import yaml

    doc = (ROOT / "docs" / "host-roles.md").read_text()
    used: set[str] = set()

    def collect(tasks):
        for task in tasks or []:
            tags = task.get("tags", [])
            used.update([tags] if isinstance(tags, str) else tags)
            for key in ("block", "rescue", "always"):
                collect(task.get(key))

    for role in _host_roles(doc):
        for path in (ROOT / "roles" / role / "tasks").glob("*.yml"):
            collect(yaml.safe_load(path.read_text()))
    documented = {_ticked(row[0])[0] for row in _table(doc, "## Tags")}
    assert documented == used - {"always", "never"}


def _inventory_variables(group: dict) -> set[str]:
    names = set(group.get("vars") or {})
    for hostvars in (group.get("hosts") or {}).values():
        names |= set(hostvars or {})
    for child in (group.get("children") or {}).values():
        names |= _inventory_variables(child or {})
    return names


def _drained_k8s_node_inventory() -> str:
    import yaml
    from ClusterShell.NodeSet import NodeSet

    from aiinfra.pipeline import build_data
    from conftest import render

    raw = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]
    group = next(g for g in raw["node_groups"] if g.get("scheduler") == "kubernetes" and g["name"].startswith("gpu"))
    raw["nodes"] = {**(raw.get("nodes") or {}), NodeSet(group["hosts"])[0]: {"state": "drain", "reason": "docs test"}}
    return render(build_data(raw, "prod.yaml", "prod"))["ansible/inventory.json"]


def test_host_roles_variables_are_the_rendered_ones(prod):
    import yaml

    from conftest import render

    doc = (ROOT / "docs" / "host-roles.md").read_text()
    artifacts = render(prod)
    rendered = {p for p in artifacts if p.startswith(("ansible/group_vars/", "hosts/")) or p == "ansible/inventory.json"}
    rows = {_ticked(row[0])[0].removeprefix("manifests/<env>/"): row[1] for row in _table(doc, "## Where values come from")}
    assert set(rows) == rendered
    for path, cell in rows.items():
        documented = [n for n in _ticked(cell) if n.startswith("aiinfra_")]
        if path == "ansible/inventory.json":
            names = _inventory_variables(json.loads(artifacts[path])["all"]) - {"ansible_host"}
            # what only a node out of service renders: prod with a Kubernetes node drained
            names |= _inventory_variables(json.loads(_drained_k8s_node_inventory())["all"]) - {"ansible_host"}
        elif path.endswith(".yml"):
            names = set(yaml.safe_load(artifacts[path]) or {})
        else:
            assert not documented, path
            continue
        covered = {n for n in names if any(n == d or (d.endswith("*") and n.startswith(d[:-1])) for d in documented)}
        assert covered == names, f"{path}: not documented: {sorted(names - covered)}"
        assert all(any(n == d or (d.endswith("*") and n.startswith(d[:-1])) for n in names) for d in documented), \
            f"{path}: documented but not rendered: {documented}"


# ------------------------------------------------------------------ docs/serving.md


def serving_version_facts() -> str:
    """docs/serving.md's "Version facts" table, from the engine catalog (generated from the releases):
    every flag the catalog notes, every behaviour, and every metric the rendered objects query."""
    from aiinfra.catalog import engines as eng

    e = eng.VLLM
    rows = [(f"`{flag}`", e.flags[flag]) for flag in e.notes]
    rows += [(name, span) for name, span in e.features.items() if not name.startswith("metric:")]
    metrics = sorted({eng.kv_cache_usage_metric(v) for v in e.versions}) + [eng.WAITING_METRIC, eng.TTFT_METRIC]
    rows += [(f"`{m}`", e.features[f"metric:{m}"]) for m in metrics]
    return "| fact | vLLM versions |\n|---|---|\n" + "".join(f"| {f} | {span.describe()} |\n" for f, span in rows)


def _section(doc: str, heading: str) -> str:
    start = doc.index(heading)
    end = doc.find("\n#", start + len(heading))
    return doc[start:end if end > 0 else len(doc)]


def test_serving_version_facts_are_the_catalogs():
    from aiinfra.catalog import engines as eng

    section = _section((ROOT / "docs" / "serving.md").read_text(), "### Version facts")
    table = section[section.index("| fact |"):]
    table = table[:table.index("\n\n") + 1]
    assert table == serving_version_facts(), "regenerate: tests/spec/test_docs.py serving_version_facts()"
    for e in (eng.VLLM, eng.TENSORRT_LLM):
        assert f"{e.title} {e.oldest} to {e.newest_minor}.x" in " ".join(section.split())


def _prod_variant(change) -> dict[str, str]:
    import yaml

    from aiinfra.pipeline import build_data
    from aiinfra.render import render_all

    data = yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]
    change(data)
    built = build_data(data, "stacks/Pulumi.prod.yaml", "prod")
    return built, render_all(built.cluster, built.plan, only=["k8s-serving"])


def test_serving_files_are_the_rendered_ones(prod, dev):
    from conftest import render

    doc = (ROOT / "docs" / "serving.md").read_text()
    documented = {f for row in _table(doc, "## What is rendered") for f in _ticked(row[0])}
    hpa = _prod_variant(lambda d: d["serving"][0].update(autoscaling="hpa"))[1]
    rendered = {p.split("/")[-1] for artifacts in (render(prod), render(dev), hpa) for p in artifacts
                if p.startswith("k8s/serving/") and p.count("/") == 3}
    assert documented == rendered


def test_serving_vllm_arguments_are_the_rendered_ones(prod, dev):
    from aiinfra.catalog import engines as eng
    from aiinfra.plan.deployments import vllm_args, vllm_worker_args

    doc = (ROOT / "docs" / "serving.md").read_text()
    rows = _table(doc, "### vLLM arguments")
    documented = {f for row in rows for f in re.findall(r"--[a-z][a-z-]+", " ".join(row))}
    # older vLLM (the legacy speculative flags) and multi-node with the multiprocessing executor
    old = _prod_variant(lambda d: d["versions"]["images"].update(vllm="vllm/vllm-openai:v0.7.3"))[0]
    rendered: set[str] = set()
    for built in (prod, dev, old):
        for s in built.plan.deployments:
            if s.engine.name == "vllm":
                rendered |= {a.flag for a in vllm_args(s) + (vllm_worker_args(s) if s.multi_node else [])}
    assert rendered - documented == set(), "flags rendered but not documented"
    first_column = {f for row in rows for f in re.findall(r"--[a-z][a-z-]+", row[0])}
    assert first_column <= set(eng.VLLM.flags), first_column - set(eng.VLLM.flags)


def test_serving_validation_ids_are_the_checks():
    from aiinfra.checks.serving import SERVING_ERRORS

    section = _section((ROOT / "docs" / "serving.md").read_text(), "## Validation ids")
    ids = set(re.findall(r"`((?:serving|plan-serving)[a-z-]*)`", section))
    serving_warnings = {w for w in registry.KNOWN_WARNINGS if w.startswith("serving-")}
    assert ids == SERVING_ERRORS | serving_warnings | {"plan-serving"}


def test_serving_prod_gpus_at_maxima_are_planned(prod):
    deployments = prod.plan.deployments
    at_max = [d.max_replicas * d.plan.tp * d.plan.pp for d in deployments]
    section = " ".join(_section((ROOT / "docs" / "serving.md").read_text(), "## Environments").split())
    assert f"At their maxima: {' + '.join(map(str, at_max))} = {sum(at_max)} GPUs" in section
