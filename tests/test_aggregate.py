"""`aggregate` against totals computed by hand from the fixtures in tests/fixtures/llm."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from helpers.llm_fixtures import build, fixture_names, load
from synth_cli.tracing.aggregate import Aggregate, aggregate, aggregate_by


def _records():
    records = [build(load(name)) for name in fixture_names()]
    by_name = dict(zip(fixture_names(), records))
    by_name["openai_text"].usage.cost_usd = 0.0012
    by_name["openai_tool_call"].usage.cost_usd = 0.0035
    return records


def test_totals_by_hand():
    # Per fixture (input/output/total tokens, latency ms, tool calls):
    #   openai_text 2048/3/2051 1250 0 (cached 1920, reasoning 0)   openai_tool_call 82/217/299 2500 1 (reasoning 192)
    #   openai_parallel 187/46/233 900 2   openai_image 1131/24/1155 3000 0   openai_n2 14/8/22 640 0
    #   openai_stream_tool_calls 93/51/144 1750 2   openai_stream_text (no usage) 400 0   openai_error 120
    #   anthropic_text 1864/9/1873 2100 0 (cache read 1843)   anthropic_tool_use 612/71/683 3300 1
    #   anthropic_image 1668/24/1692 4000 0   anthropic_stream_tool_use 472/89/561 1800 1   anthropic_error 50
    agg = aggregate(iter(_records()))
    assert agg.call_count == 13
    assert (agg.success_count, agg.error_count) == (11, 2)
    assert agg.errors_by_type == {"tokens": 1, "overloaded_error": 1}
    assert agg.input_tokens == 2048 + 82 + 187 + 1131 + 14 + 93 + 1864 + 612 + 1668 + 472 == 8171
    assert agg.output_tokens == 3 + 217 + 46 + 24 + 8 + 51 + 9 + 71 + 24 + 89 == 542
    assert agg.total_tokens == 8713
    assert agg.reasoning_tokens == 192
    assert agg.cache_read_tokens == 1920 + 1843
    assert agg.cache_write_tokens == 0
    assert agg.calls_with_usage == 10
    assert agg.avg_input_tokens == pytest.approx(817.1)
    assert agg.avg_output_tokens == pytest.approx(54.2)
    assert agg.cost_usd == pytest.approx(0.0047) and agg.calls_with_cost == 2
    assert agg.avg_cost_usd == pytest.approx(0.00235)
    assert agg.latency_ms_total == 10440 + 11200 + 170 == 21810
    assert agg.calls_with_latency == 13
    assert agg.avg_latency_ms == pytest.approx(21810 / 13)
    assert agg.max_latency_ms == 4000
    assert agg.tool_call_count == 7 and agg.calls_with_tool_calls == 5
    assert agg.models == {"gpt-4o": 4, "gpt-4o-mini": 3, "claude-3-5-haiku-20241022": 3,
                          "claude-3-5-sonnet-20241022": 2, "o3-mini": 1}
    assert list(agg.models) == ["gpt-4o", "claude-3-5-haiku-20241022", "gpt-4o-mini",  # most used first,
                                "claude-3-5-sonnet-20241022", "o3-mini"]            # ties by name
    assert agg.providers == {"openai": 8, "anthropic": 5}
    assert agg.first_started_at == datetime(2025, 3, 1, 12, 0, 0)
    assert agg.last_completed_at == datetime(2025, 3, 1, 13, 4, 0, 50000)
    assert agg.success_rate == pytest.approx(11 / 13)


def test_to_dict_is_json_ready():
    data = aggregate(_records()).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["call_count"] == 13 and data["total_tokens"] == 8713
    assert data["models"]["gpt-4o"] == 4
    assert data["first_started_at"] == "2025-03-01 12:00:00"
    assert set(data) >= {"input_tokens", "output_tokens", "reasoning_tokens", "cache_read_tokens", "cost_usd",
                         "avg_latency_ms", "tool_call_count", "success_count", "error_count", "providers"}


def test_by_model():
    groups = aggregate_by(_records(), key=lambda r: r.model_name)
    assert set(groups) == {"gpt-4o", "gpt-4o-mini", "o3-mini", "claude-3-5-haiku-20241022",
                           "claude-3-5-sonnet-20241022"}
    gpt4o = groups["gpt-4o"]
    assert (gpt4o.call_count, gpt4o.error_count) == (4, 1)
    assert gpt4o.input_tokens == 187 + 1131 + 93
    assert gpt4o.tool_call_count == 4
    assert gpt4o.avg_latency_ms == pytest.approx((900 + 3000 + 1750 + 120) / 4)
    mini = groups["gpt-4o-mini"]
    assert mini.calls_with_usage == 2 and mini.avg_input_tokens == pytest.approx((2048 + 14) / 2)
    assert sum(g.call_count for g in groups.values()) == 13


def test_empty_and_total_fallback():
    empty = aggregate([])
    assert empty == Aggregate()
    assert empty.avg_latency_ms is None and empty.avg_input_tokens is None and empty.success_rate is None
    record = build(load("openai_n2"))
    record.usage.total_tokens = None
    assert aggregate([record]).total_tokens == 14 + 8
