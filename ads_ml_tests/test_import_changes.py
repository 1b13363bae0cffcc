"""Importing change events."""

from __future__ import annotations

import pytest

from ads_ml.ingest.changes import import_changes
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.insights import import_insights
from ads_ml_tests.helpers import CANONICAL, count, snapshot, write_csv

CHANGES = """
entity_type,entity_id,change_date,change_type,old_value,new_value
adset,s1,2026-03-02,budget_change,50,80
ad,a2,2026-03-02,pause,ACTIVE,PAUSED
campaign,c1,2026-03-01,creative_change,,
"""


@pytest.fixture
def account(engine, tmp_path):
    import_insights(engine, write_csv(tmp_path / "ins.csv", CANONICAL), "act_ch")
    return "act_ch"


def test_changes_import_and_reimport_is_idempotent(engine, tmp_path, account):
    path = write_csv(tmp_path / "changes.csv", CHANGES)
    assert import_changes(engine, path, account) == 3
    before = snapshot(engine)
    assert import_changes(engine, path, account) == 3
    assert snapshot(engine) == before
    assert count(engine, "change_events") == 3
    updated = CHANGES.replace("budget_change,50,80", "budget_change,50,90")
    import_changes(engine, write_csv(tmp_path / "changes2.csv", updated), account)
    assert count(engine, "change_events", "new_value = '90'") == 1 and count(engine, "change_events") == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("keyword,k1,2026-03-02,budget_change,1,2", r"row 3, column \"entity_type\": 'keyword' is not one of"),
        ("adset,s1,2026-03-02,budget_shift,1,2", r"row 3, column \"change_type\": 'budget_shift' is not one of"),
        ("adset,s1,02/03/2026,budget_change,1,2", r"row 3, column \"change_date\": '02/03/2026' is not a date"),
        ("adset,s404,2026-03-02,budget_change,1,2", r"row 3, column \"entity_id\": unknown adset 's404' in account act_ch"),
        ("adset,s1,2026-03-01,budget_change,1,2", r"row 3, column \"change_type\": the same budget_change of adset s1 on 2026-03-01 appears twice"),
    ],
)
def test_bad_change_rows_are_refused_and_nothing_is_written(engine, tmp_path, account, line, message):
    before = snapshot(engine)
    text = "entity_type,entity_id,change_date,change_type,old_value,new_value\nadset,s1,2026-03-01,budget_change,1,2\n" + line
    with pytest.raises(InputFileError, match=message):
        import_changes(engine, write_csv(tmp_path / "bad.csv", text), account)
    assert snapshot(engine) == before
