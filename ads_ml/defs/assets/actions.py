"""Actions: ``{level}_recommendations`` (rule engine, into ml_recommendations) and
``impact_reports`` (before/after verdicts of change events, into ml_impact_reports)."""

import datetime as dt

import dagster as dg
import pandas as pd
from pydantic import Field

from ads_ml import settings
from ads_ml.db.queries import (
    LevelFeatures,
    LevelInsights,
    account_currency,
    current_impact_reports,
    latest_anomalies,
    latest_classifications,
    load_change_events,
    all_impact_reports,
    reported_windows,
    store_impact_reports,
    store_recommendations,
)
from ads_ml.defs.automation import on_fresh_inputs
from ads_ml.defs.common import LEVELS, OWNERS, retry_transient, entity_names, markdown_table, no_data_metadata, with_names
from ads_ml.defs.io_managers import stored_as
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource
from ads_ml.ml.impact import LevelData, analyse_changes, verdict_history
from ads_ml.ml.recommendations import recommend


def build_recommendations_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_recommendations",
        automation_condition=on_fresh_inputs(),
        deps=[f"{level}_classifications", f"{level}_anomalies"],
        metadata=stored_as("table", level),
        ins={"features": dg.AssetIn(f"{level}_features"), "insights": dg.AssetIn(f"{level}_insights")},
        partitions_def=ad_account_partitions,
        group_name="actions",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Recommended actions per {level} from the rule engine (scale up, budget up/down, pause, "
            "reactivate" + (", audience review/expansion/narrowing" if level == "adset" else "")
            + (", creative refresh/test/winner" if level == "ad" else "") + ") with priority, "
            "confidence, the reason in numbers and the suggested change; uses the tiers and anomalies "
            "when they exist. An OPEN recommendation is not issued twice; past expiry it is EXPIRED."
        ),
    )
    @retry_transient
    def _recommendations(
        context: dg.AssetExecutionContext, features: LevelFeatures, insights: LevelInsights, database: DatabaseResource
    ) -> pd.DataFrame:
        engine = database.engine()
        budgets = insights.entities.set_index(insights.entities["entity_id"].astype(str))["daily_budget"]
        tiers = latest_classifications(engine, features.account_id, level)
        anomalies = latest_anomalies(engine, features.account_id, level)
        frame = recommend(level, features.features, budgets=budgets, tiers=tiers, anomalies=anomalies,
                          currency=account_currency(engine, features.account_id))
        counts = store_recommendations(engine, features.account_id, level, features.reference_date, frame,
                                       settings.RECOMMENDATION_EXPIRY_DAYS)
        priority = {"high": 0, "medium": 1, "low": 2}
        top = frame.assign(_p=frame["priority"].map(priority)).sort_values(["_p", "confidence"], ascending=[True, False])
        context.add_output_metadata({
            **no_data_metadata(insights.has_data, features.account_id),
            **counts,
            "by_type": dg.MetadataValue.json(frame["recommendation_type"].value_counts().to_dict()),
            "used_tiers": bool(len(tiers)),
            "used_anomalies": bool(len(anomalies)),
            "top_recommendations": dg.MetadataValue.md(markdown_table(with_names(
                top[["entity_id", "recommendation_type", "priority", "confidence", "reason"]],
                entity_names(insights.entities)), max_rows=15)),
        })
        return frame

    return _recommendations


class ImpactConfig(dg.Config):
    """Without an entity: every change event (or the ``change_ids`` given) at each of ``windows``
    whose after-window has elapsed and that has no complete report yet. With an entity: that one
    change at ``window_after``, on demand."""

    change_ids: list[int] = Field(default_factory=list, description="Change events to analyse.")
    windows: list[int] = Field(default_factory=lambda: list(settings.impact_report_windows()),
                               description="After-windows (days) to report each change at, each once it has elapsed.")
    entity_type: str | None = Field(default=None, description="campaign / adset / ad (on demand).")
    entity_id: str | None = None
    change_date: str | None = Field(default=None, description="YYYY-MM-DD (on demand).")
    change_type: str | None = Field(default=None, description=", ".join(settings.CHANGE_TYPES))
    window_before: int = Field(default=settings.IMPACT_DEFAULT_WINDOW_DAYS, ge=settings.IMPACT_MIN_WINDOW_DAYS,
                               le=settings.IMPACT_MAX_WINDOW_DAYS)
    window_after: int = Field(default=settings.IMPACT_DEFAULT_WINDOW_DAYS, ge=settings.IMPACT_MIN_WINDOW_DAYS,
                              le=settings.IMPACT_MAX_WINDOW_DAYS, description="The after-window of an on-demand report.")


def _with_history(sentence: str, window: int, verdict: str, earlier: pd.DataFrame) -> str:
    """A later window's recommendation, saying how the verdict evolved from the earlier windows' reports."""
    if earlier.empty:
        return sentence
    history = verdict_history(pd.concat([earlier, pd.DataFrame([{"window_after": window, "status": "complete",
                                                                 "overall_impact": verdict}])]))
    return f"{sentence} Verdict at {window} days: {verdict} ({history})."


@dg.asset(
    name="impact_reports",
    metadata=stored_as("table"),
    ins={f"{level}_insights": dg.AssetIn(f"{level}_insights") for level in LEVELS},
    partitions_def=ad_account_partitions,
    group_name="actions",
    kinds={"scipy", "sql"},
    owners=OWNERS,
    description=(
        "Before/after impact of change events (budget, creative, audience, pause, reactivate) on cpl, "
        "leads, ctr and spend against the entity's siblings as controls, with an autocorrelation-aware "
        "test; verdict positive / negative / neutral / inconclusive and a recommendation. Written to "
        "ml_impact_reports; produced by a sensor when a change's after-window has elapsed, and on demand."
    ),
)
@retry_transient
def impact_reports(
    context: dg.AssetExecutionContext,
    config: ImpactConfig,
    database: DatabaseResource,
    campaign_insights: LevelInsights,
    adset_insights: LevelInsights,
    ad_insights: LevelInsights,
) -> pd.DataFrame:
    engine = database.engine()
    account_id = context.partition_key
    by_level = {"campaign": campaign_insights, "adset": adset_insights, "ad": ad_insights}
    reference = campaign_insights.reference_date
    if config.entity_id:
        if config.entity_type not in LEVELS or not config.change_date or config.change_type not in settings.CHANGE_TYPES:
            raise dg.Failure("on-demand impact needs entity_type (campaign/adset/ad), entity_id, change_date and "
                             f"change_type ({', '.join(settings.CHANGE_TYPES)})")
        asked = pd.DataFrame([{"id": None, "entity_type": config.entity_type, "entity_id": config.entity_id,
                               "change_date": dt.date.fromisoformat(config.change_date), "change_type": config.change_type}])
        work = [(config.window_after, asked)]
    else:
        asked = load_change_events(engine, account_id, config.change_ids or None)
        done = reported_windows(engine, account_id, config.window_before)
        keys = list(zip(asked["entity_type"], asked["entity_id"], asked["change_date"], asked["change_type"]))
        work = []
        for window in sorted(set(config.windows)):
            if not settings.IMPACT_MIN_WINDOW_DAYS <= window <= settings.IMPACT_MAX_WINDOW_DAYS:
                raise dg.Failure(f"windows: {window} days is outside {settings.IMPACT_MIN_WINDOW_DAYS}–"
                                 f"{settings.IMPACT_MAX_WINDOW_DAYS}")
            due = asked["change_date"].map(lambda d, w=window: d + dt.timedelta(days=w) <= reference)
            fresh = pd.Series([window not in done.get(k, set()) for k in keys], index=asked.index, dtype=bool)
            work.append((window, asked.loc[due & fresh]))
    all_changes = load_change_events(engine, account_id)
    levels = {name: LevelData(i.daily, i.entities, i.start_date, i.reference_date) for name, i in by_level.items()}
    stored = all_impact_reports(engine, account_id)
    rows = []
    for window, changes in work:
        for change, report in analyse_changes(levels, changes, all_changes, config.window_before, window):
            key = (change.entity_type, str(change.entity_id), change.change_date, change.change_type)
            earlier = stored.loc[[k == key for k in zip(stored["entity_type"], stored["entity_id"], stored["change_date"],
                                                        stored["change_type"])]] if len(stored) else stored
            earlier = earlier.loc[(earlier["window_after"] < window) & (earlier["window_before"] == config.window_before)] \
                if len(earlier) else earlier
            earlier = pd.concat([earlier, pd.DataFrame([r for r in rows if (r["entity_type"], r["entity_id"], r["change_date"],
                                                                              r["change_type"]) == key])])
            recommendation = report.recommendation
            if report.status == "complete":
                recommendation = _with_history(recommendation, window, report.overall_impact,
                                               earlier.loc[earlier["status"] == "complete"] if len(earlier) else earlier)
            rows.append({
                "account_id": account_id, "entity_type": change.entity_type, "entity_id": str(change.entity_id),
                "change_event_id": None if change.id is None or pd.isna(change.id) else int(change.id),
                "change_date": change.change_date, "change_type": change.change_type, "status": report.status,
                "overall_impact": report.overall_impact, "metric_changes": report.metric_changes,
                "recommendation": recommendation, "counterfactual": report.counterfactual,
                "window_before": config.window_before, "window_after": window,
            })
    store_impact_reports(engine, rows)
    frame = pd.DataFrame(rows, columns=["entity_type", "entity_id", "change_date", "change_type", "window_after", "status",
                                        "overall_impact", "recommendation", "metric_changes"])
    # What the asset holds now: every change's latest verdict, not only this run's (a run with no
    # change due adds none, and must not look as if the account had no reports).
    current = current_impact_reports(engine, account_id)
    summary = current.assign(
        cpl_change_pct=[((m or {}).get("cpl") or {}).get("pct_change") for m in current["metric_changes"]],
        cpl_p=[((m or {}).get("cpl") or {}).get("p_value") for m in current["metric_changes"]],
        after_days=current["window_after"],
    )
    names = pd.concat([entity_names(i.entities) for i in by_level.values()])
    names = names[~names.index.duplicated()]
    context.log.info(f"{len(frame)} new report(s); the account has {len(current)} change(s) with a verdict")
    context.add_output_metadata({
        **no_data_metadata(campaign_insights.has_data, account_id),
        "reports": len(current),
        "new_in_this_run": len(frame),
        "by_verdict": dg.MetadataValue.json(current["overall_impact"].value_counts().to_dict() if len(current) else {}),
        "reports_table": dg.MetadataValue.md(markdown_table(with_names(
            summary[["change_date", "entity_type", "entity_id", "change_type", "after_days", "status",
                     "overall_impact", "history", "cpl_change_pct", "cpl_p"]], names), max_rows=20)),
        "reports_table_order": "verdict of record per change (its longest complete after-window that reached a verdict), most recent change first",
        "reference_date": reference.isoformat(),
    })
    return frame.drop(columns=["metric_changes"]).assign(metric_changes=frame["metric_changes"].map(str))


recommendation_assets = [build_recommendations_asset(level) for level in LEVELS]
action_assets = [*recommendation_assets, impact_reports]
