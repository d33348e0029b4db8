"""Validate payloads against single component schemas of the OpenAI files/fine-tuning OpenAPI document.

The published document uses `exclusiveMinimum: true` (OpenAPI 3.0 style) inside a 3.1 document,
which a strict JSON-Schema validator rejects; the loader rewrites those to the 2020-12 form
(`exclusiveMinimum: <minimum>`) and validates against one component schema at a time.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = (ROOT / "docs" / "openapi" / "openai-files-fine-tuning.openapi.yaml",
              ROOT.parent / "shared" / "api" / "openai-files-fine-tuning.openapi.yaml")
TOGETHER = (ROOT / "docs" / "openapi" / "together-files-fine-tunes.openapi.yaml",
            ROOT.parent / "shared" / "api" / "together-files-fine-tunes.openapi.yaml")


def _fix(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _fix(v) for k, v in node.items()}
        if node.get("exclusiveMinimum") is True:
            node["exclusiveMinimum"] = node.pop("minimum", 0)
        elif node.get("exclusiveMinimum") is False:
            node.pop("exclusiveMinimum")
        if node.get("nullable") is True and isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        return node
    if isinstance(node, list):
        return [_fix(v) for v in node]
    return node


@lru_cache(maxsize=2)
def document(which: str = "openai") -> dict:
    yaml = pytest.importorskip("yaml")
    for path in CANDIDATES if which == "openai" else TOGETHER:
        if path.is_file():
            return _fix(yaml.safe_load(path.read_text(encoding="utf-8")))
    pytest.skip("the OpenAPI document is not in docs/openapi/ (nor ../shared/api/)")


def _fix_together(node: Any) -> Any:
    """Together's document: `enum: [null, …]` without a null type, and `type: boolean` next to a
    `oneOf` that allows "auto" (train_on_inputs): read both as the `oneOf`/enum intends."""
    if isinstance(node, dict):
        node = {k: _fix_together(v) for k, v in node.items()}
        if "oneOf" in node and node.get("type") == "boolean":
            node.pop("type")
        if isinstance(node.get("enum"), list) and None in node["enum"] and node.get("type") == "string":
            node["type"] = ["string", "null"]
        return node
    if isinstance(node, list):
        return [_fix_together(v) for v in node]
    return node


def validator(component: str, which: str = "openai"):
    from jsonschema import Draft202012Validator

    doc = document(which)
    components = copy.deepcopy(doc["components"])
    if which == "together":
        components = _fix_together(components)
    schema = {"$ref": f"#/components/schemas/{component}", "components": components}
    return Draft202012Validator(schema)


def errors(component: str, instance: Any, which: str = "openai") -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator(component, which).iter_errors(instance)]


def together_errors(component: str, instance: Any) -> list[str]:
    return errors(component, instance, "together")


def together_request_errors(path: str, method: str, instance: Any) -> list[str]:
    """Errors of a request body against the inline schema of Together's `path`/`method`."""
    from jsonschema import Draft202012Validator

    doc = document("together")
    operation = doc["paths"][path][method]
    schema = next(iter(operation["requestBody"]["content"].values()))["schema"]
    full = {**_fix_together(copy.deepcopy(schema)), "components": _fix_together(copy.deepcopy(doc["components"]))}
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in Draft202012Validator(full).iter_errors(instance)]
