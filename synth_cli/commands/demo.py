"""`synth-ai demo`: the whole pipeline offline, or one of the example demos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.output import Col, get_output


def demo(
    name: Optional[str] = typer.Argument(None, help="Which demo to run (see --list); default: the built-in pipeline."),
    list_: bool = typer.Option(False, "--list", help="List the built-in demo and examples/**/run_demo.sh."),
    directory: Path = typer.Option(Path("synth-demo"), "--dir", help="Where the demo writes everything."),
    sessions: int = typer.Option(40, "--sessions", min=2, max=2000, help="Agent episodes to trace."),
    steps: int = typer.Option(10, "--steps", min=1, max=200, help="Turns per episode."),
    seed: int = typer.Option(0, "--seed", help="Seed for the agent, the split and the simulated training."),
    provider: str = typer.Option("openai", "--provider", metavar="openai|together",
                                 help="Which of serve's training APIs the fine-tuning step uses: the OpenAI-compatible "
                                      "one (/v1) or Together's (/together/v1, `sft run --provider together`)."),
) -> None:
    """Run the pipeline end to end, offline: agent → proxy traces → filter → fine-tune → balance.

    The local backend (`synth-ai serve`) plays the model and the training service; the
    agent calls the model through `synth-ai proxy`, which writes the trace DB (the agent
    has no tracer code). Writes everything into one directory (--dir, default
    ./synth-demo) and always stops the backend and the proxy it starts, also on Ctrl-C
    or error. Run again, it starts
    over in its own directory; a directory it did not make is refused. With --quiet it
    prints only the fine-tuned model.
    """
    from synth_cli.demo import pipeline
    from synth_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, SynthError, UsageError

    out = get_output()
    provider = provider.strip().lower()
    if provider not in ("openai", "together"):
        raise UsageError(f"--provider {provider!r}: expected openai or together")
    demos = pipeline.discover(Path.cwd())
    if list_:
        data = [{"name": d.name, "description": d.description, "script": str(d.script) if d.script else None}
                for d in demos]
        out.result({"demos": data},
                   lambda: out.table(["demo", Col("what it does", wrap=True)],
                                     [(d.name, d.description) for d in demos]),
                   essential=[d.name for d in demos])
        return
    if name is None and len(demos) > 1 and out.is_terminal and not out.json_mode:
        choices = [d.name for d in demos]
        for i, d in enumerate(demos, 1):
            out.line(f"  {i}. {d.name}: {d.description}")
        answer = typer.prompt("Which demo", default="1")
        name = choices[int(answer) - 1] if answer.isdigit() and 0 < int(answer) <= len(choices) else answer
    selected = next((d for d in demos if d.name == (name or pipeline.BUILTIN)), None)
    if selected is None:
        raise UsageError(f"no demo named {name!r}", hint="`synth-ai demo --list` shows the demos")
    if selected.script is not None:
        out.status(f"running {selected.script}")
        code = pipeline.run_script(selected.script, Path.cwd())
        if code != 0:
            raise SynthError(f"demo {selected.name} failed (exit {code})", exit_code=EXIT_FAILURE)
        return

    import sys

    def announce(title: str, command: str) -> None:
        if out.json_mode or out.quiet:
            return
        from rich.markup import escape

        out.print(f"\n[bold]{escape(title)}[/bold]", markup=True)
        out.print(f"[dim]$ {escape(command)}[/dim]", markup=True)

    child_stdout = sys.stderr if out.json_mode else None
    try:
        result = pipeline.run_pipeline(directory.resolve(), sessions=sessions, steps=steps, seed=seed,
                                       announce=announce, child_stdout=child_stdout,
                                       quiet=out.quiet and not out.json_mode, provider=provider)
    except pipeline.StepFailed as exc:
        raise SynthError(str(exc), hint=f"the files made so far are in {directory}") from exc
    except KeyboardInterrupt:
        raise SynthError("interrupted: the demo stopped and its local backend and proxy were shut down",
                         hint=f"the files made so far are in {directory}; run `synth-ai demo` again to start over",
                         exit_code=EXIT_INTERRUPTED) from None

    summary = {
        "directory": str(result.directory),
        "trace_db": str(result.db),
        "train_file": str(result.train),
        "validation_file": str(result.val) if result.val else None,
        "fine_tuned_model": result.fine_tuned_model,
        "provider": provider,
        "seconds": round(result.seconds, 1),
        "files": [str(p) for p in result.files],
    }

    def human() -> None:
        out.print("\n[bold]8. Done[/bold] in " + f"{result.seconds:.1f}s", markup=True)
        out.kv([("fine-tuned model", result.fine_tuned_model or "–"),
                *[("file", str(p)) for p in result.files]])
        out.print("\n[bold]Next, with your own traces and a real backend:[/bold]", markup=True)
        for line in (
            "synth-ai proxy --upstream https://api.openai.com/v1 --db traces.db &   # point your agent at it",
            "synth-ai traces --db path/to/traces.db",
            "synth-ai filter --db path/to/traces.db --min-reward 1 --output train.jsonl",
            "export SYNTH_BASE_URL=https://api.openai.com/v1 SYNTH_API_KEY=…   # or your Synth backend",
            "synth-ai sft run train.jsonl --model gpt-4o-mini-2024-07-18   # or --provider together",
            "synth-ai balance",
        ):
            out.line(f"  $ {line}")

    # --quiet: the fine-tuned model's name, the one thing a script would take from a finished demo
    out.result(summary, human, essential=[result.fine_tuned_model] if result.fine_tuned_model else [])


def register(app: typer.Typer) -> None:
    app.command("demo", short_help=SUMMARIES["demo"])(demo)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'demo': [
        ('synth-ai demo',
         'The built-in offline pipeline, writing into ./synth-demo.'),
        ('synth-ai demo --list',
         'The built-in demo and every examples/**/run_demo.sh.'),
        ('synth-ai demo --dir /tmp/synth-demo --sessions 20',
         'A smaller run somewhere else.'),
    ],
}
