"""synth-ai: turn LLM agent traces into fine-tuning datasets and fine-tuned models."""

__version__ = "0.3.0"


def _early_sigint() -> None:
    """Ctrl-C while the CLI is still importing: one `error: interrupted` line, exit 130, no traceback.

    Installed on the first import of the package, and only when that import is the
    `synth-ai` command itself (the console script or `python -m synth_cli`): a library
    user's handlers (an agent importing the tracer) are never touched. `app.run_guarded`
    hands Ctrl-C back to Python's KeyboardInterrupt once it can turn it into the same line.
    """
    import os
    import sys

    argv = getattr(sys, "orig_argv", None) or []
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    pairs = zip(argv, argv[1:], strict=False)
    as_module = any(a == "-m" and b in ("synth_cli", "synth_cli.__main__") for a, b in pairs)
    if not (as_module or script in ("synth-ai", "synth-ai.exe")):
        return
    import signal

    try:
        signal.signal(signal.SIGINT, exit_interrupted)
    except (ValueError, OSError):  # pragma: no cover - not the main thread
        pass


def exit_interrupted(signum, frame):
    """The start-up/shut-down SIGINT handler: nothing to clean up yet, so say so and leave at once."""
    import os

    try:
        os.write(2, b"error: interrupted\n")
    finally:
        os._exit(130)


_early_sigint()
