"""The record builders' public import path (kept for agent code written against it).

The builders live in :mod:`synth_cli.tracing.capture` (`openai`, `anthropic`, `errors`,
`_common`); this module re-exports their public names. See
:mod:`synth_cli.tracing.capture.openai` for the record contract.
"""

from __future__ import annotations

from synth_cli.tracing.capture._common import StreamError, set_tool_calls, to_plain, tool_calls_of
from synth_cli.tracing.capture.anthropic import (
    record_from_anthropic_messages,
    record_from_anthropic_messages_stream,
)
from synth_cli.tracing.capture.errors import record_error
from synth_cli.tracing.capture.openai import (
    collect_openai_stream,
    openai_message,
    record_from_openai_chat,
    record_from_openai_chat_stream,
)

__all__ = [
    "StreamError",
    "collect_openai_stream",
    "openai_message",
    "record_error",
    "record_from_anthropic_messages",
    "record_from_anthropic_messages_stream",
    "record_from_openai_chat",
    "record_from_openai_chat_stream",
    "set_tool_calls",
    "tool_calls_of",
    "to_plain",
]
