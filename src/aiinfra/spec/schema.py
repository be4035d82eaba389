"""The blueprint's JSON Schema, wrapped in the Pulumi stack-file shape editors see."""

from __future__ import annotations

from aiinfra.errors import ROOT_KEY
from aiinfra.spec.models import Blueprint


def blueprint_schema() -> dict:
    inner = Blueprint.model_json_schema(mode="validation")
    defs = inner.pop("$defs", {})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "aiinfra stack file (stacks/Pulumi.<env>.yaml)",
        "type": "object",
        "properties": {
            "config": {
                "type": "object",
                "properties": {ROOT_KEY: inner},
                "required": [ROOT_KEY],
            },
            "secretsprovider": {"type": "string"},
            "encryptionsalt": {"type": "string"},
        },
        "required": ["config"],
        "$defs": defs,
    }
