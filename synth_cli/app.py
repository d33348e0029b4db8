"""The root `synth-ai` Typer app: global options, command groups, one error formatter.

The root only assembles: every command lives in `synth_cli/commands/<name>.py`
and exposes `register(app)`; `COMMANDS` names the module of each command (a typo is an
ImportError, never a silently missing command). A run imports only the module of the command it
runs (`main`); `app` (tests, the manual, completion, the root's help) has them all. Modules keep
their top-level imports light (typer, rich-free helpers); anything heavy is imported
inside the command function that needs it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from synth_cli import __version__, exit_interrupted
from synth_cli.commands._index import MODULES, SUMMARIES
from synth_cli.config import INT64_MAX, INT64_MIN
from synth_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, SynthError

#: options accepted anywhere on the command line (moved in front of the subcommand).
_GLOBAL_FLAGS = ("--json", "--debug", "--quiet", "-q", "--version")
#: global options that take a value (`--env-file PATH` or `--env-file=PATH`).
_GLOBAL_VALUE_OPTIONS = ("--env-file",)

#: the root help's sections, in the order of the pipeline (traces → dataset → fine-tune → what it cost).
HELP_SECTIONS = (
    ("Record traces", ("proxy",)),
    ("Inspect traces", ("traces", "session", "experiments", "experiment", "recent", "usage", "status")),
    ("Dataset", ("filter",)),
    ("Fine-tune", ("sft",)),
    ("Account", ("balance", "calc")),
    ("Local and reference", ("serve", "demo", "man", "schema")),
)

#: the epilog of every command's --help: the options the root accepts, before or after the command.
GLOBAL_OPTIONS_HELP = ("Global options (before or after the command): --json (one JSON document on stdout; "
                       "errors too), -q/--quiet, --debug, --env-file PATH, --base-url URL, --api-key KEY. "
                       "See `synth-ai --help`.")

_MARKUP = re.compile(r"\[/?(?:bold|dim|italic|underline|cyan|green|red|yellow|magenta|blue|b|i|u)"
                     r"(?: [a-z]+)*\]")
_CHOICES_METAVAR = re.compile(r"^[a-z0-9_-]+(?:\|[a-z0-9_-]+)+$")


def _finish_commands(group: Any) -> None:
    """Give every command of the tree the global-options epilog, plain help text (the help is
    click's plain formatter: names whole at any width, and no rich import for --help), and shell
    completion of the values of `--mode calls|sessions`-style options."""
    for cmd in getattr(group, "commands", {}).values():
        if cmd.help:
            cmd.help = _MARKUP.sub("", cmd.help)
        if not cmd.epilog:
            cmd.epilog = GLOBAL_OPTIONS_HELP
        for param in cmd.params:
            if getattr(param, "help", None):
                param.help = _MARKUP.sub("", param.help)
            metavar = getattr(param, "metavar", None) or ""
            if _CHOICES_METAVAR.match(metavar) and getattr(param, "_custom_shell_complete", None) is None:
                param._custom_shell_complete = _choices_completer(metavar.split("|"))
        _finish_commands(cmd)


def _choices_completer(choices: list[str]) -> Any:
    def complete(ctx: Any, param: Any, incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete)]

    return complete


def _hoist_global_flags(args: list[str]) -> list[str]:
    """`synth-ai traces --json` == `synth-ai --json traces`, like `gh`/`hf` accept both."""
    if "--" in args:
        cut = args.index("--")
        head, tail = args[:cut], args[cut:]
    else:
        head, tail = args, []
    flags: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(head):
        arg = head[i]
        if arg in _GLOBAL_FLAGS or arg.startswith(tuple(f"{o}=" for o in _GLOBAL_VALUE_OPTIONS)):
            flags.append(arg)
        elif arg in _GLOBAL_VALUE_OPTIONS and i + 1 < len(head) and not head[i + 1].startswith("-"):
            flags.extend(head[i:i + 2])  # the option and its value
            i += 1
        else:
            rest.append(arg)
        i += 1
    return flags + rest + tail


def _debug_requested(args: list[str]) -> bool:
    from synth_cli.config import debug_enabled

    return "--debug" in args or debug_enabled()


_bounded_classes: dict[type, type] = {}


def _bounded(cls: type) -> type:
    """`cls` (click's int/float parameter types) refusing inf, nan and integers beyond 64 bits."""
    sub = _bounded_classes.get(cls)
    if sub is None:
        import math

        def convert(self: Any, value: Any, param: Any, ctx: Any) -> Any:
            rv = cls.convert(self, value, param, ctx)
            if isinstance(rv, float) and not math.isfinite(rv):
                self.fail(f"{value!r} is not a finite number", param, ctx)
            if isinstance(rv, int) and not isinstance(rv, bool) and not INT64_MIN <= rv <= INT64_MAX:
                self.fail(f"{value!r} is out of range (a 64-bit integer, at most {INT64_MAX})", param, ctx)
            return rv

        sub = type(cls.__name__, (cls,), {"convert": convert, "__module__": cls.__module__})
        _bounded_classes[cls] = sub
        _bounded_classes[sub] = sub
    return sub


def harden_params(command: Any) -> None:
    """Every numeric option and argument of `command` and its subcommands: finite, within 64 bits.

    One check for the whole CLI instead of one per command: `--hours inf`, `--interval inf`,
    `--learning-rate-multiplier nan` or `--min-achievements 99999999999999999999999` are a
    one-line usage error before the command runs (so before any upload or request).
    """
    for param in getattr(command, "params", ()):
        kind = type(param.type)
        if any(base.__name__ in ("IntParamType", "FloatParamType") for base in kind.__mro__):
            import copy

            bounded = copy.copy(param.type)  # a copy: click's INT/FLOAT singletons stay untouched
            bounded.__class__ = _bounded(kind)
            param.type = bounded
    for sub in getattr(command, "commands", {}).values():
        harden_params(sub)


class SynthGroup(TyperGroup):
    """Root group: runs click in non-standalone mode and formats every failure itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        harden_params(self)
        _finish_commands(self)

    def list_commands(self, ctx: Any) -> list[str]:  # keep registration order
        return list(self.commands)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """The root's commands in sections (HELP_SECTIONS), in pipeline order."""
        commands = {name: cmd for name in self.list_commands(ctx)
                    if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden}
        if not commands:
            return
        pad = max(len(name) for name in commands)  # one column for every section

        def row(name: str) -> tuple[str, str]:
            return name.ljust(pad), commands[name].get_short_help_str(limit=300)  # wrapped, never cut

        placed: set[str] = set()
        sections = []
        for title, names in HELP_SECTIONS:
            rows = [row(n) for n in names if n in commands]
            placed.update(n for n in names if n in commands)
            sections.append((title, rows))
        sections.append(("Other", [row(n) for n in commands if n not in placed]))
        for title, rows in sections:
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def invoke(self, ctx: Any) -> Any:
        # typer turns Ctrl-C into a silent `Exit(130)`; keep it ours so it says "interrupted".
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise SynthError("interrupted", exit_code=EXIT_INTERRUPTED) from None

    def main(self, args: Any = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        args = _hoist_global_flags(args)
        if prog_name is None:
            prog_name = "synth-ai"
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        code = run_guarded(lambda: super(SynthGroup, self).main(args, prog_name, complete_var,
                                                                standalone_mode=False, **extra),
                           debug=_debug_requested(args), prog_name=prog_name, args=args)
        sys.exit(code)


def run_guarded(fn, *, debug: bool, prog_name: str = "synth-ai", args: list[str] | None = None) -> int:
    """Run `fn`, turning every known failure into `error:`/`hint:` lines and an exit code.

    This is the one error formatter: under --json the failure is also a JSON object on
    stdout (`Output.fail`), whether the root callback had set the output up or not.
    """
    from synth_cli.output import get_output

    def fail(message: str, hint: str | None, code: int) -> int:
        out = get_output()
        if not out.json_mode and _json_requested(args or []):
            out.json_mode = True  # the command line failed before the root callback read --json
        out.fail(message, hint, code)
        return code

    early = _take_sigint()
    try:
        if early:  # from here on Ctrl-C is a KeyboardInterrupt that commands can clean up after
            signal.signal(signal.SIGINT, signal.default_int_handler)
        rv = fn()
        return rv if isinstance(rv, int) else 0
    except SynthError as exc:
        if debug:
            _print_traceback()
        return fail(exc.message, exc.hint, exc.exit_code)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort as exc:
        interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
        return fail("interrupted" if interrupted else "aborted", None,
                    EXIT_INTERRUPTED if interrupted else EXIT_FAILURE)
    except KeyboardInterrupt:
        return fail("interrupted", None, EXIT_INTERRUPTED)
    except BrokenPipeError:
        # `synth-ai traces | head`: the reader went away; not an error worth a traceback.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return EXIT_FAILURE
    except OSError as exc:
        if debug:
            _print_traceback()
        if exc.filename is None:
            hint = None if debug else "run again with --debug (or SYNTH_DEBUG=1) for the traceback"
            return fail(f"unexpected {type(exc).__name__}: {exc}", hint, EXIT_FAILURE)
        # a file the command could not use (a name too long, a loop of symlinks…): what and why
        return fail(f"{os.fsdecode(exc.filename)}: {exc.strerror or exc}", None, EXIT_FAILURE)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if debug:
            _print_traceback()
        if type(exc).__name__ == "NoArgsIsHelpError":  # `synth-ai`, `synth-ai sft`: the help, no error line
            message = exc.format_message()
            if message.strip():  # click's plain formatter hands the help over; typer's rich one printed it
                sys.stdout.write(message.rstrip("\n") + "\n")
            return EXIT_USAGE
        if _is_click_exception(exc):  # bad flags, missing arguments: click's own message
            hint = f"run '{_command_path(exc, prog_name)} --help' for usage" if _is_usage_error(exc) else None
            return fail(exc.format_message(), hint, getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE)
        hint = None if debug else "run again with --debug (or SYNTH_DEBUG=1) for the traceback"
        return fail(f"unexpected {type(exc).__name__}: {exc}", hint, EXIT_FAILURE)
    finally:
        if early:  # shutting down: a late Ctrl-C is the same one line, not a traceback
            try:
                signal.signal(signal.SIGINT, exit_interrupted)
            except (ValueError, OSError):  # pragma: no cover
                pass


def _take_sigint() -> bool:
    """Whether the start-up SIGINT handler of synth_cli/__init__.py is installed (the CLI is running)."""
    try:
        return signal.getsignal(signal.SIGINT) is exit_interrupted
    except (ValueError, OSError):  # pragma: no cover
        return False


def _json_requested(args: list[str]) -> bool:
    head = args[:args.index("--")] if "--" in args else args
    return "--json" in head


def _is_click_exception(exc: BaseException) -> bool:
    """click's ClickException, whether typer vendors click or uses the package."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__) and hasattr(exc, "format_message")


def _is_usage_error(exc: BaseException) -> bool:
    return any(cls.__name__ == "UsageError" for cls in type(exc).__mro__)


def _command_path(exc: Any, prog_name: str) -> str:
    ctx = getattr(exc, "ctx", None)
    return ctx.command_path if ctx is not None else prog_name


def _print_traceback() -> None:
    import traceback

    from synth_cli.config import redact

    sys.stderr.write(redact(traceback.format_exc()))
    sys.stderr.flush()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"synth-ai {__version__}")
        raise typer.Exit()


def root(
    json_mode: bool = typer.Option(False, "--json", help="Machine-readable output: one JSON document (NDJSON for streams) on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors (also SYNTH_DEBUG=1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; only the essential result (IDs of a listing, the amount, the model) and errors."),
    env_file: Optional[str] = typer.Option(None, "--env-file", metavar="PATH", help="Read settings from this .env file (default: ./.env when present)."),
    base_url: Optional[str] = typer.Option(
        None, "--base-url", metavar="URL", show_default=False,
        help="Backend base URL for every command that calls one (a command's own --base-url wins)."),
    api_key: Optional[str] = typer.Option(
        None, "--api-key", metavar="KEY", show_default=False,
        help="API key for every command that calls a backend (a command's own --api-key wins)."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Turn LLM agent traces into fine-tuning datasets and fine-tuned models.

    The pipeline: `traces` (what the DBs hold) → `filter` (the good runs as
    OpenAI-format chat JSONL) → `sft validate` → `sft run` (fine-tune and follow
    it live) → `balance` (what it cost). Trace DBs are SQLite files or
    libSQL/Turso servers. Try `synth-ai demo` for the whole pipeline offline.

    Global options go before or after the command. Times are UTC; `--json`
    output follows docs/json.md (`synth-ai schema COMMAND` prints its schema).
    """
    from synth_cli import config
    from synth_cli.output import Output, get_output, set_output

    if debug:
        os.environ["SYNTH_DEBUG"] = "1"
    set_output(Output(json_mode=json_mode, quiet=quiet, debug=debug or config.debug_enabled()))
    config.load_env(env_file)
    config.set_root_flags(base_url=base_url, api_key=api_key)
    for warning in config.env_warnings:
        get_output().warn(warning)


#: command name → the module that registers it (synth_cli/commands/_index.py)
COMMANDS = MODULES
#: the root's options that take a value (skipped when looking for the command's name); only
#: --env-file is hoisted, as commands have --base-url and --api-key options of their own
_ROOT_VALUE_OPTIONS = _GLOBAL_VALUE_OPTIONS + ("--base-url", "--api-key")


def _listed_only() -> None:
    """A command as the root's help lists it (its summary); never run: a command line that names
    a command builds the real one."""


def build_app(command: str | None = None, *, listing: bool = False) -> typer.Typer:
    """The root app with every command, or with only the module of `command` (what a run of
    `synth-ai COMMAND …` needs: the other modules are neither imported nor turned into click
    commands, ~25 ms of every start-up). With `listing`, every command is only its name and
    summary (SUMMARIES): what the root's own help, `--version` and a bare `synth-ai` show."""
    import importlib

    built = typer.Typer(
        cls=SynthGroup,
        name="synth-ai",
        help="Turn LLM agent traces into fine-tuning datasets and fine-tuned models.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode=None,
    )
    built.callback()(root)
    if listing:
        for name, summary in SUMMARIES.items():
            built.command(name, short_help=summary, add_help_option=False)(_listed_only)
        return built
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(f"synth_cli.commands.{name}").register(built)
    return built


def command_name(args: list[str]) -> str | None:
    """The command a command line runs (`synth-ai --json usage --db X` → "usage"), or None when it
    runs the root itself (`--help`, `--version`, no arguments)."""
    args = _hoist_global_flags(list(args))
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return None
        if not arg.startswith("-"):
            return arg
        i += 2 if arg in _ROOT_VALUE_OPTIONS else 1
    return None


_full_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    """`synth_cli.app.app`: the root with every command (tests, the manual, completion)."""
    global _full_app
    if name == "app":
        if _full_app is None:
            _full_app = build_app()
        return _full_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point: builds only the command the command line runs; for the root
    alone (`--help`, `--version`, no arguments) only the commands' names and summaries; all of
    them for an unknown name (its suggestions) and shell completion."""
    if os.environ.get("_SYNTH_AI_COMPLETE"):
        build_app()()
        return
    name = command_name(sys.argv[1:])
    build_app(name, listing=name is None)()


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    '': [
        ('synth-ai demo',
         'Run the whole pipeline offline: trace an agent, filter, fine-tune on a local backend.'),
        ('synth-ai traces',
         'List the trace DBs under ./synth_ai.db/dbs and what they hold.'),
        ('synth-ai filter --help',
         'See how to turn traces into an OpenAI-format chat JSONL dataset.'),
        ('synth-ai sft run --help',
         'See how to start a fine-tuning job and follow it.'),
        ('synth-ai balance --usage',
         'The account balance and recent spend of the configured backend.'),
        ('synth-ai calc gpt-4o 1M 500k',
         'What 1M input and 500k output tokens of gpt-4o cost.'),
        ('synth-ai man sft',
         'The manual of one command or group.'),
    ],
}
