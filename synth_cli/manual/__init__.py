"""The manual of `synth-ai`: pages built from the app (:mod:`.pages`), rendered as roff
(:mod:`.roff`) or terminal text (:mod:`.text`), kept as files in man/ (:mod:`.files`).

Nothing here imports the app: callers pass the root click command (`synth-ai man` takes it
from its context; `python -m synth_cli.manpages` builds it). Nothing runs at CLI start-up.
"""
