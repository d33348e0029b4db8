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

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = (ROOT / "docs" / "openapi" / "openai-files-fine-tuning.openapi.yaml",
              ROOT.parent / "shared" / "api" / "openai-files-fine-tuning.openapi.yaml")


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


@lru_cache(maxsize=1)
def document() -> dict:
    yaml = pytest.importorskip("yaml")
    for path in CANDIDATES:
        if path.is_file():
            return _fix(yaml.safe_load(path.read_text(encoding="utf-8")))
    pytest.skip("the OpenAPI document is not in docs/openapi/ (nor ../shared/api/)")


def validator(component: str):
    from jsonschema import Draft202012Validator

    doc = document()
    schema = {"$ref": f"#/components/schemas/{component}", "components": copy.deepcopy(doc["components"])}
    return Draft202012Validator(schema)


def errors(component: str, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(component).iter_errors(instance)]
