"""Declarative automation, evaluated against a real instance and database: the real dependencies are
in the graph, fresh insights flow on, and timed work fires at its cron time in each account's own
timezone."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from ads_ml import settings
import sqlalchemy as sa

from ads_ml.db.models import AdAccount, utcnow
from ads_ml.db.queries import account_timezones
from ads_ml.definitions import defs
from ads_ml.defs.common import LEVELS
from ads_ml.runner import materialize_account

UTC = dt.timezone.utc
INSIGHTS = [f"{level}_insights" for level in LEVELS]


def _parents(name: str) -> set[str]:
    return {key.to_user_string() for key in defs.resolve_asset_graph().get(dg.AssetKey(name)).parent_keys}


@pytest.mark.parametrize("level", LEVELS)
def test_the_graph_declares_what_each_asset_reads(level):
    assert {f"{level}_classifications", f"{level}_anomalies", f"{level}_features"} <= _parents(f"{level}_recommendations")
    assert f"{level}_ensemble_weights" in _parents(f"{level}_forecasts")
    # the tuned Prophet parameters feed a level only where its ensemble has Prophet (none by default)
    feeds = "prophet" in settings.forecast_methods(level)
    assert (f"{level}_prophet_params" in _parents(f"{level}_forecasts")) == feeds
    assert (f"{level}_prophet_params" in _parents(f"{level}_ensemble_weights")) == feeds
    assert (f"{level}_prophet_params" in _parents(f"{level}_ensemble_weights")) == feeds
    # detection and classification jobs read the stored insights instead of re-reading them
    for job in (f"{level}_anomaly_detection", f"{level}_classification"):
        selected = {k.to_user_string() for k in defs.resolve_job_def(job).asset_layer.executable_asset_keys}
        assert not {name for name in selected if name.endswith("_insights")}, (job, selected)


def test_every_derived_asset_is_automated_and_insights_come_from_the_sensor():
    graph = defs.resolve_asset_graph()
    conditions = {key.to_user_string(): graph.get(key).automation_condition for key in graph.get_all_asset_keys()}
    assert {name for name, condition in conditions.items() if condition is None} == {*INSIGHTS, "impact_reports"}
    assert defs.resolve_sensor_def("new_insights_sensor").job_name == "insights_refresh"
    assert {k.to_user_string() for k in defs.resolve_job_def("insights_refresh").asset_layer.executable_asset_keys} == set(INSIGHTS)


def _accounts(engine) -> None:
    with engine.begin() as conn:
        for account, zone in (("act_utc", "UTC"), ("act_sp", "America/Sao_Paulo"), ("act_bad_tz", "Mars/Olympus")):
            conn.execute(sa.insert(AdAccount).values(id=account, name=account, is_active=True, currency="BRL",
                                                     timezone=zone, created_at=utcnow(), updated_at=utcnow()))


class Ticks:
    """Successive evaluations of every automation condition, as the automation sensor makes them."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance, self.cursor = instance, None

    def at(self, when: dt.datetime) -> dict[str, set[str]]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=self.instance, cursor=self.cursor,
                                                   evaluation_time=when)
        self.cursor = result.cursor
        graph = defs.resolve_asset_graph()
        return {key.to_user_string(): set(partitions) for key in graph.get_all_asset_keys()
                if (partitions := result.get_requested_partitions(key))}


def test_account_timezones_fall_back_to_the_default(engine):
    _accounts(engine)
    assert account_timezones(engine, ["act_sp", "act_bad_tz", "act_unknown"], "Europe/Lisbon") == {
        "act_sp": "America/Sao_Paulo", "act_bad_tz": "Europe/Lisbon", "act_unknown": "Europe/Lisbon"}


@pytest.mark.slow
def test_fresh_insights_flow_on_and_timed_work_follows_each_accounts_clock(dagster_instance, engine, monkeypatch):
    monkeypatch.setenv("ADS_ML_SCHEDULE_TIMEZONE", "UTC")
    _accounts(engine)
    accounts = ["act_utc", "act_sp"]
    ticks = Ticks(dagster_instance)
    day = dt.datetime(2026, 11, 24, tzinfo=UTC)  # a Tuesday
    dagster_instance.add_dynamic_partitions("ad_account", accounts[:1])  # there before the automation
    assert ticks.at(day) == {}  # no insights yet
    dagster_instance.add_dynamic_partitions("ad_account", accounts[1:])
    assert ticks.at(day + dt.timedelta(seconds=30)) == {}  # a new account, no insights yet

    for account in accounts:
        materialize_account(account, INSIGHTS, instance=dagster_instance)
    requested = ticks.at(day + dt.timedelta(minutes=1))
    # fresh insights of new accounts: everything they need, in one run per account (Dagster orders
    # the assets requested together by their dependencies)
    # (the Meta sync's assets run on their own clock, and only with a Meta token: test_meta_sync.py)
    derived = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()} - {
        *INSIGHTS, "impact_reports", "meta_ad_accounts", "meta_sync"}
    assert requested == {name: set(accounts) for name in derived}, requested

    # Everything materialised once; after that, only the clock and fresh data start work.
    for account in accounts:
        materialize_account(account, None, instance=dagster_instance)
    ticks.at(day + dt.timedelta(minutes=2))
    quiet = ticks.at(day + dt.timedelta(minutes=3))
    assert quiet == {}, quiet

    # 03:00 UTC: tier training for the UTC account; 03:00 in São Paulo is 06:00 UTC.
    at_three_utc = ticks.at(day + dt.timedelta(hours=3, seconds=30))
    assert at_three_utc.get("ad_tier_classifier") == {"act_utc"}, at_three_utc
    assert "transfer_classifier" not in at_three_utc  # Mondays only
    assert ticks.at(day + dt.timedelta(hours=3, minutes=1)) == {}  # once per tick
    at_six_utc = ticks.at(day + dt.timedelta(hours=6, seconds=30))
    assert at_six_utc.get("ad_tier_classifier") == {"act_sp"}, at_six_utc
    assert at_six_utc.get("ad_classifications") == {"act_utc"}  # 06:00 local for them

    # New insights of one account: its features and anomalies, then its recommendations follow;
    # forecasts wait for the next calibration.
    materialize_account("act_utc", INSIGHTS, instance=dagster_instance)
    fresh = ticks.at(day + dt.timedelta(hours=6, minutes=40))
    for name in ("ad_features", "adset_anomalies", "ad_anomalies"):
        assert fresh.get(name) == {"act_utc"}, (name, fresh)
    assert "ad_recommendations" not in fresh and "ad_forecasts" not in fresh, fresh
    materialize_account("act_utc", [f"{level}_{kind}" for level in LEVELS for kind in ("features", "anomalies")],
                        instance=dagster_instance)
    after = ticks.at(day + dt.timedelta(hours=6, minutes=41))
    assert after.get("adset_recommendations") == {"act_utc"}, after

    # Ad anomalies run at most once per two-hour tick: fresh insights at 07:10 wait until 08:00.
    materialize_account("act_utc", INSIGHTS, instance=dagster_instance)
    again = ticks.at(day + dt.timedelta(hours=7, minutes=10))
    assert again.get("adset_anomalies") == {"act_utc"} and "ad_anomalies" not in again, again
    assert ticks.at(day + dt.timedelta(hours=8, seconds=30)).get("ad_anomalies") == {"act_utc"}


@pytest.mark.slow
def test_a_failed_blocking_check_holds_the_accounts_downstream_assets_back_until_fixed(dagster_instance, engine, tmp_path):
    from ads_ml.demo import generate_account
    from ads_ml.ingest.insights import import_insights

    ticks = Ticks(dagster_instance)
    day = dt.datetime(2026, 11, 24, tzinfo=UTC)
    accounts = ["act_good", "act_bad"]
    data = generate_account(n_campaigns=1, adsets_per_campaign=2, ads_per_adset=2, days=40, end_date=day.date(), seed=4)
    path = tmp_path / "insights.csv"
    data.insights.to_csv(path, index=False)
    for account in accounts:
        import_insights(engine, path, account)
    dagster_instance.add_dynamic_partitions("ad_account", accounts)
    ticks.at(day)
    # a row no import would accept reached act_bad's ads (another writer, a bad migration): negative spend
    with engine.begin() as conn:
        conn.execute(sa.text("update daily_insights set spend = -5 where account_id = 'act_bad' and entity_type = 'ad' "
                             "and id = (select min(id) from daily_insights where account_id = 'act_bad' and entity_type = 'ad')"))
    for account in accounts:
        result = materialize_account(account, INSIGHTS, instance=dagster_instance, raise_on_error=False)
        checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
                  for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
                  and e.asset_check_evaluation_data.asset_key == dg.AssetKey("ad_insights")}
        assert checks["no_negative_spend"] is (account == "act_good"), checks
    requested = ticks.at(day + dt.timedelta(minutes=1))
    # the bad account's ad-level assets wait; its other levels and the good account go on
    assert requested["ad_features"] == {"act_good"} and "act_bad" not in requested.get("ad_anomaly_model", set()), requested
    assert requested["adset_features"] == {"act_good", "act_bad"}, requested

    # fixed and re-checked: the held-back assets run
    with engine.begin() as conn:
        conn.execute(sa.text("update daily_insights set spend = 5 where account_id = 'act_bad' and spend < 0"))
    materialize_account("act_bad", INSIGHTS, instance=dagster_instance)
    fixed = ticks.at(day + dt.timedelta(minutes=2))
    assert fixed.get("ad_features") == {"act_bad"}, fixed
