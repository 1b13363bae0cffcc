"""``ads-ml``: migrate, import, sync, accounts, delete, demo, materialize, impact, report.

Exit status 0 on success; otherwise non-zero with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

from ads_ml import settings


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args) or 0
    except KeyboardInterrupt:
        print("ads-ml: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's contract is one line on stderr
        message = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"ads-ml: error: {message}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ads-ml", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="create or upgrade the database schema (idempotent)")
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("import", help="import a CSV file into an ad account")
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, help_text in (
        ("insights", "daily ad-level insights (Meta Ads Manager export or canonical snake_case)"),
        ("changes", "change events: entity_type,entity_id,change_date,change_type,old_value,new_value"),
    ):
        k = kinds.add_parser(kind, help=help_text)
        k.add_argument("file", type=Path)
        k.add_argument("--account", required=True, help="ad account id, e.g. act_1234")
        if kind == "insights":
            k.add_argument("--replace", action="store_true",
                           help="the file replaces the account's insights of the dates it covers "
                                "(ad-days in that range missing from the file are deleted)")
            k.add_argument("--lead-indicator", action="append", default=[], metavar="INDICATOR",
                           help="a result indicator whose Results count as leads (leads types always do); repeatable")
        k.set_defaults(handler=_import)

    p = sub.add_parser("sync", help="pull an ad account's entities, insights and activity log from the Meta "
                       "Marketing API (ADS_ML_META_ACCESS_TOKEN)")
    p.add_argument("--account", required=True, help="ad account id, e.g. act_1234")
    p.add_argument("--since", type=dt.date.fromisoformat, default=None, metavar="YYYY-MM-DD",
                   help="re-pull from this day (default: yesterday and today, or the last 28 days once a day)")
    p.add_argument("--full", action="store_true", help="re-pull the whole 28-day window now")
    p.set_defaults(handler=_sync)

    p = sub.add_parser("accounts", help="ad accounts")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("discover", help="register the ad accounts the Meta token reads (new ones become partitions)")
    k.set_defaults(handler=_discover)

    p = sub.add_parser("alerts", help="where anomalies, urgent recommendations, impact verdicts and digests are sent")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("add", help="add a destination (an Apprise URL: slack://, msteams://, mailto://, json://, …)")
    k.add_argument("--account", default=None, help="the account (default: every account)")
    k.add_argument("--url", required=True)
    k.add_argument("--min-severity", default="high", choices=["low", "medium", "high", "critical"])
    k.add_argument("--kinds", nargs="+", default=["anomaly", "recommendation", "impact", "digest"],
                   choices=["anomaly", "recommendation", "impact", "digest"])
    k.add_argument("--quiet", default=None, metavar="HH-HH", help="quiet hours in the account's timezone, e.g. 22-7")
    k.add_argument("--digest-hour", type=int, default=8, help="the daily digest's hour, account time (default 8)")
    k.set_defaults(handler=_alerts_add)
    k = kinds.add_parser("list", help="the destinations (secrets masked)")
    k.add_argument("--account", default=None)
    k.set_defaults(handler=_alerts_list)
    k = kinds.add_parser("remove", help="remove a destination")
    k.add_argument("id", type=int)
    k.set_defaults(handler=_alerts_remove)
    k = kinds.add_parser("test", help="send a sample message to each destination of an account")
    k.add_argument("--account", required=True)
    k.set_defaults(handler=_alerts_test)

    p = sub.add_parser("delete", help="delete stored data of an ad account (undo a wrong import)")
    kinds = p.add_subparsers(dest="kind", required=True)
    k = kinds.add_parser("insights", help="delete the insights (all levels) of a date range, in one transaction")
    k.add_argument("--account", required=True)
    k.add_argument("--from", dest="first", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    k.add_argument("--to", dest="last", required=True, type=dt.date.fromisoformat, metavar="YYYY-MM-DD")
    k.set_defaults(handler=_delete)

    p = sub.add_parser("demo", help="generate a realistic demo account, import it and run the pipeline")
    p.add_argument("--account", default="act_demo")
    p.add_argument("--campaigns", type=int, default=10)
    p.add_argument("--adsets-per-campaign", type=int, default=3)
    p.add_argument("--ads-per-adset", type=int, default=4)
    p.add_argument("--days", type=int, default=120)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--end-date", type=dt.date.fromisoformat, default=None, help="last day (default yesterday)")
    p.set_defaults(handler=_demo)

    p = sub.add_parser("materialize", help="materialise assets of one account through Dagster")
    p.add_argument("--account", required=True)
    p.add_argument("--select", nargs="+", metavar="ASSET", help="asset names (default: all)")
    p.add_argument("--reference-date", type=dt.date.fromisoformat, default=None)
    p.set_defaults(handler=_materialize)

    p = sub.add_parser("impact", help="before/after impact report of one change, through Dagster")
    p.add_argument("--account", required=True)
    p.add_argument("--entity-type", required=True, choices=settings.ENTITY_TYPES)
    p.add_argument("--entity-id", required=True)
    p.add_argument("--change-date", required=True, type=dt.date.fromisoformat)
    p.add_argument("--change-type", required=True, choices=settings.CHANGE_TYPES)
    p.add_argument("--window-before", type=int, default=settings.IMPACT_DEFAULT_WINDOW_DAYS)
    p.add_argument("--window-after", type=int, default=settings.IMPACT_DEFAULT_WINDOW_DAYS)
    p.set_defaults(handler=_impact)

    p = sub.add_parser("report", help="print what the pipeline knows about an account")
    p.add_argument("--account", required=True)
    p.set_defaults(handler=_report)
    return parser


def _engine():  # noqa: ANN202
    from ads_ml.db.engine import get_engine
    from ads_ml.db.migrate import migrate

    migrate()
    return get_engine()


def _migrate(args: argparse.Namespace) -> int:
    from ads_ml.db.migrate import migrate

    revision = migrate()
    print(f"database at revision {revision}: {_safe_url()}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from ads_ml.ingest.changes import import_changes
    from ads_ml.ingest.insights import import_insights

    engine = _engine()
    if args.kind == "insights":
        result = import_insights(engine, args.file, args.account, replace=args.replace,
                                 lead_indicators=args.lead_indicator)
        print(result.summary())
    else:
        rows = import_changes(engine, args.file, args.account)
        print(f"{args.file.name}: {rows} change events into {args.account}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ads_ml.demo import generate_account
    from ads_ml.ingest.changes import import_changes
    from ads_ml.ingest.insights import import_insights, validate_account_id
    from ads_ml.runner import materialize_account

    validate_account_id(args.account)
    engine = _engine()
    account = generate_account(
        n_campaigns=args.campaigns,
        adsets_per_campaign=args.adsets_per_campaign,
        ads_per_adset=args.ads_per_adset,
        days=args.days,
        end_date=args.end_date,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory() as tmp:
        insights_csv = Path(tmp) / "demo_insights.csv"
        changes_csv = Path(tmp) / "demo_changes.csv"
        account.write_export(insights_csv, changes_csv)
        print(import_insights(engine, insights_csv, args.account).summary())
        print(f"{import_changes(engine, changes_csv, args.account)} change events imported")
    result = materialize_account(args.account)
    print(f"run {result.run_id} succeeded: {len(result.get_asset_materialization_events())} materialisations")
    _print_report(args.account)
    print("open the UI with: .venv/bin/dg dev   (in the repository root)\n"
          "try an import:    .venv/bin/ads-ml import insights examples/sample_insights.csv --account act_sample")
    return 0

def _meta():  # noqa: ANN202
    import os

    from ads_ml.ingest.meta import MetaClient

    token = os.environ.get(settings.META_ACCESS_TOKEN_ENV, "").strip()
    if not token:
        raise RuntimeError(f"no Meta access token: set {settings.META_ACCESS_TOKEN_ENV} (a system user's token with "
                           "ads_read; see README, 'Data from the Meta Marketing API')")
    return MetaClient(token, app_secret=os.environ.get(settings.META_APP_SECRET_ENV) or None)


def _sync(args: argparse.Namespace) -> int:
    from ads_ml.ingest.insights import validate_account_id
    from ads_ml.ingest.sync import sync_account

    validate_account_id(args.account)
    result = sync_account(_engine(), _meta(), args.account, since=args.since, full=True if args.full else None)
    print(result.summary())
    return 0


def _discover(args: argparse.Namespace) -> int:
    from ads_ml.ingest.sync import discover_accounts

    print(discover_accounts(_engine(), _meta(), settings.meta_account_ids()).summary())
    return 0


def _alerts_add(args: argparse.Namespace) -> int:
    from ads_ml.alerts import add_destination, privacy

    quiet = None
    if args.quiet:
        try:
            start, end = (int(h) for h in args.quiet.split("-"))
        except ValueError:
            raise ValueError(f"--quiet {args.quiet!r}: expected two hours, e.g. 22-7") from None
        quiet = (start, end)
    new_id = add_destination(_engine(), args.url, args.account, min_severity=args.min_severity, kinds=args.kinds,
                             quiet=quiet, digest_hour=args.digest_hour)
    print(f"alert destination {new_id}: {privacy(args.url)} for {args.account or 'every account'}")
    return 0


def _alerts_list(args: argparse.Namespace) -> int:
    from ads_ml.alerts import destinations

    for d in destinations(_engine()):
        if args.account and not d.covers(args.account):
            continue
        quiet = f", quiet {d.quiet_start}-{d.quiet_end}" if d.quiet_start is not None else ""
        print(f"{d.key}: {d.shown} — {d.account_id or 'every account'}; {', '.join(d.kinds)}; anomalies ≥ "
              f"{d.min_severity}; digest at {d.digest_hour}:00{quiet}")
    return 0


def _alerts_remove(args: argparse.Namespace) -> int:
    from ads_ml.alerts import remove_destination

    remove_destination(_engine(), args.id)
    print(f"alert destination {args.id} removed")
    return 0


def _alerts_test(args: argparse.Namespace) -> int:
    from ads_ml.alerts import send_test

    results = send_test(_engine(), args.account)
    if not results:
        raise LookupError(f"no alert destination for {args.account}: ads-ml alerts add --account {args.account} --url URL")
    for shown, ok, error in results:
        print(f"{shown}: {'sent' if ok else 'FAILED: ' + error}")
    return 0 if all(ok for _, ok, _ in results) else 1


def _delete(args: argparse.Namespace) -> int:
    from ads_ml.ingest.insights import delete_insights

    deleted = delete_insights(_engine(), args.account, args.first, args.last)
    print(f"{args.account}: {deleted} ad-day rows dated {args.first} .. {args.last} deleted (with their adset "
          "and campaign days); materialise the account again to refresh its analyses")
    return 0


def _materialize(args: argparse.Namespace) -> int:
    from ads_ml.ingest.insights import validate_account_id
    from ads_ml.runner import materialize_account

    validate_account_id(args.account)
    _engine()
    result = materialize_account(args.account, args.select, reference_date=args.reference_date)
    print(f"run {result.run_id} succeeded: {len(result.get_asset_materialization_events())} materialisations")
    return 0


def _impact(args: argparse.Namespace) -> int:
    import json

    from ads_ml.db.engine import get_engine
    from ads_ml.db.models import ImpactReportRow
    from ads_ml.ingest.insights import validate_account_id
    from ads_ml.runner import run_impact
    from sqlalchemy import select

    validate_account_id(args.account)
    _engine()
    result = run_impact(args.account, {
        "entity_type": args.entity_type, "entity_id": args.entity_id,
        "change_date": args.change_date.isoformat(), "change_type": args.change_type,
        "window_before": args.window_before, "window_after": args.window_after,
    })
    r = ImpactReportRow
    with get_engine().connect() as conn:
        row = conn.execute(select(r.status, r.overall_impact, r.recommendation, r.metric_changes).where(
            r.account_id == args.account, r.entity_type == args.entity_type, r.entity_id == args.entity_id,
            r.change_date == args.change_date, r.change_type == args.change_type,
            r.window_before == args.window_before, r.window_after == args.window_after,
        )).one()
    changes = row.metric_changes if isinstance(row.metric_changes, dict) else json.loads(row.metric_changes)
    print(f"run {result.run_id}: {args.change_type} of {args.entity_type} {args.entity_id} on {args.change_date} — "
          f"{row.status}, {row.overall_impact}")
    for metric, c in changes.items():
        if c.get("p_value") is None:
            print(f"  {metric}: not enough days")
            continue
        print(f"  {metric}: {c['pct_change']:+.1f} % (against controls {c['adjusted_pct_change']:+.1f} %), "
              f"p {c['p_value']:.3f}{' significant' if c['is_significant'] else ''}, d {c['effect_size']:+.2f}")
    print(f"  {row.recommendation}")
    return 0


def _report(args: argparse.Namespace) -> int:
    _engine()
    _print_report(args.account)
    return 0


def _print_report(account_id: str) -> None:
    from ads_ml.db.engine import get_engine
    from ads_ml.db.queries import (
        account_currency,
        account_exists,
        actions_summary,
        current_impact_reports,
        forecast_and_anomaly_summary,
        latest_classifications,
        load_features,
        reference_date,
        top_findings,
    )

    engine = get_engine()
    if not account_exists(engine, account_id):
        raise LookupError(f"account {account_id} not found: import insights into it first")
    from ads_ml.ml.metrics import format_value

    currency = account_currency(engine, account_id)
    impacts = current_impact_reports(engine, account_id)
    print(f"account {account_id} — reference date {reference_date(engine, account_id) or 'none (no insights)'}"
          f"; amounts in {currency or 'the account currency (not recorded)'}")
    for level in settings.ENTITY_TYPES:
        features = load_features(engine, account_id, level)
        if features.empty:
            print(f"  {level}s: no features yet (ads-ml materialize --account {account_id})")
            continue
        active = int(features["is_active"].sum())
        spend = features["spend_7d"].sum()
        leads = features["leads_7d"].sum()
        print(
            f"  {level}s: {len(features)} ({active} active); last 7 days spend {format_value('spend', spend, currency)}, "
            f"leads {leads:,.0f}, CPL {format_value('cpl', spend / leads if leads else None, currency)}"
        )
        tiers = latest_classifications(engine, account_id, level)
        if not tiers.empty:
            counts = ", ".join(f"{tier} {n}" for tier, n in tiers["tier"].value_counts().items())
            methods = ", ".join(f"{m} {n}" for m, n in tiers["method"].value_counts().items())
            print(f"    tiers ({tiers['reference_date'].iloc[0]}): {counts}  [by {methods}]")
        for summary in (forecast_and_anomaly_summary(engine, account_id, level),
                        actions_summary(engine, account_id, level)):
            if summary:
                print(f"    {summary}")
        for line in top_findings(engine, account_id, level):
            print(f"      - {line}")
        reports = impacts.loc[impacts["entity_type"] == level].head(settings.REPORT_IMPACT_ROWS) if len(impacts) else impacts
        for r in reports.itertuples():
            print(f"      - {r.change_type.replace('_', ' ')} of {level} {r.entity_id} on {r.change_date}: "
                  f"{r.overall_impact} (verdict of record, {r.window_after}-day after-window"
                  + (f"; {r.history}" if r.history and "," in r.history else "") + ")")


def _safe_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.database_url()).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
