"""Placeholders left in a blueprint (``blueprint`` phase): values an example ships that cannot be a
site's own, so copying an example into a new environment does not pass silently.

``gitops-repo-placeholder``: ``kubernetes.gitops_repo`` names a host under a name reserved for
examples and documentation, which no repository can ever be served from (RFC 2606, sections 2
and 3: the top-level domains ``.test``, ``.example``, ``.invalid``, ``.localhost`` and the
second-level ``example.com``, ``example.net``, ``example.org``). Argo CD would pull
manifests/<env>/ from nowhere. The shipped examples silence it (their URL is a placeholder by
design); ``aiinfra init`` writes a placeholder this check names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

from aiinfra.checks.registry import BlueprintView, validator, warning
from aiinfra.errors import Problem

RESERVED_TLDS = ("test", "example", "invalid", "localhost")  # RFC 2606, section 2
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606, section 3
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^@/:]+):")  # git's scp-like syntax: git@host:path


def url_host(url: str) -> str | None:
    """The host of a git URL (``https://host/...``, ``ssh://git@host/...`` or ``git@host:path``)."""
    if "://" in url:
        try:
            return urlsplit(url).hostname
        except ValueError:
            return None
    m = _SCP_LIKE.match(url)
    return m["host"].lower() if m else None


def is_reserved(host: str) -> bool:
    """Whether ``host`` lies under a name reserved for examples (RFC 2606)."""
    labels = host.lower().rstrip(".").split(".")
    return labels[-1] in RESERVED_TLDS or ".".join(labels[-2:]) in RESERVED_DOMAINS


@validator("blueprint")
def gitops_repo(view: BlueprintView) -> Iterator[Problem]:
    k8s = view.bp.kubernetes
    repo = k8s.gitops_repo if k8s is not None else None
    host = url_host(repo) if repo else None
    if host and is_reserved(host):
        yield warning(("kubernetes", "gitops_repo"), "gitops-repo-placeholder",
                      f"'{repo}' is a placeholder: {host} is reserved for examples (RFC 2606), "
                      "so Argo CD cannot pull manifests from it",
                      "set kubernetes.gitops_repo to the URL of this site's configuration repository")
