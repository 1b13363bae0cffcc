"""The impact analysis on the ground-truth accounts without the CLI: the same pure code the
``impact_reports`` asset runs (:func:`ads_ml.ml.impact.analyse_changes`, over the insights window
the asset loads), on many more seeds than the CLI benchmark can afford, to tune the test.

    .venv/bin/python -m benchmarks.impact_direct [--seeds 1 .. 20] [--volume small large]

Prints, per method, null changes called significant and real changes with the right verdict
(:func:`benchmarks.ground_truth.score_impact`); the figure of record is the CLI benchmark's.
"""

from __future__ import annotations

import argparse

import pandas as pd

from ads_ml import settings
from ads_ml.ml.impact import LevelData, analyse_changes
from benchmarks.ground_truth import level_daily, score_impact
from benchmarks.truth_accounts import generate


def account_levels(truth) -> tuple[dict[str, LevelData], pd.DataFrame]:  # noqa: ANN001
    """The account's levels over the insights window the asset loads, and its change events, as
    :func:`ads_ml.ml.impact.analyse_changes` takes them (any generated account with ``insights``,
    ``changes`` and ``last_day``)."""
    end = truth.last_day
    start = end - pd.Timedelta(days=settings.INSIGHTS_LOOKBACK_DAYS - 1)
    rows = truth.insights.loc[(pd.to_datetime(truth.insights["date"]) >= start) & (pd.to_datetime(truth.insights["date"]) <= end)]
    parents = {"campaign": None, "adset": ("adset_id", "campaign_id"), "ad": ("ad_id", "adset_id")}
    levels = {}
    for level, link in parents.items():
        daily = level_daily(rows, level)
        if link is None:
            entities = pd.DataFrame({"entity_id": daily["entity_id"].unique(), "parent_id": None})
        else:
            entities = rows[list(link)].drop_duplicates().astype(str).set_axis(["entity_id", "parent_id"], axis=1)
        levels[level] = LevelData(daily, entities, start, end)
    changes = truth.changes.assign(change_date=pd.to_datetime(truth.changes["change_date"]), entity_id=truth.changes["entity_id"].astype(str))
    return levels, changes


def reports(truth, windows: tuple[int, ...] = (settings.IMPACT_DEFAULT_WINDOW_DAYS,)) -> pd.DataFrame:  # noqa: ANN001
    """The account's impact reports as the asset stores them, one per change and after-window that
    has elapsed by the last imported day."""
    levels, changes = account_levels(truth)
    end = truth.last_day
    out = []
    for window in windows:
        due = changes.loc[changes["change_date"] + pd.Timedelta(days=window) <= end]
        for change, report in analyse_changes(levels, due, changes, settings.IMPACT_DEFAULT_WINDOW_DAYS, window):
            out.append({"entity_type": change.entity_type, "entity_id": str(change.entity_id), "change_date": change.change_date,
                        "change_type": change.change_type, "status": report.status, "overall_impact": report.overall_impact,
                        "metric_changes": report.metric_changes, "recommendation": report.recommendation,
                        "window_after": window})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--volume", choices=["small", "large"], nargs="+", default=["small", "large"])
    parser.add_argument("--windows", type=int, nargs="+", default=[settings.IMPACT_DEFAULT_WINDOW_DAYS],
                        help="after-windows to report (a change's verdict is its longest elapsed one)")
    args = parser.parse_args()
    totals, rows = [], []
    for volume in args.volume:
        for seed in args.seeds:
            truth = generate(seed, volume)
            scored = score_impact(truth, {"impact": reports(truth, tuple(args.windows))})
            rows.append(scored.pop("rows").assign(seed=seed, volume=volume))
            for name, s in scored.items():
                totals.append({"volume": volume, "seed": seed, "method": name, **s})
    frame = pd.DataFrame(totals).groupby(["method"])[["null_significant", "nulls", "real_right", "reals"]].sum()
    frame["false_call_rate"] = frame["null_significant"] / frame["nulls"]
    frame["right_verdict_rate"] = frame["real_right"] / frame["reals"]
    print(frame.round(3).to_string())
    both = pd.concat(rows)
    print("\nby effect (ours):\n" + both.groupby(["effect", "overall_impact"]).size().unstack(fill_value=0).to_string())


if __name__ == "__main__":
    main()
