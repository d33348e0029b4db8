"""Record builders: vendor LLM calls (OpenAI Chat Completions, Anthropic Messages, streamed or
not, failed or not) as `LLMCallRecord`s.

* :mod:`.openai`: `record_from_openai_chat`, `record_from_openai_chat_stream`, `collect_openai_stream`;
* :mod:`.anthropic`: `record_from_anthropic_messages`, `record_from_anthropic_messages_stream`;
* :mod:`.errors`: `record_error`;
* :mod:`._common`: what they share (call ids, times, JSON, tool-call helpers).

None imports a vendor SDK or prints; `synth_cli.tracing.record` re-exports the public names.
"""
