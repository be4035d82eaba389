"""Claim verdicts say holds / partly / does not, the same in the table, the JSON and the words."""

from __future__ import annotations

import json

from aiinfra.plan.claims import ClaimCheck, check_quantized_fits_claim
from aiinfra.plan.common import GB


def test_status_follows_the_parts():
    def status(*parts: bool) -> str:
        return ClaimCheck("c", {f"part {i}": p for i, p in enumerate(parts)}, {}, "").status

    assert status(True, True) == "holds" and status(True) == "holds"
    assert status(True, False) == status(False, True) == "partly"
    assert status(False, False) == status(False) == "does not"


def test_the_words_agree_with_the_verdict():
    wrong = check_quantized_fits_claim(claimed_gb=35)
    assert wrong.status == "partly"
    assert "not 35 GB" in wrong.verdict and "it runs on one" in wrong.verdict
    right = check_quantized_fits_claim(claimed_gb=round(wrong.numbers["weights_bytes"] / GB))
    assert right.status == "holds" and " not " not in right.verdict
    too_big = check_quantized_fits_claim(model_name="llama3-405b", claimed_gb=35)
    assert too_big.status == "does not" and "does not fit" in too_big.verdict and "not 35 GB" in too_big.verdict


def test_plan_shows_each_claims_verdict(aiinfra, prod):
    claims = prod.plan.claims
    assert {c.status for c in claims} >= {"partly", "does not"}  # prod's two claims: a real test of both
    r = aiinfra("plan", "--stack", "prod", "--json")
    data = json.loads(r.stdout)
    assert [(c["status"], c["holds"]) for c in data["claims"]] == [(c.status, c.holds) for c in claims]
    text = aiinfra("plan", "--stack", "prod").stdout
    table = text[text.index("claims checked"):]
    cells = [line.split("│")[2].strip() for line in table.splitlines() if line.startswith("│")]
    assert [c for c in cells if c in ("holds", "partly", "does not")] == [c.status for c in claims]
    assert "yes" not in cells[:1] and "NO" not in cells
