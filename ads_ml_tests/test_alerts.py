"""Alerts through Apprise to real receivers (a local JSON webhook and a local SMTP server), on SQLite
and PostgreSQL: the content (names, numbers with the currency, links), exactly once across
restarts, re-materialisations and two deliverers at once, retries after the receiver fails, quiet
hours, and the daily digest at its hour in two timezones."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from ads_ml.alerts import add_destination, deliver, send_test
from ads_ml.db.engine import get_engine
from ads_ml.db.models import (
    Ad,
    AdAccount,
    Adset,
    Anomaly,
    Campaign,
    Classification,
    ImpactReportRow,
    Recommendation,
    SentAlert,
    utcnow,
)
from ads_ml_tests.receivers import Mailbox, Webhook

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 09:00 in São Paulo, 21:00 in Tokyo


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.stop()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.stop()


def _account(engine: sa.Engine, account_id: str = "act_1", timezone: str = "America/Sao_Paulo") -> None:
    t = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(AdAccount).values(id=account_id, name=f"Clinic {account_id}", is_active=True,
                                                 currency="BRL", timezone=timezone, created_at=t, updated_at=t))
        conn.execute(sa.insert(Campaign).values(account_id=account_id, id="100", name="Leads BR", status="ACTIVE",
                                                created_at=t, updated_at=t))
        conn.execute(sa.insert(Adset).values(account_id=account_id, id="200", campaign_id="100", name="Women 25-45",
                                             status="ACTIVE", created_at=t, updated_at=t))
        conn.execute(sa.insert(Ad).values(account_id=account_id, id="300", adset_id="200", campaign_id="100",
                                          name="Video testimonial", status="ACTIVE", created_at=t, updated_at=t))


def _anomaly(engine, account_id="act_1", severity="high", metric="spend", day=dt.date(2026, 11, 23), observed=992.7,
             detected=NOW - dt.timedelta(minutes=10)) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        conn.execute(sa.insert(Anomaly).values(
            account_id=account_id, entity_type="ad", entity_id="300", metric=metric, anomaly_date=day,
            observed_value=observed, expected_value=35.99, deviation_score=12.5, direction="up", severity=severity,
            method="robust_z+forest", kind="spike", detected_at=detected))


def _results(engine, account_id="act_1") -> None:  # noqa: ANN001
    _anomaly(engine, account_id)
    _anomaly(engine, account_id, severity="low", metric="ctr", observed=0.41)
    with engine.begin() as conn:
        conn.execute(sa.insert(Recommendation).values(
            account_id=account_id, entity_type="adset", entity_id="200", recommendation_type="PAUSE", priority="high",
            confidence=0.82, reason="spent 412.00 without a lead in 7 days (3.1 account CPLs)",
            suggested_action={"type": "status", "status": "PAUSED"}, evidence={}, status="OPEN",
            reference_date=dt.date(2026, 11, 23), created_at=NOW - dt.timedelta(minutes=5),
            expires_at=NOW + dt.timedelta(days=7), updated_at=NOW))
        conn.execute(sa.insert(Recommendation).values(
            account_id=account_id, entity_type="ad", entity_id="300", recommendation_type="CREATIVE_TEST",
            priority="low", confidence=0.5, reason="one ad carries the adset", suggested_action={}, evidence={},
            status="OPEN", reference_date=dt.date(2026, 11, 23), created_at=NOW - dt.timedelta(minutes=5),
            expires_at=NOW + dt.timedelta(days=7), updated_at=NOW))
        conn.execute(sa.insert(ImpactReportRow).values(
            account_id=account_id, entity_type="adset", entity_id="200", change_date=dt.date(2026, 11, 10),
            change_type="budget_change", status="complete", overall_impact="positive", metric_changes={},
            recommendation="The budget increase brought more leads at the same CPL: keep it.",
            counterfactual="siblings", window_before=7, window_after=7, analyzed_at=NOW - dt.timedelta(minutes=3)))
        conn.execute(sa.insert(Classification).values(
            account_id=account_id, entity_type="ad", entity_id="300", reference_date=dt.date(2026, 11, 23),
            tier="LOW", previous_tier="HIGH_PERFORMER", tier_change_direction="declined", feature_importances={},
            method="rules", valid_until=dt.date(2026, 11, 30), classified_at=NOW - dt.timedelta(hours=2)))


def _sent(engine) -> list[tuple]:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(sa.select(SentAlert.destination, SentAlert.kind, SentAlert.status, SentAlert.attempts)
                            .order_by(SentAlert.id)).all()


def test_alerts_carry_names_numbers_and_links_to_webhook_and_email(engine, webhook, mailbox, monkeypatch):
    monkeypatch.setenv("ADS_ML_UI_URL", "http://dagster.example:3000")
    _account(engine)
    _results(engine)
    add_destination(engine, webhook.url, "act_1", min_severity="high", kinds=["anomaly", "recommendation", "impact"])
    add_destination(engine, mailbox.url, None, min_severity="low", kinds=["anomaly"])
    report = deliver(engine, now=NOW)
    assert report.failed == 0 and report.sent == 5  # webhook: anomaly, recommendation, verdict; e-mail: 2 anomalies
    titles = {m["title"]: m["message"] for m in webhook.received}
    anomaly = next(body for title, body in titles.items() if title.startswith("New anomalies"))
    assert 'ad "Video testimonial" (300): spend 992.70 BRL vs expected 35.99 BRL on 2026-11-23' in anomaly
    assert "**HIGH**" in anomaly and "ctr" not in anomaly  # the low CTR anomaly is below this destination's bar
    assert "http://dagster.example:3000/assets/ad_anomalies?partition=act_1" in anomaly
    recommendation = next(body for title, body in titles.items() if title.startswith("Urgent recommendations"))
    assert 'PAUSE** adset "Women 25-45" (200)' in recommendation and "CREATIVE_TEST" not in recommendation
    verdict = next(body for title, body in titles.items() if title.startswith("Impact verdicts"))
    assert "**positive**: budget change of adset" in verdict and "keep it" in verdict
    (subject, text), = mailbox.messages
    assert subject.startswith("New anomalies — Clinic act_1 (act_1): 2")
    assert "ctr 0.41 % vs expected" in text and "992.70 BRL" in text


def test_exactly_once_across_restart_rematerialisation_and_two_deliverers(engine, webhook):
    _account(engine)
    _results(engine)
    add_destination(engine, webhook.url, "act_1", kinds=["anomaly"])
    barrier = threading.Barrier(2)
    reports = []

    def deliverer() -> None:
        barrier.wait()
        reports.append(deliver(engine, now=NOW))

    threads = [threading.Thread(target=deliverer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(webhook.received) == 1 and sum(r.sent for r in reports) == 1
    # a restart (a fresh call) and the partition re-materialised: rows replaced under new ids
    with engine.begin() as conn:
        conn.execute(sa.delete(Anomaly))
    _anomaly(engine, detected=NOW + dt.timedelta(minutes=50))
    again = deliver(engine, now=NOW + dt.timedelta(hours=1))
    assert again.sent == 0 and again.deduplicated == 1 and len(webhook.received) == 1
    # a new anomaly of the next day is a new alert
    _anomaly(engine, day=dt.date(2026, 11, 24), detected=NOW + dt.timedelta(hours=1, minutes=5))
    assert deliver(engine, now=NOW + dt.timedelta(hours=1, minutes=6)).sent == 1 and len(webhook.received) == 2


def test_a_failing_receiver_is_retried_with_backoff_without_holding_back_the_others(engine, webhook, mailbox):
    _account(engine)
    _results(engine)
    add_destination(engine, webhook.url, "act_1", kinds=["anomaly"])
    add_destination(engine, mailbox.url, "act_1", kinds=["anomaly"])
    webhook.fail_next = 1
    first = deliver(engine, now=NOW)
    assert first.failed == 1 and first.sent == 1 and len(mailbox.messages) == 1
    assert "127.0.0.1" in first.errors[0] or "500" in first.errors[0]
    assert deliver(engine, now=NOW + dt.timedelta(seconds=10)).deferred == 1  # its retry time has not come
    retry = deliver(engine, now=NOW + dt.timedelta(seconds=31))
    assert retry.sent == 1 and retry.retried == 1 and len(webhook.received) == 1
    assert [row[2:] for row in _sent(engine)] == [("SENT", 2), ("SENT", 1)]


def test_quiet_hours_hold_alerts_until_they_end(engine, webhook):
    _account(engine, timezone="America/Sao_Paulo")  # UTC-3
    add_destination(engine, webhook.url, "act_1", kinds=["anomaly"], quiet=(22, 7))
    late = dt.datetime(2026, 11, 24, 2, 30, tzinfo=UTC)  # 23:30 in São Paulo
    _anomaly(engine, day=dt.date(2026, 11, 24), detected=late - dt.timedelta(minutes=5))
    assert deliver(engine, now=late).deferred >= 1 and webhook.received == []
    assert deliver(engine, now=dt.datetime(2026, 11, 24, 9, 55, tzinfo=UTC)).sent == 0  # 06:55 local
    morning = deliver(engine, now=dt.datetime(2026, 11, 24, 10, 5, tzinfo=UTC))  # 07:05 local
    assert morning.sent == 1 and len(webhook.received) == 1


def test_the_daily_digest_comes_at_its_hour_in_each_accounts_timezone(engine, webhook, monkeypatch):
    monkeypatch.setenv("ADS_ML_UI_URL", "http://dagster.example:3000")
    _account(engine, "act_sp", "America/Sao_Paulo")  # UTC-3
    _account(engine, "act_tk", "Asia/Tokyo")  # UTC+9
    for account in ("act_sp", "act_tk"):
        _results(engine, account)
    add_destination(engine, webhook.url, None, kinds=["digest"], digest_hour=8)
    # 10:30 UTC: 07:30 in São Paulo (not yet), 19:30 in Tokyo (due)
    deliver(engine, now=dt.datetime(2026, 11, 24, 10, 30, tzinfo=UTC))
    assert [m["title"] for m in webhook.received] == ["Daily digest: Clinic act_tk (act_tk)"]
    body = webhook.received[0]["message"]
    for heading in ("## Top recommendations", "## Anomalies of the last day", "## Impact verdicts of the last day",
                    "## Tiers that changed"):
        assert heading in body
    assert '**PAUSE** (high) adset "Women 25-45" (200)' in body
    assert 'ad "Video testimonial" (300): HIGH_PERFORMER → LOW (declined)' in body
    assert "(http://dagster.example:3000/assets/ad_recommendations?partition=act_tk)" in body
    deliver(engine, now=dt.datetime(2026, 11, 24, 11, 5, tzinfo=UTC))  # 08:05 in São Paulo
    assert [m["title"] for m in webhook.received][1:] == ["Daily digest: Clinic act_sp (act_sp)"]
    deliver(engine, now=dt.datetime(2026, 11, 24, 14, 0, tzinfo=UTC))  # once a day
    assert len(webhook.received) == 2
    deliver(engine, now=dt.datetime(2026, 11, 24, 23, 5, tzinfo=UTC))  # 08:05 on the 25th in Tokyo
    assert [m["title"] for m in webhook.received][2:] == ["Daily digest: Clinic act_tk (act_tk)"]


def test_test_message_and_secrets_never_shown(engine, webhook, mailbox):
    _account(engine)
    secret_hook = webhook.url.replace("/hook", "/hook?token=s3cr3t-t0ken")
    add_destination(engine, secret_hook, "act_1")
    add_destination(engine, "json://127.0.0.1:9/dead", "act_1")  # nothing listens there
    results = send_test(engine, "act_1")
    assert [ok for _, ok, _ in results] == [True, False]
    assert all("s3cr3t" not in shown and "s3cr3t" not in error for shown, _, error in results)
    assert webhook.received[0]["title"] == "ads_ml test — Clinic act_1 (act_1)"
    with pytest.raises(ValueError, match="not an Apprise URL"):
        add_destination(engine, "nonsense://x", "act_1")


def test_cli_alerts_add_list_test(db_url, webhook, tmp_path):
    import subprocess
    import sys

    env = {"ADS_ML_DATABASE_URL": db_url, "DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    _account(get_engine(db_url))
    run = lambda *args: subprocess.run([sys.executable, "-m", "ads_ml.cli", "alerts", *args], env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=120)
    secret = webhook.url.replace("/hook", "/hook/s3cr3t")
    out = run("add", "--account", "act_1", "--url", secret, "--min-severity", "medium", "--quiet", "22-7")
    assert out.returncode == 0 and "alert destination 1" in out.stdout and "s3cr3t" not in out.stdout, out.stderr
    out = run("list")
    assert "db:1" in out.stdout and "anomalies ≥ medium" in out.stdout and "quiet 22-7" in out.stdout
    assert "s3cr3t" not in out.stdout
    out = run("test", "--account", "act_1")
    assert out.returncode == 0 and ": sent" in out.stdout and len(webhook.received) == 1
    out = run("add", "--account", "act_nope", "--url", webhook.url)
    assert out.returncode == 1 and "account act_nope not found" in out.stderr


def test_a_later_window_is_pushed_only_when_it_changes_the_verdict(engine, webhook):
    _account(engine)
    _results(engine)
    with engine.begin() as conn:
        for entity, window, verdict in (("200", 14, "positive"), ("201", 7, "neutral"), ("201", 14, "positive")):
            conn.execute(sa.insert(ImpactReportRow).values(
                account_id="act_1", entity_type="adset", entity_id=entity, change_date=dt.date(2026, 11, 1),
                change_type="budget_change", status="complete", overall_impact=verdict, metric_changes={},
                recommendation=f"verdict at {window} days", counterfactual="controls", window_before=7,
                window_after=window, analyzed_at=NOW - dt.timedelta(minutes=2)))
        conn.execute(sa.update(ImpactReportRow).where(ImpactReportRow.entity_id == "200").values(change_date=dt.date(2026, 11, 1)))
    add_destination(engine, webhook.url, "act_1", min_severity="high", kinds=["impact"])
    assert deliver(engine, now=NOW).failed == 0
    verdict = next(m["message"] for m in webhook.received if m["title"].startswith("Impact verdicts"))
    lines = [line for line in verdict.splitlines() if line.startswith("- **")]
    # adset 200: positive at 7 days, confirmed at 14 (not pushed again); adset 201: neutral, then positive
    assert len(lines) == 3, lines
    assert sum("(200)" in line or " 200 " in line or "200)" in line for line in lines) == 1
    assert any("positive" in line and "14 after" in line and "201" in line for line in lines)
