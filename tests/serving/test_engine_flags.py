"""The engine flag table (generated from the released sources) and the checks that read it: the
committed table is what scripts/engine_flags.py makes of the sources, a flag or value the pinned
version lacks is refused, and what the renderers print (flags, metric names) is in the table."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
import urllib.error
from pathlib import Path

import pytest
import yaml
from serving_helpers import load_variant, problems_of, serving_objects, stack_data

from aiinfra.catalog import engines as eng
from conftest import ROOT, load_stack, render

SCRIPT = ROOT / "scripts" / "engine_flags.py"


def script():
    if "engine_flags_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("engine_flags_script", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["engine_flags_script"]


def committed() -> dict:
    return json.loads(eng.FLAG_TABLE.read_text())


def pinned_images() -> dict[str, str]:
    """Every engine image pinned in stacks/*.yaml: image -> stack file."""
    out = {}
    for path in sorted((ROOT / "stacks").glob("Pulumi.*.yaml")):
        images = yaml.safe_load(path.read_text())["config"]["aiinfra:cluster"]["versions"]["images"]
        for image in images.values():
            if any(image.split(":")[0] in e.image_repositories for e in eng.ENGINES.values()):
                out[image] = path.name
    return out


def engine_of(image: str) -> eng.Engine:
    return next(e for e in eng.ENGINES.values() if image.split(":")[0] in e.image_repositories)


def sources_or_skip(ef, version: str, cache: Path):
    try:
        path, sha = ef.sdist("vllm", version, cache)
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(f"PyPI is not reachable for vllm {version}: {exc}")
    return path, sha, ef.Source(ef.python_sources(path, "vllm"))


def facts_at(spans: dict[str, list[dict]], version: str, order: list[str]) -> dict[str, dict]:
    """The committed table's entries at one version (its spans expanded)."""
    i = order.index(version)
    out = {}
    for name, runs in spans.items():
        for run in runs:
            if order.index(run["from"]) <= i <= order.index(run["to"]):
                out[name] = {k: v for k, v in run.items() if k not in ("from", "to")}
    return out


# ---------------------------------------------------------------- the table is the sources'


def test_every_pinned_engine_version_is_in_the_table():
    images = pinned_images()
    assert any("vllm" in i for i in images) and any("tensorrt-llm" in i for i in images)
    for image, stack in images.items():
        assert engine_of(image).knows(eng.image_version(image)), f"{stack}: {image} is not in the flag table"


@pytest.mark.parametrize("image", sorted(i for i in pinned_images() if "vllm" in i))
def test_pinned_vllm_versions_are_what_their_sdists_say(image, tmp_path):
    """Regenerate the pinned versions' flags and metrics from their sdists (about 2 s each, cached)."""
    ef = script()
    version = ".".join(map(str, eng.image_version(image)))
    _, sha, src = sources_or_skip(ef, version, ef.CACHE)
    table = committed()["engines"]["vllm"]
    order = list(ef.VLLM_RELEASES)
    assert table["versions"][version]["sha256"] == sha
    flags = facts_at(table["commands"]["vllm serve"], version, order)
    assert flags == {f: ef.flag_fact(fl) for f, fl in ef.vllm_flags(src).items()}
    metrics = facts_at(table["metrics"], version, order)
    assert metrics == {m: {"type": e["type"], "files": sorted(e["files"]), "hidden": e["hidden"]}
                       for m, e in ef.vllm_metrics(src).items()}


@pytest.mark.slow
def test_committed_table_equals_the_scripts_output():
    """Every supported vLLM release (35 sdists, ~300 MB the first time; then ~15 s from the cache)."""
    ef = script()
    try:
        text = ef.render(ef.build(ef.CACHE))
    except (urllib.error.URLError, OSError) as exc:
        pytest.skip(f"PyPI is not reachable: {exc}")
    assert text == eng.FLAG_TABLE.read_text(), "rerun scripts/engine_flags.py"


def test_tensorrt_llm_part_is_the_hand_checked_list_with_its_pages():
    ef = script()
    assert committed()["engines"]["tensorrt-llm"] == json.loads(json.dumps(ef.trtllm_table()))
    for command, flags in committed()["engines"]["tensorrt-llm"]["commands"].items():
        for flag, runs in flags.items():
            assert all(r["page"].startswith("https://") for r in runs), (command, flag)


def test_table_is_sorted_and_names_its_sources():
    text = eng.FLAG_TABLE.read_text()
    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True) + "\n"
    table = committed()["engines"]["vllm"]
    for version, source in table["versions"].items():
        assert source["sdist"] == f"vllm-{version}.tar.gz" and re.fullmatch(r"[0-9a-f]{64}", source["sha256"])
    files = {r["file"] for runs in table["commands"]["vllm serve"].values() for r in runs}
    assert files <= {"vllm/engine/arg_utils.py", "vllm/entrypoints/openai/cli_args.py",
                     "vllm/entrypoints/cli/serve.py", "vllm/scripts.py"}


def test_known_history_of_flags_is_in_the_generated_table():
    """Changes named by vLLM's pull requests (#14434, #15466, #23691, #29330) show in the table."""
    def has(flag, version):
        return eng.VLLM.fact(version, flag) is not None

    assert has("--speculative-model", (0, 8, 2)) and not has("--speculative-model", (0, 8, 3))
    assert not has("--speculative-config", (0, 8, 1)) and has("--speculative-config", (0, 8, 2))
    assert not has("--nnodes", (0, 11, 0)) and has("--nnodes", (0, 11, 1))
    assert eng.VLLM.features["metric:vllm:gpu_cache_usage_perc"].has((0, 10, 2))
    assert not eng.VLLM.features["metric:vllm:gpu_cache_usage_perc"].has((0, 11, 0))  # hidden
    assert eng.VLLM.metric((0, 12, 0), "vllm:gpu_cache_usage_perc") is None  # removed


# ---------------------------------------------------------------- validate refuses


def errors(data: dict, env: str = "prod") -> dict[str, list]:
    out: dict[str, list] = {}
    for p in problems_of(data, env):
        if p.level.value == "error":
            out.setdefault(p.key_path, []).append(p)
    return out


def test_an_unknown_flag_in_extra_args_is_refused_with_a_suggestion():
    data = stack_data("prod")
    data["serving"][0]["extra_args"] = ["--max-num-batched-tokns", "8192"]
    found = errors(data)["aiinfra:cluster.serving[0].extra_args[0]"]
    assert [p.id for p in found] == ["engine-flag-unknown"]
    assert "0.8.5" in found[0].message and "--max-num-batched-tokens" in found[0].message


def test_a_flag_only_a_newer_version_has_is_refused_at_the_pinned_one():
    data = stack_data("prod")
    data["serving"][0]["extra_args"] = ["--kv-cache-memory-bytes", "1000000000"]  # 0.12.0 has it
    assert [p.id for p in errors(data)["aiinfra:cluster.serving[0].extra_args[0]"]] == ["engine-flag-unknown"]
    data["versions"]["images"]["vllm"] = "vllm/vllm-openai:v0.12.0"
    data["serving"][0].pop("speculative")  # no draft model on 0.12 (serving-engine-flag)
    assert "aiinfra:cluster.serving[0].extra_args[0]" not in errors(data)


def test_a_value_the_flag_does_not_accept_is_refused():
    data = stack_data("prod")
    data["serving"][0]["extra_args"] = ["--uvicorn-log-level", "loud"]
    found = errors(data)["aiinfra:cluster.serving[0].extra_args[0]"]
    assert [p.id for p in found] == ["engine-flag-value"] and "'loud'" in found[0].message


def test_extra_args_may_not_repeat_a_rendered_flag():
    data = stack_data("prod")
    data["serving"][0]["extra_args"] = ["--tensor_parallel_size=2"]  # vLLM reads _ as -
    assert [p.id for p in errors(data)["aiinfra:cluster.serving[0].extra_args[0]"]] == ["engine-extra-arg-conflict"]


def test_valid_extra_args_pass_and_reach_every_server_command():
    data = stack_data("prod")
    extra = ["--uvicorn-log-level", "warning", "--max_num_batched_tokens=8192", "--disable-log-requests"]
    data["serving"][0]["extra_args"] = extra
    assert not [k for k in errors(data) if "extra_args" in k]
    built = load_variant(data)
    objs = serving_objects(built)
    name = data["serving"][0]["name"]
    commands = [c["command"] + c.get("args", []) for o in objs[name] for c in containers(o)
                if any("vllm" in t for t in c["command"])]
    assert commands and all(cmd[-len(extra):] == extra for cmd in commands)  # leader and workers alike
    planned = next(s for s in built.plan.to_dict()["deployments"] if s["name"] == name)
    assert planned["args"][-len(extra):] == extra  # what plan --json says is what runs


def containers(obj: dict) -> list[dict]:
    """Every container of a Deployment, LeaderWorkerSet (leader and worker templates) or Job."""
    spec = obj.get("spec", {})
    templates = [spec.get("template")] + [spec.get("leaderWorkerTemplate", {}).get(k)
                                          for k in ("leaderTemplate", "workerTemplate")]
    return [c for t in templates if t for c in t["spec"].get("containers", [])]


def test_tensorrt_llm_extra_args_use_its_own_flags():
    data = stack_data("prod")
    i = next(i for i, s in enumerate(data["serving"]) if s.get("engine") == "tensorrt-llm")
    data["serving"][i]["extra_args"] = ["--max-batch-size", "8"]
    found = errors(data)[f"aiinfra:cluster.serving[{i}].extra_args[0]"]
    assert [p.id for p in found] == ["engine-flag-unknown"] and "--max_batch_size" in found[0].message


# ---------------------------------------------------------------- the rendered commands are in the table


def commands_of(container: dict) -> list[tuple[str, list[str]]]:
    """(program, tokens) of every command a container runs, shell scripts split into lines."""
    argv = list(container.get("command") or []) + list(container.get("args") or [])
    if argv[:2] == ["/bin/sh", "-c"]:
        lines = [shlex.split(line) for line in argv[2].splitlines() if line.strip()]
    else:
        lines = [argv]
    out = []
    for tokens in lines:
        if tokens and tokens[0] == "exec":
            tokens = tokens[1:]
        program = next((t for t in tokens if t.endswith(("quantize.py", "trtllm-build", "trtllm-serve",
                                                            "api_server")) or t == "serve"), None)
        if program:
            out.append((program, tokens[tokens.index(program) + 1:]))
    return out


COMMAND = {"api_server": "vllm serve", "serve": "vllm serve", "trtllm-serve": "trtllm-serve",
           "trtllm-build": "trtllm-build", "/app/tensorrt_llm/examples/quantization/quantize.py":
           "examples/quantization/quantize.py"}


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_every_rendered_engine_flag_is_in_the_table_for_its_version(env):
    docs = [d for path, text in render(load_stack(env)).items() if path.endswith((".yaml", ".yml"))
            and "/serving/" in "/" + path for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    checked = 0
    for doc in docs:
        for c in _containers(doc):
            if not c.get("image") or not any(c["image"].split(":")[0] in e.image_repositories
                                             for e in eng.ENGINES.values()):
                continue
            e, version = engine_of(c["image"]), eng.image_version(c["image"])
            for program, tokens in commands_of(c):
                command = COMMAND.get(program) or COMMAND[program.rsplit("/", 1)[-1]]
                for i, token in enumerate(tokens):
                    if not token.startswith("--"):
                        continue
                    fact = e.fact(version, token, command)
                    assert fact is not None, f"{env}: {command} {token} is not in {e.title} {version}"
                    given = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else None
                    if fact.choices and given is not None:
                        assert given in fact.choices, f"{env}: {command} {token} {given}: {fact.choices}"
                    checked += 1
    assert checked > 10


def _containers(doc: dict):
    """Containers of any pod template in an object (Deployment, Job, LeaderWorkerSet)."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from _containers(item)


@pytest.mark.parametrize("env", ["prod", "dev"])
def test_rendered_vllm_metric_names_are_in_the_table(env):
    """Scaling rules, alerts and dashboards query series the pinned vLLM exports: per deployment
    where the object belongs to one, else by at least one pinned vLLM version."""
    built = load_stack(env)
    versions = {s.name: s.version for s in built.plan.deployments if s.engine is eng.VLLM}
    assert versions
    seen = 0
    for path, text in render(built).items():
        names = set(re.findall(r"vllm:[a-z0-9_]+", text))
        if not names:
            continue
        owner = next((v for n, v in versions.items() if f"/{n}/" in f"/{path}" or f"{n}." in path), None)
        at = [owner] if owner else list(versions.values())
        # a query line with "or" names alternatives: either series will do (old and new names)
        either = {frozenset(re.findall(r"vllm:[a-z0-9_]+", line)) for line in text.splitlines() if " or " in line}
        for name in names:
            group = set().union({name}, *(g for g in either if name in g))
            found = [v for v in at for n in group if (m := eng.VLLM.metric(v, n)) and not m["hidden"]]
            assert found, f"{env}: {path} queries {name}, which vLLM {at} does not export"
            seen += 1
    assert seen
