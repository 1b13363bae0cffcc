"""Forecasts on data they were not tuned on: the real advertising data in ``../shared/data`` and two
independently written generators, ours against statsforecast.

Real data (``online_advertising_performance_data.csv``, 2020-04-01 … 06-30): daily spend (cost),
clicks and post-click conversions (as leads) per series, in two groupings — campaign × banner ×
placement ("ads") and campaign × engagement × placement ("adsets", the data's own README mapping) —
each series from its first delivery, missing days as zero. The last 7 days are held out at three
cut-offs (days 71–77, 78–84, 85–91); a series counts at a cut-off with ≥ 56 days of history.
Generators: :mod:`benchmarks.truth_accounts` (its held-out week) and the demo's
:func:`ads_ml.demo.generate_account` (its last week held out), adsets and ads, spend and leads.

Per method, pooled over the cut-offs (and seeds):

- ``pooled``: Σ MAE ÷ Σ seasonal-naive MAE over the series (lower is better); ``mean``: the mean of
  each series' ratio; ``beat``: share of series whose MAE is below seasonal naive's;
- ``cover``: share of held-out days inside the 95 % interval; ``IS``: the mean interval score
  (Winkler, α = 0.05) ÷ the mean seasonal-naive MAE;
- ``s``: seconds of the whole chain (fit, validation, forecast) over every series.

``ours`` is the pipeline's chain exactly as the forecasts assets run it
(:func:`ads_ml.ml.forecasting.forecast_level` with the level's default members). The peers are
statsforecast's own models in its long-frame call. Bootstrap (2,000 resamples of series): the 95 %
interval of ours − the best peer, pooled ratio, per metric.

    .venv/bin/python -m benchmarks.forecasts_real [--seeds 1 2 3] [--arima] [--sources real truth demo]
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ads_ml import settings
from ads_ml.demo import generate_account
from ads_ml.ml import forecasting as F
from benchmarks.ground_truth import level_daily
from benchmarks.truth_accounts import generate

H = 7
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "online_advertising_performance_data.csv"
GROUPINGS = {"ad": ["campaign_number", "banner", "placement"], "adset": ["campaign_number", "user_engagement", "placement"]}
CUTOFFS = (70, 77, 84)  # last day of history (day 1 = April 1st); the next 7 days are held out
MIN_HISTORY = 56
PEERS = ("AutoETS", "AutoTheta", "SeasonalNaive", "mean(ETS, Theta, SN)")


@dataclass
class Case:
    """One forecasting task: the history matrix of one metric, the spend matrix beside it and the truth."""
    source: str
    level: str
    metric: str
    history: pd.DataFrame  # entity × day, NaN before the entity's first delivery
    spend: pd.DataFrame  # the same entities' spend (what "stopped" reads)
    truth: np.ndarray  # entity × H held-out days
    results: dict = field(default_factory=dict)  # method -> (value, lower, upper, seconds)


def real_daily(grouping: list[str]) -> pd.DataFrame:
    raw = pd.read_csv(DATA)
    raw["date"] = pd.to_datetime("2020 " + raw["month"] + " " + raw["day"].astype(str), format="%Y %B %d")
    raw["entity_id"] = raw[grouping].astype(str).agg(" | ".join, axis=1)
    return (raw.groupby(["entity_id", "date"], as_index=False)[["cost", "clicks", "post_click_conversions"]].sum()
            .rename(columns={"cost": "spend", "post_click_conversions": "leads"}))


def _matrix(daily: pd.DataFrame, column: str, end: pd.Timestamp) -> pd.DataFrame:
    """:func:`F.series_matrix` of any count column (clicks as well as leads)."""
    frame = daily[["entity_id", "date", "spend"]].assign(leads=daily[column]) if column != "spend" else daily
    return F.series_matrix(frame[["entity_id", "date", "spend", "leads"]], "spend" if column == "spend" else "leads", end)


def _truth(daily: pd.DataFrame, column: str, entities: pd.Index, end: pd.Timestamp) -> np.ndarray:
    days = pd.date_range(end + pd.Timedelta(days=1), periods=H, freq="D")
    return (daily.pivot_table(index="entity_id", columns="date", values=column, aggfunc="sum")
            .reindex(index=entities, columns=days).fillna(0.0).to_numpy(dtype="float64"))


def real_cases() -> list[Case]:
    cases = []
    for level, grouping in GROUPINGS.items():
        daily = real_daily(grouping)
        for cutoff in CUTOFFS:
            end = pd.Timestamp("2020-04-01") + pd.Timedelta(days=cutoff - 1)
            history = daily.loc[daily["date"] <= end]
            spend = _matrix(history, "spend", end)
            keep = spend.index[F.history_days(spend) >= MIN_HISTORY]
            for metric in ("spend", "clicks", "leads"):
                matrix = _matrix(history, metric, end).reindex(keep)
                cases.append(Case(f"real d{cutoff + 1}-{cutoff + H}", level, metric, matrix, spend.reindex(keep),
                                  _truth(daily, metric, keep, end)))
    return cases


def generated_cases(source: str, seeds: list[int]) -> list[Case]:
    cases = []
    for seed in seeds:
        if source == "truth":
            account = generate(seed, "small")
            rows, holdout, end = account.insights, account.holdout, account.last_day
        else:
            account = generate_account(n_campaigns=4, adsets_per_campaign=3, ads_per_adset=4, days=120,
                                       end_date=pd.Timestamp("2026-10-31").date(), seed=seed, inject_anomalies=False)
            end = pd.Timestamp("2026-10-31") - pd.Timedelta(days=H)
            dates = pd.to_datetime(account.insights["date"])
            rows, holdout = account.insights.loc[dates <= end], account.insights.loc[dates > end]
        for level in ("adset", "ad"):
            daily = level_daily(rows, level)
            daily = daily.loc[daily["date"] > end - pd.Timedelta(days=settings.INSIGHTS_LOOKBACK_DAYS)]
            later = level_daily(holdout, level)
            spend = F.series_matrix(daily, "spend", end)
            keep = spend.index[F.history_days(spend) >= 21]
            for metric in ("spend", "leads"):
                cases.append(Case(f"{source}", level, metric, F.series_matrix(daily, metric, end).reindex(keep),
                                  spend.reindex(keep), _truth(later, metric, keep, end)))
    return cases


def run_ours(case: Case) -> None:
    started = time.perf_counter()
    result = F.forecast_level(case.history, case.spend, settings.forecast_methods(case.level), metric=case.metric)
    seconds = time.perf_counter() - started
    value, lower, upper = (np.full(case.truth.shape, np.nan) for _ in range(3))
    position = {e: i for i, e in enumerate(case.history.index)}
    rows = [position[e] for e in result.ensemble.entities]
    value[rows], lower[rows], upper[rows] = result.ensemble.value, result.ensemble.lower, result.ensemble.upper
    case.results["ours"] = (value, lower, upper, seconds)


def run_peers(case: Case, arima: bool) -> None:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta, SeasonalNaive

    values = case.history.to_numpy(dtype="float64")
    r, c = np.nonzero(~np.isnan(values))
    long = pd.DataFrame({"unique_id": case.history.index.to_numpy()[r], "ds": case.history.columns[c], "y": values[r, c]})
    models = [AutoETS(season_length=7), AutoTheta(season_length=7), SeasonalNaive(season_length=7)]
    models += [AutoARIMA(season_length=7)] if arima else []
    for model in models:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = StatsForecast(models=[model], freq="D", n_jobs=1).forecast(df=long, h=H, level=[95])
        seconds = time.perf_counter() - started
        out = out.reset_index() if "unique_id" not in out.columns else out
        name = str(model)
        parts = [np.clip(out.pivot(index="unique_id", columns="ds", values=col).reindex(case.history.index).to_numpy(), 0, None)
                 for col in (name, f"{name}-lo-95", f"{name}-hi-95")]
        case.results[name] = (*parts, seconds)
    members = [case.results[m] for m in ("AutoETS", "AutoTheta", "SeasonalNaive")]
    case.results["mean(ETS, Theta, SN)"] = (*(np.mean([m[i] for m in members], axis=0) for i in range(3)),
                                            sum(m[3] for m in members))


def _scores(case: Case, method: str) -> pd.DataFrame:
    value, lower, upper, _ = case.results[method]
    naive = case.results["SeasonalNaive"][0]
    y = case.truth
    ok = ~np.isnan(value).any(axis=1) & ~np.isnan(naive).any(axis=1)
    mae = np.abs(value - y).mean(axis=1)
    base = np.abs(naive - y).mean(axis=1)
    alpha = 0.05
    score = (upper - lower) + 2 / alpha * np.clip(lower - y, 0, None) + 2 / alpha * np.clip(y - upper, 0, None)
    inside = ((y >= lower - 1e-9) & (y <= upper + 1e-9)).mean(axis=1)
    return pd.DataFrame({"entity": case.history.index, "mae": mae, "base": base, "cover": inside,
                         "score": score.mean(axis=1)}).loc[ok]


def table(cases: list[Case], methods: list[str]) -> pd.DataFrame:
    rows = []
    for method in methods:
        frames = [_scores(c, method).assign(key=lambda f, c=c: c.source + "|" + c.level + "|" + f["entity"])
                  for c in cases if method in c.results]
        if not frames:
            continue
        s = pd.concat(frames)
        ratio = (s["mae"] / s["base"]).replace([np.inf, -np.inf], np.nan)
        rows.append({"method": method, "series": len(s), "pooled": s["mae"].sum() / s["base"].sum(),
                     "mean": ratio.mean(), "beat": (s["mae"] < s["base"]).mean(), "cover": s["cover"].mean(),
                     "IS": s["score"].mean() / s["base"].mean(),
                     "s": sum(c.results[method][3] for c in cases if method in c.results)})
    return pd.DataFrame(rows).set_index("method")


def bootstrap(cases: list[Case], ours: str, peer: str, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Ours − peer in pooled ratio, with a 95 % interval from resampling series (a series is one
    entity of one source and level: its cut-offs go together)."""
    a = pd.concat([_scores(c, ours).assign(key=c.source.split(" ")[0] + "|" + c.level + "|" + _scores(c, ours)["entity"]) for c in cases])
    b = pd.concat([_scores(c, peer).assign(key=c.source.split(" ")[0] + "|" + c.level + "|" + _scores(c, peer)["entity"]) for c in cases])
    ga, gb = a.groupby("key")[["mae", "base"]].sum(), b.groupby("key")[["mae", "base"]].sum()
    keys = ga.index.intersection(gb.index)
    ga, gb = ga.loc[keys].to_numpy(), gb.loc[keys].to_numpy()
    diff = ga[:, 0].sum() / ga[:, 1].sum() - gb[:, 0].sum() / gb[:, 1].sum()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(keys), (draws, len(keys)))
    sa, sb = ga[picks].sum(axis=1), gb[picks].sum(axis=1)
    boot = sa[:, 0] / sa[:, 1] - sb[:, 0] / sb[:, 1]
    return float(diff), float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))


def report(title: str, cases: list[Case]) -> None:
    pd.set_option("display.width", 200)
    print(f"\n## {title}")
    for metric in sorted({c.metric for c in cases}):
        subset = [c for c in cases if c.metric == metric]
        methods = ["ours", *[m for m in (*PEERS, "AutoARIMA") if any(m in c.results for c in subset)]]
        frame = table(subset, methods)
        print(f"\n### {metric}\n{frame.round(3).to_string()}")
        peers = frame.drop(index=["ours", "SeasonalNaive"], errors="ignore")
        best = peers["pooled"].idxmin()
        diff, low, high = bootstrap(subset, "ours", best)
        print(f"ours − best peer ({best}), pooled ratio: {diff:+.3f} [{low:+.3f}, {high:+.3f}]")
    by_cut = {}
    for c in cases:
        by_cut.setdefault(c.source, []).append(c)
    if len(by_cut) > 1:
        print("\n### ours per cut-off / source (pooled ratio, coverage)")
        for source, group in by_cut.items():
            for metric in sorted({c.metric for c in group}):
                t = table([c for c in group if c.metric == metric], ["ours", "AutoETS"])
                print(f"{source:>16} {metric:>7}: ours {t.loc['ours', 'pooled']:.3f} (cover {t.loc['ours', 'cover']:.3f})"
                      f"  AutoETS {t.loc['AutoETS', 'pooled']:.3f} (cover {t.loc['AutoETS', 'cover']:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--sources", nargs="+", default=["real", "truth", "demo"], choices=["real", "truth", "demo"])
    parser.add_argument("--arima", action="store_true", help="also statsforecast's AutoARIMA (slow)")
    args = parser.parse_args()
    with threadpool_limits(limits=1):
        for source in args.sources:
            cases = real_cases() if source == "real" else generated_cases(source, args.seeds)
            for case in cases:
                run_peers(case, args.arima)
                run_ours(case)
            report({"real": "real data (../shared/data), 3 cut-offs, ads and adsets",
                    "truth": f"generator 1 (benchmarks.truth_accounts), seeds {args.seeds}",
                    "demo": f"generator 2 (ads_ml.demo), seeds {args.seeds}"}[source], cases)


if __name__ == "__main__":
    main()
