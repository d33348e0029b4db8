"""The JSON Schemas of every command's `--json` output, shipped in synth_cli/data/schemas/.

One file per command (`traces.json`, `sft-list.json`, …; `error.json` is the error document
every command prints under `--json` when it fails), sharing the definitions of
`_defs.json` (times, money, counts: the rules of docs/json.md). :func:`load` returns a
schema with those definitions merged in, self-contained, as `synth-ai schema COMMAND`
prints it. No I/O beyond reading the package's own files; never prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth_cli.errors import UsageError

SCHEMA_DIR = Path(__file__).resolve().parent / "data" / "schemas"


def names() -> list[str]:
    """Every command with a schema, as typed on the command line (`sft list`), sorted."""
    return sorted(p.stem.replace("-", " ") for p in SCHEMA_DIR.glob("*.json") if not p.name.startswith("_"))


def load(command: str) -> dict[str, Any]:
    """The self-contained schema of `command` (`"sft list"`, `"sft-list"` or `"synth-ai sft list"`)."""
    words = command.replace("-", " ").split()
    if words[:2] == ["synth", "ai"]:
        words = words[2:]
    name = " ".join(words)
    path = SCHEMA_DIR / (name.replace(" ", "-") + ".json")
    if not name or not path.is_file():
        import difflib

        close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
        raise UsageError(f"no JSON schema for {name or '(nothing)'!r}",
                         hint=(f"did you mean: {', '.join(close)}? " if close else "")
                         + "`synth-ai schema` lists the commands that have one")
    schema = json.loads(path.read_text(encoding="utf-8"))
    defs = json.loads((SCHEMA_DIR / "_defs.json").read_text(encoding="utf-8"))
    schema["$defs"] = {**defs, **schema.get("$defs", {})}
    return schema


def listing() -> list[dict[str, str]]:
    out = []
    for name in names():
        title = json.loads((SCHEMA_DIR / (name.replace(" ", "-") + ".json")).read_text(encoding="utf-8")).get("title")
        out.append({"command": name, "title": title or name})
    return out
