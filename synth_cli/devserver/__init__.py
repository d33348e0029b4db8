"""`synth-ai serve`: a local, OpenAI-compatible fine-tuning backend that simulates training.

It speaks OpenAI's files + fine-tuning API (plus Synth's training-predictions and account
endpoints) so the whole pipeline runs offline: in `demo`, in tests and in CI. Nothing is
trained: jobs move through the real statuses, emit loss curves, checkpoints and predictions that
are deterministic per seed, and are billed against a local credit.

Modules: `server` (ASGI app, routes, auth/faults gate, idempotency), `engine` (the job runner
thread), `store` (SQLite state + blobs), `simulate` (hyperparameters, loss curve, predictions),
`metrics` (prediction quality metrics), `validation` (training-file checks via
`synth_cli.dataset.validate`), `uploads` (streaming multipart), `billing` (prices), `run`
(socket binding and uvicorn). Heavy imports (starlette, uvicorn) happen only in `server`/`run`.
"""
