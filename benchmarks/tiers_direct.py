"""The ad tiers on the ground-truth accounts without the CLI: the same pure code the
``ad_tier_classifier`` and ``ad_classifications`` assets run (features over the insights window the
assets load, :func:`ads_ml.ml.tiers.train_tier_classifier`, :func:`ads_ml.ml.tiers.classify_entities`),
on many more seeds than the CLI benchmark can afford, to tune the tiers.

    .venv/bin/python -m benchmarks.tiers_direct [--seeds 1 .. 20] [--volume small large]

Prints per account and on average −Spearman of tier order against the realised next-week CPL
(:func:`benchmarks.ground_truth.score_tiers`): ours, the rule baseline and the ceiling, and which
method the tiers came from; the figure of record is the CLI benchmark's. Then how well the
confidence of our tiers is calibrated against the tier each ad earned over the held-out week
(top-label ECE and accuracy by confidence bin).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.ml.features import compute_entity_features
from ads_ml.ml.metrics import cpl
from ads_ml.ml.tiers import TIERS, build_training_set, classify_entities, rule_tiers, train_tier_classifier
from benchmarks.ground_truth import level_daily, score_tiers
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


def held_out_tiers(truth: TruthAccount, index: pd.Index) -> np.ndarray:
    """The rule tier each ad earned over the held-out week (the outcome a tier's confidence is about)."""
    held = level_daily(truth.holdout, "ad").groupby("entity_id")[["spend", "leads"]].sum().reindex(index).fillna(0.0)
    return rule_tiers(held["spend"], held["leads"], cpl(held["spend"].sum(), held["leads"].sum()))


def classifications(truth: TruthAccount, with_classifier: bool = True) -> tuple[pd.DataFrame, str]:
    """The ad classifications as the asset stores them, and the trained classifier's "use" note;
    without the classifier, the rule tiers."""
    daily, entities = ad_level(truth)
    result = train_tier_classifier(build_training_set(daily, entities, truth.last_day)) if with_classifier else None
    features = compute_entity_features(daily, entities, truth.last_day)
    tiers = classify_entities(features, result.model if result else None)
    frame = pd.DataFrame({"entity_type": "ad", "entity_id": tiers.index.astype(str), "reference_date": truth.last_day,
                          "tier": tiers["tier"].to_numpy(), "method": tiers["method"].to_numpy(),
                          "confidence": tiers["confidence"].to_numpy(dtype="float64"),
                          "held_out_tier": held_out_tiers(truth, tiers.index)})
    return frame, str(result.metrics.get("use", result.reason)) if result else "rules"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--volume", choices=["small", "large"], nargs="+", default=["small", "large"])
    parser.add_argument("--rules-only", action="store_true", help="the rule tiers alone (no classifier)")
    args = parser.parse_args()
    rows, confidences = [], []
    for volume in args.volume:
        for seed in args.seeds:
            truth = generate(seed, volume)
            frame, use = classifications(truth, not args.rules_only)
            scored = score_tiers(truth, {"classifications": frame})
            judged = frame["confidence"].notna() & frame["held_out_tier"].isin(TIERS)
            confidences.append(frame.loc[judged].assign(volume=volume, right=lambda f: f["tier"] == f["held_out_tier"]))
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
    judged = pd.concat(confidences)
    print("\nconfidence against the held-out week's tier (top-label ECE; 0 is perfectly calibrated):")
    for volume, part in judged.groupby("volume"):
        bins = pd.cut(part["confidence"], np.linspace(0, 1, 11), include_lowest=True)
        by_bin = part.groupby(bins, observed=True).agg(n=("right", "size"), confidence=("confidence", "mean"), accuracy=("right", "mean"))
        ece = float((by_bin["n"] * (by_bin["accuracy"] - by_bin["confidence"]).abs()).sum() / by_bin["n"].sum())
        print(f"{volume}: ECE {ece:.3f}, mean confidence {part['confidence'].mean():.3f}, accuracy {part['right'].mean():.3f}")
        print(by_bin.round(3).T.to_string())


if __name__ == "__main__":
    main()
