"""The root `synth-ai` Typer app: global options, command groups, one error formatter.

The root only assembles: every command lives in `synth_cli/commands/<name>.py`
and exposes `register(app)`; `_register_commands` imports each one by name (a typo is an
ImportError, never a silently missing command). Modules are imported here, so they must keep their
top-level imports light (typer, rich-free helpers); anything heavy is imported
inside the command function that needs it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from synth_cli import __version__, exit_interrupted
from synth_cli.config import INT64_MAX, INT64_MIN
from synth_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, SynthError

#: options accepted anywhere on the command line (moved in front of the subcommand).
_GLOBAL_FLAGS = ("--json", "--debug", "--quiet", "-q", "--version")
#: global options that take a value (`--env-file PATH` or `--env-file=PATH`).
_GLOBAL_VALUE_OPTIONS = ("--env-file",)


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

    def list_commands(self, ctx: Any) -> list[str]:  # keep registration order
        return list(self.commands)

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
    """Run `fn`, turning every known failure into `error:`/`hint:` lines and an exit code."""
    from synth_cli.output import get_output

    out = get_output
    early = _take_sigint()
    try:
        if early:  # from here on Ctrl-C is a KeyboardInterrupt that commands can clean up after
            signal.signal(signal.SIGINT, signal.default_int_handler)
        rv = fn()
        return rv if isinstance(rv, int) else 0
    except SynthError as exc:
        if debug:
            _print_traceback()
        out().error(exc.message, exc.hint)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort as exc:
        interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
        out().error("interrupted" if interrupted else "aborted")
        return EXIT_INTERRUPTED if interrupted else EXIT_FAILURE
    except KeyboardInterrupt:
        out().error("interrupted")
        return EXIT_INTERRUPTED
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
            out().error(f"unexpected {type(exc).__name__}: {exc}", hint)
            return EXIT_FAILURE
        # a file the command could not use (a name too long, a loop of symlinks…): what and why
        out().error(f"{os.fsdecode(exc.filename)}: {exc.strerror or exc}")
        return EXIT_FAILURE
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
            out().error(exc.format_message(), hint)
            return getattr(exc, "exit_code", EXIT_USAGE) or EXIT_USAGE
        hint = None if debug else "run again with --debug (or SYNTH_DEBUG=1) for the traceback"
        out().error(f"unexpected {type(exc).__name__}: {exc}", hint)
        return EXIT_FAILURE
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


app = typer.Typer(
    cls=SynthGroup,
    name="synth-ai",
    help="Turn LLM agent traces into fine-tuning datasets and fine-tuned models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
)


@app.callback()
def root(
    json_mode: bool = typer.Option(False, "--json", help="Machine-readable output: one JSON document (NDJSON for streams) on stdout."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors (also SYNTH_DEBUG=1)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; only the essential result (IDs of a listing, the amount, the model) and errors."),
    env_file: Optional[str] = typer.Option(None, "--env-file", metavar="PATH", help="Read settings from this .env file (default: ./.env when present)."),
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """Turn LLM agent traces into fine-tuning datasets and fine-tuned models.

    Read trace DBs (SQLite files or libSQL/Turso servers), extract OpenAI-format
    chat JSONL with `filter`, and run fine-tuning jobs with `sft run`.
    Try `synth-ai demo` for the whole pipeline offline.
    """
    from synth_cli import config
    from synth_cli.output import Output, get_output, set_output

    if debug:
        os.environ["SYNTH_DEBUG"] = "1"
    set_output(Output(json_mode=json_mode, quiet=quiet, debug=debug or config.debug_enabled()))
    config.load_env(env_file)
    for warning in config.env_warnings:
        get_output().warn(warning)


def _register_commands() -> None:
    """Every command group, imported explicitly, in the order `--help` lists them."""
    from synth_cli.commands import (
        balance,
        calc,
        demo,
        experiments,
        man,
        proxy,
        serve,
        session,
        sft,
        status,
        traces,
        usage,
    )
    from synth_cli.commands import filter as filter_command

    for module in (traces, session, experiments, usage, status, filter_command, sft, serve, proxy, balance, calc, demo,
                   man):
        module.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()


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
