"""The manual's pages, built from the click command tree of the app (passed in, never imported).

:func:`build_pages` walks the command tree and returns one :class:`Page` per command and
per group (`synth-ai`, `synth-ai-sft`, `synth-ai-sft-run`, ...), in a neutral structure that
:mod:`.roff` (for `man/`) and :mod:`.text` (for `synth-ai man`) render. Each command keeps
its examples beside its code, in its module's `EXAMPLES` dict (keyed by command path, "" for
the root in `synth_cli/app.py`). The output depends only on the app and the package version.
"""

from __future__ import annotations

import re
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

PROG = "synth-ai"
MAN_SECTION = "1"

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


def walk(cmd: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(path, command, context) for the root and every visible command below it, depth first."""

    def visit(path: tuple[str, ...], node: Any, ctx: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
        yield path, node, ctx
        if _is_group(node):
            for name, sub in _subcommands(node, ctx):
                yield from visit((*path, name), sub, _context(sub, name, ctx))

    yield from visit((), cmd, _context(cmd, PROG))


def find(path: list[str] | tuple[str, ...], cmd: Any) -> tuple[tuple[str, ...], Any, Any] | None:
    wanted = tuple(path)
    for found_path, node, ctx in walk(cmd):
        if found_path == wanted:
            return found_path, node, ctx
    return None


def command_paths(cmd: Any) -> list[tuple[str, ...]]:
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


def resolve_example(command: str, cmd: Any) -> tuple[tuple[str, ...], Any, Any] | None:
    """The (path, command, context) an example line runs, or None when it names no existing command.

    Lines that do not start with `synth-ai` (e.g. `man -l …`) resolve to the root."""
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


def examples_of(node: Any, path: tuple[str, ...]) -> list[tuple[str, str]]:
    """The examples a command keeps beside its code: `EXAMPLES[path]` of the module of its callback."""
    callback = getattr(node, "callback", None)
    module = sys.modules.get(getattr(callback, "__module__", "") or "") if callback is not None else None
    table = getattr(module, "EXAMPLES", None) or {}
    return list(table.get(" ".join(path), []))


def _examples_for(path: tuple[str, ...], node: Any, cmd: Any) -> list[tuple[str, str]]:
    return [(command, text) for command, text in examples_of(node, path)
            if resolve_example(command, cmd) is not None]


def build_pages(cmd: Any) -> list[Page]:
    """One page per command and group, the root first."""
    from synth_cli import __version__, config

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

        examples = _examples_for(path, node, cmd)
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
