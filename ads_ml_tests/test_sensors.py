"""The two sensors, evaluated against a real instance and database."""

from __future__ import annotations

import threading

import dagster as dg
import sqlalchemy as sa

from ads_ml.db.engine import begin_write
from ads_ml.db.models import AdAccount
from ads_ml.db.queries import record_import_batch
from ads_ml.defs.resources import DatabaseResource, MetaResource
from ads_ml.defs.sensors import ad_account_partitions_sensor, new_insights_sensor
from ads_ml.ingest.insights import import_insights
from ads_ml_tests.helpers import CANONICAL, write_csv


def _context(instance, db_url, cursor=None, meta_token=None):
    return dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "database": DatabaseResource(url=db_url), "meta": MetaResource(access_token=meta_token)})


def _apply(instance, result: dg.SensorResult) -> None:
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def test_partitions_follow_active_accounts(dagster_instance, engine, db_url, tmp_path):
    import_insights(engine, write_csv(tmp_path / "a.csv", CANONICAL), "act_alpha")
    import_insights(engine, write_csv(tmp_path / "b.csv", CANONICAL), "act_beta")
    import_insights(engine, write_csv(tmp_path / "c.csv", CANONICAL), "act_gone")
    first = ad_account_partitions_sensor(_context(dagster_instance, db_url))
    _apply(dagster_instance, first)
    assert dagster_instance.get_dynamic_partitions("ad_account") == ["act_alpha", "act_beta", "act_gone"]
    assert "added act_alpha, act_beta, act_gone" in first.skip_reason.skip_message

    # act_beta deactivated, act_gone deleted, act_9999 added in the UI: the partition of an account
    # nobody ever had is registered as an ad account, not removed
    dagster_instance.add_dynamic_partitions("ad_account", ["act_9999"])
    with engine.begin() as conn:
        conn.execute(sa.update(AdAccount).where(AdAccount.id == "act_beta").values(is_active=False))
        for table in ("daily_insights", "ads", "adsets", "campaigns", "import_batches", "ad_accounts"):
            conn.execute(sa.text(f"delete from {table} where {'id' if table == 'ad_accounts' else 'account_id'} = 'act_gone'"))
    result = ad_account_partitions_sensor(_context(dagster_instance, db_url, first.cursor))
    requests = {type(r).__name__: sorted(r.partition_keys) for r in result.dynamic_partitions_requests}
    assert requests == {"DeleteDynamicPartitionsRequest": ["act_beta", "act_gone"]}
    message = result.skip_reason.skip_message
    assert "registered act_9999 (partitions added in the UI)" in message and "import their insights" in message
    assert "removed act_beta (deactivated)" in message and "removed act_gone (deleted from ad_accounts)" in message
    _apply(dagster_instance, result)
    assert sorted(dagster_instance.get_dynamic_partitions("ad_account")) == ["act_9999", "act_alpha"]
    with engine.connect() as conn:
        row = conn.execute(sa.select(AdAccount.name, AdAccount.is_active).where(AdAccount.id == "act_9999")).one()
        assert tuple(row) == ("act_9999", True)
        assert conn.execute(sa.text("select count(*) from meta_sync_state")).scalar_one() == 0  # Meta not configured

    again = ad_account_partitions_sensor(_context(dagster_instance, db_url, result.cursor))
    assert not again.dynamic_partitions_requests and again.skip_reason.skip_message == "2 account partitions up to date"


def test_a_partition_added_in_the_ui_is_synced_from_meta_when_configured(dagster_instance, engine, db_url):
    from ads_ml.ingest.sync import meta_synced_accounts

    dagster_instance.add_dynamic_partitions("ad_account", ["act_4242", "not an id!"])
    result = ad_account_partitions_sensor(_context(dagster_instance, db_url, meta_token="token"))
    assert not result.dynamic_partitions_requests
    assert "registered act_4242 (partitions added in the UI) as ad accounts, synced from Meta" in result.skip_reason.skip_message
    assert "kept not an id! unregistered" in result.skip_reason.skip_message
    assert meta_synced_accounts(engine) == {"act_4242"}


def test_new_insight_rows_request_a_refresh_of_that_account_only(dagster_instance, engine, db_url, tmp_path):
    first = write_csv(tmp_path / "first.csv", CANONICAL)
    import_insights(engine, first, "act_one")

    result = new_insights_sensor(_context(dagster_instance, db_url))
    assert [r.partition_key for r in result.run_requests] == ["act_one"]
    assert [list(r.partition_keys) for r in result.dynamic_partitions_requests] == [["act_one"]]
    assert result.run_requests[0].job_name in (None, "insights_refresh")
    cursor = result.cursor
    _apply(dagster_instance, result)

    # Nothing new: no run. Re-importing the same file is nothing new either.
    assert not new_insights_sensor(_context(dagster_instance, db_url, cursor)).run_requests
    import_insights(engine, first, "act_one")
    assert not new_insights_sensor(_context(dagster_instance, db_url, cursor)).run_requests

    # New rows for another account: only that one.
    import_insights(engine, write_csv(tmp_path / "two.csv", CANONICAL), "act_two")
    result = new_insights_sensor(_context(dagster_instance, db_url, cursor))
    assert [r.partition_key for r in result.run_requests] == ["act_two"]
    cursor = result.cursor

    # A corrected value in the first account: a run for it.
    corrected = CANONICAL.replace("1200,900,25,12.0,3,2", "1200,900,25,13.0,3,2")
    import_insights(engine, write_csv(tmp_path / "fix.csv", corrected), "act_one")
    result = new_insights_sensor(_context(dagster_instance, db_url, cursor))
    assert [r.partition_key for r in result.run_requests] == ["act_one"]
    assert not result.dynamic_partitions_requests  # the partition exists already


def test_inactive_account_gets_no_run(dagster_instance, engine, db_url, tmp_path):
    import_insights(engine, write_csv(tmp_path / "x.csv", CANONICAL), "act_off")
    with engine.begin() as conn:
        conn.execute(sa.update(AdAccount).where(AdAccount.id == "act_off").values(is_active=False))
    result = new_insights_sensor(_context(dagster_instance, db_url))
    assert not result.run_requests and result.cursor is not None


def test_sensors_skip_with_a_reason_before_the_database_is_migrated(dagster_instance, tmp_path):
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    for sensor in (ad_account_partitions_sensor, new_insights_sensor):
        result = sensor(_context(dagster_instance, fresh))
        assert not result.run_requests and "run `ads-ml migrate`" in result.skip_reason.skip_message


def test_an_import_that_commits_after_a_later_one_is_not_skipped(backend, dagster_instance, engine, db_url, tmp_path):
    """A long import (begun first, committed last) and a short one: the sensor sees both, once each.
    On SQLite the short one waits for the long one's write lock; on PostgreSQL it commits first and
    the cursor holds back until the long one's transaction has finished."""
    import_insights(engine, write_csv(tmp_path / "long.csv", CANONICAL), "act_long")
    import_insights(engine, write_csv(tmp_path / "short.csv", CANONICAL), "act_short")
    cursor = new_insights_sensor(_context(dagster_instance, db_url)).cursor

    holding, release = threading.Event(), threading.Event()

    def long_import() -> None:
        with begin_write(engine) as conn:
            conn.execute(sa.text("update daily_insights set spend = spend + 1 where account_id = 'act_long'"))
            record_import_batch(conn, "act_long", "insights", 1)
            holding.set()
            assert release.wait(timeout=60)

    corrected = CANONICAL.replace("1200,900,25,12.0,3,2", "1200,900,25,13.0,3,2")
    long_thread = threading.Thread(target=long_import)
    long_thread.start()
    assert holding.wait(timeout=30)
    short_thread = threading.Thread(target=import_insights, args=(engine, write_csv(tmp_path / "fix.csv", corrected), "act_short"))
    short_thread.start()
    short_thread.join(timeout=5)
    assert short_thread.is_alive() == (backend == "sqlite")  # SQLite: one writer at a time

    during = new_insights_sensor(_context(dagster_instance, db_url, cursor))
    assert not during.run_requests  # nothing is final yet in commit order
    release.set()
    long_thread.join(timeout=60)
    short_thread.join(timeout=60)

    after = new_insights_sensor(_context(dagster_instance, db_url, during.cursor))
    assert sorted(r.partition_key for r in after.run_requests) == ["act_long", "act_short"]
    assert not new_insights_sensor(_context(dagster_instance, db_url, after.cursor)).run_requests


def test_a_cursor_from_before_import_batches_starts_from_the_batches_there_are(dagster_instance, engine, db_url, tmp_path):
    import_insights(engine, write_csv(tmp_path / "a.csv", CANONICAL), "act_old")
    result = new_insights_sensor(_context(dagster_instance, db_url, "2026-11-20T10:00:00+00:00"))
    assert [r.partition_key for r in result.run_requests] == ["act_old"]


def test_first_start_does_not_refresh_what_the_insights_already_reflect(dagster_instance, engine, db_url, tmp_path):
    """`ads-ml demo` imports and runs the pipeline; the daemon's first tick then finds the import,
    whose data every insights asset already read: no run. A later import is refreshed as always."""
    from ads_ml.runner import materialize_account

    import_insights(engine, write_csv(tmp_path / "a.csv", CANONICAL), "act_first")
    assert materialize_account("act_first", ["campaign_insights", "adset_insights", "ad_insights"],
                               instance=dagster_instance).success
    first = new_insights_sensor(_context(dagster_instance, db_url))
    assert not first.run_requests and "already reflect their latest import" in first.skip_reason.skip_message
    corrected = CANONICAL.replace("1200,900,25,12.0,3,2", "1200,900,25,13.0,3,2")
    import_insights(engine, write_csv(tmp_path / "fix.csv", corrected), "act_first")
    later = new_insights_sensor(_context(dagster_instance, db_url, first.cursor))
    assert [r.partition_key for r in later.run_requests] == ["act_first"]
