"""`synth-ai proxy`: a recording HTTP proxy for OpenAI Chat Completions and Anthropic Messages.

* :mod:`.headers`: what is forwarded (hop-by-hop and `X-Synth-*` headers are not), how a call
  is assigned to a session (header, `/s/{id}/` path prefix, or the client's default session);
* :mod:`.server`: the ASGI app (forwarding, streaming, `/synth/*` endpoints);
* :mod:`.recorder`: the queue and the writer thread that turns calls into sessions;
* :mod:`.worker`: the recording process that runs the recorder (the second core), fed through a
  pipe by the bounded queue of the serving process;
* :mod:`.sink`: the one module that talks to the trace writer (and the spool file);
* :mod:`.run`: uvicorn, signals, draining the queue on exit.

Nothing here prints: the command passes a `notify(message)` callback for warnings.
"""
