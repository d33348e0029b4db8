"""`synth-ai calc`: the price table, token counts, cached input, safe arithmetic."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from helpers import invoke, run_cli
from synth_cli import pricing
from synth_cli.errors import UsageError


def _one_error_line(result, exit_code=2):
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    return lines


# --------------------------------------------------------------------------- the table


def test_bundled_table_rows_are_complete_and_unique():
    table = pricing.load_table()
    assert table.bundled and table.path == pricing.BUNDLED_TABLE
    names = [n.lower() for row in table.rows for n in (row.name, *row.aliases)]
    assert len(names) == len(set(names)), "a model id appears twice"
    for row in table.rows:
        assert row.input >= 0 and row.output >= 0, row
        assert row.cached_input is None or row.cached_input <= row.input, row
        assert row.as_of and len(row.as_of) == 10 and row.as_of[4] == "-", row
        assert row.source and row.source.startswith("https://"), row
    for expected in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini",
                     "o4-mini", "claude-3-5-haiku", "claude-3-5-sonnet", "claude-3-7-sonnet", "claude-sonnet-4",
                     "claude-opus-4", "deepseek-chat", "llama-3.3-70b-versatile"):
        assert table.find(expected) is not None, expected


@pytest.mark.parametrize("model,inp,cached,out", [
    ("gpt-4o", "2.50", "1.25", "10.00"),
    ("gpt-4o-mini", "0.15", "0.075", "0.60"),
    ("gpt-4.1", "2.00", "0.50", "8.00"),
    ("o4-mini", "1.10", "0.275", "4.40"),
    ("claude-3-5-haiku", "0.80", "0.08", "4.00"),
    ("claude-sonnet-4", "3.00", "0.30", "15.00"),
    ("claude-opus-4", "15.00", "1.50", "75.00"),
])
def test_known_prices(model, inp, cached, out):
    row = pricing.load_table().lookup(model)
    assert (row.input, row.cached_input, row.output) == (Decimal(inp), Decimal(cached), Decimal(out))


def test_the_documented_example_costs_seven_fifty():
    result = invoke("calc", "gpt-4o", "1000000", "500000")
    assert result.exit_code == 0, result.output
    assert "$7.50" in result.stdout
    assert "$2.50" in result.stdout and "$5.00" in result.stdout
    assert "2025-" in result.stdout and "openai.com" in result.stdout  # as_of and source shown


def test_quiet_prints_only_the_total_and_json_gives_the_numbers():
    assert invoke("-q", "calc", "gpt-4o", "1M", "500k").stdout == "7.50\n"  # a bare number
    data = invoke("calc", "gpt-4o", "1_000_000", "500_000", "--json").json()
    assert (data["input_cost_usd"], data["cached_input_cost_usd"], data["output_cost_usd"], data["cost_usd"]) == (
        2.5, 0.0, 5.0, 7.5)
    assert data["input_tokens"] == 1_000_000 and data["output_tokens"] == 500_000
    assert data["input_usd_per_million"] == 2.5 and data["as_of"] and data["source"]


def test_cached_input_tokens_are_part_of_the_input_and_billed_at_the_cached_price():
    data = invoke("--json", "calc", "gpt-4o", "1M", "500k", "--cached-input-tokens", "400k").json()
    # 600k uncached at $2.50 + 400k cached at $1.25 + 500k out at $10
    assert (data["input_cost_usd"], data["cached_input_cost_usd"], data["output_cost_usd"], data["cost_usd"]) == (
        1.5, 0.5, 5.0, 7.0)
    human = invoke("calc", "gpt-4o", "1M", "500k", "--cached-input-tokens", "400k")
    assert "$7.00" in human.stdout and "input (cached)" in human.stdout and "600,000" in human.stdout
    too_many = invoke("calc", "gpt-4o", "1k", "1", "--cached-input-tokens", "2k")
    assert "more than the input tokens" in _one_error_line(too_many)[0]


def test_cached_tokens_without_a_cached_price_fall_back_to_the_input_price_with_a_warning():
    result = invoke("calc", "gpt-4-turbo", "1M", "0", "--cached-input-tokens", "1M", "--json")
    assert result.exit_code == 0
    assert result.json()["cost_usd"] == 10.0
    assert "warning:" in result.stderr and "no cached-input price" in result.stderr


def test_small_amounts_keep_their_precision():
    assert "$0.000156" in invoke("calc", "gpt-4o-mini", "1000", "10").stdout
    from synth_cli.output import fmt_usd

    assert fmt_usd(Decimal("7.5"), exact=True) == "$7.50"
    assert fmt_usd(Decimal("1234.5"), exact=True) == "$1,234.50"
    assert fmt_usd(Decimal("0.0275"), exact=True) == "$0.0275"
    assert fmt_usd(0, exact=True) == "$0.00"
    # the price list's rates use it too: `$0.15`, `$0.075` per 1M tokens, never cut to cents
    listing = invoke("calc", "--list").stdout
    assert "$0.15" in listing and "$0.075" in listing


def test_model_names_resolve_through_prefixes_and_dated_snapshots():
    table = pricing.load_table()
    assert table.lookup("openai/gpt-4o-mini").name == "gpt-4o-mini"
    assert table.lookup("gpt-4o-2024-08-06").name == "gpt-4o"
    assert table.lookup("GPT-4O").name == "gpt-4o"
    assert table.lookup("claude-3-5-haiku-20241022").name == "claude-3-5-haiku"
    assert table.lookup("claude-3-5-haiku-latest").name == "claude-3-5-haiku"
    assert table.lookup("claude-opus-4-0").name == "claude-opus-4"
    # a snapshot with its own row keeps its own price
    assert table.lookup("gpt-4o-2024-05-13").input == Decimal("5.00")


def test_unknown_model_lists_close_matches_and_the_list_hint():
    result = invoke("calc", "gpt4o", "1000", "1000")
    lines = _one_error_line(result)
    assert "gpt4o" in lines[0]
    assert lines[1].startswith("hint: ") and "gpt-4o" in lines[1] and "synth-ai calc --list" in lines[1]
    far = _one_error_line(invoke("calc", "zzzz-qqqq", "1", "1"))
    assert "calc --list" in far[1] and "did you mean" not in far[1]


def test_list_shows_every_row_and_json_has_sources():
    table = pricing.load_table()
    result = invoke("calc", "--list")
    assert result.exit_code == 0
    for row in table.rows:
        assert row.name in result.stdout
    data = invoke("calc", "--list", "--json").json()
    assert len(data["models"]) == len(table.rows)
    gpt4o = next(m for m in data["models"] if m["model"] == "gpt-4o")
    assert gpt4o["input_usd_per_million"] == 2.5 and gpt4o["output_usd_per_million"] == 10.0
    assert gpt4o["source"].startswith("https://") and gpt4o["as_of"]


# --------------------------------------------------------------------------- user price tables


def test_pricing_file_replaces_the_table_by_flag_and_by_env(tmp_path):
    custom = tmp_path / "prices.toml"
    custom.write_text('[[model]]\nname = "my-model"\ninput = 1\noutput = 2\ncached_input = 0.5\n')
    data = invoke("--json", "calc", "my-model", "2M", "1M", "--pricing", str(custom)).json()
    assert data["cost_usd"] == 4.0 and data["pricing_file"] == str(custom)
    env_run = run_cli("--json", "calc", "my-model", "1M", "0", env={"SYNTH_PRICING_FILE": str(custom)})
    assert env_run.exit_code == 0 and json.loads(env_run.stdout)["cost_usd"] == 1.0
    # it replaces the bundled table
    gone = invoke("calc", "gpt-4o", "1", "1", "--pricing", str(custom))
    assert "price table" in _one_error_line(gone)[0]


def test_list_json_output_can_be_fed_back_as_a_price_table(tmp_path):
    exported = tmp_path / "prices.json"
    exported.write_text(invoke("calc", "--list", "--json").stdout)
    data = invoke("--json", "calc", "gpt-4o", "1M", "500k", "--pricing", str(exported)).json()
    assert data["cost_usd"] == 7.5


@pytest.mark.parametrize("content,needle", [
    ("not = [valid", "not valid TOML"),
    ('[[model]]\nname = "x"\noutput = 1\n', "`input`"),
    ('[[model]]\nname = "x"\ninput = -1\noutput = 1\n', "non-negative"),
    ('[[model]]\ninput = 1\noutput = 1\n', "`name`"),
    ('title = "no rows"\n', "no `model` rows"),
    ('{"model": [{"name": "x", "input": "cheap", "output": 1}]}', "must be a number"),
])
def test_broken_price_tables_are_clear_errors(tmp_path, content, needle):
    path = tmp_path / ("prices.json" if content.startswith("{") else "prices.toml")
    path.write_text(content)
    lines = _one_error_line(invoke("calc", "x", "1", "1", "--pricing", str(path)))
    assert needle in lines[0] and str(path) in lines[0]


def test_missing_pricing_file_names_its_source(tmp_path):
    lines = _one_error_line(invoke("calc", "gpt-4o", "1", "1", "--pricing", str(tmp_path / "nope.toml")))
    assert "--pricing" in lines[0] and "does not exist" in lines[0]
    lines = _one_error_line(run_cli("calc", "gpt-4o", "1", "1", env={"SYNTH_PRICING_FILE": str(tmp_path / "x.toml")}))
    assert "SYNTH_PRICING_FILE" in lines[0]


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("text,value", [
    ("1000", 1000), ("1_000_000", 1_000_000), ("1,000", 1000), ("1M", 1_000_000), ("1m", 1_000_000),
    ("500k", 500_000), ("500K", 500_000), ("2.5k", 2500), ("1.5M", 1_500_000), ("2B", 2_000_000_000),
    ("1e6", 1_000_000), ("0", 0), (" 42 ", 42),
])
def test_parse_count(text, value):
    assert pricing.parse_count(text) == value


@pytest.mark.parametrize("text", ["1.2345k", "-5", "abc", "1x", "", "1.5", "k", "1e99"])
def test_parse_count_rejects(text):
    with pytest.raises(UsageError):
        pricing.parse_count(text)


def test_bad_cached_count_is_a_usage_error():
    lines = _one_error_line(invoke("calc", "gpt-4o", "1M", "1M", "--cached-input-tokens", "lots"))
    assert "--cached-input-tokens" in lines[0]


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize("expr,out", [
    ("2*(3+4)", "14"), ("1+2", "3"), ("7/2", "3.5"), ("7//2", "3"), ("7%3", "1"), ("2**10", "1024"),
    ("-3+4", "1"), ("0.1+0.2", "0.3"), ("1_000 * 3", "3000"), ("2**-1", "0.5"), ("(((1)))", "1"),
    ("2**4000 // 2**3999", "2"), ("1M", "1000000"), ("1.5M * 2.50 / 1M", "3.75"), ("500k + 2B", "2000500000"),
    ("2 -1", "1"), ("0x1b", "27"),
])
def test_arithmetic(expr, out):
    result = invoke("calc", expr)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == out


def test_arithmetic_from_several_words_and_json():
    assert invoke("calc", "2", "+", "3").stdout.strip() == "5"
    assert invoke("calc", "2", "*", "(3+4)").stdout.strip() == "14"
    assert invoke("--json", "calc", "2*(3+4)").json() == {"expression": "2*(3+4)", "result": 14}


@pytest.mark.parametrize("expr,needle", [
    ("__import__('os').system('x')", "calls are not allowed"),
    ("__import__", "names are not allowed"),
    ("x + 1", "names are not allowed"),
    ("(1).real", "attribute access"),
    ("9**9**9", "too large"),
    ("10**5000", "too large"),
    ("2**4097", "too large"),
    ("10.0**400", "too large"),
    ("1/0", "division by zero"),
    ("'a' * 3", "only numbers"),
    ("True + 1", "only numbers"),
    ("1j", "only numbers"),
    ("[1, 2]", "not allowed"),
    ("lambda: 1", "not allowed"),
    ("1 if 1 else 2", "not allowed"),
    ("1 < 2", "not allowed"),
    ("1 << 3", "'<<' is not allowed"),
    ("~1", "'~' is not allowed"),
    ("(-8) ** 0.5", "complex"),
    ("2 +", "invalid syntax"),
    ("2.5kk", "invalid syntax"),
    ("1" + "+1" * 5000, "too long"),
    ("(" * 300 + "1" + ")" * 300, "cannot evaluate"),
])
def test_unsafe_or_invalid_expressions_are_rejected_on_one_line(expr, needle):
    lines = _one_error_line(invoke("calc", expr))
    assert needle in lines[0], lines


def test_unsafe_expression_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    result = run_cli("calc", f"__import__('os').system('touch {marker}')")
    assert result.exit_code == 2 and not marker.exists()
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_safe_eval_deep_unary_chain_is_bounded():
    with pytest.raises(UsageError):
        pricing.safe_eval("-" * 1999 + "1")


# --------------------------------------------------------------------------- argument shapes


def test_no_arguments_and_wrong_shapes():
    assert "nothing to calculate" in _one_error_line(invoke("calc"))[0]
    lines = _one_error_line(invoke("calc", "gpt-4o"))
    assert "INPUT_TOKENS" in lines[0] and "$2.50" in lines[1]
    assert "got 2 arguments" in _one_error_line(invoke("calc", "gpt-4o", "1M"))[0]
    assert "only applies" in _one_error_line(invoke("calc", "1+1", "--cached-input-tokens", "5"))[0]
    assert "no such option" in _one_error_line(invoke("calc", "1+1", "--bogus"))[0]
    assert "no such option: -z" in _one_error_line(invoke("calc", "gpt-4o", "1M", "500k", "-z"))[0]
    assert invoke("calc", "2", "-1").stdout.strip() == "1"
    assert "takes no arguments" in _one_error_line(invoke("calc", "--list", "gpt-4o"))[0]
