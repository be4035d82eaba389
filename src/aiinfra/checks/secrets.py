"""Secrets in the blueprint: a value that holds a credential lands in manifests/, in the Pulumi
state and in every log that prints it, so ``validate`` names it before anything is rendered.

:func:`scan_text` is the one scanner: the ``blueprint`` validator below runs it over every string
value of the blueprint, and the tests run it over every rendered file (and the Ansible run
artifacts), so what counts as a secret is decided once. It finds three kinds, each a stable
warning id (docs/validation.md):

- ``secret-in-url``: a URL with credentials in its userinfo (``https://user:pass@host``,
  ``https://<token>@host``) or in a query parameter named like one (``?token=``, ``&sig=``).
- ``secret-token``: a known token shape (GitHub, GitLab, Hugging Face, AWS, Slack, OpenAI,
  Google, JWT, ``Bearer ...``) or a long high-entropy string.
- ``secret-key-material``: a PEM or OpenSSH private key, a PuTTY key, a kubeconfig's user
  credentials (``client-key-data``, ``token``, ``password``).

Public material is not a secret: certificates and public keys (PEM), kubeconfig certificate data,
SSH public keys (Ansible's host-key facts), UUIDs, and hex next to a checksum, digest or commit word.
A finding never carries the secret: only its first characters (:func:`mask`). The stack file's own
secrets (``aiinfra:kubeconfig`` in plaintext) are refused by the loader (``plaintext-secret``),
before the blueprint is read.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

from aiinfra.checks.registry import BlueprintView, validator, warning
from aiinfra.errors import Problem

SECRET_IDS = ("secret-key-material", "secret-in-url", "secret-token")  # also their priority on overlap

#: A long run of the base64 / base64url / hex alphabet is a candidate for the entropy test.
MIN_ENTROPY_LENGTH = 32
#: Bits per character a base64 run (upper and lower case and digits) needs to count as random: a
#: random 32-character base64 string has 4.05-5.0, most identifiers, paths and model names of that
#: length 3.5-4.6 (``meta-llama/Meta-Llama-3-70B-Instruct`` 3.9, ``Llama3170BInstructAWQInt4`` ... 4.6).
BASE64_ENTROPY = 4.0
#: ... so a run must also be mostly not words: the share of its characters in words (``[A-Z]?[a-z]{3,}``)
#: is 0.44-0.85 in such names and below 0.4 in most random base64. With both tests about 94 % of random
#: 32-character base64 strings are found, 99 % of 64-character ones (known token shapes: all).
MAX_WORD_SHARE = 0.4
#: Hex has 16 symbols (4 bits at most): a random 32-character hex string has ~3.7.
HEX_ENTROPY = 3.0
#: Words near a hex run that make it a checksum, digest or commit id rather than a key.
_CHECKSUM_WORDS = ("sha", "md5", "digest", "checksum", "hash", "sum", "commit", "revision")

_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = tuple((what, re.compile(rx)) for what, rx in (
    ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    ("a GitLab token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("an AWS access key id", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    ("a Slack token", r"\bxox[abeoprs]-[A-Za-z0-9-]{10,}"),
    ("an OpenAI API key", r"\bsk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{32,})"),
    ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)?"),
    ("a bearer token", r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)"),
))
_PEM = re.compile(r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----")
_PUTTY = re.compile(r"PuTTY-User-Key-File-\d+:")
_PUBLIC_PEM = re.compile(r"-----BEGIN (?!(?:[A-Z0-9]+ )*PRIVATE KEY)[A-Z0-9 ]+-----")
_PUBLIC_DATA = re.compile(r"""(?:certificate-authority-data["']?\s*:\s*["']?|client-certificate-data["']?\s*:\s*["']?"""
                          r"|(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-ssh-ed25519@openssh\.com)\s+)"
                          r"(?P<data>[A-Za-z0-9+/=]+)")
_KUBECONFIG_KIND = re.compile(r"""(?m)^\s*["']?kind["']?\s*:\s*["']?Config\b""")
_KUBECONFIG_CLIENT_KEY = re.compile(r"""["']?client-key-data["']?\s*:\s*["']?(?P<secret>[A-Za-z0-9+/=]{16,})""")
_KUBECONFIG_USER_SECRET = re.compile(r"""(?m)^\s*["']?(?P<name>token|password)["']?\s*:\s*["']?(?P<secret>[^\s"',}]+)""")
_URL = re.compile(r"""\b[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>\\`]+""")
_RUN = re.compile(rf"[A-Za-z0-9+/_-]{{{MIN_ENTROPY_LENGTH},}}={{0,2}}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_WORD = re.compile(r"[A-Z]?[a-z]{3,}")
#: A value that stands for a secret given elsewhere: $VAR, ${VAR}, {{ var }}, <...>, ***.
_PLACEHOLDER = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{\{.*\}\}|<[^>]*>|\*+|x+|X+|%\([a-z_]+\)s")
#: The last word of a query parameter name that makes it a credential (access_token, X-Amz-Signature).
_SECRET_PARAM_WORDS = {"token", "key", "apikey", "secret", "password", "passwd", "pwd", "sig", "signature",
                       "credential", "credentials", "auth"}
_USER_ONLY_TOKEN_LENGTH = 16  # scheme://<user>@host: a login name is short, a token is not


@dataclass(frozen=True, order=True)
class Finding:
    """One secret in a text: where it is, what it looks like, and a mask of it (never the secret)."""

    start: int  # offset of the secret in the text
    end: int
    id: str  # secret-in-url | secret-token | secret-key-material
    what: str  # "a GitHub token", "a password in the URL's userinfo", ...
    masked: str  # the first characters only: mask()
    line: int  # 1-based line of the text

    def describe(self) -> str:
        return f"{self.what} ({self.masked})"


def mask(secret: str) -> str:
    """The first characters of a secret and an ellipsis: at most 4, and at most a quarter of it."""
    return secret[: min(4, len(secret) // 4)] + "…"


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text``'s own character distribution."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def scan_text(text: str, key: str = "") -> list[Finding]:
    """Every secret in ``text`` (a blueprint value or a whole rendered file), in order.

    ``key`` is the name the value is stored under, if any (``weights_manifest_sha256``): it counts as
    context, so a hex run under a checksum's key is not taken for a key. Where two findings overlap
    (a token inside a URL's userinfo) the one of the higher-priority id stays.
    """
    found = [*_key_material(text), *_urls(text), *_tokens(text), *_high_entropy(text, key)]
    found.sort(key=lambda f: (SECRET_IDS.index(f.id), f.start))
    kept: list[Finding] = []
    for f in found:
        if not any(f.start < k.end and k.start < f.end for k in kept):
            kept.append(f)
    return sorted(kept)


def _finding(text: str, start: int, end: int, id: str, what: str, secret: str | None = None) -> Finding:
    return Finding(start, end, id, what, mask(text[start:end] if secret is None else secret),
                   text.count("\n", 0, start) + 1)


def _key_material(text: str) -> Iterator[Finding]:
    for m in _PEM.finditer(text):
        kind = m.group("kind").strip()
        what = "an OpenSSH private key" if kind == "OPENSSH" else f"a PEM {kind + ' ' if kind else ''}private key"
        end = text.find("-----END", m.end())
        yield _finding(text, m.start(), len(text) if end < 0 else end, "secret-key-material", what)
    for m in _PUTTY.finditer(text):
        yield _finding(text, m.start(), m.end(), "secret-key-material", "a PuTTY private key file")
    for m in _KUBECONFIG_CLIENT_KEY.finditer(text):
        yield _finding(text, m.start("secret"), m.end("secret"), "secret-key-material",
                       "a kubeconfig client key (client-key-data)")
    if _KUBECONFIG_KIND.search(text):
        for m in _KUBECONFIG_USER_SECRET.finditer(text):
            if not _PLACEHOLDER.fullmatch(m.group("secret")) and m.group("secret")[0] not in "{$<":
                yield _finding(text, m.start("secret"), m.end("secret"), "secret-key-material",
                               f"a kubeconfig user {m.group('name')}")


def _urls(text: str) -> Iterator[Finding]:
    for m in _URL.finditer(text):
        url, base = m.group(), m.start()
        rest = url.split("://", 1)[1]
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        userinfo, at, _host = authority.rpartition("@")
        offset = base + url.index("://") + 3
        if at:
            user, colon, password = userinfo.partition(":")
            if colon and password and not _PLACEHOLDER.fullmatch(password):
                start = offset + len(user) + 1
                yield _finding(text, start, start + len(password), "secret-in-url",
                               "a password in a URL's userinfo (scheme://user:password@host)")
            elif not colon and user and not _PLACEHOLDER.fullmatch(user) and (
                    len(user) >= _USER_ONLY_TOKEN_LENGTH or any(rx.search(user) for _, rx in _TOKENS)):
                yield _finding(text, offset, offset + len(user), "secret-in-url",
                               "a token as a URL's userinfo (scheme://token@host)")
        if "?" not in url:
            continue
        pos = base + url.index("?") + 1
        for part in url[url.index("?") + 1:].split("#", 1)[0].split("&"):
            name, eq, value = part.partition("=")
            words = re.split(r"[_.-]", unquote(name).lower())
            if eq and words[-1] in _SECRET_PARAM_WORDS and value and not _PLACEHOLDER.fullmatch(unquote(value)):
                start = pos + len(name) + 1
                yield _finding(text, start, start + len(value), "secret-in-url",
                               f"a credential in the URL's query parameter '{unquote(name)}'")
            pos += len(part) + 1


def _tokens(text: str) -> Iterator[Finding]:
    for what, rx in _TOKENS:
        for m in rx.finditer(text):
            group = "secret" if "secret" in rx.groupindex else 0
            yield _finding(text, m.start(group), m.end(group), "secret-token", what)


def _word_share(run: str) -> float:
    return sum(len(w) for w in _WORD.findall(run)) / len(run)


def _public_spans(text: str) -> list[tuple[int, int]]:
    """Random-looking material that is public: certificates and public keys (PEM), kubeconfig
    certificate data, SSH public keys (host keys in Ansible facts, authorized_keys)."""
    spans = []
    for m in _PUBLIC_PEM.finditer(text):
        end = text.find("-----END", m.end())
        spans.append((m.start(), len(text) if end < 0 else end))
    spans += [m.span("data") for m in _PUBLIC_DATA.finditer(text)]
    return spans


def _high_entropy(text: str, key: str) -> Iterator[Finding]:
    public = _public_spans(text)
    for m in _RUN.finditer(text):
        run = m.group()
        if _UUID.search(run) or any(a <= m.start() < b for a, b in public):
            continue
        bits = shannon_entropy(run)
        if _HEX.fullmatch(run):
            near = (text[max(0, m.start() - 48): m.end() + 48] + " " + key).lower()
            if bits < HEX_ENTROPY or not re.search(r"[a-fA-F]", run) or any(w in near for w in _CHECKSUM_WORDS):
                continue
        elif bits < BASE64_ENTROPY or _word_share(run) >= MAX_WORD_SHARE or not (
                re.search(r"[A-Z]", run) and re.search(r"[a-z]", run) and re.search(r"[0-9]", run)):
            continue
        yield _finding(text, m.start(), m.end(), "secret-token",
                       f"a random-looking string ({len(run)} characters, {bits:.1f} bits each)")


# ------------------------------------------------------------------ the blueprint's values

_HINTS = {
    "secret-in-url": "take the credentials out of the URL and give them through a secret store (a Kubernetes "
                     "Secret, a Pulumi secret, Ansible Vault); rotate them if this file was shared",
    "secret-token": "remove it and reference it from a secret store (pulumi config set --secret, a Kubernetes "
                    "Secret, Ansible Vault); revoke the token if this file was shared",
    "secret-key-material": "remove the key and give it as a Pulumi secret (pulumi config set --secret) or a "
                           "Kubernetes Secret; rotate it if this file was shared",
}


def _strings(data: object, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    if isinstance(data, str):
        yield path, data
    elif isinstance(data, dict):
        for k, v in data.items():
            yield from _strings(v, (*path, k))
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            yield from _strings(v, (*path, i))


@validator()
def secrets_in_values(v: BlueprintView) -> Iterator[Problem]:
    """Every string value of the blueprint, scanned: one warning per value and kind of secret."""
    for path, value in _strings(v.bp.model_dump()):
        key = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
        by_id: dict[str, list[Finding]] = {}
        for f in scan_text(value, key):
            by_id.setdefault(f.id, []).append(f)
        for fid, found in by_id.items():
            what = "; ".join(f.describe() for f in found)
            yield warning(path, fid, f"this value holds {what}: it would be rendered into manifests/ and "
                                     "printed in logs", _HINTS[fid])
