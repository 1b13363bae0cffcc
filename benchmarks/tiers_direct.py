"""The ad tiers on the ground-truth accounts without the CLI: the same pure code the
``ad_tier_classifier`` and ``ad_classifications`` assets run (features over the insights window the
assets load, :func:`ads_ml.ml.tiers.train_tier_classifier`, :func:`ads_ml.ml.tiers.classify_entities`),
on many more seeds than the CLI benchmark can afford, to tune the tiers.

    .venv/bin/python -m benchmarks.tiers_direct [--seeds 1 .. 20] [--volume small large]

Prints per account and on average −Spearman of tier order against the realised next-week CPL
(:func:`benchmarks.ground_truth.score_tiers`): ours, the rule baseline and the ceiling, and which
method the tiers came from; the figure of record is the CLI benchmark's.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.ml.features import compute_entity_features
from ads_ml.ml.tiers import build_training_set, classify_entities, train_tier_classifier
from benchmarks.ground_truth import score_tiers
from benchmarks.truth_accounts import TruthAccount, generate


def ad_level(truth: TruthAccount) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ad level's daily rows over the insights window the assets load, and its entities, as the
    import stores them (no conversions, status or budget column in the export)."""
    end = truth.last_day
    start = end - pd.Timedelta(days=settings.INSIGHTS_LOOKBACK_DAYS - 1)
    rows = truth.insights.assign(date=pd.to_datetime(truth.insights["date"]))
    rows = rows.loc[(rows["date"] >= start) & (rows["date"] <= end)]
    daily = rows.groupby(["ad_id", "date"], as_index=False)[["impressions", "reach", "clicks", "spend", "leads"]].sum()
    daily = daily.rename(columns={"ad_id": "entity_id"}).assign(conversions=0.0)
    entities = truth.insights[["ad_id", "adset_id"]].drop_duplicates().astype(str)
    entities = entities.set_axis(["entity_id", "parent_id"], axis=1).assign(status=None, daily_budget=np.nan)
    daily["parent_id"] = daily["entity_id"].astype(str).map(entities.set_index("entity_id")["parent_id"])
    return daily, entities


def classifications(truth: TruthAccount, with_classifier: bool = True) -> tuple[pd.DataFrame, str]:
    """The ad classifications as the asset stores them, and the trained classifier's "use" note;
    without the classifier, the rule tiers."""
    daily, entities = ad_level(truth)
    result = train_tier_classifier(build_training_set(daily, entities, truth.last_day)) if with_classifier else None
    features = compute_entity_features(daily, entities, truth.last_day)
    tiers = classify_entities(features, result.model if result else None)
    frame = pd.DataFrame({"entity_type": "ad", "entity_id": tiers.index.astype(str), "reference_date": truth.last_day,
                          "tier": tiers["tier"].to_numpy(), "method": tiers["method"].to_numpy()})
    return frame, str(result.metrics.get("use", result.reason)) if result else "rules"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--volume", choices=["small", "large"], nargs="+", default=["small", "large"])
    parser.add_argument("--rules-only", action="store_true", help="the rule tiers alone (no classifier)")
    args = parser.parse_args()
    rows = []
    for volume in args.volume:
        for seed in args.seeds:
            truth = generate(seed, volume)
            frame, use = classifications(truth, not args.rules_only)
            scored = score_tiers(truth, {"classifications": frame})
            rows.append({"volume": volume, "seed": seed, **{k: scored[k] for k in ("ours", "rule_quartiles_7d",
                         "ceiling_4_tiers", "ads_judged")}, "method": frame["method"].mode().iat[0], "use": use[:60]})
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(table.round(3).to_string(index=False))
    table["beats_rule"] = table["ours"] > table["rule_quartiles_7d"]
    print("\nmean by volume:\n" + table.groupby("volume")[["ours", "rule_quartiles_7d", "ceiling_4_tiers", "beats_rule"]]
          .mean().round(3).to_string())
    print(f"\nall: ours {table['ours'].mean():.3f}, rule {table['rule_quartiles_7d'].mean():.3f}, "
          f"ceiling {table['ceiling_4_tiers'].mean():.3f}; ours above the rule on {int(table['beats_rule'].sum())}/{len(table)}")


if __name__ == "__main__":
    main()
