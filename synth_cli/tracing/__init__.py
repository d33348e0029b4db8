"""The recording SDK agents import: the trace data model, events, `SessionTracer` and the
record builders.

* :mod:`.models`: `LLMCallRecord` and its parts (the published `tracing_v3` shapes);
* :mod:`.events`: `LMCAISEvent`, `EnvironmentEvent`, `RuntimeEvent`;
* :mod:`.tracer`: `SessionTracer`, which writes sessions through :mod:`synth_cli.store`;
* :mod:`.capture`: OpenAI / Anthropic calls (plain, streamed, failed) as `LLMCallRecord`s,
  re-exported by :mod:`.record`; :mod:`.openai_wrap`: `trace_openai`, a client wrapper;
* :mod:`.aggregate`: the published package's `compute_aggregates_from_call_records`.

Reading trace DBs (and all SQL) lives in :mod:`synth_cli.store`. Import submodules
directly: this package keeps its `__init__` empty so that importing it costs nothing at
CLI start-up.
"""
