"""Recommendations and impact reports through Dagster; the change-events sensor; ads-ml impact."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from ads_ml.cli import main
from ads_ml.db.queries import current_impact_reports
from ads_ml.defs.resources import DatabaseResource
from ads_ml.defs.sensors import change_events_sensor
from ads_ml.demo import generate_account
from ads_ml.ingest.changes import import_changes
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import materialize_account
from ads_ml_tests.helpers import count, write_csv

END = dt.date(2026, 6, 30)
ASSETS = ["campaign_insights", "adset_insights", "ad_insights", "campaign_features", "adset_features", "ad_features",
          "campaign_recommendations", "adset_recommendations", "ad_recommendations", "impact_reports"]


def _account(engine, tmp_path, account_id="act_act"):
    data = generate_account(n_campaigns=3, adsets_per_campaign=3, ads_per_adset=2, days=90, end_date=END, seed=12)
    path = tmp_path / f"{account_id}.csv"
    data.insights.to_csv(path, index=False)
    import_insights(engine, path, account_id)
    return data


def test_recommendations_and_impact_reports(dagster_instance, engine, tmp_path, capsys):
    data = _account(engine, tmp_path)
    adset = data.insights["adset_id"].iloc[0]
    changes = write_csv(tmp_path / "changes.csv", f"""
entity_type,entity_id,change_date,change_type,old_value,new_value
adset,{adset},{END - dt.timedelta(days=20)},budget_change,50,80
adset,{adset},{END - dt.timedelta(days=3)},audience_change,,
""")
    import_changes(engine, changes, "act_act")
    assert materialize_account("act_act", ASSETS, instance=dagster_instance).success
    open_before = count(engine, "ml_recommendations", "status = 'OPEN'")
    assert open_before > 0
    reports = pd.read_sql(sa.text("select * from ml_impact_reports order by window_after"), engine.connect())
    # only the change whose after-windows have elapsed: 20 days old, so its 7- and 14-day reports
    assert reports["change_type"].tolist() == ["budget_change"] * 2 and reports["window_after"].tolist() == [7, 14]
    report = reports.iloc[1]
    changes_json = report["metric_changes"] if isinstance(report["metric_changes"], dict) else json.loads(report["metric_changes"])
    assert set(changes_json) == {"cpl", "leads", "ctr", "spend"}
    assert report["status"] == "complete" and report["overall_impact"] in ("positive", "negative", "neutral", "inconclusive")
    assert (reports["window_before"] == 7).all()
    # the later report says how the verdict evolved
    first, second = reports["overall_impact"].tolist()
    assert f"Verdict at 14 days: {second} ({first} at 7 days, {second} at 14 days)." in report["recommendation"]

    # a second run: no duplicate OPEN recommendation, the due reports are not redone
    assert materialize_account("act_act", ASSETS, instance=dagster_instance).success
    assert count(engine, "ml_recommendations", "status = 'OPEN'") == open_before
    assert count(engine, "ml_impact_reports") == 2
    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_recommendations")).asset_materialization.metadata
    assert meta["new"].value == 0 and meta["already_open"].value > 0
    # impact_reports' latest materialisation shows the verdict of record it holds, though this run added none
    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("impact_reports")).asset_materialization.metadata
    assert meta["reports"].value == 1 and meta["new_in_this_run"].value == 0
    assert meta["by_verdict"].value == {second: 1} and "budget_change" in meta["reports_table"].value
    assert f"{first} at 7 days, {second} at 14 days" in meta["reports_table"].value

    # `ads-ml report` shows the verdict of record
    assert main(["report", "--account", "act_act"]) == 0
    out = capsys.readouterr().out
    assert f"budget change of adset {adset} on {END - dt.timedelta(days=20)}: {second} (verdict of record, 14-day after-window" in out

    # on demand, from the command line, with other windows
    assert main(["impact", "--account", "act_act", "--entity-type", "adset", "--entity-id", adset,
                 "--change-date", str(END - dt.timedelta(days=20)), "--change-type", "budget_change",
                 "--window-before", "14", "--window-after", "10"]) == 0
    out = capsys.readouterr().out
    assert "budget_change of adset" in out and "cpl:" in out
    assert count(engine, "ml_impact_reports") == 3


def test_change_events_sensor_requests_exactly_the_due_reports(dagster_instance, engine, db_url, tmp_path):
    data = _account(engine, tmp_path, "act_sens")
    adsets = data.insights["adset_id"].unique()
    changes = write_csv(tmp_path / "changes.csv", f"""
entity_type,entity_id,change_date,change_type,old_value,new_value
adset,{adsets[0]},{END - dt.timedelta(days=10)},budget_change,50,80
adset,{adsets[1]},{END - dt.timedelta(days=3)},creative_change,,
""")
    import_changes(engine, changes, "act_sens")
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.text("select entity_id, id from change_events")).all())

    def tick(cursor):
        context = dg.build_sensor_context(instance=dagster_instance, cursor=cursor,
                                          resources={"database": DatabaseResource(url=db_url)})
        return change_events_sensor(context)

    first = tick(None)
    assert [r.partition_key for r in first.run_requests] == ["act_sens"]
    assert first.run_requests[0].run_config["ops"]["impact_reports"]["config"]["change_ids"] == [ids[adsets[0]]]
    second = tick(first.cursor)
    assert not second.run_requests  # the second change is not due yet, the first was requested at 7 days
    assert second.skip_reason.skip_message == "no change due: 2 waiting for an after-window (7/14/28 days)"

    # once the first change is reported (as `ads-ml demo` does before the daemon's first start), a
    # sensor starting afresh does not request that window again
    assert materialize_account("act_sens", ASSETS[:3] + ["impact_reports"], instance=dagster_instance).success
    fresh_start = tick(None)
    assert not fresh_start.run_requests

    def add_days(last: dt.date, until: dt.date) -> None:
        """Insights of the days after ``last`` up to ``until`` (copies of END's rows)."""
        template = data.insights.loc[data.insights["date"] == str(END)]
        days = pd.date_range(last + dt.timedelta(days=1), until, freq="D")
        path = tmp_path / f"until_{until}.csv"
        pd.concat([template.assign(date=d.date().isoformat()) for d in days]).to_csv(path, index=False)
        import_insights(engine, path, "act_sens")

    def run(request: dg.RunRequest) -> None:
        assert materialize_account("act_sens", ASSETS[:3] + ["impact_reports"], instance=dagster_instance,
                                   run_config=request.run_config).success

    def windows() -> dict[str, list[int]]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("select entity_id, window_after from ml_impact_reports order by window_after")).all()
        out: dict[str, list[int]] = {}
        for entity, window in rows:
            out.setdefault(entity, []).append(window)
        return out

    # four more days: the first change's 14-day window and the second's 7-day one have elapsed
    add_days(END, END + dt.timedelta(days=4))
    third = tick(second.cursor)
    assert [r.run_config["ops"]["impact_reports"]["config"]["change_ids"] for r in third.run_requests] == [
        sorted([ids[adsets[0]], ids[adsets[1]]])]
    run(third.run_requests[0])
    assert windows() == {adsets[0]: [7, 14], adsets[1]: [7]}
    assert not tick(third.cursor).run_requests  # each window once

    # fourteen more: the first change's 28-day window, the second's 14-day one
    add_days(END + dt.timedelta(days=4), END + dt.timedelta(days=18))
    fourth = tick(third.cursor)
    assert len(fourth.run_requests) == 1
    run(fourth.run_requests[0])
    run(fourth.run_requests[0])  # a re-run replaces, never duplicates
    assert windows() == {adsets[0]: [7, 14, 28], adsets[1]: [7, 14]}
    assert [p[0] for p in json.loads(fourth.cursor)["pending"]] == [ids[adsets[1]]]  # the first is done
    fifth = tick(fourth.cursor)
    assert not fifth.run_requests and fifth.skip_reason.skip_message == "no change due: 1 waiting for an after-window (7/14/28 days)"
    record = current_impact_reports(engine, "act_sens").set_index("entity_id").loc[adsets[0]]
    assert record["window_after"] == 28 and record["history"].count(" days") == 3
