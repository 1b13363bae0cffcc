"""Importing insights: Meta exports, the canonical form, upserts, and every kind of bad input."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from ads_ml.db.models import AdAccount, Ad, Adset, Campaign
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.insights import import_insights
from ads_ml_tests.helpers import CANONICAL, META_EXPORT, count, snapshot, write_csv


def _daily(engine, level: str) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(
            sa.text(
                "select entity_id, date, impressions, reach, clicks, spend, leads, conversions, frequency "
                "from daily_insights where entity_type = :level order by entity_id, date"
            ),
            conn,
            params={"level": level},
        )


def test_meta_export_is_imported_with_rollups(engine, tmp_path):
    path = write_csv(tmp_path / "meta.csv", META_EXPORT)
    result = import_insights(engine, path, "act_1")

    assert result.rows == 5
    assert (result.campaigns_created, result.adsets_created, result.ads_created) == (1, 2, 3)
    assert result.first_date == dt.date(2026, 3, 1) and result.last_date == dt.date(2026, 3, 2)
    with Session(engine) as conn:
        account = conn.execute(sa.select(AdAccount)).scalar_one()
        assert account.currency == "BRL"
        adsets = {a.id: a for a in conn.execute(sa.select(Adset)).scalars()}
        ads = {a.id: a for a in conn.execute(sa.select(Ad)).scalars()}
        campaign = conn.execute(sa.select(Campaign)).scalar_one()
    assert campaign.name == "Leads BR"
    assert adsets["221"].name == "Broad 25-45" and adsets["221"].campaign_id == "111"
    assert adsets["221"].daily_budget == 150.0
    assert adsets["222"].daily_budget is None  # "Using campaign budget" is not a number
    assert ads["332"].status == "PAUSED" and ads["331"].status == "ACTIVE"

    ad = _daily(engine, "ad")
    row = ad[(ad.entity_id == "332")].iloc[0]
    assert row.leads == 0  # a blank Leads cell is zero
    assert row.frequency == pytest.approx(5000 / 4500)  # derived when the export leaves it blank
    assert ad[(ad.entity_id == "331")].spend.tolist() == [100.5, 110.0]

    adset = _daily(engine, "adset")
    adset["date"] = adset["date"].astype(str)
    first = adset.set_index(["entity_id", "date"]).loc[("221", "2026-03-01")]
    assert first.spend == pytest.approx(150.75)
    assert first.impressions == 15000 and first.clicks == 160 and first.leads == 10
    assert first.reach == 12500 and first.frequency == pytest.approx(15000 / 12500)
    campaign_days = _daily(engine, "campaign")
    assert campaign_days.spend.round(2).tolist() == [180.75, 145.5]
    assert campaign_days.leads.tolist() == [13, 12]


def test_headers_match_ignoring_case_and_spacing_and_clicks_all(engine, tmp_path):
    text = """
 day ,CAMPAIGN id,ad set  ID,Ad-ID,amount SPENT (usd),IMPRESSIONS,Clicks (all),RESULTS
2026-01-05,1,2,3,9.99,100,7,1
"""
    import_insights(engine, write_csv(tmp_path / "odd.csv", text), "act_2")
    ad = _daily(engine, "ad")
    assert ad.clicks.tolist() == [7] and ad.leads.tolist() == [1] and ad.spend.tolist() == [9.99]
    assert ad.reach.isna().all()  # no reach column: missing, not zero


def test_canonical_form_and_reimport_changes_nothing(engine, tmp_path):
    path = write_csv(tmp_path / "canonical.csv", CANONICAL)
    import_insights(engine, path, "act_3")
    before = snapshot(engine)
    again = import_insights(engine, path, "act_3")
    assert again.rows_changed == 0
    assert snapshot(engine) == before
    assert count(engine, "daily_insights", "entity_type = 'ad'") == 3
    assert count(engine, "daily_insights", "entity_type = 'adset'") == 2
    assert _daily(engine, "ad").conversions.tolist() == [1, 2, 0]


def test_reimport_with_a_corrected_value_updates_rows_and_rollups(engine, tmp_path):
    import_insights(engine, write_csv(tmp_path / "v1.csv", CANONICAL), "act_4")
    corrected = CANONICAL.replace("2026-03-01,c1,s1,a1,1000,800,20,10.0,2,1", "2026-03-01,c1,s1,a1,1000,800,20,14.0,2,1")
    result = import_insights(engine, write_csv(tmp_path / "v2.csv", corrected), "act_4")
    assert result.rows_changed == 3  # the ad day, its adset day and its campaign day
    adset = _daily(engine, "adset")
    assert adset.spend.tolist()[0] == pytest.approx(19.0)


def test_batches_stream_and_catch_duplicates_across_batches(engine, tmp_path):
    lines = ["date,campaign_id,adset_id,ad_id,impressions,reach,clicks,spend,leads,conversions"]
    start = dt.date(2026, 1, 1)
    for day in range(30):
        for ad in range(5):
            lines.append(f"{start + dt.timedelta(days=day)},c1,s{ad % 2},a{ad},100,90,5,1.5,1,0")
    path = write_csv(tmp_path / "many.csv", "\n".join(lines))
    result = import_insights(engine, path, "act_5", batch_rows=7)
    assert result.rows == 150
    assert count(engine, "daily_insights", "entity_type = 'ad'") == 150

    before = snapshot(engine)
    lines.append(f"{start},c1,s0,a0,100,90,5,1.5,1,0")  # same ad and day as row 2, many batches later
    dup = write_csv(tmp_path / "dup.csv", "\n".join(lines))
    with pytest.raises(InputFileError, match=r"row 152, column \"ad_id\": ad a0 on 2026-01-01 appears twice"):
        import_insights(engine, dup, "act_5", batch_rows=7)
    assert snapshot(engine) == before


BAD_INPUTS = {
    "missing_column": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,leads\n2026-01-01,c,s,a,1,0,0",
        r'row 1, column "spend": required column is missing',
    ),
    "bad_date": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-01-01,c,s,a,1,0,1,0\n2026-13-45,c,s,a,1,0,1,0",
        r'row 3, column "date": \'2026-13-45\' is not a date',
    ),
    "bad_number": (
        "Day,Campaign ID,Ad set ID,Ad ID,Amount spent (EUR),Impressions,Link clicks,Leads\n2026-01-01,11,12,13,12abc,10,1,0",
        r'row 2, column "Amount spent \(EUR\)": \'12abc\' is not a number',
    ),
    "negative_spend": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-01-01,c,s,a,10,1,-5,0",
        r'row 2, column "spend": negative value -5',
    ),
    "clicks_over_impressions": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-01-01,c,s,a,10,1,1,0\n2026-01-02,c,s,a,10,11,1,0",
        r'row 3, column "clicks": clicks \(11\) exceed impressions \(10\)',
    ),
    "ad_moves_adset_in_file": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-01-01,c9,s91,a9,10,1,1,0\n2026-01-02,c9,s92,a9,10,1,1,0",
        r'row 3, column "adset_id": ad a9 moves from adset s91 to s92',
    ),
    "fractional_leads": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-01-01,c,s,a,10,1,1,0.5",
        r'row 2, column "leads": \'0.5\' is not a whole number',
    ),
    "missing_ad_id": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-01-01,c,s,,10,1,1,0",
        r'row 2, column "ad_id": empty value',
    ),
    "header_only": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads",
        r"no data rows",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_database_unchanged(engine, tmp_path, case):
    import_insights(engine, write_csv(tmp_path / "good.csv", CANONICAL), "act_bad")
    before = snapshot(engine)
    text, message = BAD_INPUTS[case]
    path = write_csv(tmp_path / f"{case}.csv", text)
    with pytest.raises(InputFileError, match=message) as info:
        import_insights(engine, path, "act_bad")
    assert f"{case}.csv" in str(info.value) and "\n" not in str(info.value)
    assert snapshot(engine) == before


def test_ad_moving_to_another_adset_than_stored_is_refused(engine, tmp_path):
    import_insights(engine, write_csv(tmp_path / "good.csv", CANONICAL), "act_mv")
    before = snapshot(engine)
    moved = "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-03-05,c1,s9,a1,10,1,1,0"
    with pytest.raises(InputFileError, match=r'row 2, column "adset_id": ad a1 belongs to adset s1, the file puts it in s9'):
        import_insights(engine, write_csv(tmp_path / "moved.csv", moved), "act_mv")
    assert snapshot(engine) == before


def test_empty_and_binary_files_are_refused(engine, tmp_path):
    import_insights(engine, write_csv(tmp_path / "good.csv", CANONICAL), "act_e")
    before = snapshot(engine)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match=r"empty\.csv: file is empty"):
        import_insights(engine, empty, "act_e")
    binary = tmp_path / "report.xlsx"
    binary.write_bytes(b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(range(256)))
    with pytest.raises(InputFileError, match=r"report\.xlsx, row 1: an Excel workbook that cannot be read \(BadZipFile\): save it as \"CSV UTF-8"):
        import_insights(engine, binary, "act_e")
    not_csv = write_csv(tmp_path / "notes.txt", "just some words\nand more words")
    with pytest.raises(InputFileError, match=r"notes\.txt, row 1: not a CSV file"):
        import_insights(engine, not_csv, "act_e")
    assert snapshot(engine) == before


def test_currency_conflict_and_invalid_account_id(engine, tmp_path):
    meta = write_csv(tmp_path / "meta.csv", META_EXPORT)
    import_insights(engine, meta, "act_cur")
    usd = write_csv(tmp_path / "usd.csv", META_EXPORT.replace("(BRL)", "(USD)"))
    with pytest.raises(InputFileError, match="account act_cur is in BRL, the file reports USD"):
        import_insights(engine, usd, "act_cur")
    with pytest.raises(ValueError, match="account id 'act 1/2' is not valid"):
        import_insights(engine, meta, "act 1/2")


def test_summary_row_of_ads_manager_is_skipped(engine, tmp_path):
    text = META_EXPORT.strip() + "\n,,,,,,,286.25,32500,27200,,345,25,,\n"
    result = import_insights(engine, write_csv(tmp_path / "with_total.csv", text), "act_sum")
    assert result.rows == 5 and result.skipped_summary_rows == 1


def _rollups_equal_their_ads(engine: sa.Engine, account: str) -> None:
    """Every adset and campaign day is the sum of its ads' days, and every ad day has both."""
    with engine.connect() as conn:
        for level, parent in (("adset", "adset_id"), ("campaign", "campaign_id")):
            sums = conn.execute(sa.text(f"""
                select a.{parent} as entity_id, d.date, sum(d.spend) as spend, sum(d.impressions) as impressions
                from daily_insights d join ads a on a.account_id = d.account_id and a.id = d.entity_id
                where d.account_id = :a and d.entity_type = 'ad' group by a.{parent}, d.date"""), {"a": account}).all()
            stored = conn.execute(sa.text(
                "select entity_id, date, spend, impressions from daily_insights where account_id = :a and entity_type = :l"),
                {"a": account, "l": level}).all()
            expected = {(r.entity_id, str(r.date)): (round(float(r.spend), 6), int(r.impressions)) for r in sums}
            assert {(r.entity_id, str(r.date)): (round(float(r.spend), 6), int(r.impressions)) for r in stored} == expected, level


@pytest.mark.parametrize("other", ["delete", "replace"])
def test_one_accounts_writes_wait_for_each_other_and_roll_ups_always_equal_their_ads(engine, tmp_path, monkeypatch, other):
    """An import that has rolled its new ad rows up but not committed yet (where the race was: the
    other write's roll-up cannot see them): a delete or a --replace of the same account waits for
    it, and the roll-ups equal their ads."""
    import threading

    from ads_ml.ingest import insights
    from ads_ml.ingest.insights import delete_insights

    header = CANONICAL.strip().splitlines()[0]
    base = "\n".join([header, "2026-03-01,c1,s1,a1,1000,800,20,10.0,2,1", "2026-03-02,c1,s1,a1,1200,900,25,12.0,3,2"])
    import_insights(engine, write_csv(tmp_path / "base.csv", base), "act_race")
    import_insights(engine, write_csv(tmp_path / "other.csv", CANONICAL), "act_other")
    paused, go, errors = threading.Event(), threading.Event(), []
    real = insights._roll_up

    def roll_up(conn, account_id, level, *args, **kwargs):  # noqa: ANN001, ANN202
        real(conn, account_id, level, *args, **kwargs)
        if threading.current_thread().name == "import" and level == "campaign":
            paused.set()
            go.wait(60)

    monkeypatch.setattr(insights, "_roll_up", roll_up)

    def run(name: str, work) -> threading.Thread:  # noqa: ANN001
        def target() -> None:
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append((name, exc))
        thread = threading.Thread(target=target, name=name)
        thread.start()
        return thread

    new_ad = write_csv(tmp_path / "new_ad.csv", "\n".join([header, "2026-03-01,c1,s1,a2,500,450,10,5.0,0,0"]))
    importing = run("import", lambda: import_insights(engine, new_ad, "act_race"))
    assert paused.wait(60)
    if other == "delete":
        second = run(other, lambda: delete_insights(engine, "act_race", dt.date(2026, 3, 1), dt.date(2026, 3, 1)))
    else:  # 2026-03-01 is a1's 7.0 alone
        only_a1 = write_csv(tmp_path / "only.csv", "\n".join([header, "2026-03-01,c1,s1,a1,700,600,14,7.0,1,0"]))
        second = run(other, lambda: import_insights(engine, only_a1, "act_race", replace=True))
    second.join(2)
    assert second.is_alive(), "the second write did not wait for the import in progress"
    # another account: on PostgreSQL not held up at all; on SQLite (one writer per database) it waits, never refused
    elsewhere = run("elsewhere", lambda: import_insights(
        engine, write_csv(tmp_path / "other2.csv", CANONICAL.replace(",5.0,", ",6.0,")), "act_other"))
    elsewhere.join(20 if engine.dialect.name == "postgresql" else 2)
    assert elsewhere.is_alive() == (engine.dialect.name == "sqlite")
    go.set()
    for thread in (importing, second, elsewhere):
        thread.join(60)
    assert not errors, errors
    _rollups_equal_their_ads(engine, "act_race")
    _rollups_equal_their_ads(engine, "act_other")
    with engine.connect() as conn:
        ads = conn.execute(sa.text("select entity_id, date, spend from daily_insights where account_id = 'act_race' "
                                   "and entity_type = 'ad' order by entity_id, date")).all()
    # the second write came after the import and saw its ad: both are gone from 2026-03-01
    expected = [("a1", "2026-03-02", 12.0)] if other == "delete" else [("a1", "2026-03-01", 7.0), ("a1", "2026-03-02", 12.0)]
    assert [(a, str(d), float(s)) for a, d, s in ads] == expected


def test_an_import_waits_for_another_accounts_long_write_on_sqlite_instead_of_being_refused(tmp_path, monkeypatch):
    """SQLite has one writer per database: an import arriving while a long write holds it (here 3 s,
    beyond a 1 s busy timeout) waits for it (``ADS_ML_IMPORT_WAIT_SECONDS``) instead of failing with
    "database is locked"."""
    import sqlite3
    import threading
    import time

    from ads_ml.db.engine import dispose_engine, get_engine
    from ads_ml.db.migrate import migrate

    monkeypatch.setenv("ADS_ML_SQLITE_BUSY_TIMEOUT_SECONDS", "1")
    url = f"sqlite:///{tmp_path / 'one_writer.db'}"
    migrate(url)
    engine = get_engine(url)
    try:
        holding, released = threading.Event(), threading.Event()

        def long_write() -> None:
            other = sqlite3.connect(tmp_path / "one_writer.db", isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            holding.set()
            time.sleep(3)
            other.execute("COMMIT")
            released.set()
            other.close()

        writer = threading.Thread(target=long_write)
        writer.start()
        assert holding.wait(10)
        result = import_insights(engine, write_csv(tmp_path / "small.csv", CANONICAL), "act_small")
        assert released.is_set() and result.rows == 3
        writer.join()
        monkeypatch.setenv("ADS_ML_IMPORT_WAIT_SECONDS", "1")  # told to wait less: refused, naming why
        holding.clear()
        writer = threading.Thread(target=long_write)
        writer.start()
        assert holding.wait(10)
        with pytest.raises(InputFileError, match="locked|busy"):
            import_insights(engine, write_csv(tmp_path / "small2.csv", CANONICAL.replace(",5.0,", ",6.0,")), "act_small")
        writer.join()
    finally:
        dispose_engine(url)
