"""synth-ai: turn LLM agent traces into fine-tuning datasets and fine-tuned models."""

__version__ = "0.3.0"
