"""Do predicted tiers tell where entities are heading? On generated accounts whose future is
known: train on the data up to R = last day − 7, classify at R, and compare with the CPL each
entity realised over the 7 days after R.

Prints, per account size and level, Spearman's rank correlation between tier (HIGH=3 … UNDER=0)
and the realised next-7-day CPL (a lead-less entity that spent counts as the dearest) — negative is
good: better tiers, cheaper leads — for the tiers the assets store (the level's classifier and the
transfer model, each used only where it beat the rule tiers) and for the rule tier of the last 7
days, on the same entities, plus the accuracy of each against the tier the next 7 days earned and
the methods the tiers came from. Small accounts (3 campaigns) never train the transfer model;
large ones (12 campaigns, ≥ 10 needed) do.

    .venv/bin/python -m benchmarks.bench_tiers [--seeds 5] [--sizes small large]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ads_ml.demo import generate_account
from ads_ml.ml.features import compute_entity_features
from ads_ml.ml.metrics import cpl
from ads_ml import settings
from ads_ml.ml.tiers import TIER_RANK, TRANSFER_FEATURE_COLUMNS, build_training_set, classify_entities, rule_tiers, train_tier_classifier

END = pd.Timestamp("2026-06-30")
LEVEL_COLUMNS = {"ad": ("ad_id", "adset_id", "ad_status"), "adset": ("adset_id", "campaign_id", "adset_status"),
                 "campaign": ("campaign_id", "campaign_id", "campaign_status")}
#: campaigns × adsets per campaign × ads per adset
SIZES = {"small": (3, 3, 3), "large": (12, 4, 4)}


def level_frames(raw: pd.DataFrame, level: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    id_col, parent_col, status_col = LEVEL_COLUMNS[level]
    daily = raw.groupby([id_col, "date"], as_index=False)[["impressions", "reach", "clicks", "spend", "leads", "conversions"]].sum()
    daily = daily.rename(columns={id_col: "entity_id"})
    daily["date"] = pd.to_datetime(daily["date"])
    entities = raw.drop_duplicates(id_col).rename(columns={id_col: "entity_id", status_col: "status"})
    entities["parent_id"] = None if level == "campaign" else raw.drop_duplicates(id_col)[parent_col].to_numpy()
    return daily, entities[["entity_id", "parent_id", "status"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", choices=list(SIZES), nargs="+", default=list(SIZES))
    args = parser.parse_args()
    ref = END - pd.Timedelta(days=7)
    rows = []
    for size in args.sizes:
        for seed in range(args.seeds):
            raw = generate_account(*SIZES[size], days=120, end_date=END.date(), seed=100 + seed).insights
            transfer = None
            campaign_daily, campaign_entities = level_frames(raw, "campaign")
            campaign_past = campaign_daily.loc[campaign_daily["date"] <= ref]
            if campaign_past["entity_id"].nunique() >= settings.TRANSFER_MIN_CAMPAIGNS:  # as transfer_classifier
                transfer = train_tier_classifier(build_training_set(campaign_past, campaign_entities, ref),
                                                 feature_columns=TRANSFER_FEATURE_COLUMNS).model
            for level in ("campaign", "adset", "ad"):
                daily, entities = level_frames(raw, level)
                past = daily.loc[daily["date"] <= ref]
                result = train_tier_classifier(build_training_set(past, entities, ref))
                features = compute_entity_features(past, entities, ref)
                classified = classify_entities(features, result.model, transfer)
                future = daily.loc[daily["date"] > ref].groupby("entity_id")[["spend", "leads"]].sum()
                future = future.reindex(classified.index).fillna(0.0)
                spent = future["spend"] > 0
                realised_cpl = pd.Series(cpl(future["spend"], future["leads"]), index=future.index).fillna(np.inf)
                realised_tier = rule_tiers(future["spend"], future["leads"], cpl(future["spend"].sum(), future["leads"].sum()))
                scored = spent & classified["tier"].isin(TIER_RANK) & classified["rule_tier"].isin(TIER_RANK)
                model_rank = classified.loc[scored, "tier"].map(TIER_RANK)
                rule_rank = classified.loc[scored, "rule_tier"].map(TIER_RANK)
                target = realised_cpl[scored].rank()  # inf (no lead) ranks dearest
                realised = pd.Series(realised_tier, index=future.index)[scored]
                methods = classified.loc[scored, "method"].value_counts()
                rows.append({
                    "size": size, "level": level, "seed": seed, "entities": int(scored.sum()),
                    "rho_ours": spearmanr(model_rank, target).statistic,
                    "rho_rules": spearmanr(rule_rank, target).statistic,
                    "acc_ours": float((classified.loc[scored, "tier"] == realised).mean()),
                    "acc_rules": float((classified.loc[scored, "rule_tier"] == realised).mean()),
                    "val_acc": result.metrics.get("accuracy", np.nan),
                    "methods": " ".join(f"{m}:{n}" for m, n in methods.items()),
                })
    frame = pd.DataFrame(rows)
    print("# tiers vs the realised next-7-day CPL (Spearman; negative = better tier, cheaper leads)")
    print(frame.round(3).to_string(index=False))
    summary = frame.groupby(["size", "level"])[["entities", "rho_ours", "rho_rules", "acc_ours", "acc_rules"]].mean()
    summary["ours_at_least_rules"] = frame.assign(ok=frame["rho_ours"] <= frame["rho_rules"] + 1e-9).groupby(
        ["size", "level"])["ok"].mean()
    print("\nmean over seeds (rho: lower is better):")
    print(summary.round(3).to_string())


if __name__ == "__main__":
    main()
