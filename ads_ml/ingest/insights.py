"""Import daily ad-level insights: Meta Ads Manager exports and the canonical snake_case form.

One import is one transaction: any bad row refuses the whole file and leaves the database as it
was. Rows are upserted on (account, level, entity, date) and only rewritten when a value differs,
so importing the same file twice changes nothing. Adset and campaign days are rolled up from the
stored ad rows of the dates the file touches.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    and_,
    cast,
    delete,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ads_ml import settings
from ads_ml.db.queries import record_import_batch
from ads_ml.db.engine import begin_write, serialise_account_writes
from ads_ml.db.models import AdAccount, Ad, Adset, Campaign, DailyInsight, utcnow
from ads_ml.db.upsert import insert_for, upsert
from ads_ml.ingest.csvfile import (
    Field,
    InputFileError,
    NumberFormat,
    as_point_decimal,
    detect_number_format,
    first_bad,
    iter_batches,
    normalise_header,
    parse_dates,
    parse_numbers,
    read_header,
    readable_csv,
    require_values,
)

#: The numeric columns (their decimal separator is the file's: :func:`detect_number_format`).
NUMERIC_FIELDS = ("impressions", "clicks", "spend", "leads", "conversions", "reach", "frequency",
                  "campaign_daily_budget", "adset_daily_budget")

CURRENCY_PATTERN = r"(amountspent|valorusado|valorgasto|importegastado)(?P<currency>[a-z]{3})"

# Header spellings (normalised: lower case, no accents, spaces or punctuation) of Meta Ads Manager
# exports in English, Portuguese and Spanish, and of the canonical snake_case form.
INSIGHT_FIELDS: tuple[Field, ...] = (
    Field("date", ("date", "day", "dia"), required=False),
    Field("account", ("accountid", "account", "identificacaodaconta", "iddaconta", "identificadordelacuenta",
                      "iddelacuenta"), required=False),
    Field("reporting_start", ("reportingstarts", "iniciodosrelatorios", "iniciodelinforme"), required=False),
    Field("reporting_end", ("reportingends", "terminodosrelatorios", "encerramentodosrelatorios", "findelinforme"),
          required=False),
    Field("campaign_id", ("campaignid", "identificacaodacampanha", "iddacampanha", "identificadordelacampana",
                          "iddelacampana"), label='"Campaign ID" or "campaign_id"'),
    Field("adset_id", ("adsetid", "identificacaodoconjuntodeanuncios", "iddoconjuntodeanuncios",
                       "identificadordelconjuntodeanuncios", "iddelconjuntodeanuncios"),
          label='"Ad set ID" or "adset_id"'),
    Field("ad_id", ("adid", "identificacaodoanuncio", "iddoanuncio", "identificadordelanuncio", "iddelanuncio"),
          label='"Ad ID" or "ad_id"'),
    Field("impressions", ("impressions", "impressoes", "impresiones"), label='"Impressions"'),
    Field("clicks", ("clicks", "linkclicks", "clicksall", "cliquesnolink", "cliquestodos", "clicsenelenlace",
                     "clicstodos"), label='"Link clicks", "Clicks (all)" or "clicks"'),
    Field("spend", ("spend", "amountspent", "valorusado", "importegastado"), pattern=CURRENCY_PATTERN,
          label='"Amount spent (XXX)" or "spend"'),
    Field("leads", ("leads", "clientespotenciales", "cadastros", "results", "resultados"),
          label='"Leads", "Results" or "leads"'),
    Field("result_indicator", ("resultindicator", "resulttype", "indicadorderesultados", "indicadorderesultado",
                               "tipoderesultado"), required=False),
    Field("reach", ("reach", "alcance"), required=False),
    Field("frequency", ("frequency", "frequencia", "frecuencia"), required=False),
    Field("conversions", ("conversions", "conversoes", "conversiones"), required=False),
    Field("campaign_name", ("campaignname", "nomedacampanha", "nombredelacampana"), required=False),
    Field("adset_name", ("adsetname", "nomedoconjuntodeanuncios", "nombredelconjuntodeanuncios"), required=False),
    Field("ad_name", ("adname", "nomedoanuncio", "nombredelanuncio"), required=False),
    Field("campaign_status", ("campaignstatus", "campaigndelivery", "veiculacaodacampanha", "entregadelacampana"),
          required=False),
    Field("adset_status", ("adsetstatus", "adsetdelivery", "veiculacaodoconjuntodeanuncios",
                           "entregadelconjuntodeanuncios"), required=False),
    Field("ad_status", ("adstatus", "addelivery", "deliverystatus", "veiculacaodoanuncio", "entregadelanuncio"),
          required=False),
    Field("campaign_daily_budget", ("campaigndailybudget", "campaignbudget", "orcamentodacampanha",
                                    "presupuestodelacampana"), required=False),
    Field("adset_daily_budget", ("adsetdailybudget", "adsetbudget", "orcamentodoconjuntodeanuncios",
                                 "presupuestodelconjuntodeanuncios"), required=False),
    Field("campaign_budget_type", ("campaignbudgettype", "tipodeorcamentodacampanha",
                                   "tipodepresupuestodelacampana"), required=False),
    Field("adset_budget_type", ("adsetbudgettype", "tipodeorcamentodoconjuntodeanuncios",
                                "tipodepresupuestodelconjuntodeanuncios"), required=False),
)
COUNT_COLUMNS = ("impressions", "clicks", "leads", "conversions", "reach")
METRIC_COLUMNS = ("impressions", "reach", "clicks", "spend", "leads", "conversions", "frequency")

# Meta's delivery words (English, Portuguese, Spanish; normalised) -> our statuses. Whatever is not
# delivering because someone or something turned it off, or because it finished, is PAUSED for the
# analyses; on but waiting (review, learning, scheduled, issues) is ACTIVE.
STATUS_WORDS = {
    **dict.fromkeys(
        ["active", "notdelivering", "learning", "learninglimited", "inreview", "pendingreview", "withissues",
         "scheduled", "preapproved", "pendingbillinginfo", "pendingprocess", "processing", "error",
         "ativo", "ativa", "aprendizado", "aprendizadolimitado", "emanalise", "revisaopendente", "comproblemas",
         "programado", "programada", "naoestaveiculando",
         "activo", "activa", "aprendizaje", "aprendizajelimitado", "enrevision", "revisionpendiente", "conproblemas",
         "noseestapublicando", "noseestaentregando"], "ACTIVE"),
    **dict.fromkeys(
        ["paused", "inactive", "off", "campaignoff", "adsetoff", "campaignpaused", "adsetpaused", "rejected",
         "disapproved", "completed", "recentlycompleted", "accountdisabled", "disabled", "campaigninactive",
         "adsetinactive",
         "pausado", "pausada", "inativo", "inativa", "desativado", "desativada", "rejeitado", "reprovado",
         "concluido", "concluida", "recentementeconcluido", "campanhadesativada", "conjuntodeanunciosdesativado",
         "enpausa", "inactivo", "inactiva", "desactivado", "desactivada", "rechazado", "completado", "finalizado",
         "finalizada", "campanadesactivada", "conjuntodeanunciosdesactivado"], "PAUSED"),
    **dict.fromkeys(["archived", "arquivado", "arquivada", "archivado", "archivada"], "ARCHIVED"),
    **dict.fromkeys(["deleted", "excluido", "excluida", "eliminado", "eliminada"], "DELETED"),
}

# Result indicators that mean leads (normalised, contained in the indicator's text).
LEAD_INDICATOR_WORDS = ("lead", "cadastro", "clientepotencial", "clientespotenciales")
# Budget types: a lifetime budget is not a daily budget and is never stored as one.
DAILY_BUDGET_WORDS = ("daily", "diario", "diaria")
LIFETIME_BUDGET_WORDS = ("lifetime", "vitalicio", "total", "delavida")
# Budget cells that say the level has no budget of its own ("Using campaign budget", ...).
NO_OWN_BUDGET_WORDS = ("budget", "orcamento", "presupuesto")
SCIENTIFIC = r"[+-]?\d+(\.\d+)?[eE][+-]?\d+"


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
    rows_deleted: int = 0
    warnings: dict[str, list[int]] = field(default_factory=dict)  # what -> row numbers (all counted)
    warning_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def warn(self, what: str, rows: pd.Index | list[int]) -> None:
        """Record a plausibility warning on ``rows`` (counted; the first few row numbers kept)."""
        rows = [int(r) for r in rows]
        if not rows:
            return
        self.warning_counts[what] = self.warning_counts.get(what, 0) + len(rows)
        kept = self.warnings.setdefault(what, [])
        kept.extend(rows[: max(0, 5 - len(kept))])

    def summary(self) -> str:
        dates = f"{self.first_date} .. {self.last_date}" if self.first_date else "no dates"
        lines = [
            f"{self.file}: {self.rows} ad-day rows ({dates}) into {self.account_id}; "
            f"{self.rows_changed} insight rows new or changed; created {self.campaigns_created} campaigns, "
            f"{self.adsets_created} adsets, {self.ads_created} ads"
        ]
        if self.rows_deleted:
            lines.append(f"  replaced {dates}: {self.rows_deleted} ad-day rows no longer in the file deleted")
        if self.skipped_summary_rows:
            lines.append(f"  skipped {self.skipped_summary_rows} summary row(s) without ids (totals, not data)")
        for note in self.notes:
            lines.append(f"  note: {note}")
        for what, count in self.warning_counts.items():
            rows = ", ".join(map(str, self.warnings[what]))
            lines.append(f"  warning: {what}: {count} row(s), first rows {rows}")
        return "\n".join(lines)


def validate_account_id(account_id: str) -> str:
    if not settings.ACCOUNT_ID_PATTERN.fullmatch(account_id or ""):
        raise ValueError(
            f"account id {account_id!r} is not valid: use letters, digits, '_' and '-' (e.g. act_1234)"
        )
    return account_id


@dataclass
class _Format:
    """What the header says about the file, and the import's options."""

    names: dict[str, str]  # canonical -> header as written
    meta: bool  # a Meta Ads Manager export (ids are Meta's digits), not the canonical form
    leads_from_results: bool  # the leads column is "Results": its indicator must be a leads type
    lead_indicators: tuple[str, ...]  # indicators the user maps to leads (normalised)
    earliest: dt.date
    latest: dt.date
    numbers: NumberFormat = field(default_factory=lambda: NumberFormat("."))  # decimal point or comma


def import_insights(
    engine: Engine,
    path: str | Path,
    account_id: str,
    *,
    batch_rows: int = settings.IMPORT_BATCH_ROWS,
    replace: bool = False,
    lead_indicators: Sequence[str] = (),
    today: dt.date | None = None,
) -> ImportResult:
    """Import a daily ad-level insights CSV into ``account_id`` in one transaction.

    ``replace``: the file replaces the account's insights of the dates it covers (first to last
    day): ad-days in that range that the file does not have are deleted. ``lead_indicators``:
    result indicators (besides leads types) whose "Results" count as leads."""
    validate_account_id(account_id)
    with readable_csv(Path(path)) as csv_path:
        return _import_insights(engine, csv_path, account_id, batch_rows=batch_rows, replace=replace,
                                lead_indicators=lead_indicators, today=today)


def _import_insights(engine: Engine, path: Path, account_id: str, *, batch_rows: int, replace: bool,
                     lead_indicators: Sequence[str], today: dt.date | None) -> ImportResult:
    header = read_header(path, INSIGHT_FIELDS)
    fmt = _file_format(path, header, lead_indicators, today or dt.date.today())
    numeric = {c: fmt.names[c] for c in NUMERIC_FIELDS if c in fmt.names}
    fmt.numbers = detect_number_format(path, iter_batches(path, header, batch_rows), numeric, COUNT_COLUMNS)
    result = ImportResult(account_id=account_id, file=path.name)
    where: list = []  # the rows being written, for a database error
    try:
        with begin_write(engine, wait=settings.import_wait_seconds()) as conn:
            ensure_account(conn, path, account_id, header.extras.get("currency"))
            write_ad_days(conn, path, account_id, (raw for _first, raw in iter_batches(path, header, batch_rows)),
                          fmt, result, replace=replace, where=where)
    except SQLAlchemyError as exc:
        raise database_error(path, exc, where[0] if where else None) from None
    return result


def write_ad_days(
    conn: Connection,
    source: Path | str,
    account_id: str,
    batches,  # noqa: ANN001 - an iterable of raw frames (canonical columns, text values, row-numbered)
    fmt: "_Format",
    result: ImportResult,
    *,
    replace: bool | tuple[dt.date, dt.date] = False,
    where: list | None = None,
) -> ImportResult:
    """Validate and upsert ad-day rows, then roll adsets and campaigns up, inside the caller's
    write transaction: the one path of the CSV import and the Meta sync. ``source`` names the file
    or API request in errors; ``replace`` (True: the rows' first..last day, or an explicit range)
    deletes the account's ad-days of the range that ``batches`` do not have. An ``import_batches``
    row is written only when something changed."""
    serialise_account_writes(conn, account_id)
    now = utcnow()
    known = _Hierarchy.load(conn, account_id)
    keys = _Staging(conn)
    for raw in batches:
        batch = _parse_batch(source, raw, fmt, result)
        if batch.empty:
            continue
        if where is not None:
            where[:] = [(int(batch.index[0]), int(batch.index[-1]))]
        keys.add(batch, source, fmt.names["ad_id"])
        created = known.merge(conn, source, batch, fmt.names, now)
        result.campaigns_created += created[0]
        result.adsets_created += created[1]
        result.ads_created += created[2]
        result.rows += len(batch)
        lo, hi = batch["date"].min().date(), batch["date"].max().date()
        result.first_date = min(result.first_date or lo, lo)
        result.last_date = max(result.last_date or hi, hi)
        if where is not None:
            where.clear()
    if result.rows == 0 and not isinstance(replace, tuple):
        raise InputFileError(source, "no data rows")
    keys.refuse_duplicates(source, fmt.names["ad_id"])
    if conn.dialect.name == "postgresql":
        # Rows just written have no planner statistics yet: PostgreSQL would estimate one row
        # and nest-loop the upsert's and the rollup's joins (seconds per thousand rows). A hash join
        # is right for these query shapes whatever the statistics say. SET LOCAL ends with the
        # transaction.
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
    keys.upsert(account_id, now)
    first, last = replace if isinstance(replace, tuple) else (result.first_date, result.last_date)
    if replace:
        result.rows_deleted = keys.delete_others(account_id, first, last)
    keys.drop()
    if first is not None:
        for level in ("adset", "campaign"):
            _roll_up(conn, account_id, level, first, last, now)
        if result.rows_deleted:  # roll-ups whose ads were all deleted; the others were rebuilt in place
            _delete_orphan_rollups(conn, account_id, first, last)
    result.rows_changed = conn.execute(
        select(func.count())
        .select_from(DailyInsight)
        .where(DailyInsight.account_id == account_id, DailyInsight.updated_at == now)
    ).scalar_one()
    # logged only when rows changed: a re-import of the same file leaves no trace and starts no run
    if result.rows_changed + result.rows_deleted:
        record_import_batch(conn, account_id, "insights", result.rows_changed + result.rows_deleted,
                            result.first_date or first, result.last_date or last)
    return result


def delete_insights(engine: Engine, account_id: str, first: dt.date, last: dt.date) -> int:
    """Delete the account's insights (every level) dated ``first``..``last`` in one transaction,
    e.g. to undo a wrong import; entities stay. Returns the number of ad-day rows deleted."""
    validate_account_id(account_id)
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    d = DailyInsight.__table__
    with begin_write(engine, wait=settings.import_wait_seconds()) as conn:
        if not conn.execute(select(AdAccount.id).where(AdAccount.id == account_id)).first():
            raise LookupError(f"account {account_id} not found")
        serialise_account_writes(conn, account_id)
        in_range = (d.c.account_id == account_id, d.c.date >= first, d.c.date <= last)
        ads = conn.execute(delete(d).where(*in_range, d.c.entity_type == "ad")).rowcount
        conn.execute(delete(d).where(*in_range))
        if ads:
            record_import_batch(conn, account_id, "delete", ads, first, last)
    return int(ads)


def _file_format(path: Path, header, lead_indicators: Sequence[str], today: dt.date) -> _Format:  # noqa: ANN001
    names = dict(header.columns)
    if "date" not in names:
        if "reporting_start" in names and "reporting_end" in names:
            names["date"] = names["reporting_start"]  # a per-day export written with reporting dates
        else:
            raise InputFileError(
                path, 'no per-day column ("Day" or "date"): export with the daily breakdown (Breakdown → By time → Day)',
                row=1, column="Day",
            )
    leads_from_results = normalise_header(names["leads"]) in ("results", "resultados")
    return _Format(
        names=names,
        meta=names["campaign_id"].strip().lower() != "campaign_id",
        leads_from_results=leads_from_results,
        lead_indicators=tuple(normalise_header(i) for i in lead_indicators),
        earliest=today - dt.timedelta(days=settings.IMPORT_MAX_AGE_DAYS),
        latest=today + dt.timedelta(days=settings.IMPORT_MAX_FUTURE_DAYS),
    )


def database_error(path: Path, exc: SQLAlchemyError, rows: tuple[int, int] | None = None) -> InputFileError:
    """A database error during an import as the one-line contract: what failed, the file and, when
    it happened while writing rows, which rows — never the SQL statement or its data."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else orig.__class__.__name__
    where = f" while writing rows {rows[0]}–{rows[1]}" if rows else ""
    if "locked" in text or "could not obtain lock" in text or "deadlock" in text:
        message = f"the database is busy with another write{where} ({text}); nothing was imported, try again"
    elif isinstance(exc, IntegrityError):
        message = f"the database refused a row{where} ({orig.__class__.__name__}: {text}); nothing was imported"
    else:
        message = f"database error{where} ({orig.__class__.__name__}: {text}); nothing was imported"
    return InputFileError(path, message)


class _Staging:
    """This import's ad-day rows with their row numbers, in a temporary table of the import's own
    transaction, loaded in bulk batch by batch (PostgreSQL ``COPY``, SQLite ``executemany``): the
    stored rows are then upserted in one statement, duplicates are found and ``replace`` knows
    what the file covers, with memory that does not grow with the file."""

    COLUMNS = ("ad_id", "date", "row", *METRIC_COLUMNS, "partial_as_of")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        d = DailyInsight.__table__.c
        self.table = Table(
            "ads_ml_import_rows", MetaData(),
            Column("ad_id", String(64)), Column("date", Date), Column("row", Integer),
            *[Column(c, d[c].type) for c in METRIC_COLUMNS],
            Column("partial_as_of", DateTime(timezone=True)),
            prefixes=["TEMPORARY"],
        )
        self.table.drop(conn, checkfirst=True)
        self.table.create(conn)
        self.indexed = False
        self.copy = conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg2"  # COPY FROM STDIN

    def add(self, batch: pd.DataFrame, path: Path | str, column: str) -> None:
        """Stage the batch's rows; an ad-day twice within the batch is refused here, naming both
        rows (one across batches: :meth:`refuse_duplicates`)."""
        again = batch.duplicated(["ad_id", "date"], keep="first")
        if again.any():
            row = int(batch.index[np.flatnonzero(again.to_numpy())[0]])
            same = (batch["ad_id"] == batch.at[row, "ad_id"]) & (batch["date"] == batch.at[row, "date"])
            first = int(batch.index[np.flatnonzero(same.to_numpy())[0]])
            raise InputFileError(
                path, f"ad {batch.at[row, 'ad_id']} on {batch.at[row, 'date'].date()} appears twice in the file "
                f"(first in row {first})", row=row, column=column)
        frame = pd.DataFrame({"ad_id": batch["ad_id"].astype(str).to_numpy(),
                              "date": batch["date"].dt.strftime("%Y-%m-%d").to_numpy(),
                              "row": batch.index.to_numpy(dtype="int64")})
        for name in METRIC_COLUMNS:
            values = batch[name].to_numpy(dtype="float64")
            frame[name] = pd.array(np.where(np.isnan(values), None, values), dtype="Int64") if name in COUNT_COLUMNS else values
        frame["partial_as_of"] = pd.to_datetime(batch["partial_as_of"], utc=True).to_numpy()
        if self.copy:
            self._copy(frame)
        else:
            self._insert(frame)

    def _copy(self, frame: pd.DataFrame) -> None:
        buffer = io.StringIO()
        frame.assign(partial_as_of=frame["partial_as_of"].dt.strftime("%Y-%m-%d %H:%M:%S.%f+00:00")).to_csv(
            buffer, header=False, index=False)  # floats as their shortest exact repr
        buffer.seek(0)
        cursor = self.conn.connection.driver_connection.cursor()
        cursor.copy_expert(f"COPY {self.table.name} ({', '.join(self.COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)

    def _insert(self, frame: pd.DataFrame) -> None:
        """``executemany`` on the driver. Dates go as ISO text (what SQLAlchemy stores in SQLite,
        and what PostgreSQL reads as a date); the partial-day time as SQLAlchemy would bind it."""
        dialect = self.conn.dialect
        process = self.table.c["partial_as_of"].type.bind_processor(dialect) or (lambda value: value)
        columns = []
        for name in self.COLUMNS:
            values = frame[name].astype(object).where(frame[name].notna(), None).tolist()
            if name == "partial_as_of":
                values = [None if v is None else process(v.to_pydatetime()) for v in values]
            columns.append(values)
        marks = ", ".join("?" if dialect.paramstyle == "qmark" else "%s" for _ in self.COLUMNS)
        cursor = self.conn.connection.driver_connection.cursor()
        cursor.executemany(f"INSERT INTO {self.table.name} ({', '.join(self.COLUMNS)}) VALUES ({marks})",
                           list(zip(*columns)))

    def _index(self) -> None:
        if not self.indexed:  # after the bulk load: cheaper than keeping it up row by row
            Index("ix_ads_ml_import_rows", self.table.c.ad_id, self.table.c.date).create(self.conn)
            self.indexed = True

    def refuse_duplicates(self, path: Path | str, column: str) -> None:
        self._index()
        k = self.table.c
        duplicate = self.conn.execute(
            select(k.ad_id, k.date, func.min(k.row).label("first"), func.max(k.row).label("again"))
            .group_by(k.ad_id, k.date).having(func.count() > 1)
            .order_by(func.max(k.row)).limit(1)
        ).first()
        if duplicate is not None:
            raise InputFileError(
                path, f"ad {duplicate.ad_id} on {duplicate.date} appears twice in the file (first in row {duplicate.first})",
                row=int(duplicate.again), column=column,
            )

    def upsert(self, account_id: str, now: dt.datetime) -> None:
        """The staged rows into ``daily_insights`` in one statement; a row whose values are the
        stored ones is left alone (its ``updated_at`` too)."""
        k = self.table.c
        rows = select(
            literal(account_id).label("account_id"), literal("ad").label("entity_type"), k.ad_id, k.date,
            *[k[c] for c in METRIC_COLUMNS], literal(now, DailyInsight.__table__.c.updated_at.type), k.partial_as_of,
        ).where(k.row.is_not(None))  # SQLite reads ON CONFLICT after a bare INSERT .. SELECT as a join
        self.conn.execute(upsert(
            self.conn, DailyInsight.__table__,
            key=("account_id", "entity_type", "entity_id", "date"),
            update=METRIC_COLUMNS, always=["updated_at", "partial_as_of"], nullness=["partial_as_of"],
            select=rows,
            columns=["account_id", "entity_type", "entity_id", "date", *METRIC_COLUMNS, "updated_at", "partial_as_of"],
        ))

    def delete_others(self, account_id: str, first: dt.date, last: dt.date) -> int:
        """Delete the account's ad-days in ``first``..``last`` that this file does not have."""
        self._index()
        d, k = DailyInsight.__table__, self.table.c
        in_file = select(k.ad_id).where(k.ad_id == d.c.entity_id, k.date == d.c.date).exists()
        return int(self.conn.execute(delete(d).where(
            d.c.account_id == account_id, d.c.entity_type == "ad", d.c.date >= first, d.c.date <= last, ~in_file,
        )).rowcount)

    def drop(self) -> None:
        self.table.drop(self.conn)


def _delete_orphan_rollups(conn: Connection, account_id: str, first: dt.date, last: dt.date) -> int:
    """Adset and campaign days of the range left without any ad row (the roll-up upserts the days
    that still have ads, so a replace that changes nothing rewrites nothing)."""
    d, ads = DailyInsight.__table__, Ad.__table__
    deleted = 0
    for level, parent in (("adset", ads.c.adset_id), ("campaign", ads.c.campaign_id)):
        child = d.alias("child")
        with_ads = (
            select(parent.label("entity_id"), child.c.date)
            .select_from(child.join(ads, and_(ads.c.account_id == child.c.account_id, ads.c.id == child.c.entity_id)))
            .where(child.c.account_id == account_id, child.c.entity_type == "ad", child.c.date >= first,
                   child.c.date <= last)
            .distinct()
            .subquery()
        )
        rollup = d.alias("rollup")
        orphans = (
            select(rollup.c.id)
            .select_from(rollup.outerjoin(with_ads, and_(with_ads.c.entity_id == rollup.c.entity_id,
                                                         with_ads.c.date == rollup.c.date)))
            .where(rollup.c.account_id == account_id, rollup.c.entity_type == level, rollup.c.date >= first,
                   rollup.c.date <= last, with_ads.c.entity_id.is_(None))
        )
        ids = [i for (i,) in conn.execute(orphans)]
        for start in range(0, len(ids), 10_000):
            deleted += conn.execute(delete(d).where(d.c.id.in_(ids[start:start + 10_000]))).rowcount
    return deleted


def ensure_account(conn: Connection, path: Path, account_id: str, currency: str | None) -> None:
    """Create the account if it is new (two imports creating it at once both succeed), or check
    the file's currency against it."""
    table = AdAccount.__table__
    conn.execute(
        insert_for(conn, table).values(
            id=account_id, name=account_id, is_active=True, currency=currency, timezone="UTC",
            created_at=utcnow(), updated_at=utcnow(),
        ).on_conflict_do_nothing(index_elements=[table.c.id])
    )
    account = conn.execute(select(AdAccount.currency).where(AdAccount.id == account_id)).one()
    if currency and account.currency and account.currency.upper() != currency:
        raise InputFileError(
            path, f"account {account_id} is in {account.currency}, the file reports {currency}", row=1
        )
    if currency and not account.currency:
        conn.execute(table.update().where(table.c.id == account_id).values(currency=currency))


def _parse_batch(path: Path, raw: pd.DataFrame, fmt: _Format, result: ImportResult) -> pd.DataFrame:
    names = fmt.names
    ids = ["campaign_id", "adset_id", "ad_id"]
    # Ads Manager appends a summary row (account totals) without ids: not data.
    summary = (raw[ids] == "").all(axis=1)
    if summary.any():
        result.skipped_summary_rows += int(summary.sum())
        raw = raw.loc[~summary]
    if raw.empty:
        return pd.DataFrame()
    require_values(path, raw, {c: names[c] for c in ids})
    if "account" in names:
        _check_account(path, raw, names["account"], result.account_id)
    _check_texts(path, raw, fmt)
    if "date" not in raw.columns:
        raw = raw.assign(date=raw["reporting_start"])
    if "reporting_start" in names and "reporting_end" in names and names["date"] == names["reporting_start"]:
        differs = raw["reporting_start"] != raw["reporting_end"]
        row = first_bad(differs, raw.index)
        if row is not None:
            raise InputFileError(
                path, f"reporting period {raw.at[row, 'reporting_start']} .. {raw.at[row, 'reporting_end']} is not one "
                "day: export with the daily breakdown (Breakdown → By time → Day)", row=row, column=names["reporting_end"],
            )
    out = pd.DataFrame(index=raw.index)
    out["date"] = parse_dates(path, raw, "date", names["date"], earliest=fmt.earliest, latest=fmt.latest)
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
            number_format=fmt.numbers,
        )
        limit = settings.IMPORT_MAX_SPEND if column == "spend" else settings.IMPORT_MAX_COUNT
        row = first_bad(out[column] >= limit, raw.index) if column != "frequency" else None
        if row is not None:
            raise InputFileError(path, f"{raw.at[row, column]} is implausibly large for one ad-day (limit {limit:.0e})",
                                 row=row, column=names[column])
    too_many = out["clicks"] > out["impressions"]
    if too_many.any():
        row = int(out.index[np.flatnonzero(too_many.to_numpy())[0]])
        raise InputFileError(
            path,
            f"clicks ({out.at[row, 'clicks']:.0f}) exceed impressions ({out.at[row, 'impressions']:.0f})",
            row=row, column=names["clicks"],
        )
    if fmt.leads_from_results:
        _check_result_indicator(path, raw, out, fmt, result)
    _plausibility(out, result)
    # Frequency = impressions / reach when the file does not give it.
    with np.errstate(divide="ignore", invalid="ignore"):
        derived = np.where(out["reach"] > 0, out["impressions"] / out["reach"], np.nan)
    out["frequency"] = out["frequency"].fillna(pd.Series(derived, index=out.index))
    for column in ("campaign_name", "adset_name", "ad_name"):
        out[column] = raw[column].replace("", None) if column in names else None
    # a day still in progress when it was read (the Meta sync's today); files hold complete days
    out["partial_as_of"] = (pd.to_datetime(raw["partial_as_of"].replace("", None), utc=True)
                            if "partial_as_of" in raw.columns else pd.NaT)
    for level in ("campaign", "adset", "ad"):
        column = f"{level}_status"
        out[column] = _parse_status(raw, column, result) if column in names else None
    for level in ("campaign", "adset"):
        column = f"{level}_daily_budget"
        out[column] = _parse_budget(path, raw, level, names, result, fmt.numbers) if column in names else np.nan
    return out


def _same_account(value: str) -> str:
    """An account id as Meta writes it anywhere: "act_123", "123" and "act-123" are one account."""
    return value.strip().lower().removeprefix("act_").removeprefix("act-")


def _check_account(path: Path, raw: pd.DataFrame, column: str, account_id: str) -> None:
    """A file with an account column holds only the account it is imported into: a row of another
    account is refused (its rows would be stored under this one)."""
    other = (raw["account"] != "") & (raw["account"].map(_same_account) != _same_account(account_id))
    row = first_bad(other, raw.index)
    if row is not None:
        raise InputFileError(path, f"row of account {raw.at[row, 'account']!r}, not {account_id}: import each "
                             "account's rows with its own --account (filter the export by account)", row=row, column=column)


def _check_texts(path: Path, raw: pd.DataFrame, fmt: _Format) -> None:
    """Ids and names that both databases store alike: Meta's ids are digits (an id a spreadsheet
    turned into 2.385E+13 would merge entities), ids fit 64 characters and names 512."""
    for column in ("campaign_id", "adset_id", "ad_id"):
        values = raw[column]
        # each distinct id matched once (a daily file repeats every id each day)
        distinct = pd.Series(values.unique())
        if not distinct.str.fullmatch(SCIENTIFIC).any() and not (fmt.meta and not distinct.str.fullmatch(r"\d+").all()) \
                and not (distinct.str.len() > settings.IMPORT_MAX_ID_LENGTH).any():
            continue
        row = first_bad(values.str.fullmatch(SCIENTIFIC), raw.index)
        if row is not None:
            raise InputFileError(
                path, f"id {values.loc[row]!r} was turned into a number in scientific notation (by a spreadsheet?): "
                "the real id is lost; re-export the file", row=row, column=fmt.names[column])
        if fmt.meta:
            row = first_bad(~values.str.fullmatch(r"\d+"), raw.index)
            if row is not None:
                raise InputFileError(path, f"{values.loc[row]!r} is not a Meta id (digits only)",
                                     row=row, column=fmt.names[column])
        row = first_bad(values.str.len() > settings.IMPORT_MAX_ID_LENGTH, raw.index)
        if row is not None:
            raise InputFileError(path, f"id longer than {settings.IMPORT_MAX_ID_LENGTH} characters",
                                 row=row, column=fmt.names[column])
    for column in ("campaign_name", "adset_name", "ad_name"):
        if column in fmt.names:
            row = first_bad(raw[column].str.len() > settings.IMPORT_MAX_NAME_LENGTH, raw.index)
            if row is not None:
                raise InputFileError(path, f"name longer than {settings.IMPORT_MAX_NAME_LENGTH} characters",
                                     row=row, column=fmt.names[column])


def _check_result_indicator(path: Path, raw: pd.DataFrame, out: pd.DataFrame, fmt: _Format,
                            result: ImportResult) -> None:
    """"Results" are leads only where their indicator is a leads type (or one the user maps)."""
    if "result_indicator" not in fmt.names:
        result.notes.append(f'"{fmt.names["leads"]}" read as leads: the file has no "Result indicator" column')
        return
    indicator = raw["result_indicator"].map(normalise_header)
    is_lead = indicator.map(
        lambda v: any(w in v for w in LEAD_INDICATOR_WORDS) or v in fmt.lead_indicators
    ).astype(bool)
    counted = out["leads"] > 0
    row = first_bad(counted & ~is_lead, raw.index)
    if row is not None:
        raise InputFileError(
            path, f"result indicator {raw.at[row, 'result_indicator']!r} is not leads, so its "
            f"{out.at[row, 'leads']:.0f} results are not leads (export the Leads column, or map it with "
            f"--lead-indicator '{raw.at[row, 'result_indicator']}')", row=row, column=fmt.names["result_indicator"])


def _plausibility(out: pd.DataFrame, result: ImportResult) -> None:
    """Warnings that do not refuse: reach above impressions; frequency not impressions / reach."""
    result.warn("reach above impressions", out.index[(out["reach"] > out["impressions"]).to_numpy()])
    with np.errstate(divide="ignore", invalid="ignore"):
        implied = out["impressions"] / out["reach"]
    given = out["frequency"]
    off = given.notna() & (out["reach"] > 0) & (
        (given - implied).abs() > 0.01 + settings.IMPORT_FREQUENCY_TOLERANCE * implied)
    result.warn("frequency differs from impressions / reach", out.index[off.to_numpy()])


def _parse_status(raw: pd.DataFrame, column: str, result: ImportResult) -> pd.Series:
    words = raw[column].map(normalise_header)
    mapped = words.map(STATUS_WORDS)
    upper = raw[column].str.upper()
    mapped = mapped.where(mapped.notna(), upper.where(upper.isin(settings.ENTITY_STATUSES)))
    unknown = mapped.isna() & (raw[column] != "")
    if unknown.any():
        result.warn(f"unknown delivery status (status left as it was), e.g. {raw.loc[unknown, column].iloc[0]!r}",
                    raw.index[unknown.to_numpy()])
    return mapped.where(mapped.notna(), None)


def _parse_budget(path: Path, raw: pd.DataFrame, level: str, names: dict[str, str], result: ImportResult,
                  numbers: NumberFormat | None = None) -> pd.Series:
    """Daily budgets. A lifetime budget (the budget-type column says so) is not a daily budget and
    is not stored as one; text such as "Using campaign budget" means no budget of its own; a
    negative or unreadable budget is refused."""
    column = f"{level}_daily_budget"
    text = raw[column]
    readable = text.where(~text.str.contains(r"[a-zA-Z]", regex=True), "")  # words are read below
    values = pd.to_numeric(as_point_decimal(path, readable, names[column], numbers).where(readable != "", None),
                           errors="coerce").astype("float64")
    words = text.map(normalise_header)
    no_own = values.isna() & words.map(lambda w: any(x in w for x in NO_OWN_BUDGET_WORDS)).astype(bool)
    row = first_bad(values.isna() & (text != "") & ~no_own, raw.index)
    if row is not None:
        raise InputFileError(path, f"{text.loc[row]!r} is not a budget", row=row, column=names[column])
    row = first_bad((values < 0) | (values >= settings.IMPORT_MAX_BUDGET), raw.index)
    if row is not None:
        raise InputFileError(path, f"invalid budget {text.loc[row]}", row=row, column=names[column])
    kind_column = f"{level}_budget_type"
    if kind_column in names:
        kind = raw[kind_column].map(normalise_header)
        lifetime = kind.map(lambda w: any(x in w for x in LIFETIME_BUDGET_WORDS)).astype(bool)
        daily = kind.map(lambda w: any(x in w for x in DAILY_BUDGET_WORDS)).astype(bool)
        row = first_bad(values.notna() & ~lifetime & ~daily, raw.index)
        if row is not None:
            raise InputFileError(path, f"budget type {raw.at[row, kind_column]!r} is neither daily nor lifetime",
                                 row=row, column=names[kind_column])
        if (values.notna() & lifetime).any():
            result.warn(f"lifetime {level} budget (not stored as a daily budget)",
                        raw.index[(values.notna() & lifetime).to_numpy()])
        values = values.where(~lifetime)
    elif values.notna().any() and normalise_header(names[column]) not in (f"{level}dailybudget",):
        note = (f'"{names[column]}" read as daily budgets: add the budget type column to tell lifetime budgets apart')
        if note not in result.notes:
            result.notes.append(note)
    return values


@dataclass
class _Hierarchy:
    """Known parents of ads and adsets (bounded by the number of entities, not rows)."""

    account_id: str
    ad_parent: dict[str, tuple[str, str]]  # ad -> (adset, campaign)
    adset_parent: dict[str, str]  # adset -> campaign
    campaigns: set[str]
    #: level -> attribute (name, status, daily_budget) -> entity -> its stored value: an entity whose
    #: rows say what is stored already is not written again (a daily file repeats every ad each day)
    stored: dict[str, dict[str, dict[str, object]]]

    @classmethod
    def load(cls, conn: Connection, account_id: str) -> "_Hierarchy":
        ads = conn.execute(select(Ad.id, Ad.adset_id, Ad.campaign_id, Ad.name, Ad.status).where(Ad.account_id == account_id)).all()
        adsets = conn.execute(select(Adset.id, Adset.campaign_id, Adset.name, Adset.status, Adset.daily_budget)
                              .where(Adset.account_id == account_id)).all()
        campaigns = conn.execute(select(Campaign.id, Campaign.name, Campaign.status, Campaign.daily_budget)
                                 .where(Campaign.account_id == account_id)).all()
        stored = {
            "ad": {"name": {a.id: a.name for a in ads}, "status": {a.id: a.status for a in ads}},
            "adset": {"name": {s.id: s.name for s in adsets}, "status": {s.id: s.status for s in adsets},
                      "daily_budget": {s.id: s.daily_budget for s in adsets}},
            "campaign": {"name": {c.id: c.name for c in campaigns}, "status": {c.id: c.status for c in campaigns},
                         "daily_budget": {c.id: c.daily_budget for c in campaigns}},
        }
        return cls(
            account_id,
            {a.id: (a.adset_id, a.campaign_id) for a in ads},
            {s.id: s.campaign_id for s in adsets},
            {c.id for c in campaigns},
            stored,
        )

    def _unchanged(self, rows: pd.DataFrame, level: str, attributes: Sequence[str]) -> pd.Series:
        """Rows of entities already stored with every attribute the row gives."""
        stored = self.stored[level]
        ids = rows[f"{level}_id"]
        same = ids.isin(stored["name"].keys())
        for attribute in attributes:
            column = f"{level}_{attribute}"
            if column in rows.columns:
                given = rows[column]
                same &= given.isna() | (given == ids.map(stored[attribute]))
        return same

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
        self.adset_parent.update(zip(adsets["adset_id"], adsets["campaign_id"]))
        self.ad_parent.update(zip(ads["ad_id"], zip(ads["adset_id"], ads["campaign_id"])))
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
        has_budget = f"{level}_daily_budget" in rows.columns and level != "ad"
        attributes = ("name", "status", "daily_budget") if has_budget else ("name", "status")
        rows = rows.loc[~self._unchanged(rows, level, attributes)]
        groups: dict[tuple[str, ...], list[dict]] = {}
        for row in rows.to_dict("records"):
            record = {"account_id": self.account_id, "id": row[id_column], "created_at": now, "updated_at": now}
            for target, source in extra.items():
                record[target] = row[source]
            given = {"name": _given(row.get(f"{level}_name")), "status": _given(row.get(f"{level}_status"))}
            if has_budget:
                given["daily_budget"] = _given(row.get(f"{level}_daily_budget"))
            record["name"] = given["name"]
            record["status"] = given["status"] or "ACTIVE"  # a new entity without a status is active
            if has_budget:
                record["daily_budget"] = None if given["daily_budget"] is None else float(given["daily_budget"])
            # Names, statuses and budgets are updated only where the row carries them.
            groups.setdefault(tuple(c for c, v in given.items() if v is not None), []).append(record)
            entity = record["id"]
            new = entity not in self.stored[level]["name"]
            for attribute in attributes:
                if new or given[attribute] is not None:
                    self.stored[level][attribute][entity] = record[attribute]
        for update, records in groups.items():
            stmt = upsert(conn, table, key=("account_id", "id"), update=list(update) or ["id"], always=["updated_at"])
            conn.execute(stmt, records)


def _given(value: object) -> object:
    """A cell's value, or None when it is empty or missing (None, NaN)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return value


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
            func.round(cast(func.sum(d.c.spend), Numeric(32, 8)), 6),
            func.sum(d.c.leads),
            func.sum(d.c.conversions),
            cast(impressions, Float) / func.nullif(reach, 0),
            literal(now, DailyInsight.__table__.c.updated_at.type),
            func.max(d.c.partial_as_of),
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
        "spend", "leads", "conversions", "frequency", "updated_at", "partial_as_of",
    ]
    stmt = upsert(
        conn, d,
        key=("account_id", "entity_type", "entity_id", "date"),
        update=METRIC_COLUMNS,
        always=["updated_at", "partial_as_of"],
        nullness=["partial_as_of"],
        select=query,
        columns=columns,
    )
    conn.execute(stmt)

