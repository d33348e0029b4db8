"""The training simulation: hyperparameters, the step plan, the loss curve and the predictions.

Everything here is a pure function of its arguments (the job's seed above all), so a job gives
the same curve and the same predictions whether it ran in one go or across server restarts.
Nothing is trained: the numbers only look like a small supervised fine-tuning run.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

from synth_cli.devserver.metrics import score

#: OpenAI's `auto` rules: aim for 100..25 000 examples seen, 3 epochs unless that misses the range.
DEFAULT_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MAX_AUTO_EPOCHS = 25
AUTO_LEARNING_RATE_MULTIPLIER = 1.8
#: how many training prompts get a prediction at the end of each epoch.
PREDICTION_SAMPLES = 5


@dataclass(frozen=True)
class Hyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float

    def to_dict(self) -> dict[str, Any]:
        return {"n_epochs": self.n_epochs, "batch_size": self.batch_size,
                "learning_rate_multiplier": self.learning_rate_multiplier}


def resolve_hyperparameters(n_examples: int, requested: dict[str, Any]) -> Hyperparameters:
    """Replace `auto` (or missing) values the way OpenAI documents its defaults."""
    n = max(1, n_examples)
    epochs = requested.get("n_epochs", "auto")
    if epochs in (None, "auto"):
        epochs = DEFAULT_EPOCHS
        if n * epochs < MIN_TARGET_EXAMPLES:
            epochs = min(MAX_AUTO_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n))
        elif n * epochs > MAX_TARGET_EXAMPLES:
            epochs = max(1, MAX_TARGET_EXAMPLES // n)
    batch = requested.get("batch_size", "auto")
    if batch in (None, "auto"):
        batch = max(1, min(256, round(n * 0.002)))
    lrm = requested.get("learning_rate_multiplier", "auto")
    if lrm in (None, "auto"):
        lrm = AUTO_LEARNING_RATE_MULTIPLIER
    return Hyperparameters(int(epochs), int(batch), float(lrm))


def total_steps(n_examples: int, hp: Hyperparameters) -> int:
    """ceil(examples × epochs / batch size)."""
    return max(1, math.ceil(max(1, n_examples) * hp.n_epochs / hp.batch_size))


def epoch_end_steps(n_examples: int, hp: Hyperparameters) -> list[int]:
    """The step at which each epoch ends (the last one is the last step)."""
    n = max(1, n_examples)
    return [max(1, math.ceil(n * e / hp.batch_size)) for e in range(1, hp.n_epochs + 1)]


def epoch_of_step(step: int, ends: list[int]) -> int:
    for index, end in enumerate(ends, 1):
        if step <= end:
            return index
    return len(ends)


# --------------------------------------------------------------------------- the loss curve


def _curve_shape(seed: int, lrm: float) -> tuple[float, float, float]:
    rng = random.Random(f"curve:{seed}")
    start = 1.8 + 1.2 * rng.random()
    floor = 0.12 + 0.25 * rng.random()
    speed = (3.0 + 2.0 * rng.random()) * min(2.0, max(0.25, lrm / AUTO_LEARNING_RATE_MULTIPLIER)) ** 0.5
    return start, floor, speed


def step_metrics(seed: int, step: int, steps: int, lrm: float, *, with_validation: bool) -> dict[str, Any]:
    """Training (and validation) loss and token accuracy at `step` of `steps`: deterministic per seed."""
    start, floor, speed = _curve_shape(seed, lrm)
    progress = step / max(1, steps)
    base = floor + (start - floor) * math.exp(-speed * progress)
    noise = random.Random(f"step:{seed}:{step}")
    loss = max(0.01, base + noise.gauss(0.0, 0.04 * base))
    out: dict[str, Any] = {
        "step": step,
        "total_steps": steps,
        "train_loss": round(loss, 4),
        "train_mean_token_accuracy": round(min(1.0, max(0.0, 1.0 - loss / (start + 0.4))), 4),
    }
    if with_validation:
        valid = max(0.01, base * 1.08 + 0.02 + noise.gauss(0.0, 0.05 * base))
        out["valid_loss"] = round(valid, 4)
        out["valid_mean_token_accuracy"] = round(min(1.0, max(0.0, 1.0 - valid / (start + 0.4))), 4)
    return out


# --------------------------------------------------------------------------- tokens and samples


def estimate_tokens(text: str) -> int:
    """About four characters per token, the usual rule of thumb for English and code."""
    return math.ceil(len(text) / 4) if text else 0


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return str(content)


def _tool_calls_text(calls: Any) -> str:
    lines = []
    for call in calls if isinstance(calls, list) else []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            lines.append(f"{fn.get('name', '')}({fn.get('arguments', '')})")
    return "\n".join(lines)


def example_tokens(example: dict[str, Any]) -> int:
    """Estimated tokens of one training example (chat or prompt/completion format)."""
    import json

    if isinstance(example.get("messages"), list):
        total = 3
        for message in example["messages"]:
            if not isinstance(message, dict):
                continue
            total += 4 + estimate_tokens(_content_text(message.get("content")))
            if message.get("tool_calls"):
                total += estimate_tokens(json.dumps(message["tool_calls"], ensure_ascii=False))
            if message.get("name"):
                total += 1
        if example.get("tools"):
            total += estimate_tokens(json.dumps(example["tools"], ensure_ascii=False))
        return total
    return 3 + estimate_tokens(_content_text(example.get("prompt"))) + estimate_tokens(
        _content_text(example.get("completion")))


def example_sample(example: dict[str, Any]) -> dict[str, str] | None:
    """(prompt, ground truth) of an example: the last assistant turn and what it answered."""
    if isinstance(example.get("messages"), list):
        messages = [m for m in example["messages"] if isinstance(m, dict)]
        for index in range(len(messages) - 1, -1, -1):
            if messages[index].get("role") != "assistant":
                continue
            truth = _content_text(messages[index].get("content")).strip()
            if not truth:
                truth = _tool_calls_text(messages[index].get("tool_calls"))
            prompt = ""
            for earlier in reversed(messages[:index]):
                if earlier.get("role") in ("user", "tool", "system"):
                    prompt = _content_text(earlier.get("content")).strip()
                    if prompt:
                        break
            if truth:
                return {"prompt": prompt[:2000], "ground_truth": truth[:2000]}
            return None
        return None
    if "prompt" in example and "completion" in example:
        truth = _content_text(example.get("completion")).strip()
        if truth:
            return {"prompt": _content_text(example.get("prompt")).strip()[:2000], "ground_truth": truth[:2000]}
    return None


def pick_samples(candidates: list[dict[str, Any]], k: int = PREDICTION_SAMPLES) -> list[dict[str, Any]]:
    """Up to `k` samples spread evenly over the candidates (first, last and in between)."""
    if len(candidates) <= k:
        return list(candidates)
    chosen = sorted({round(i * (len(candidates) - 1) / (k - 1)) for i in range(k)})
    return [candidates[i] for i in chosen]


# --------------------------------------------------------------------------- predictions

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)
_FILLER = ("the", "move", "wait", "left", "noop", "tree", "go", "do", "up", "it", "now", "and", "a", "stone")


def sample_quality(seed: int, sample_index: int, epoch: int, epochs: int) -> float:
    """How much of the ground truth the simulated model gets right after `epoch` of `epochs` (0..1)."""
    rng = random.Random(f"quality:{seed}:{sample_index}")
    q0 = 0.12 + 0.18 * rng.random()
    qmax = min(1.0, 0.84 + 0.24 * rng.random())
    return q0 + (qmax - q0) * (epoch / max(1, epochs)) ** 0.7


def simulated_output(truth: str, seed: int, sample_index: int, quality: float) -> str:
    """A prediction that is `quality` of the way to `truth`: fixed per-token difficulty, so better
    quality only ever turns wrong tokens right (and restores the missing tail)."""
    tokens = _TOKEN.findall(truth)
    if not tokens:
        return truth
    rng = random.Random(f"tokens:{seed}:{sample_index}")
    keep = len(tokens) if quality >= 1.0 else max(1, math.ceil(len(tokens) * (0.45 + 0.55 * quality)))
    out = []
    for index, token in enumerate(tokens):
        difficulty = rng.random()
        wrong = rng.choice(_FILLER) if token[0].isalnum() or token[0] == "_" else rng.choice((",", ".", ""))
        if index >= keep:
            break
        if token.isspace() or difficulty < quality:
            out.append(token)
        else:
            out.append(wrong if wrong.casefold() != token.casefold() else token[::-1] + "x")
    return "".join(out).strip()


def prediction_rows(samples: list[dict[str, Any]], seed: int, epoch: int, epochs: int, step: int,
                    created_at: int) -> list[dict[str, Any]]:
    """The predictions recorded at the end of `epoch`, metrics computed between output and truth."""
    rows = []
    for sample in samples:
        index = int(sample["sample_index"])
        prediction = simulated_output(sample["ground_truth"], seed, index, sample_quality(seed, index, epoch, epochs))
        completion_tokens = max(1, estimate_tokens(prediction))
        latency = 25 + completion_tokens * 9 + random.Random(f"latency:{seed}:{index}:{epoch}").randint(0, 40)
        rows.append({
            "epoch": epoch, "step": step, "sample_index": index, "prompt": sample["prompt"],
            "ground_truth": sample["ground_truth"], "prediction": prediction,
            **score(prediction, sample["ground_truth"]),
            "prompt_tokens": max(1, estimate_tokens(sample["prompt"])), "completion_tokens": completion_tokens,
            "latency_ms": latency, "created_at": created_at,
        })
    return rows


#: a prediction "passes" when its character error rate is at most this.
PASS_CHAR_ERROR_RATE = 0.2


def trends(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float | None]:
    """Per-epoch averages of the prediction metrics, and the word-overlap gain from first to last epoch."""
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_epoch.setdefault(int(row["epoch"]), []).append(row)
    out = []
    for epoch in sorted(by_epoch):
        group = by_epoch[epoch]
        n = len(group)
        cers = [float(r["char_error_rate"]) for r in group]
        out.append({
            "epoch": epoch,
            "step": max(int(r["step"]) for r in group),
            "sample_count": n,
            "avg_exact_match": round(sum(1.0 for r in group if r["exact_match"]) / n, 6),
            "avg_char_error_rate": round(sum(cers) / n, 6),
            "avg_length_ratio": round(sum(float(r["length_ratio"]) for r in group) / n, 6),
            "avg_word_overlap": round(sum(float(r["word_overlap"]) for r in group) / n, 6),
            "min_char_error_rate": round(min(cers), 6),
            "max_char_error_rate": round(max(cers), 6),
            "validation_pass_rate": round(sum(1.0 for c in cers if c <= PASS_CHAR_ERROR_RATE) / n, 6),
        })
    improvement = round(out[-1]["avg_word_overlap"] - out[0]["avg_word_overlap"], 6) if out else None
    return out, improvement
