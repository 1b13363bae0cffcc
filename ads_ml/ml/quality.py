"""Data-quality findings on a daily insights frame (``entity_id``, ``date``, metrics)."""

from __future__ import annotations

import datetime as dt

import pandas as pd


def negative_spend(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.loc[daily["spend"] < 0, ["entity_id", "date", "spend"]]


def clicks_over_impressions(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.loc[daily["clicks"] > daily["impressions"], ["entity_id", "date", "clicks", "impressions"]]


def duplicate_entity_days(daily: pd.DataFrame) -> pd.DataFrame:
    return daily.loc[daily.duplicated(["entity_id", "date"], keep=False), ["entity_id", "date"]]


def missing_days(daily: pd.DataFrame, start: dt.date, end: dt.date) -> list[dt.date]:
    """Days between the first stored day (not before ``start``) and ``end`` on which no entity of
    the level has a row: usually an import that missed a day rather than a real pause."""
    if daily.empty:
        return []
    first = max(pd.Timestamp(start), daily["date"].min())
    expected = pd.date_range(first, pd.Timestamp(end), freq="D")
    present = pd.DatetimeIndex(daily["date"].unique())
    return [d.date() for d in expected.difference(present)]


def entity_gaps(daily: pd.DataFrame) -> pd.DataFrame:
    """Per entity, days without a row between its first and last row (delivery interruptions)."""
    if daily.empty:
        return pd.DataFrame(columns=["entity_id", "gap_days"])
    span = daily.groupby("entity_id")["date"].agg(["min", "max", "count"])
    gap_days = (span["max"] - span["min"]).dt.days + 1 - span["count"]
    out = gap_days[gap_days > 0].rename("gap_days").reset_index()
    return out.sort_values("gap_days", ascending=False, ignore_index=True)
