"""Small helpers shared by the asset modules."""

from __future__ import annotations

import dagster as dg
import pandas as pd

from ads_ml import settings

OWNERS = ["team:data-engineering"]
LEVELS = ("campaign", "adset", "ad")


def database_retry_policy() -> dg.RetryPolicy:
    """Every asset step reads or writes the database: a lost connection, a failover or a lock held
    past the timeout is retried (``ADS_ML_STEP_RETRIES`` times, waits doubling from
    ``ADS_ML_STEP_RETRY_DELAY_SECONDS``, jittered) instead of failing the run. Each attempt writes
    in its own transaction, so a retried step never leaves half of its rows."""
    return dg.RetryPolicy(max_retries=settings.step_retries(), delay=settings.step_retry_delay_seconds(),
                          backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def markdown_table(frame: pd.DataFrame, max_rows: int = 10, decimals: int = 2) -> str:
    """A Markdown preview of the first rows: floats rounded, missing values shown as '—', ids kept
    as written (never parsed as numbers)."""
    if frame.empty:
        return "_no rows_"

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "—"
        if isinstance(value, float):
            return f"{value:,.{decimals}f}"
        if isinstance(value, pd.Timestamp):
            return value.date().isoformat()
        return str(value)

    shown = frame.head(max_rows)
    if not isinstance(shown.index, pd.RangeIndex):
        shown = shown.reset_index()
    return shown.map(cell).to_markdown(index=False, disable_numparse=True)


def entity_names(entities: pd.DataFrame) -> pd.Series:
    """Entity id (as text) → name, from an insights' ``entities`` frame."""
    if entities is None or entities.empty or "name" not in entities.columns:
        return pd.Series(dtype="object")
    return pd.Series(entities["name"].to_numpy(), index=entities["entity_id"].astype(str)).dropna()


def with_names(frame: pd.DataFrame, names: pd.Series) -> pd.DataFrame:
    """``frame`` with a ``name`` column beside its entity id (an ``entity_id`` column or index), so
    a marketer reads names, not only numeric ids. Unknown ids get no name."""
    if "entity_id" not in frame.columns and "entity_id" in list(frame.index.names):
        frame = frame.reset_index()
    if "entity_id" in frame.columns:
        ids = frame["entity_id"].astype(str)
        out = frame.copy()
        out.insert(list(out.columns).index("entity_id") + 1, "name", ids.map(names).to_numpy())
        return out
    return frame


def no_data_metadata(has_data: bool, account_id: str) -> dict:
    """Metadata saying a partition had no insights to work on ({} when it had some)."""
    if has_data:
        return {}
    return {"no_data": True,
            "note": f"account {account_id} has no insights in the window: nothing to compute (import insights first)"}
