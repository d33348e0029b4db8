"""Trace data model, schema, read-only `TraceStore` and the `SessionTracer` writer.

Import submodules directly (`synth_cli.tracing.store`, `.models`, …): this package
keeps its `__init__` empty so that importing it costs nothing at CLI start-up.
"""
