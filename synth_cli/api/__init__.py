"""HTTP clients for OpenAI-compatible fine-tuning backends (OpenAI, Synth, `synth-ai serve`).

Nothing in this package prints: failures are raised as :class:`synth_cli.api.client.ApiError`
and rendered by the commands. Import the submodules directly (`synth_cli.api.client`,
`.files`, `.fine_tuning`, `.follow`); this package file stays empty so that importing it is free.
"""
