"""The simulator's pure parts: metrics, hyperparameters, the loss curve, predictions, prices, file checks."""

from __future__ import annotations

import json
import math

import pytest

from synth_cli.devserver import billing, metrics, simulate
from synth_cli.devserver.validation import describe_errors, inspect_file


# --------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("a, b, distance", [("", "", 0), ("abc", "", 3), ("", "abc", 3), ("kitten", "sitting", 3),
                                            ("flaw", "lawn", 2), ("same", "same", 0), ("ab", "ba", 2)])
def test_levenshtein(a, b, distance):
    assert metrics.levenshtein(a, b) == distance == metrics.levenshtein(b, a)


def test_quality_metrics():
    truth = "Move north and collect wood."
    assert metrics.score(truth + "  ", truth) == {"exact_match": True, "char_error_rate": 0.0, "length_ratio": 1.0,
                                                  "word_overlap": 1.0}
    s = metrics.score("Move south and collect wood.", truth)
    assert s["exact_match"] is False
    assert s["char_error_rate"] == pytest.approx(metrics.levenshtein("south", "north") / len(truth), abs=1e-6)
    assert s["word_overlap"] == pytest.approx(4 / 5)
    assert metrics.length_ratio("Move", truth) == pytest.approx(4 / len(truth))
    # word overlap counts repeated words once per occurrence in the ground truth
    assert metrics.word_overlap("go go go", "go left go") == pytest.approx(2 / 3)
    assert metrics.word_overlap("LEFT", "left") == 1.0
    assert metrics.char_error_rate("anything", "") == 1.0 and metrics.char_error_rate("", "") == 0.0


# --------------------------------------------------------------------------- hyperparameters and steps


@pytest.mark.parametrize("n, epochs, batch", [(12, 9, 1), (40, 3, 1), (100, 3, 1), (5000, 3, 10), (20000, 1, 40),
                                              (200000, 1, 256), (2, 25, 1)])
def test_auto_hyperparameters_follow_openais_rules(n, epochs, batch):
    hp = simulate.resolve_hyperparameters(n, {})
    assert (hp.n_epochs, hp.batch_size, hp.learning_rate_multiplier) == (epochs, batch, 1.8)


def test_given_hyperparameters_are_kept_and_steps_follow_the_formula():
    hp = simulate.resolve_hyperparameters(12, {"n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 0.3})
    assert hp.to_dict() == {"n_epochs": 2, "batch_size": 5, "learning_rate_multiplier": 0.3}
    assert simulate.total_steps(12, hp) == math.ceil(12 * 2 / 5) == 5
    assert simulate.epoch_end_steps(12, hp) == [3, 5]
    assert [simulate.epoch_of_step(s, [3, 5]) for s in range(1, 6)] == [1, 1, 1, 2, 2]


def test_loss_curve_is_deterministic_per_seed_and_goes_down():
    curve = [simulate.step_metrics(7, s, 100, 1.8, with_validation=False)["train_loss"] for s in range(1, 101)]
    again = [simulate.step_metrics(7, s, 100, 1.8, with_validation=False)["train_loss"] for s in range(1, 101)]
    other = [simulate.step_metrics(8, s, 100, 1.8, with_validation=False)["train_loss"] for s in range(1, 101)]
    assert curve == again and curve != other
    assert sum(curve[-10:]) / 10 < sum(curve[:10]) / 10 / 2
    assert all(x > 0 for x in curve)
    with_val = simulate.step_metrics(7, 5, 100, 1.8, with_validation=True)
    assert with_val["train_loss"] == curve[4] and with_val["valid_loss"] > 0


# --------------------------------------------------------------------------- predictions


def test_simulated_outputs_approach_the_ground_truth():
    truth = "interact({\"action\": \"collect_wood\"}) then move north twice"
    assert simulate.simulated_output(truth, 1, 0, 1.0) == truth
    low = simulate.simulated_output(truth, 1, 0, 0.15)
    assert low != truth and metrics.char_error_rate(low, truth) > 0.2
    cers = [metrics.char_error_rate(simulate.simulated_output(truth, 1, 0, q), truth) for q in (0.15, 0.5, 0.8, 1.0)]
    assert cers[0] > cers[2] > cers[3] == 0.0
    rows = simulate.prediction_rows([{"prompt": "p", "ground_truth": truth, "sample_index": 3}], 1, 1, 4, 10, 0)
    assert rows[0]["char_error_rate"] == pytest.approx(metrics.char_error_rate(rows[0]["prediction"], truth), abs=1e-6)
    quality = [simulate.sample_quality(1, 3, e, 4) for e in range(1, 5)]
    assert quality == sorted(quality) and quality[-1] <= 1.0


def test_trends_average_per_epoch():
    rows = [{"epoch": e, "step": 10 * e, "exact_match": e == 2, "char_error_rate": 0.5 / e, "length_ratio": 1.0,
             "word_overlap": 0.4 * e} for e in (1, 2) for _ in range(2)]
    items, improvement = simulate.trends(rows)
    assert [t["epoch"] for t in items] == [1, 2]
    assert items[1]["avg_exact_match"] == 1.0 and items[0]["avg_char_error_rate"] == 0.5
    assert items[0]["validation_pass_rate"] == 0.0 and items[1]["validation_pass_rate"] == 0.0
    assert improvement == pytest.approx(0.4)
    assert simulate.trends([]) == ([], None)


def test_samples_come_from_the_last_assistant_turn():
    example = {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "first"},
                            {"role": "assistant", "content": "one"}, {"role": "user", "content": "second"},
                            {"role": "assistant", "content": None, "tool_calls": [
                                {"id": "c1", "type": "function",
                                 "function": {"name": "interact", "arguments": "{\"a\": 1}"}}]}]}
    assert simulate.example_sample(example) == {"prompt": "second", "ground_truth": "interact({\"a\": 1})"}
    assert simulate.pick_samples([{"i": i} for i in range(12)]) == [{"i": i} for i in (0, 3, 6, 8, 11)]
    assert simulate.example_tokens(example) > simulate.example_tokens({"messages": example["messages"][:2]})


# --------------------------------------------------------------------------- prices


def test_prices():
    assert billing.price_per_million("gpt-4o-mini-2024-07-18") == 3.00
    assert billing.price_per_million("gpt-4o-2024-08-06") == 25.00
    assert billing.price_per_million("ft:gpt-4o-mini:org:x:ftjob-1") == 3.00
    assert billing.price_per_million("Qwen/Qwen3-4B-Instruct-2507") == 0.50
    assert billing.price_per_million("some-new-model") == billing.DEFAULT_PRICE_PER_M
    assert billing.token_charge_cents("gpt-4o", 1_000_000) == 2500
    assert billing.token_charge_cents("gpt-4o-mini", 10) == 1  # whole cents, rounded up
    assert billing.token_charge_cents("gpt-4o-mini", 0) == 0
    assert billing.gpu_charge_cents(3600) == 240 and billing.gpu_charge_cents(1) == 1


# --------------------------------------------------------------------------- file checks (dataset.validate)


def test_inspect_file_counts_tokens_and_reports_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                     {"role": "assistant", "content": f"answer {i}"}]}) + "\n"
                            for i in range(7)), encoding="utf-8")
    report = inspect_file(good)
    assert report["valid"] and report["n_examples"] == 7 and report["tokens"] > 7 * 8
    assert [s["sample_index"] for s in report["samples"]] == [0, 2, 3, 4, 6]
    assert report["samples"][0] == {"prompt": "q0", "ground_truth": "answer 0", "sample_index": 0}
    assert report["warnings"] and "at least 10" in report["warnings"][0]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(good.read_text().splitlines()[0] + "\n{oops\n[]\n", encoding="utf-8")
    report = inspect_file(bad)
    assert not report["valid"]
    assert describe_errors(report["errors"]) in ("line 2: not valid JSON; line 3: line is not a JSON object",
                                                 "line 3: line is not a JSON object; line 2: not valid JSON")
    many = [{"reason": "no assistant message", "count": 40, "lines": list(range(1, 11))}]
    assert describe_errors(many) == "lines 1, 2, 3, 4, 5 (40 in all): no assistant message"
