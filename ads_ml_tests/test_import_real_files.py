"""Files shaped like real Ads Manager exports, through the CLI as a user runs it, on SQLite and
PostgreSQL: every file that could be stored wrongly is refused with one line naming file, row and
column and the database unchanged; real exports (any delivery status, Portuguese and Spanish
headers, summary rows) are accepted and stored right; a wrong import can be undone."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
import sqlalchemy as sa

from ads_ml.cli import main
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.insights import STATUS_WORDS, database_error, import_insights
from ads_ml_tests.helpers import count, snapshot, write_csv

EN_HEADER = ("Day,Campaign ID,Campaign name,Ad set ID,Ad set name,Ad ID,Ad name,Amount spent (BRL),Impressions,"
             "Reach,Frequency,Link clicks,Leads")
EN_ROWS = [
    "2026-09-01,23850001,Leads BR,23860001,Broad,23870001,Video A,39.01,2300,2100,1.10,41,3",
    "2026-09-01,23850001,Leads BR,23860001,Broad,23870002,Static B,12.50,900,850,1.06,9,1",
    "2026-09-02,23850001,Leads BR,23860001,Broad,23870001,Video A,41.20,2400,2150,1.12,44,2",
]
GOOD = "\n".join([EN_HEADER, *EN_ROWS])


def _file(tmp_path, name: str, text: str):  # noqa: ANN001, ANN202
    return write_csv(tmp_path / name, text)


def _refused(tmp_path, engine, capsys, name: str, text: str | bytes, pattern: str, *extra: str) -> None:  # noqa: ANN001
    """Import ``text`` through the CLI after a good file: exit 1, one line on stderr naming the
    file (and the row/column in ``pattern``), and nothing stored changed."""
    assert main(["import", "insights", str(_file(tmp_path, "good.csv", GOOD)), "--account", "act_real"]) == 0
    capsys.readouterr()
    before = snapshot(engine)
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        write_csv(path, text)
    assert main(["import", "insights", str(path), "--account", "act_real", *extra]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.search(pattern, err), err
    assert f"error: {name}" in err
    assert snapshot(engine) == before


REFUSED = {
    # the last row cut in the middle (no newline): it would overwrite the ad-day with impressions 23
    "truncated_last_row": (
        (GOOD + "\n2026-09-02,23850001,Leads BR,23860001,Broad,23870002,Static B,39.01,23").encode(),
        r'row 5: row has 9 fields, the header has 13: the file looks cut short'),
    "last_row_without_line_break": (
        (GOOD + "\n2026-09-02,23850001,Leads BR,23860001,Broad,23870002,Static B,39.01,2300,2100,1.10,41,2").encode(),
        r"row 5: the file does not end with a line break"),
    "export_without_daily_breakdown": (
        "Reporting starts,Reporting ends,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads\n"
        "2026-08-22,2026-09-30,23850001,23860001,23870001,1523.10,90000,1500,88",
        r'row 2, column "Reporting ends": reporting period 2026-08-22 \.\. 2026-09-30 is not one day'),
    "no_day_column": (
        "Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads\n23850001,23860001,23870001,1,10,1,0",
        r'row 1, column "Day": no per-day column'),
    "year_only_date": (EN_HEADER + "\n2026,23850001,c,23860001,s,23870001,a,1,10,9,1.1,1,0",
                       r'row 2, column "Day": \'2026\' is not a date'),
    "month_only_date": (EN_HEADER + "\n2026-08,23850001,c,23860001,s,23870001,a,1,10,9,1.1,1,0",
                        r'row 2, column "Day": \'2026-08\' is not a date'),
    "date_with_offset": (EN_HEADER + "\n2026-08-01T00:00:00+02:00,23850001,c,23860001,s,23870001,a,1,10,9,1.1,1,0",
                         r'row 2, column "Day": \'2026-08-01T00:00:00\+02:00\' is not a date'),
    "date_in_the_future": (EN_HEADER + "\n2099-01-01,23850001,c,23860001,s,23870001,a,1,10,9,1.1,1,0",
                           r'row 2, column "Day": date 2099-01-01 is in the future'),
    "date_long_ago": (EN_HEADER + "\n1999-01-01,23850001,c,23860001,s,23870001,a,1,10,9,1.1,1,0",
                      r'row 2, column "Day": date 1999-01-01 is before'),
    "id_in_scientific_notation": (EN_HEADER + "\n2026-09-03,2.385E+13,c,23860001,s,23870001,a,1,10,9,1.1,1,0",
                                  r'row 2, column "Campaign ID": id \'2.385E\+13\' was turned into a number'),
    "non_digit_meta_id": (EN_HEADER + "\n2026-09-03,23850001,c,23860001,s,ad-1,a,1,10,9,1.1,1,0",
                          r'row 2, column "Ad ID": \'ad-1\' is not a Meta id'),
    "results_that_are_link_clicks": (
        "Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Results,Result indicator\n"
        "2026-09-03,23850001,23860001,23870001,5,100,4,0,\n"
        "2026-09-03,23850001,23860001,23870002,5,100,4,4,actions:link_click",
        r'row 3, column "Result indicator": result indicator \'actions:link_click\' is not leads'),
    "negative_budget": (
        "Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads,Ad set budget\n"
        "2026-09-03,23850001,23860001,23870001,5,100,4,0,-50",
        r'row 2, column "Ad set budget": invalid budget -50'),
    "unreadable_budget": (
        "Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads,Ad set budget\n"
        "2026-09-03,23850001,23860001,23870001,5,100,4,0,fifty",
        r'row 2, column "Ad set budget": \'fifty\' is not a budget'),
    "id_too_long": (
        "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\n2026-09-03,c,s," + "a" * 65 + ",10,1,1,0",
        r'row 2, column "ad_id": id longer than 64 characters'),
    "name_too_long": (EN_HEADER + "\n2026-09-03,23850001," + "n" * 513 + ",23860001,s,23870001,a,1,10,9,1.1,1,0",
                      r'row 2, column "Campaign name": name longer than 512 characters'),
    "spend_too_large": (EN_HEADER + "\n2026-09-03,23850001,c,23860001,s,23870001,a,1e12,10,9,1.1,1,0",
                        r'row 2, column "Amount spent \(BRL\)": 1e12 is implausibly large'),
    "impressions_too_large": (EN_HEADER + "\n2026-09-03,23850001,c,23860001,s,23870001,a,1,1e20,9,1.1,1,0",
                              r'row 2, column "Impressions": 1e20 is implausibly large'),
    # the same ad-day twice, side by side: on PostgreSQL too the message names both rows
    "same_ad_day_twice_in_a_row": (GOOD + "\n" + EN_ROWS[-1],
                                   r'row 5, column "Ad ID": ad 23870001 on 2026-09-02 appears twice in the file \(first in row 4\)'),
    # an export of two accounts: the second one's rows would be stored under --account act_real
    "rows_of_another_account": (
        "Account ID,Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads\n"
        "act_real,2026-09-03,23850001,23860001,23870001,5,100,4,0\n"
        "998877,2026-09-03,23850009,23860009,23870009,5,100,4,0",
        r'row 3, column "Account ID": row of account \'998877\', not act_real: import each account\'s rows'),
    # a decimal comma in one row, a decimal point in another: "1.191" cannot be read one way only
    "decimal_comma_and_point_in_one_file": (
        EN_HEADER.replace(",", ";") + "\n2026-09-03;23850001;c;23860001;s;23870001;a;11,91;10;9;1;1;0"
        "\n2026-09-04;23850001;c;23860001;s;23870001;a;12.50;10;9;1;1;0",
        r"row 3, column \"Amount spent \(BRL\)\": '12.50' is written with a decimal point, but this file writes "
        r"numbers with a decimal comma \('11,91' in row 2"),
    # only "1.191"-like numbers: 1191 with a thousands dot, or 1.191? nothing in the file tells
    "thousands_or_decimal_cannot_be_told": (
        EN_HEADER.replace(",", ";") + "\n2026-09-03;23850001;c;23860001;s;23870001;a;1.191;1500;900;1;1;0",
        r"row 2, column \"Amount spent \(BRL\)\": '1.191' reads as 1191 with a thousands separator or as 1.191"),
}

ENCODINGS = {
    # UTF-16 without a byte-order mark: the byte order is a guess
    "utf16_without_mark": ((GOOD.replace(",", "\t") + "\n").encode("utf-16-le"), r"row 1: UTF-16 text without a byte-order mark.*CSV UTF-8"),
    # a UTF-16 file whose third row holds a lone surrogate: not UTF-16 there
    "utf16_broken": ((GOOD.replace(",", "\t") + "\n").encode("utf-16") + b"\x00\xd8\x41\x00", r"UTF-16 text with bytes that are not UTF-16"),
    # Excel's "CSV (Comma delimited)" on Windows: "Vídeo" in Windows-1252, on row 3
    "windows_1252": ((EN_HEADER + "\n" + EN_ROWS[0] + "\n" + EN_ROWS[1].replace("Static B", "Vídeo B") + "\n").encode("cp1252"),
                     r"row 3: not UTF-8 text \(it looks like Windows-1252.*CSV UTF-8"),
    # a broken workbook
    "broken_xlsx": (b"PK\x03\x04" + b"\x14\x00" * 40, r"row 1: an Excel workbook that cannot be read \(BadZipFile\)"),
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_files_in_another_encoding_are_refused_naming_it_and_how_to_export_utf8(app_env, engine, tmp_path, capsys, case):
    data, pattern = ENCODINGS[case]
    _refused(tmp_path, engine, capsys, f"{case}.csv", data, pattern)


def test_excels_unicode_text_is_read_like_its_csv(app_env, engine, tmp_path, capsys):
    # Excel's "Unicode text": UTF-16 with a byte-order mark, tab-separated; "Vídeo" stored as written
    unicode_text = (GOOD.replace(",", "\t").replace("Static B", "Vídeo B") + "\n").encode("utf-16")
    (tmp_path / "unicode.txt").write_bytes(unicode_text)
    assert main(["import", "insights", str(tmp_path / "unicode.txt"), "--account", "act_u16"]) == 0
    assert main(["import", "insights", str(_file(tmp_path, "same.csv", GOOD.replace("Static B", "Vídeo B") + "\n")),
                 "--account", "act_u8"]) == 0
    with engine.connect() as conn:
        stored = {a: sorted(map(tuple, rows)) for a in ("act_u16", "act_u8") for rows in [conn.execute(sa.text(
            "select entity_type, entity_id, date, spend, leads from daily_insights where account_id = :a"), {"a": a}).all()]}
        names = conn.execute(sa.text("select count(*) from ads where account_id = 'act_u16' and name = 'Vídeo B'")).scalar()
    assert stored["act_u16"] == stored["act_u8"] and len(stored["act_u16"]) > 0
    assert names == 1


def test_cr_only_line_endings_and_portuguese_reporting_period_are_read(app_env, engine, tmp_path, capsys):
    path = tmp_path / "mac.csv"
    path.write_bytes(("\r".join([EN_HEADER, *EN_ROWS]) + "\r").encode())
    assert main(["import", "insights", str(path), "--account", "act_cr"]) == 0
    period = ("Início dos relatórios,Encerramento dos relatórios,Identificação da campanha,"
              "Identificação do conjunto de anúncios,Identificação do anúncio,Valor usado (BRL),Impressões,Cliques no link,"
              "Leads\n2026-09-01,2026-09-01,23850001,23860001,23870001,5.50,100,4,1\n")
    assert main(["import", "insights", str(_file(tmp_path, "pt_period.csv", period)), "--account", "act_ptp"]) == 0
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.text("select account_id, sum(spend) from daily_insights where entity_type = 'ad' "
                                           "group by account_id")).all())
    assert stored == {"act_cr": pytest.approx(92.71), "act_ptp": pytest.approx(5.5)}
    # an account column naming the account imported into ("123", "act_123": one account) is fine
    own = ("Account ID,Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads\n"
           "123,2026-09-03,23850001,23860001,23870001,5,100,4,0\n")
    assert main(["import", "insights", str(_file(tmp_path, "own.csv", own)), "--account", "act_123"]) == 0


def test_ads_managers_xlsx_download_is_read_like_its_csv(app_env, engine, tmp_path, capsys):
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(EN_HEADER.split(","))
    for line in EN_ROWS:
        cells = line.split(",")
        day = dt.datetime.fromisoformat(cells[0])  # Excel stores the day as a date, the ids as text
        sheet.append([day, *cells[1:7], *(float(v) for v in cells[7:])])
    workbook.save(tmp_path / "export.xlsx")
    assert main(["import", "insights", str(tmp_path / "export.xlsx"), "--account", "act_x"]) == 0
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select count(*), sum(spend), sum(leads) from daily_insights "
                                      "where account_id = 'act_x' and entity_type = 'ad'")).one()
    assert tuple(stored) == (3, pytest.approx(92.71), 6)
    # an id a spreadsheet turned into a number (digits lost) is refused, as in a CSV
    sheet.append([dt.datetime(2026, 9, 3), "23850001", "c", "23860001", "s", 2.3870000000000002e16, "a", 1.0, 10, 9, 1.1, 1, 0])
    workbook.save(tmp_path / "rounded.xlsx")
    assert main(["import", "insights", str(tmp_path / "rounded.xlsx"), "--account", "act_x"]) == 1
    assert re.search(r'rounded\.xlsx, row 5, column "Ad ID": id .* was turned into a number', capsys.readouterr().err)


BRAZILIAN_EXCEL = (  # Excel's CSV in pt-BR: ";" between fields, decimal comma, thousands dot
    "Dia;Identificação da campanha;Identificação do conjunto de anúncios;Identificação do anúncio;Valor usado (BRL);"
    "Impressões;Alcance;Frequência;Cliques no link;Resultados;Indicador de resultados;Orçamento do conjunto de anúncios\n"
    "2026-09-01;23850001;23860001;23870001;1.191;12.300;10.100;1,22;41;3;actions:onsite_conversion.lead_grouped;1.500,00\n"
    "2026-09-01;23850001;23860001;23870002;11,91;900;850;1,06;9;1;actions:onsite_conversion.lead_grouped;1.500,00\n"
    "2026-09-02;23850001;23860001;23870001;1.234,56;2.400;2.150;1,12;44;2;actions:onsite_conversion.lead_grouped;1.500,00\n"
)


def test_brazilian_excel_csv_with_decimal_comma_and_thousands_dot_is_stored_right(app_env, engine, tmp_path, capsys):
    assert main(["import", "insights", str(_file(tmp_path, "br.csv", BRAZILIAN_EXCEL)), "--account", "act_br"]) == 0
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select entity_id, date, spend, impressions, reach, clicks, leads from daily_insights "
            "where account_id = 'act_br' and entity_type = 'ad' order by entity_id, date")).all()
        budgets = dict(conn.execute(sa.text("select id, daily_budget from adsets where account_id = 'act_br'")).all())
    # "1.191" is R$ 1,191: the file's decimal comma ("11,91", "1,22") says its dots group thousands
    assert [(r.entity_id, str(r.date), r.spend, r.impressions, r.reach, r.clicks, r.leads) for r in rows] == [
        ("23870001", "2026-09-01", 1191.0, 12300, 10100, 41, 3), ("23870001", "2026-09-02", 1234.56, 2400, 2150, 44, 2),
        ("23870002", "2026-09-01", 11.91, 900, 850, 9, 1)]
    assert budgets == {"23860001": 1500.0}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_file_that_could_be_stored_wrongly_is_refused(app_env, engine, tmp_path, capsys, case):
    text, pattern = REFUSED[case]
    _refused(tmp_path, engine, capsys, f"{case}.csv", text, pattern)


def _big_file(bad_line: bytes) -> bytes:
    """Over 64 KB of good rows, then ``bad_line`` (past what the header check reads)."""
    rows = [f"2026-08-{1 + i // 400:02d},23850001,c,23860001,s,{23870000 + i % 400},a,1,10,9,1.1,1,0"
            for i in range(1200)]
    return (EN_HEADER + "\n" + "\n".join(rows) + "\n").encode() + bad_line + b"\n"


def test_nul_bytes_and_non_utf8_past_the_first_64_kb_are_refused_with_their_row(app_env, engine, tmp_path, capsys):
    good_row = b"2026-08-05,23850001,c,23860001,s,23870001,a,1,10,9,1.1,1,0"
    assert len(_big_file(b"")) > 64 * 1024
    _refused(tmp_path, engine, capsys, "nul.csv", _big_file(good_row.replace(b",a,", b",a\x00b,")),
             r"row 1202: NUL byte")
    _refused(tmp_path, engine, capsys, "latin1.csv", _big_file(good_row.replace(b",a,", b",An\xfancio,")),
             r"row 1202: not UTF-8 text")


def test_result_indicator_mapped_by_the_user_is_accepted(app_env, engine, tmp_path, capsys):
    text = ("Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Results,Result indicator\n"
            "2026-09-03,23850001,23860001,23870001,5,100,4,3,actions:lead\n"
            "2026-09-03,23850001,23860001,23870002,5,100,4,4,offsite_conversion.fb_pixel_custom")
    path = _file(tmp_path, "custom.csv", text)
    assert main(["import", "insights", str(path), "--account", "act_ri"]) == 1
    assert "fb_pixel_custom" in capsys.readouterr().err
    assert main(["import", "insights", str(path), "--account", "act_ri",
                 "--lead-indicator", "offsite_conversion.fb_pixel_custom"]) == 0
    assert count(engine, "daily_insights", "entity_type = 'ad' and leads > 0") == 2


def test_every_real_delivery_status_is_accepted(app_env, engine, tmp_path, capsys):
    words = ["Active", "Inactive", "Not delivering", "rejected", "in_review", "Learning", "Learning limited",
             "completed", "Off", "with_issues", "pending_review", "recently_completed", "scheduled", "Archived",
             "Deleted", "Campaign off", "Ad set off", "Ativo", "Inativo", "Em análise", "Concluído", "Rechazado",
             "En pausa", "something new"]
    rows = [f"2026-09-03,23850001,23860001,{23870100 + i},5,100,4,1,{w}" for i, w in enumerate(words)]
    path = _file(tmp_path, "statuses.csv",
                 "Day,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads,Ad delivery\n"
                 + "\n".join(rows))
    assert main(["import", "insights", str(path), "--account", "act_st"]) == 0
    out = capsys.readouterr().out
    assert "warning: unknown delivery status (status left as it was), e.g. 'something new': 1 row(s), first rows 25" in out
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text("select id, status from ads where account_id = 'act_st'")).all())
    assert status["23870100"] == "ACTIVE" and status["23870104"] == "ACTIVE"  # in review: on, waiting
    assert status["23870107"] == "PAUSED" and status["23870103"] == "PAUSED"  # completed, rejected
    assert status["23870113"] == "ARCHIVED" and status["23870119"] == "ACTIVE"  # archived; em análise
    assert status["23870118"] == status["23870120"] == status["23870122"] == "PAUSED"  # inativo, concluído, en pausa
    assert status["23870123"] == "ACTIVE"  # unknown word: left as it was (new ads start ACTIVE)
    assert {"inreview", "recentlycompleted", "emanalise"} <= set(STATUS_WORDS)


PORTUGUESE = """
Início dos relatórios,Término dos relatórios,Dia,Nome da campanha,Identificação da campanha,Nome do conjunto de anúncios,Identificação do conjunto de anúncios,Nome do anúncio,Identificação do anúncio,Veiculação do anúncio,Valor usado (BRL),Impressões,Alcance,Frequência,Cliques no link,Resultados,Indicador de resultados,Orçamento do conjunto de anúncios,Tipo de orçamento do conjunto de anúncios
2026-09-01,2026-09-01,2026-09-01,Captação SP,23850001,Público amplo,23860001,Vídeo A,23870001,Ativo,39.01,2300,2100,1.10,41,3,actions:onsite_conversion.lead_grouped,150,Diário
2026-09-01,2026-09-01,2026-09-01,Captação SP,23850001,Semelhante 1%,23860002,Estático B,23870002,Concluído,12.50,900,850,1.06,9,1,actions:onsite_conversion.lead_grouped,3000,Vitalício
2026-09-02,2026-09-02,2026-09-02,Captação SP,23850001,Público amplo,23860001,Vídeo A,23870001,Ativo,41.20,2400,2150,1.12,44,2,actions:onsite_conversion.lead_grouped,150,Diário
"""

SPANISH = """
Día,Nombre de la campaña,Identificador de la campaña,Nombre del conjunto de anuncios,Identificador del conjunto de anuncios,Nombre del anuncio,Identificador del anuncio,Entrega del anuncio,Importe gastado (EUR),Impresiones,Alcance,Frecuencia,Clics en el enlace,Clientes potenciales
2026-09-01,Captación MAD,33850001,Amplio,33860001,Vídeo A,33870001,Activo,20.00,1000,900,1.11,20,2
2026-09-02,Captación MAD,33850001,Amplio,33860001,Vídeo A,33870001,En pausa,0,0,0,,0,0
"""


def test_english_portuguese_and_spanish_exports_round_trip(app_env, engine, tmp_path, capsys):
    assert main(["import", "insights", str(_file(tmp_path, "en.csv", GOOD)), "--account", "act_en"]) == 0
    assert main(["import", "insights", str(_file(tmp_path, "pt.csv", PORTUGUESE)), "--account", "act_pt"]) == 0
    out = capsys.readouterr().out
    assert "warning: lifetime adset budget (not stored as a daily budget): 1 row(s), first rows 3" in out
    assert main(["import", "insights", str(_file(tmp_path, "es.csv", SPANISH)), "--account", "act_es"]) == 0
    with engine.connect() as conn:
        accounts = dict(conn.execute(sa.text("select id, currency from ad_accounts")).all())
        pt = conn.execute(sa.text(
            "select entity_id, date, spend, impressions, reach, clicks, leads from daily_insights "
            "where account_id = 'act_pt' and entity_type = 'ad' order by entity_id, date")).all()
        names = dict(conn.execute(sa.text("select id, name from ads where account_id = 'act_pt'")).all())
        budgets = dict(conn.execute(sa.text("select id, daily_budget from adsets where account_id = 'act_pt'")).all())
        statuses = dict(conn.execute(sa.text("select id, status from ads where account_id in ('act_pt', 'act_es')")).all())
        en = conn.execute(sa.text("select sum(spend), sum(leads) from daily_insights "
                                  "where account_id = 'act_en' and entity_type = 'campaign'")).one()
    assert accounts == {"act_en": "BRL", "act_pt": "BRL", "act_es": "EUR"}
    assert [(r.entity_id, str(r.date), r.spend, r.impressions, r.reach, r.clicks, r.leads) for r in pt] == [
        ("23870001", "2026-09-01", 39.01, 2300, 2100, 41, 3), ("23870001", "2026-09-02", 41.2, 2400, 2150, 44, 2),
        ("23870002", "2026-09-01", 12.5, 900, 850, 9, 1)]
    assert names == {"23870001": "Vídeo A", "23870002": "Estático B"}
    assert budgets == {"23860001": 150.0, "23860002": None}  # the lifetime budget is not a daily one
    assert statuses == {"23870001": "ACTIVE", "23870002": "PAUSED", "33870001": "PAUSED"}
    assert tuple(en) == (pytest.approx(92.71), 6)


def test_summary_row_of_an_export_without_day_column_is_skipped(app_env, engine, tmp_path, capsys):
    text = ("Reporting starts,Reporting ends,Campaign ID,Ad set ID,Ad ID,Amount spent (BRL),Impressions,Link clicks,Leads\n"
            "2026-09-03,2026-09-03,,,,51.51,3200,50,4\n"
            "2026-09-03,2026-09-03,23850001,23860001,23870001,39.01,2300,41,3\n"
            "2026-09-03,2026-09-03,23850001,23860001,23870002,12.50,900,9,1")
    assert main(["import", "insights", str(_file(tmp_path, "oneday.csv", text)), "--account", "act_sr"]) == 0
    assert "skipped 1 summary row(s)" in capsys.readouterr().out
    assert count(engine, "daily_insights", "entity_type = 'ad'") == 2


def test_plausibility_warnings_do_not_refuse(app_env, engine, tmp_path, capsys):
    rows = [
        "2026-09-03,23850001,c,23860001,s,23870001,a,5,100,150,0.67,4,1",  # reach above impressions
        "2026-09-03,23850001,c,23860001,s,23870002,b,5,100,50,3.50,4,1",  # frequency should be 2.00
        "2026-09-03,23850001,c,23860001,s,23870003,c,5,100,80,1.25,4,1",  # consistent
    ]
    assert main(["import", "insights", str(_file(tmp_path, "odd.csv", EN_HEADER + "\n" + "\n".join(rows))),
                 "--account", "act_pl"]) == 0
    out = capsys.readouterr().out
    assert "warning: reach above impressions: 1 row(s), first rows 2" in out
    assert "warning: frequency differs from impressions / reach: 1 row(s), first rows 3" in out
    assert count(engine, "daily_insights", "entity_type = 'ad'") == 3


def test_a_wrong_import_is_undone(app_env, engine, tmp_path, capsys):
    assert main(["import", "insights", str(_file(tmp_path, "en.csv", GOOD)), "--account", "act_undo"]) == 0
    before = snapshot(engine)
    wrong = EN_HEADER + "\n2026-09-05,23850001,c,23860001,s,23870001,a,999,99999,9999,10,99,0"
    assert main(["import", "insights", str(_file(tmp_path, "wrong.csv", wrong)), "--account", "act_undo"]) == 0
    assert count(engine, "daily_insights", "date = '2026-09-05'") == 3  # ad, adset, campaign
    assert main(["delete", "insights", "--account", "act_undo", "--from", "2026-09-05", "--to", "2026-09-05"]) == 0
    assert "1 ad-day rows dated 2026-09-05 .. 2026-09-05 deleted" in capsys.readouterr().out
    assert count(engine, "daily_insights", "date = '2026-09-05'") == 0
    after = snapshot(engine)
    assert after["daily_insights"] == before["daily_insights"]

    # --replace: the file is the truth for the dates it covers; the ad-day it lacks goes, rollups follow
    fixed = "\n".join([EN_HEADER, EN_ROWS[0], EN_ROWS[2]])
    assert main(["import", "insights", str(_file(tmp_path, "fixed.csv", fixed)), "--account", "act_undo",
                 "--replace"]) == 0
    assert "1 ad-day rows no longer in the file deleted" in capsys.readouterr().out
    with engine.connect() as conn:
        adset = conn.execute(sa.text("select spend from daily_insights where account_id = 'act_undo' and "
                                     "entity_type = 'adset' and date = '2026-09-01'")).scalar_one()
    assert adset == pytest.approx(39.01)
    # the same --replace again changes nothing: no row, no import batch (which would start a run)
    unchanged = snapshot(engine)
    assert main(["import", "insights", str(_file(tmp_path, "fixed.csv", fixed)), "--account", "act_undo",
                 "--replace"]) == 0
    assert snapshot(engine) == unchanged
    assert "0 insight rows new or changed" in capsys.readouterr().out
    assert main(["delete", "insights", "--account", "act_none", "--from", "2026-09-05", "--to", "2026-09-05"]) == 1
    assert "account act_none not found" in capsys.readouterr().err


def test_concurrent_imports_into_a_new_account_both_succeed(app_env, engine, tmp_path):
    files = [_file(tmp_path, f"part{i}.csv", "\n".join([EN_HEADER, EN_ROWS[i]])) for i in range(3)]
    errors: list[BaseException] = []

    def run(path) -> None:  # noqa: ANN001
        try:
            import_insights(engine, path, "act_race")
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert count(engine, "ad_accounts", "id = 'act_race'") == 1
    assert count(engine, "daily_insights", "entity_type = 'ad'") == 3


def test_database_errors_become_one_line_without_sql_or_data(engine, tmp_path):
    """A real constraint violation from the database, as the importer reports it."""
    with pytest.raises(sa.exc.IntegrityError) as raised:
        with engine.begin() as conn:
            for _ in range(2):
                conn.execute(sa.text("insert into ad_accounts (id, name, is_active, timezone, created_at, updated_at) "
                                     "values ('act_dup', 'secret-name', true, 'UTC', :t, :t)"), {"t": dt.datetime.now()})
    error = database_error(tmp_path / "x.csv", raised.value, (2, 20001))
    assert isinstance(error, InputFileError)
    text = str(error)
    assert text.startswith("x.csv: the database refused a row while writing rows 2–20001") and "nothing was imported" in text
    assert "insert into" not in text.lower() and "secret-name" not in text and "\n" not in text
