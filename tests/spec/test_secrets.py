"""Secrets never reach manifests/ or logs: the scanner (aiinfra.checks.secrets.scan_text) finds each
kind, `validate` warns at the key path without echoing the secret, the stack file's own secrets are
refused in plaintext, the shipped environments and everything they render are clean, and the serving
exposure checks (egress anywhere, TensorRT-LLM without an API key).

Token-shaped test values are assembled at run time, so this file holds none of them literally.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from aiinfra.checks.secrets import BASE64_ENTROPY, Finding, mask, scan_text, shannon_entropy
from aiinfra.errors import BlueprintError, Level
from aiinfra.pipeline import build_data, build_text
from aiinfra.spec.loader import is_secret_config_key
from conftest import ROOT, load_stack, render

DEV_TEXT = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
STACKS = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))

# shape-valid, fake credentials (never used anywhere)
GITHUB = "ghp_" + "Fk3Lq9Zt" * 4 + "Wm2X"
GITLAB = "glpat-" + "Qv7Rn2Kd" * 3
HF = "hf_" + "TnWq4XzPbK" * 3 + "Yd7L"
AWS = "AKIA" + "QX7ZK2M4NT6PV3R8"
SLACK = "xoxb-" + "2719384756-" + "Hk4Tz9Wq1Lm"
JWT = "eyJ" + "hbGciOiJIUzI1NiJ9" + ".eyJ" + "zdWIiOiJhaWluZnJhIn0" + ".c2lnbmF0dXJlX2J5dGVz"
RANDOM = "Zx8Qp2Lm9Vt4Rk7Wc1Nb6Hy3Jd5Fg0Sa8Eu2Io4"  # 39 characters, 5.1 bits each
PASSWORD = "S3cr3t-" + "Pa55w0rd-xY"
PEM_BODY = "MIIEowIBAAKCAQEA" + "q7Vx2" * 8
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"
SSH = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"
KUBE_TOKEN = "kT9" + "wQ2zL7xV" * 3
KUBECONFIG = ("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://10.0.0.5:6443'}\n"
              f"users:\n- name: admin\n  user:\n    token: {KUBE_TOKEN}\n")


def ids(found: list[Finding]) -> list[str]:
    return [f.id for f in found]


# ---------------------------------------------------------------- the scanner


@pytest.mark.parametrize(("text", "eid", "secret"), [
    (f"https://deploy:{PASSWORD}@git.example.org/a.git", "secret-in-url", PASSWORD),
    (f"https://{GITHUB}@github.com/org/repo.git", "secret-in-url", GITHUB),
    (f"https://oauth2:{GITLAB}@gitlab.example.org/a.git", "secret-in-url", GITLAB),
    ("https://s3.example.org/b/data?X-Amz-Date=20250101&X-Amz-Signature=9f8e7d6c5b4a39281706", "secret-in-url",
     "9f8e7d6c5b4a39281706"),
    (f"https://hub.example.org/api?access_token={RANDOM}&page=2", "secret-in-url", RANDOM),
    (f"--hf-token {GITHUB}", "secret-token", GITHUB),
    (f"token={GITLAB}", "secret-token", GITLAB),
    (f"HF_TOKEN={HF}", "secret-token", HF),
    (f"aws_access_key_id = {AWS}", "secret-token", AWS),
    (f"slack: {SLACK}", "secret-token", SLACK),
    (f"jwt {JWT}", "secret-token", JWT),
    (f"Authorization: Bearer {RANDOM[:24]}", "secret-token", RANDOM[:24]),
    (f"seed {RANDOM}", "secret-token", RANDOM),
    ("key 5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592", "secret-token",
     "5d41402abc4b2a76b9719d911017c5925d41402abc4b2a76b9719d911017c592"),
    (PEM, "secret-key-material", PEM_BODY),
    (SSH, "secret-key-material", "b3BlbnNzaC1rZXktdjEAAAAA"),
    (KUBECONFIG, "secret-key-material", KUBE_TOKEN),
    ("users:\n- user:\n    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo=\n", "secret-key-material",
     "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQo="),
])
def test_each_kind_is_found_and_masked(text, eid, secret):
    found = scan_text(text)
    assert ids(found) == [eid], found
    f = found[0]
    assert secret not in repr(f) and secret not in f.describe()
    assert f.masked.endswith("…") and len(f.masked) <= 5
    assert f.line == text.count("\n", 0, f.start) + 1


@pytest.mark.parametrize("text", [
    "nvcr.io/nvidia/pytorch@sha256:4f2b9c0e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c",
    'echo "9b74c9897bac770ffc029102a200c5de9b74c9897bac770ffc029102a200c5de  SHA256SUMS" | sha256sum -c -',
    "md5: 0cc175b9c0f1b6a831c399e269772661",
    "targetRevision: 3f786850e387550fdab836ed7e6dc881de23001b",
    "uid: 123e4567-e89b-12d3-a456-426614174000",
    "name: job-123e4567-e89b-12d3-a456-426614174000-0f3a9c2b",
    "tokenizer: meta-llama/Meta-Llama-3.1-405B-Instruct-FP8",
    "hf: nvidia/Llama-3.1-Nemotron-70B-Instruct-HF mistralai/Mixtral-8x22B-Instruct-v0.1",
    "CHECKPOINT_DIR=/lustre/checkpoints/dev/llama3-8b-finetune",
    "/lustre/models/Meta-Llama-3-70B-Instruct-AWQ-INT4/model-00001-of-00009.safetensors",
    "ssh://git@github.com/org/repo.git https://git.example.org/nacc/aiinfra.git",
    "https://user:${GIT_TOKEN}@git.example.org/a.git https://example.org/x?page=2&sort_key_id=3",
    "Authorization: Bearer <key>  # the API key from the Secret",
    "AccountingStorageType=accounting_storage/slurmdbd",
    "--lr-decay-style cosine --lr-warmup-iters 2000 --weight-decay 0.1 --adam-beta2 0.95",
])
def test_no_false_positive_on_digests_checksums_uuids_and_names(text):
    assert scan_text(text) == []


def test_public_key_material_is_not_a_secret_but_a_private_key_is():
    b64 = base64.b64encode(b"".join(hashlib.sha512(bytes([i])).digest() for i in range(4))).decode()
    assert ids(scan_text(b64[:64])) == ["secret-token"]  # the same material, bare, looks like a key
    cert = "-----BEGIN CERTIFICATE-----\n" + "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64))
    assert scan_text(cert + "\n-----END CERTIFICATE-----\n") == []
    assert scan_text(f"    certificate-authority-data: {b64}\n") == []
    assert scan_text(f"ansible_ssh_host_key_rsa_public: ssh-rsa AAAAB3NzaC1yc2E{b64[:120]} root@gpu01") == []
    assert scan_text("kind: Config\nusers:\n- user:\n    token: {{ k8s_token }}\n") == []
    assert ids(scan_text(cert.replace("CERTIFICATE", "PRIVATE KEY"))) == ["secret-key-material"]


def test_a_hex_run_under_a_checksum_key_is_not_a_secret():
    digest = "9b74c9897bac770ffc029102a200c5de9b74c9897bac770ffc029102a200c5de"
    assert ids(scan_text(digest)) == ["secret-token"]
    assert scan_text(digest, key="weights_manifest_sha256") == []


def test_the_entropy_threshold_separates_random_strings_from_names():
    assert shannon_entropy(RANDOM) > BASE64_ENTROPY + 1
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("ab" * 20) == 1.0


def test_a_token_inside_a_url_is_reported_once():
    found = scan_text(f"https://x-access-token:{GITHUB}@github.com/o/r.git")
    assert ids(found) == ["secret-in-url"]


def test_mask_shows_at_most_four_characters_and_a_quarter():
    assert mask(GITHUB) == "ghp_…"
    assert mask("hunter22") == "hu…"
    assert mask("abc") == "…"


# ---------------------------------------------------------------- validate on a blueprint


def _dev_file(tmp_path: Path, old: str, new: str, name: str = "leak") -> Path:
    assert old in DEV_TEXT, old
    f = tmp_path / f"Pulumi.{name}.yaml"
    f.write_text(DEV_TEXT.replace(old, new, 1))
    return f


GITOPS = "gitops_repo: https://git.example.org/aiinfra/aiinfra.git"
WARMUP = '--lr-warmup-iters, "100"]'
DESCRIPTION = "description: Two GPU nodes (one Slurm, one Kubernetes) and one management node."


@pytest.mark.parametrize(("old", "new", "path", "eid", "secret"), [
    (GITOPS, f"gitops_repo: https://deploy:{PASSWORD}@git.example.org/aiinfra/aiinfra.git",
     "kubernetes.gitops_repo", "secret-in-url", PASSWORD),
    (GITOPS, f"gitops_repo: https://{GITHUB}@github.com/org/aiinfra.git",
     "kubernetes.gitops_repo", "secret-in-url", GITHUB),
    (WARMUP, f'--lr-warmup-iters, "100", --hf-token, {HF}]', "training[0].extra_args[9]", "secret-token", HF),
    (DESCRIPTION, f"description: Two GPU nodes; CI token {GITLAB}", "description", "secret-token", GITLAB),
    ("image: deepspeed", f"image: deepspeed\n        data_path: /lustre/datasets/{RANDOM}/text",
     "training[1].data_path", "secret-token", RANDOM),
    ("image: deepspeed", "image: deepspeed\n        data_path: https://s3.example.org/d?X-Amz-Signature="
     + RANDOM, "training[1].data_path", "secret-in-url", RANDOM),
    (DESCRIPTION, "description: " + json.dumps(PEM), "description", "secret-key-material", PEM_BODY),
    (DESCRIPTION, "description: " + json.dumps(KUBECONFIG), "description", "secret-key-material", KUBE_TOKEN),
])
def test_validate_warns_at_the_key_and_never_echoes_the_secret(aiinfra, tmp_path, old, new, path, eid, secret):
    f = _dev_file(tmp_path, old, new)
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 0, r.stderr
    assert f"aiinfra:cluster.{path}: warning[{eid}]" in r.stderr, r.stderr
    assert secret not in r.stdout + r.stderr
    assert "(fix: " in r.stderr
    r = aiinfra("validate", "--file", str(f), "--json")
    assert secret not in r.stdout
    assert any(p["id"] == eid and p["path"] == f"aiinfra:cluster.{path}" for p in json.loads(r.stdout)["problems"])


def test_the_secret_warnings_can_be_silenced_by_name(aiinfra, tmp_path):
    leak = f"gitops_repo: https://deploy:{PASSWORD}@git.example.org/aiinfra/aiinfra.git"
    f = _dev_file(tmp_path, GITOPS, leak)
    assert "warning[secret-in-url]" in aiinfra("validate", "--file", str(f)).stderr
    f.write_text(f.read_text().replace("silence: [", "silence: [secret-in-url, ", 1))
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 0 and "secret-in-url" not in r.stderr


def test_a_url_with_credentials_would_land_in_the_rendered_gitops_tree():
    """What the rendered-output scan below guards against: the credential reaches manifests/."""
    text = DEV_TEXT.replace(GITOPS, f"gitops_repo: https://deploy:{PASSWORD}@git.example.org/aiinfra/aiinfra.git")
    built = build_text(text, "Pulumi.leak.yaml", "dev")
    flagged = {path for path, body in render(built).items() if "secret-in-url" in ids(scan_text(body))}
    assert flagged and all(p.startswith("gitops/") for p in flagged), flagged


def test_a_commit_id_as_gitops_revision_is_not_a_secret():
    text = DEV_TEXT.replace("gitops_revision: main", "gitops_revision: 3f786850e387550fdab836ed7e6dc881de23001b")
    built = build_text(text, "Pulumi.rev.yaml", "dev")
    assert not [p for p in built.warnings if p.id.startswith("secret-")]
    assert not [(path, f) for path, body in render(built).items() for f in scan_text(body)]


# ---------------------------------------------------------------- the stack file's own secrets


def _with_config(tmp_path: Path, lines: str) -> Path:
    f = tmp_path / "Pulumi.cfg.yaml"
    f.write_text(DEV_TEXT.replace("config:\n", "config:\n" + lines, 1))
    return f


def test_a_plaintext_kubeconfig_is_refused_without_echoing_it(aiinfra, tmp_path):
    block = "  aiinfra:kubeconfig: |\n" + "".join(f"    {line}\n" for line in KUBECONFIG.splitlines())
    f = _with_config(tmp_path, block)
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 1
    assert f"{f}:6: aiinfra:kubeconfig: error[plaintext-secret]" in r.stderr, r.stderr
    assert "pulumi config set --secret aiinfra:kubeconfig" in r.stderr
    assert KUBE_TOKEN not in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_an_encrypted_kubeconfig_is_accepted(aiinfra, tmp_path):
    f = _with_config(tmp_path, "  aiinfra:kubeconfig:\n    secure: v1:Qm9ndXNDaXBoZXJ0ZXh0:Zm9v\n")
    r = aiinfra("validate", "--file", str(f))
    assert r.code == 0, r.stderr


@pytest.mark.parametrize(("lines", "refused"), [
    (f"  aws:secretKey: {RANDOM}\n", "aws:secretKey"),
    ("  db:password: hunter22\n", "db:password"),
    ("  aiinfra:extra:\n    nested: {secure: v1:abc}\n    plain: visible\n", "aiinfra:extra"),
    ("  aws:region: eu-west-1\n  kubernetes:context: dev\n", None),
    ("  aws:secretKey: {secure: v1:abc}\n", None),
])
def test_other_config_keys(aiinfra, tmp_path, lines, refused):
    r = aiinfra("validate", "--file", str(_with_config(tmp_path, lines)))
    if refused is None:
        assert r.code == 0, r.stderr
    else:
        assert r.code == 1 and f"{refused}: error[plaintext-secret]" in r.stderr, r.stderr
        assert RANDOM not in r.stderr and "hunter22" not in r.stderr and "visible" not in r.stderr


def test_every_secret_the_project_declares_is_treated_as_one():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    declared = project["config"]
    assert any(v.get("secret") for v in declared.values())
    for key, spec in declared.items():
        assert is_secret_config_key(key) is bool(spec.get("secret")), key


# ---------------------------------------------------------------- the shipped environments are clean


@pytest.mark.parametrize("stack", STACKS, ids=[p.stem for p in STACKS])
def test_no_secret_in_the_shipped_blueprint(stack):
    assert scan_text(stack.read_text()) == []
    env = stack.stem.removeprefix("Pulumi.")
    assert not [p for p in load_stack(env).warnings if p.id.startswith("secret-")]


@pytest.mark.parametrize("stack", STACKS, ids=[p.stem for p in STACKS])
def test_no_rendered_file_holds_a_secret(stack):
    built = load_stack(stack.stem.removeprefix("Pulumi."))
    files = render(built)
    assert len(files) > 50
    found = [f"{path}:{f.line}: {f.id}: {f.describe()}" for path, body in sorted(files.items())
             for f in scan_text(body)]
    assert not found, "\n".join(found)


# ---------------------------------------------------------------- serving exposure


def _prod() -> dict:
    return yaml.safe_load((ROOT / "stacks" / "Pulumi.prod.yaml").read_text())["config"]["aiinfra:cluster"]


def _problems(data: dict) -> dict[str, tuple[str, Level]]:
    """key path -> (id, level) of every problem of a modified prod blueprint."""
    try:
        found = build_data(data, "stacks/Pulumi.prod.yaml", "prod").warnings
    except BlueprintError as exc:
        found = exc.problems
    return {p.key_path.removeprefix("aiinfra:cluster."): (p.id, p.level) for p in found}


@pytest.mark.parametrize(("cidrs", "warned"), [
    (["0.0.0.0/0"], [0]),
    (["10.0.0.0/8", "10.5.0.0/16"], [0]),
    (["10.5.0.0/16", "192.168.10.0/24"], []),
])
def test_serving_egress_to_anywhere_is_a_warning(cidrs, warned):
    data = _prod()
    data["serving"][0]["egress_cidrs"] = cidrs
    found = {k: v for k, v in _problems(data).items() if v[0] == "serving-egress-anywhere"}
    assert found == {f"serving[0].egress_cidrs[{i}]": ("serving-egress-anywhere", Level.WARNING) for i in warned}


def test_a_tensorrt_llm_deployment_open_to_its_gateway_is_a_warning():
    data = _prod()
    assert data["serving"][2]["engine"] == "tensorrt-llm"
    data["serving"][2]["gateway_auth"] = False  # prod declares that its gateway authenticates
    assert _problems(data)["serving[2].gateway_namespace"] == ("serving-no-auth", Level.WARNING)
    del data["serving"][2]["gateway_namespace"]  # no client ingress at all: nothing open
    assert "serving-no-auth" not in {i for i, _ in _problems(data).values()}


def test_an_api_key_secret_on_tensorrt_llm_is_refused_not_ignored():
    data = _prod()
    data["serving"][2]["api_key_secret"] = "llama3-8b-trt-api-key"
    found = _problems(data)
    assert found["serving[2].api_key_secret"] == ("serving-api-key-unsupported", Level.ERROR)
    data["serving"][2]["engine"] = "vllm"  # vLLM reads the key from the Secret
    data["serving"][2]["image"] = "vllm"
    assert "serving-api-key-unsupported" not in {i for i, _ in _problems(data).values()}
