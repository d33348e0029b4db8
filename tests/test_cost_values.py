"""An event's exact cost is the sum of its records' `usage.cost_usd` where that is a JSON number.

A string or a boolean there (odd data, but a DB is written by many tools) is no cost: the event falls
back to its cents column, the same in every report and in `filter --max-cost`, and no command fails.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from helpers import invoke
from helpers.inspectdb import break_call_records, copy_fixture


def _costs(session_json: str) -> tuple:
    """(the session's total cost, each event's cost) from `session ID --json`."""
    doc = json.loads(session_json)
    return doc["totals"]["cost_usd"], [e.get("cost_usd") for t in doc["timesteps"] for e in t["events"]]


def _record(cost) -> str:
    return json.dumps([{"model_name": "gpt-4o-mini", "usage": {"input_tokens": 3, "output_tokens": 2,
                                                               "total_tokens": 5, "cost_usd": cost}}])


@pytest.mark.parametrize("cost", ["0.5", "abc", True, {"x": 1}], ids=["numeric-string", "text", "bool", "object"])
def test_a_cost_that_is_not_a_number_is_no_cost(tmp_path, cost):
    db = copy_fixture(tmp_path / "odd.db")
    [(event_id, session_id)] = break_call_records(db, [_record(cost)])
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE events SET cost_usd = 3 WHERE id = ?", (event_id,))  # 3 cents
    conn.close()
    session = invoke("session", session_id, "--db", db, "--json")
    assert session.exit_code == 0, session.stderr
    assert "unexpected" not in session.stderr
    # the event is priced from its cents column: the session costs what a number-free record would
    numeric = copy_fixture(tmp_path / "cents.db")
    break_call_records(numeric, [_record(None)])
    conn = sqlite3.connect(numeric)
    with conn:
        conn.execute("UPDATE events SET cost_usd = 3 WHERE id = ?", (event_id,))
    conn.close()
    reference = invoke("session", session_id, "--db", numeric, "--json")
    assert reference.exit_code == 0, reference.stderr
    assert _costs(session.stdout) == _costs(reference.stdout)
    for command in (("usage", "--json"), ("experiments", "--json"), ("traces", "--json")):
        odd, ref = invoke(*command, "--db", db), invoke(*command, "--db", numeric)
        assert odd.exit_code == 0 and ref.exit_code == 0, (odd.stderr, ref.stderr)
        assert odd.stdout.replace(str(db), "DB") == ref.stdout.replace(str(numeric), "DB"), command


def test_a_numeric_cost_is_summed_exactly(tmp_path):
    db = copy_fixture(tmp_path / "exact.db")
    [(event_id, session_id)] = break_call_records(db, [_record(0.001234)])
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE events SET cost_usd = 0 WHERE id = ?", (event_id,))
    conn.close()
    a = invoke("session", session_id, "--db", db, "--json")
    b_db = copy_fixture(tmp_path / "none.db")
    break_call_records(b_db, [_record(None)])
    conn = sqlite3.connect(b_db)
    with conn:
        conn.execute("UPDATE events SET cost_usd = 0 WHERE id = ?", (event_id,))
    conn.close()
    b = invoke("session", session_id, "--db", b_db, "--json")
    assert a.exit_code == 0 and b.exit_code == 0
    assert _costs(a.stdout)[0] - _costs(b.stdout)[0] == pytest.approx(0.001234)  # not the truncated 0 cents
