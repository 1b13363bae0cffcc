"""Import daily ad-level insights: Meta Ads Manager exports and the canonical snake_case form.

One import is one transaction: any bad row refuses the whole file and leaves the database as it
was. Rows are upserted on (account, level, entity, date) and only rewritten when a value differs,
so importing the same file twice changes nothing. Adset and campaign days are rolled up from the
stored ad rows of the dates the file touches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Float, Numeric, and_, cast, func, literal, select
from sqlalchemy.engine import Connection

from ads_ml import settings
from ads_ml.db.models import AdAccount, Ad, Adset, Campaign, DailyInsight, utcnow
from ads_ml.db.upsert import upsert
from ads_ml.ingest.csvfile import (
    Field,
    InputFileError,
    iter_batches,
    parse_dates,
    parse_numbers,
    read_header,
    require_values,
)

CURRENCY_PATTERN = r"amountspent(?P<currency>[a-z]{3})"

INSIGHT_FIELDS: tuple[Field, ...] = (
    Field("date", ("date", "day", "reportingstarts"), label='"Day" or "date"'),
    Field("campaign_id", ("campaignid",), label='"Campaign ID" or "campaign_id"'),
    Field("adset_id", ("adsetid",), label='"Ad set ID" or "adset_id"'),
    Field("ad_id", ("adid",), label='"Ad ID" or "ad_id"'),
    Field("impressions", ("impressions",), label='"Impressions"'),
    Field("clicks", ("clicks", "linkclicks", "clicksall"), label='"Link clicks", "Clicks (all)" or "clicks"'),
    Field("spend", ("spend", "amountspent"), pattern=CURRENCY_PATTERN, label='"Amount spent (XXX)" or "spend"'),
    Field("leads", ("leads", "results"), label='"Leads", "Results" or "leads"'),
    Field("reach", ("reach",), required=False),
    Field("frequency", ("frequency",), required=False),
    Field("conversions", ("conversions",), required=False),
    Field("campaign_name", ("campaignname",), required=False),
    Field("adset_name", ("adsetname",), required=False),
    Field("ad_name", ("adname",), required=False),
    Field("campaign_status", ("campaignstatus", "campaigndelivery"), required=False),
    Field("adset_status", ("adsetstatus", "adsetdelivery"), required=False),
    Field("ad_status", ("adstatus", "addelivery", "deliverystatus"), required=False),
    Field("campaign_daily_budget", ("campaigndailybudget", "campaignbudget"), required=False),
    Field("adset_daily_budget", ("adsetdailybudget", "adsetbudget"), required=False),
)
COUNT_COLUMNS = ("impressions", "clicks", "leads", "conversions", "reach")
METRIC_COLUMNS = ("impressions", "reach", "clicks", "spend", "leads", "conversions", "frequency")

# Meta's delivery words -> our statuses.
STATUS_WORDS = {
    "active": "ACTIVE",
    "paused": "PAUSED",
    "inactive": "PAUSED",
    "notdelivering": "ACTIVE",
    "archived": "ARCHIVED",
    "deleted": "DELETED",
    "campaignoff": "PAUSED",
    "adsetoff": "PAUSED",
}


@dataclass
class ImportResult:
    account_id: str
    file: str
    rows: int = 0
    campaigns_created: int = 0
    adsets_created: int = 0
    ads_created: int = 0
    rows_changed: int = 0
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    skipped_summary_rows: int = 0
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        dates = f"{self.first_date} .. {self.last_date}" if self.first_date else "no dates"
        return (
            f"{self.file}: {self.rows} ad-day rows ({dates}) into {self.account_id}; "
            f"{self.rows_changed} insight rows new or changed; created {self.campaigns_created} campaigns, "
            f"{self.adsets_created} adsets, {self.ads_created} ads"
        )


def validate_account_id(account_id: str) -> str:
    if not settings.ACCOUNT_ID_PATTERN.fullmatch(account_id or ""):
        raise ValueError(
            f"account id {account_id!r} is not valid: use letters, digits, '_' and '-' (e.g. act_1234)"
        )
    return account_id


def import_insights(
    engine: Engine,
    path: str | Path,
    account_id: str,
    *,
    batch_rows: int = settings.IMPORT_BATCH_ROWS,
) -> ImportResult:
    """Import a daily ad-level insights CSV into ``account_id`` in one transaction."""
    validate_account_id(account_id)
    path = Path(path)
    header = read_header(path, INSIGHT_FIELDS)
    names = header.columns  # canonical -> as written in the file
    result = ImportResult(account_id=account_id, file=path.name)
    now = utcnow()

    with engine.begin() as conn:
        ensure_account(conn, path, account_id, header.extras.get("currency"))
        known = _Hierarchy.load(conn, account_id)
        seen_keys: set[int] = set()
        for _first_row, raw in iter_batches(path, header, batch_rows):
            batch = _parse_batch(path, raw, names, result)
            if batch.empty:
                continue
            _check_duplicates(path, batch, names, seen_keys)
            created = known.merge(conn, path, batch, names, now)
            result.campaigns_created += created[0]
            result.adsets_created += created[1]
            result.ads_created += created[2]
            _upsert_ad_rows(conn, account_id, batch, now)
            result.rows += len(batch)
            lo, hi = batch["date"].min().date(), batch["date"].max().date()
            result.first_date = min(result.first_date or lo, lo)
            result.last_date = max(result.last_date or hi, hi)
        if result.rows == 0:
            raise InputFileError(path, "no data rows")
        if conn.dialect.name == "postgresql":
            # Rows just written have no planner statistics yet: PostgreSQL would estimate one row
            # and nest-loop the rollup join (seconds per thousand rows). A hash join is right for
            # this query shape whatever the statistics say. SET LOCAL ends with the transaction.
            conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        for level in ("adset", "campaign"):
            _roll_up(conn, account_id, level, result.first_date, result.last_date, now)
        result.rows_changed = conn.execute(
            select(func.count())
            .select_from(DailyInsight)
            .where(DailyInsight.account_id == account_id, DailyInsight.updated_at == now)
        ).scalar_one()
    return result


def ensure_account(conn: Connection, path: Path, account_id: str, currency: str | None) -> None:
    account = conn.execute(select(AdAccount).where(AdAccount.id == account_id)).first()
    if account is None:
        conn.execute(
            AdAccount.__table__.insert().values(
                id=account_id, name=account_id, is_active=True, currency=currency, timezone="UTC",
                created_at=utcnow(), updated_at=utcnow(),
            )
        )
        return
    if currency and account.currency and account.currency.upper() != currency:
        raise InputFileError(
            path, f"account {account_id} is in {account.currency}, the file reports {currency}", row=1
        )
    if currency and not account.currency:
        conn.execute(AdAccount.__table__.update().where(AdAccount.id == account_id).values(currency=currency))


def _parse_batch(path: Path, raw: pd.DataFrame, names: dict[str, str], result: ImportResult) -> pd.DataFrame:
    ids = ["campaign_id", "adset_id", "ad_id"]
    # Ads Manager can append a summary row without ids and dates: not data.
    summary = (raw[ids] == "").all(axis=1) & (raw["date"] == "")
    if summary.any():
        result.skipped_summary_rows += int(summary.sum())
        raw = raw.loc[~summary]
    if raw.empty:
        return pd.DataFrame()
    require_values(path, raw, {c: names[c] for c in ids})
    out = pd.DataFrame(index=raw.index)
    out["date"] = parse_dates(path, raw, "date", names["date"])
    for column in ids:
        out[column] = raw[column].astype(str)
    for column in ("impressions", "clicks", "spend", "leads", "conversions", "reach", "frequency"):
        if column not in names:
            out[column] = np.nan if column in ("reach", "frequency") else 0.0
            continue
        out[column] = parse_numbers(
            path, raw, column, names[column],
            integer=column in COUNT_COLUMNS,
            allow_missing=column in ("reach", "frequency"),
        )
    too_many = out["clicks"] > out["impressions"]
    if too_many.any():
        row = int(out.index[np.flatnonzero(too_many.to_numpy())[0]])
        raise InputFileError(
            path,
            f"clicks ({out.at[row, 'clicks']:.0f}) exceed impressions ({out.at[row, 'impressions']:.0f})",
            row=row, column=names["clicks"],
        )
    # Frequency = impressions / reach when the file does not give it.
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = np.where(out["reach"] > 0, out["impressions"] / out["reach"], np.nan)
    out["frequency"] = out["frequency"].fillna(pd.Series(derived, index=out.index))
    for column in ("campaign_name", "adset_name", "ad_name"):
        out[column] = raw[column].replace("", None) if column in names else None
    for level in ("campaign", "adset", "ad"):
        column = f"{level}_status"
        out[column] = _parse_status(path, raw, column, names) if column in names else None
    for level in ("campaign", "adset"):
        column = f"{level}_daily_budget"
        out[column] = _parse_budget(raw[column]) if column in names else np.nan
    return out


def _parse_status(path: Path, raw: pd.DataFrame, column: str, names: dict[str, str]) -> pd.Series:
    words = raw[column].str.lower().str.replace(r"[^a-z]", "", regex=True)
    mapped = words.map(STATUS_WORDS)
    upper = raw[column].str.upper()
    mapped = mapped.where(mapped.notna(), upper.where(upper.isin(settings.ENTITY_STATUSES)))
    bad = mapped.isna() & (raw[column] != "")
    if bad.any():
        row = int(raw.index[np.flatnonzero(bad.to_numpy())[0]])
        raise InputFileError(path, f"unknown status {raw.at[row, column]!r}", row=row, column=names[column])
    return mapped.where(raw[column] != "", None)


def _parse_budget(raw: pd.Series) -> pd.Series:
    # Ads Manager writes text such as "Using campaign budget" where a level has no budget of its own.
    return pd.to_numeric(raw.where(raw != "", None), errors="coerce").astype("float64")


def _check_duplicates(path: Path, batch: pd.DataFrame, names: dict[str, str], seen: set[int]) -> None:
    keys = pd.util.hash_pandas_object(batch[["ad_id", "date"]], index=False).to_numpy()
    dup_in_batch = pd.Series(keys).duplicated().to_numpy()
    dup_earlier = np.fromiter((k in seen for k in keys.tolist()), dtype=bool, count=len(keys))
    dup = dup_in_batch | dup_earlier
    if dup.any():
        row = int(batch.index[np.flatnonzero(dup)[0]])
        raise InputFileError(
            path,
            f"ad {batch.at[row, 'ad_id']} on {batch.at[row, 'date'].date()} appears twice in the file",
            row=row, column=names["ad_id"],
        )
    seen.update(keys.tolist())


@dataclass
class _Hierarchy:
    """Known parents of ads and adsets (bounded by the number of entities, not rows)."""

    account_id: str
    ad_parent: dict[str, tuple[str, str]]  # ad -> (adset, campaign)
    adset_parent: dict[str, str]  # adset -> campaign
    campaigns: set[str]

    @classmethod
    def load(cls, conn: Connection, account_id: str) -> "_Hierarchy":
        ads = conn.execute(select(Ad.id, Ad.adset_id, Ad.campaign_id).where(Ad.account_id == account_id))
        adsets = conn.execute(select(Adset.id, Adset.campaign_id).where(Adset.account_id == account_id))
        campaigns = conn.execute(select(Campaign.id).where(Campaign.account_id == account_id))
        return cls(
            account_id,
            {a: (s, c) for a, s, c in ads},
            {s: c for s, c in adsets},
            {c for (c,) in campaigns},
        )

    def merge(
        self, conn: Connection, path: Path, batch: pd.DataFrame, names: dict[str, str], now: dt.datetime
    ) -> tuple[int, int, int]:
        """Check the batch's hierarchy against what is known, then create/update entities."""
        ads = batch.drop_duplicates("ad_id")
        adsets = batch.drop_duplicates("adset_id")
        self._check_moves(path, batch, "adset_id", "campaign_id", self.adset_parent, "adset", "campaign", names)
        known_ad_adset = {a: p[0] for a, p in self.ad_parent.items()}
        self._check_moves(path, batch, "ad_id", "adset_id", known_ad_adset, "ad", "adset", names)

        new_campaigns = [c for c in batch["campaign_id"].unique() if c not in self.campaigns]
        new_adsets = [s for s in adsets["adset_id"] if s not in self.adset_parent]
        new_ads = [a for a in ads["ad_id"] if a not in self.ad_parent]

        campaign_rows = batch.drop_duplicates("campaign_id", keep="last")
        self._write(conn, Campaign, campaign_rows, "campaign", now, extra={})
        adset_rows = batch.drop_duplicates("adset_id", keep="last")
        self._write(conn, Adset, adset_rows, "adset", now, extra={"campaign_id": "campaign_id"})
        ad_rows = batch.drop_duplicates("ad_id", keep="last")
        self._write(conn, Ad, ad_rows, "ad", now, extra={"adset_id": "adset_id", "campaign_id": "campaign_id"})

        self.campaigns.update(new_campaigns)
        for row in adsets.itertuples():
            self.adset_parent[row.adset_id] = row.campaign_id
        for row in ads.itertuples():
            self.ad_parent[row.ad_id] = (row.adset_id, row.campaign_id)
        return len(new_campaigns), len(new_adsets), len(new_ads)

    def _check_moves(
        self,
        path: Path,
        batch: pd.DataFrame,
        child: str,
        parent: str,
        known: dict[str, str],
        child_word: str,
        parent_word: str,
        names: dict[str, str],
    ) -> None:
        pairs = batch[[child, parent]]
        per_child = pairs.groupby(child)[parent].nunique()
        if (per_child > 1).any():
            entity = per_child.index[per_child.to_numpy() > 1][0]
            rows = pairs.index[pairs[child] == entity]
            first_parent = pairs.at[rows[0], parent]
            row = next(r for r in rows if pairs.at[r, parent] != first_parent)
            raise InputFileError(
                path,
                f"{child_word} {entity} moves from {parent_word} {first_parent} to {pairs.at[row, parent]}",
                row=int(row), column=names[parent],
            )
        expected = pairs[child].map(known)
        moved = expected.notna() & (expected != pairs[parent])
        if moved.any():
            row = int(pairs.index[np.flatnonzero(moved.to_numpy())[0]])
            raise InputFileError(
                path,
                f"{child_word} {pairs.at[row, child]} belongs to {parent_word} {expected.at[row]}, "
                f"the file puts it in {pairs.at[row, parent]}",
                row=row, column=names[parent],
            )

    def _write(
        self, conn: Connection, model, rows: pd.DataFrame, level: str, now: dt.datetime, extra: dict[str, str]
    ) -> None:  # noqa: ANN001
        id_column = f"{level}_id"
        table = model.__table__
        records = []
        has_budget = f"{level}_daily_budget" in rows.columns and level != "ad"
        for row in rows.to_dict("records"):
            record = {"account_id": self.account_id, "id": row[id_column], "created_at": now, "updated_at": now}
            for target, source in extra.items():
                record[target] = row[source]
            record["name"] = row.get(f"{level}_name")
            record["status"] = row.get(f"{level}_status") or "ACTIVE"
            if has_budget:
                budget = row.get(f"{level}_daily_budget")
                record["daily_budget"] = None if budget is None or pd.isna(budget) else float(budget)
            records.append(record)
        if not records:
            return
        # Names, statuses and budgets are updated only when the file carries them.
        update = [c for c in ("name", "status", "daily_budget") if c in records[0] and _column_given(rows, level, c)]
        stmt = upsert(conn, table, key=("account_id", "id"), update=update or ["id"], always=["updated_at"])
        conn.execute(stmt, records)


def _column_given(rows: pd.DataFrame, level: str, column: str) -> bool:
    source = f"{level}_{'daily_budget' if column == 'daily_budget' else column}"
    return source in rows.columns and rows[source].notna().any()


def _upsert_ad_rows(conn: Connection, account_id: str, batch: pd.DataFrame, now: dt.datetime) -> None:
    frame = pd.DataFrame(
        {
            "account_id": account_id,
            "entity_type": "ad",
            "entity_id": batch["ad_id"].to_numpy(),
            "date": batch["date"].dt.date.to_numpy(),
            "updated_at": now,
        }
    )
    for column in METRIC_COLUMNS:
        values = batch[column].to_numpy(dtype="float64")
        if column in ("impressions", "clicks", "leads", "conversions", "reach"):
            frame[column] = pd.array(np.where(np.isnan(values), None, values), dtype="Int64")
        else:
            frame[column] = values
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    stmt = upsert(
        conn, DailyInsight.__table__,
        key=("account_id", "entity_type", "entity_id", "date"),
        update=METRIC_COLUMNS,
        always=["updated_at"],
    )
    conn.execute(stmt, records)


def _roll_up(
    conn: Connection, account_id: str, level: str, first: dt.date, last: dt.date, now: dt.datetime
) -> None:
    """Upsert ``level`` daily rows as sums of the stored ad rows (reach summed: an upper bound)."""
    d = DailyInsight.__table__
    group_col = Ad.__table__.c.adset_id if level == "adset" else Ad.__table__.c.campaign_id
    impressions = func.sum(d.c.impressions)
    reach = func.sum(d.c.reach)
    query = (
        select(
            literal(account_id).label("account_id"),
            literal(level).label("entity_type"),
            group_col.label("entity_id"),
            d.c.date,
            impressions,
            reach,
            func.sum(d.c.clicks),
            # rounded so that re-summing in another order never looks like a change
            func.round(cast(func.sum(d.c.spend), Numeric(20, 8)), 6),
            func.sum(d.c.leads),
            func.sum(d.c.conversions),
            cast(impressions, Float) / func.nullif(reach, 0),
            literal(now, DailyInsight.__table__.c.updated_at.type),
        )
        .select_from(d.join(Ad.__table__, and_(Ad.__table__.c.account_id == d.c.account_id, Ad.__table__.c.id == d.c.entity_id)))
        .where(
            d.c.account_id == account_id,
            d.c.entity_type == "ad",
            d.c.date >= first,
            d.c.date <= last,
        )
        .group_by(group_col, d.c.date)
    )
    columns = [
        "account_id", "entity_type", "entity_id", "date", "impressions", "reach", "clicks",
        "spend", "leads", "conversions", "frequency", "updated_at",
    ]
    stmt = upsert(
        conn, d,
        key=("account_id", "entity_type", "entity_id", "date"),
        update=METRIC_COLUMNS,
        always=["updated_at"],
        select=query,
        columns=columns,
    )
    conn.execute(stmt)

