"""The manual: built from the Typer/click app itself, rendered as roff pages or terminal text.

:func:`build_pages` walks the command tree and returns one :class:`Page` per command and
per group (`synth-ai`, `synth-ai-sft`, `synth-ai-sft-run`, …), in a neutral structure that
:func:`to_roff` (for `man/`) and :func:`to_text` (for `synth-ai man`) render. The output
depends only on the app and the package version — no dates, no machine paths — so the
pages in the repository can be checked against the app (tests/test_man.py).

Regenerate the pages in the repository with::

    python -m synth_cli.manpages man/

Nothing here runs at CLI start-up: `synth-ai man` imports it inside the command.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

PROG = "synth-ai"
MAN_SECTION = "1"

#: Examples per command path (" "-joined below the program name; "" is the root page).
#: Only shown for commands that exist in the app; tests check every flag used here exists.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "": [
        ("synth-ai demo", "Run the whole pipeline offline: trace an agent, filter, fine-tune on a local backend."),
        ("synth-ai traces", "List the trace DBs under ./synth_ai.db/dbs and what they hold."),
        ("synth-ai filter --help", "See how to turn traces into an OpenAI-format chat JSONL dataset."),
        ("synth-ai sft run --help", "See how to start a fine-tuning job and follow it."),
        ("synth-ai balance --usage", "The account balance and recent spend of the configured backend."),
        ("synth-ai calc gpt-4o 1M 500k", "What 1M input and 500k output tokens of gpt-4o cost."),
        ("synth-ai man sft", "The manual of one command or group."),
    ],
    "calc": [
        ("synth-ai calc gpt-4o 1000000 500000", "Price 1,000,000 input + 500,000 output tokens of gpt-4o ($7.50)."),
        ("synth-ai calc claude-3-5-haiku 2.5M 300k --cached-input-tokens 2M",
         "2M of the 2.5M input tokens were prompt-cache hits."),
        ("synth-ai calc --list", "Every priced model, USD per 1M tokens."),
        ("synth-ai calc gpt-4o-mini 1M 1M --pricing my-prices.toml", "Use your own price table."),
        ("synth-ai calc '2*(3+4)'", "Plain arithmetic."),
    ],
    "balance": [
        ("synth-ai balance", "Balance and spend over the last 24 hours and 7 days."),
        ("synth-ai balance --usage", "Also the current month and the last 30 days."),
        ("synth-ai balance --json", "The raw numbers, for scripts."),
        ("synth-ai balance --base-url http://127.0.0.1:8000 --api-key sk-synth-local-dev-key",
         "Ask the local backend started by `synth-ai serve`."),
    ],
    "usage": [
        ("synth-ai usage --db traces.db", "Calls, tokens, cost and latency per model and provider."),
        ("synth-ai usage --model 'gpt-4o*' --since 7d", "Only gpt-4o models, over the last 7 days."),
        ("synth-ai usage --remote --model gpt-4o-mini", "Spend and tokens of one model, from the backend."),
    ],
    "traces": [
        ("synth-ai traces", "Every DB under ./synth_ai.db/dbs: traces, events, LLM calls, last activity, size."),
        ("synth-ai traces --root runs/ --db http://127.0.0.1:8080", "Another directory, plus a libSQL server."),
        ("synth-ai traces --json", "The same figures as one JSON document."),
    ],
    "traces merge": [
        ("synth-ai traces merge runs/worker-*.db --into all.db",
         "The sessions of every worker's DB in one file; rerun it after more runs: it copies only new sessions."),
        ("synth-ai traces merge a.db b.db --into merged.db --layout sqld --dry-run",
         "How many sessions would be copied into a new sqld directory, writing nothing."),
    ],
    "session": [
        ("synth-ai session 36f675cc", "One session by a unique ID prefix: each step's LLM calls, tool calls, rewards."),
        ("synth-ai session 36f675cc --full --db traces.db", "Every call's whole input conversation."),
    ],
    "experiments": [
        ("synth-ai experiments --limit 5", "The five most recently active experiments."),
    ],
    "experiment": [
        ("synth-ai experiment crafter_run_0", "One experiment (by name, ID or unique prefix) and its sessions."),
    ],
    "recent": [
        ("synth-ai recent --hours 6", "Experiments with runs in the last 6 hours."),
    ],
    "status": [
        ("synth-ai status", "Totals per trace DB, and whether the configured backend answers."),
        ("synth-ai status --base-url http://127.0.0.1:8000", "Check the local backend of `synth-ai serve`."),
    ],
    "man": [
        ("synth-ai man", "This manual."),
        ("synth-ai man sft run", "The manual of one command."),
        ("man -l man/synth-ai.1", "The same pages with man(1), from a checkout."),
    ],
    "demo": [
        ("synth-ai demo", "The built-in offline pipeline, writing into ./synth-demo."),
        ("synth-ai demo --list", "The built-in demo and every examples/**/run_demo.sh."),
        ("synth-ai demo --dir /tmp/synth-demo --sessions 20", "A smaller run somewhere else."),
    ],
    "serve": [
        ("synth-ai serve", "A local OpenAI-compatible fine-tuning backend on http://127.0.0.1:8000/v1."),
    ],
    "proxy": [
        ("synth-ai proxy --upstream https://api.openai.com/v1 --db traces.db",
         "Record an agent's OpenAI calls: run it with OPENAI_BASE_URL=http://127.0.0.1:8100/v1."),
        ("synth-ai proxy --upstream https://api.anthropic.com --db traces.db --port 8200",
         "The same for Anthropic's SDK: ANTHROPIC_BASE_URL=http://127.0.0.1:8200."),
        ("curl -X POST http://127.0.0.1:8100/synth/sessions/run-1/end -d '{\"reward\": 1.0}'",
         "Give the session run-1 (header X-Synth-Session-Id: run-1) its reward and write it."),
    ],
    "filter": [
        ("synth-ai filter --db traces.db --min-reward 1 -o train.jsonl",
         "One example per LLM call of the sessions whose rewards sum to 1 or more."),
        ("synth-ai filter --db http://127.0.0.1:8080 --mode sessions --val-fraction 0.1 -o data/crafter.jsonl",
         "One example per conversation, from a libSQL server; 10% of the sessions in data/crafter.val.jsonl."),
        ("synth-ai filter --db traces.db --where task_split=train --since 7d --model gpt-4o-mini --dry-run",
         "What a selection would give (stats only, nothing written)."),
        ("synth-ai filter --config filter.toml --json",
         "Settings from a TOML file (a [filter] table); the stats as one JSON object."),
    ],
    "sft validate": [
        ("synth-ai sft validate train.jsonl", "Check a dataset before uploading it; exit 1 when it is not valid."),
        ("synth-ai sft validate train.jsonl --json", "The report (errors grouped by reason, with line numbers) as JSON."),
    ],
}

GLOBAL_FLAGS_NOTE = ("--json, --debug, --quiet, --env-file, --base-url and --api-key are accepted before or "
                     "after the command (see synth-ai(1)); --json output follows docs/json.md "
                     "(synth-ai schema COMMAND prints its schema).")

EXIT_STATUS = [
    ("0", "success"),
    ("1", "failure (the error line says what failed)"),
    ("2", "bad usage: unknown command or option, invalid value"),
    ("124", "--timeout ran out while waiting for a job (sft poll, sft run); the job keeps running"),
    ("130", "interrupted (Ctrl-C)"),
]

# --------------------------------------------------------------------------- page model


@dataclass
class Block:
    kind: str  # "para" | "item" | "example" | "pre"
    text: str = ""
    term: str = ""


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def para(self, text: str) -> "Section":
        self.blocks.append(Block("para", text))
        return self

    def item(self, term: str, text: str) -> "Section":
        self.blocks.append(Block("item", text, term))
        return self

    def example(self, command: str, text: str) -> "Section":
        self.blocks.append(Block("example", text, command))
        return self

    def pre(self, text: str) -> "Section":
        self.blocks.append(Block("pre", text))
        return self


@dataclass
class Page:
    path: tuple[str, ...]  # () for the root, ("sft", "run") for `synth-ai sft run`
    summary: str
    sections: list[Section] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "-".join((PROG, *self.path))

    @property
    def command(self) -> str:
        return " ".join((PROG, *self.path))

    @property
    def filename(self) -> str:
        return f"{self.name}.{MAN_SECTION}"

    def section(self, title: str) -> Section:
        sec = Section(title)
        self.sections.append(sec)
        return sec


# --------------------------------------------------------------------------- help-text cleaning

_RICH_TAG = re.compile(
    r"\[/?(?:(?:bold|italic|dim|underline|strike|reverse|blink|not|on|b|i|u|s|red|green|yellow|blue|magenta|cyan|"
    r"white|black|bright_[a-z]+|gr[ae]y\d*|link(?:=[^\]\s]*)?)\s*)*\]")


def clean_help(text: str | None) -> str:
    """Docstring → plain text: dedented, click's `\\f` tail and `\\b` markers removed, rich style tags dropped."""
    if not text:
        return ""
    text = text.split("\f", 1)[0]
    text = textwrap.dedent(text).strip("\n")
    lines = [line for line in text.splitlines() if line.strip() != "\b"]
    text = "\n".join(lines)
    return _RICH_TAG.sub("", text).strip()


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each joined into one line."""
    out = []
    for chunk in re.split(r"\n\s*\n", text):
        joined = " ".join(line.strip() for line in chunk.splitlines() if line.strip())
        if joined:
            out.append(joined)
    return out


def summary_of(cmd: Any) -> str:
    short = getattr(cmd, "short_help", None)
    if short:
        return clean_help(short)
    paras = paragraphs(clean_help(getattr(cmd, "help", None)))
    return paras[0] if paras else ""


_TYPE_WORDS = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "path": "PATH", "file": "PATH",
               "directory": "DIRECTORY", "datetime": "DATETIME", "bool": "", "uuid": "UUID"}


def _plain_metavar(match: re.Match) -> str:
    inner = match.group(1).strip()
    list_match = re.fullmatch(r"list\[(.*)\]", inner)
    if list_match:
        inner = list_match.group(1)
    if "|" in inner:
        return "{" + inner + "}"
    inner = re.sub(r"\s+range$", "", inner)
    return _TYPE_WORDS.get(inner.lower(), inner.upper())


def plain_term(term: str) -> str:
    """`--sessions <int range>` → `--sessions INTEGER`, `--mode <a|b>` → `--mode {a|b}`."""
    return re.sub(r"\s*$", "", re.sub(r"<([^<>]+)>", _plain_metavar, term)).replace("  ", " ")


def _machine_neutral(text: str) -> str:
    """Defaults computed from the machine (home directory) would make pages differ per user."""
    home = str(Path.home())
    if home and home != "/":
        text = text.replace(home, "~")
    return text


# --------------------------------------------------------------------------- walking the app


def root_command() -> Any:
    """The click command behind the root Typer app."""
    import typer

    from synth_cli.app import app

    return typer.main.get_command(app)


def _context(cmd: Any, name: str, parent: Any = None) -> Any:
    return cmd.context_class(cmd, info_name=name, parent=parent, **(getattr(cmd, "context_settings", None) or {}))


def _is_group(cmd: Any) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def _subcommands(cmd: Any, ctx: Any) -> list[tuple[str, Any]]:
    out = []
    for name in cmd.list_commands(ctx):
        sub = cmd.get_command(ctx, name)
        if sub is not None and not getattr(sub, "hidden", False):
            out.append((name, sub))
    return out


def walk(cmd: Any | None = None) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(path, command, context) for the root and every visible command below it, depth first."""
    cmd = cmd if cmd is not None else root_command()

    def visit(path: tuple[str, ...], node: Any, ctx: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
        yield path, node, ctx
        if _is_group(node):
            for name, sub in _subcommands(node, ctx):
                yield from visit((*path, name), sub, _context(sub, name, ctx))

    yield from visit((), cmd, _context(cmd, PROG))


def find(path: list[str] | tuple[str, ...], cmd: Any | None = None) -> tuple[tuple[str, ...], Any, Any] | None:
    wanted = tuple(path)
    for found_path, node, ctx in walk(cmd):
        if found_path == wanted:
            return found_path, node, ctx
    return None


def command_paths(cmd: Any | None = None) -> list[tuple[str, ...]]:
    return [path for path, _, _ in walk(cmd)]


# --------------------------------------------------------------------------- building pages


def _param_records(cmd: Any, ctx: Any) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(arguments, options) as (term, help) pairs, hidden ones left out."""
    arguments, options = [], []
    for param in cmd.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        term, help_text = record
        help_text = _machine_neutral(clean_help(help_text))
        if getattr(param, "param_type_name", "") == "argument":
            name = param.metavar or (param.name or "").upper()
            if param.metavar is None and param.nargs != 1:
                name += "..."
            arguments.append((name, " ".join(paragraphs(help_text))))
        else:
            options.append((plain_term(term), " ".join(paragraphs(help_text))))
    return arguments, options


def _synopsis(path: tuple[str, ...], cmd: Any, ctx: Any) -> str:
    # Typer writes required arguments as `{FILE}`; man pages write them bare (optional ones stay `[X]`).
    pieces = [re.sub(r"^\{([^{}]+)\}", r"\1", p) for p in cmd.collect_usage_pieces(ctx) if p]
    return " ".join((PROG, *path, *pieces))


def _env_for(path: tuple[str, ...], cmd: Any, ctx: Any) -> list[str]:
    """Variables that matter to one command: those its options read, those whose description names it."""
    from synth_cli import config

    names: list[str] = []
    option_names = {opt for p in cmd.get_params(ctx) for opt in getattr(p, "opts", [])}
    if "--api-key" in option_names:
        names += list(config.API_KEY_VARS)
    if "--base-url" in option_names:
        names += list(config.BASE_URL_VARS)
    for param in cmd.get_params(ctx):
        env = getattr(param, "envvar", None)
        names += [env] if isinstance(env, str) else list(env or [])
    words = {f"`{' '.join(path[:i])}`" for i in range(1, len(path) + 1)}
    for name, description in config.ENV_VARS.items():
        if any(w in description for w in words):
            names.append(name)
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen


def resolve_example(command: str, cmd: Any | None = None) -> tuple[tuple[str, ...], Any, Any] | None:
    """The (path, command, context) an example line runs, or None when it names no existing command.

    Lines that do not start with `synth-ai` (e.g. `man -l …`) resolve to the root."""
    cmd = cmd if cmd is not None else root_command()
    words = shlex.split(command)
    node, ctx, path = cmd, _context(cmd, PROG), ()
    if not words or words[0] != PROG:
        return path, node, ctx
    rest = [w for w in words[1:]]
    while rest and rest[0].startswith("-"):  # global flags before the command
        rest.pop(0)
    while _is_group(node) and rest and not rest[0].startswith("-"):
        sub = node.get_command(ctx, rest[0])
        if sub is None:
            return None
        path = (*path, rest[0])
        ctx = _context(sub, rest[0], ctx)
        node = sub
        rest.pop(0)
    if _is_group(node) and path and rest and not rest[0].startswith("-"):
        return None
    return path, node, ctx


def _examples_for(path: tuple[str, ...], cmd: Any) -> list[tuple[str, str]]:
    return [(command, text) for command, text in EXAMPLES.get(" ".join(path), [])
            if resolve_example(command, cmd) is not None]


def build_pages(cmd: Any | None = None) -> list[Page]:
    """One page per command and group, the root first."""
    from synth_cli import __version__, config

    cmd = cmd if cmd is not None else root_command()
    entries = list(walk(cmd))
    pages: list[Page] = []
    for path, node, ctx in entries:
        summary = summary_of(node)
        page = Page(path=path, summary=summary)
        page.section("NAME").para(f"{page.name} - {summary}" if summary else page.name)
        page.section("SYNOPSIS").pre(_synopsis(path, node, ctx))
        description = paragraphs(clean_help(getattr(node, "help", None)))
        if description:
            sec = page.section("DESCRIPTION")
            for para in description:
                sec.para(para)

        if _is_group(node):
            subs = _subcommands(node, ctx)
            if subs:
                sec = page.section("COMMANDS")
                for name, sub in subs:
                    sec.item(" ".join((PROG, *path, name)), summary_of(sub))
                    if not path and _is_group(sub):  # the root lists one level further
                        sub_ctx = _context(sub, name, ctx)
                        for sub_name, leaf in _subcommands(sub, sub_ctx):
                            sec.item(" ".join((PROG, name, sub_name)), summary_of(leaf))

        arguments, options = _param_records(node, ctx)
        if arguments:
            sec = page.section("ARGUMENTS")
            for term, text in arguments:
                sec.item(term, text)
        if options:
            sec = page.section("GLOBAL OPTIONS" if not path else "OPTIONS")
            for term, text in options:
                sec.item(term, text)
            if path:
                sec.para(GLOBAL_FLAGS_NOTE)

        if not path:
            sec = page.section("ENVIRONMENT")
            sec.para("Settings resolve in this order: command-line flag, environment variable, "
                     "./.env (or --env-file), built-in default. API keys are never printed in full.")
            for name, description in config.ENV_VARS.items():
                sec.item(name, description)
            sec = page.section("FILES")
            sec.item(".env", "read from the current directory (or the file given with --env-file); "
                             "it never overrides variables already set in the shell")
            sec.item(config.DEFAULT_TRACES_ROOT, "where `synth-ai traces` looks for trace DBs by default")
            sec = page.section("EXIT STATUS")
            for code, text in EXIT_STATUS:
                sec.item(code, text)
        else:
            env = _env_for(path, node, ctx)
            if env:
                sec = page.section("ENVIRONMENT")
                for name in env:
                    sec.item(name, config.ENV_VARS.get(name, ""))

        examples = _examples_for(path, cmd)
        if examples:
            sec = page.section("EXAMPLES")
            for command, text in examples:
                sec.example(command, text)

        see = [f"{PROG}-{'-'.join((*path, name))}({MAN_SECTION})" for name, _ in
               (_subcommands(node, ctx) if _is_group(node) else [])]
        if path:
            parent = "-".join((PROG, *path[:-1]))
            see.insert(0, f"{parent}({MAN_SECTION})")
        sec = page.section("SEE ALSO")
        sec.para(", ".join(see + [f"`{PROG} man{' ' + ' '.join(path) if path else ''}`",
                                  f"`{' '.join((PROG, *path))} --help`"]))
        if not path:
            page.section("VERSION").para(f"{PROG} {__version__}")
        pages.append(page)
    return pages


# --------------------------------------------------------------------------- roff

_ROFF_CHARS = {
    "\u2192": r"\(->", "\u2190": r"\(<-", "\u2026": "...", "\u2013": r"\(en", "\u2014": r"\(em",
    "\u2264": r"\(<=", "\u2265": r"\(>=", "\u00d7": r"\(mu", "\u00b7": r"\(pc", "\u2018": r"\(oq",
    "\u2019": r"\(cq", "\u201c": r"\(lq", "\u201d": r"\(rq", "\u2022": r"\(bu", "\u00a0": r"\~",
}


def roff_escape(text: str) -> str:
    """Plain text → roff-safe ASCII: backslashes, minus signs, non-ASCII characters."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append(r"\e")
        elif ch == "-":
            out.append(r"\-")
        elif ch == "'":
            out.append(r"\(aq")
        elif ch == "`":
            out.append(r"\(ga")
        elif ch in _ROFF_CHARS:
            out.append(_ROFF_CHARS[ch])
        elif ord(ch) > 126 or (ord(ch) < 32 and ch not in "\n\t"):
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def _roff_inline(text: str) -> str:
    """Escape, then `code` → bold."""
    parts = re.split(r"`([^`]+)`", text)
    out = []
    for i, part in enumerate(parts):
        esc = roff_escape(part)
        out.append(rf"\fB{esc}\fR" if i % 2 else esc)
    return _roff_line_start("".join(out))


def _roff_term(term: str, *, options: bool) -> str:
    """Option names bold, their values italic (`\\fB\\-\\-dir\\fR \\fIPATH\\fR`); other terms bold."""
    if not options:
        return rf"\fB{roff_escape(term)}\fR"
    out = []
    for token in term.split(" "):
        if token.startswith("-"):
            out.append(rf"\fB{roff_escape(token)}\fR")
        elif token in ("/", ";", ""):
            out.append(token)
        else:
            out.append(rf"\fI{roff_escape(token)}\fR")
    return " ".join(out)


def _roff_line_start(line: str) -> str:
    """A text line must not start with a control character (`.` or `'`)."""
    return "\\&" + line if line.startswith((".", "'")) else line


def to_roff(page: Page, version: str | None = None) -> str:
    from synth_cli import __version__

    version = version or __version__
    lines = [
        f'.\\" Generated by `python -m synth_cli.manpages` from the {PROG} {version} command-line app.',
        '.\\" Do not edit: regenerate instead (see tests/test_man.py).',
        f'.TH "{page.name.upper()}" "{MAN_SECTION}" "" "{PROG} {version}" "{PROG} manual"',
        ".nh",
        ".ad l",
    ]
    for sec in page.sections:
        lines.append(f'.SH "{roff_escape(sec.title)}"')
        for block in sec.blocks:
            if block.kind == "para":
                if sec.title == "NAME":
                    lines.append(_roff_line_start(roff_escape(block.text)))
                else:
                    lines.append(".PP")
                    lines.append(_roff_inline(block.text))
            elif block.kind == "item":
                lines.append(".TP")
                lines.append(_roff_line_start(_roff_term(block.term, options=sec.title.endswith("OPTIONS"))))
                lines.append(_roff_inline(block.text) if block.text else r"\&")
            elif block.kind == "example":
                lines.append(".PP")
                lines.append(_roff_inline(block.text))
                lines += [".RS 4", ".nf", _roff_line_start(rf"\fB$ {roff_escape(block.term)}\fR"), ".fi", ".RE"]
            elif block.kind == "pre":
                lines += [".nf", _roff_line_start(rf"\fB{roff_escape(block.text)}\fR"), ".fi"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- terminal text


def to_text(page: Page, width: int = 80) -> str:
    """A man-like plain-text rendering for `synth-ai man` (no roff needed)."""
    width = max(40, width)
    body = width - 7
    out = [f"{page.name.upper()}({MAN_SECTION})".ljust(width // 2) + f"{PROG} manual".rjust(width - width // 2), ""]
    for sec in page.sections:
        out.append(sec.title)
        terms = [len(b.term) for b in sec.blocks if b.kind == "item"]
        column = 4 + min(max(terms, default=0), 24) + 2
        previous = None
        for block in sec.blocks:
            if previous in ("para", "example") or (previous == "item" and block.kind != "item"):
                out.append("")
            previous = block.kind
            if block.kind == "para":
                out += textwrap.wrap(block.text, body, initial_indent="    ", subsequent_indent="    ",
                                     break_on_hyphens=False, break_long_words=False) or [""]
            elif block.kind == "pre":
                out += ["    " + line for line in block.text.splitlines()]
            elif block.kind == "item":
                if len(block.term) <= column - 6:
                    lines = textwrap.wrap(block.text, max(20, width - column), break_on_hyphens=False,
                                          break_long_words=False) or [""]
                    out.append(("    " + block.term).ljust(column) + lines[0])
                    out += [" " * column + line for line in lines[1:]]
                else:
                    out.append("    " + block.term)
                    out += textwrap.wrap(block.text, max(20, width - column), initial_indent=" " * column,
                                         subsequent_indent=" " * column, break_on_hyphens=False,
                                         break_long_words=False)
            elif block.kind == "example":
                out.append("    $ " + block.term)
                out += textwrap.wrap(block.text, body - 4, initial_indent="        ", subsequent_indent="        ",
                                     break_on_hyphens=False, break_long_words=False)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- files


def render_all(cmd: Any | None = None) -> dict[str, str]:
    """{filename: roff text} for every page."""
    return {page.filename: to_roff(page) for page in build_pages(cmd)}


def write_pages(directory: str | os.PathLike, cmd: Any | None = None, *, prune: bool = True) -> list[Path]:
    """Write every page into `directory` (atomically, only when changed); remove stale `synth-ai*.1` pages."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    pages = render_all(cmd)
    written = []
    for filename, text in pages.items():
        path = target / filename
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        tmp = path.with_name(f".{filename}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    if prune:
        for stale in target.glob(f"{PROG}*.{MAN_SECTION}"):
            if stale.name not in pages:
                stale.unlink()
                written.append(stale)
    return written


def check_pages(directory: str | os.PathLike, cmd: Any | None = None) -> list[str]:
    """Problems between `directory` and the app: missing, stale or different pages (empty list = in sync)."""
    target = Path(directory)
    pages = render_all(cmd)
    problems = []
    for filename, text in pages.items():
        path = target / filename
        if not path.exists():
            problems.append(f"{filename} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{filename} differs from the app")
    for existing in sorted(target.glob(f"{PROG}*.{MAN_SECTION}")):
        if existing.name not in pages:
            problems.append(f"{existing.name} documents a command the app no longer has")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m synth_cli.manpages [--check] DIR\n"
                         "  write (or with --check: verify) the roff man pages of synth-ai in DIR\n")
        return 2
    if check:
        problems = check_pages(args[0])
        for problem in problems:
            sys.stderr.write(f"{args[0]}: {problem}\n")
        return 1 if problems else 0
    changed = write_pages(args[0])
    total = len(render_all())
    sys.stderr.write(f"{total} pages in {args[0]} ({len(changed)} written or removed)\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
