"""The built-in offline demo: a scripted agent and the pipeline that runs the CLI on its traces."""
