"""The ads-ml command line: exit codes, one-line errors, runs recorded on the $DAGSTER_HOME instance."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ads_ml.cli import main
from ads_ml_tests.helpers import CANONICAL, count, write_csv


def test_migrate_is_idempotent(app_env, db_url, capsys):
    from ads_ml.db.migrate import head_revision

    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert f"database at revision {head_revision(db_url)}" in capsys.readouterr().out


def test_import_error_is_one_line_on_stderr(app_env, engine, tmp_path, capsys):
    bad = write_csv(tmp_path / "bad.csv", "date,campaign_id,adset_id,ad_id,impressions,clicks,spend,leads\nnope,c,s,a,1,0,1,0")
    assert main(["import", "insights", str(bad), "--account", "act_cli"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith('ads-ml: error: bad.csv, row 2, column "date": \'nope\' is not a date')
    assert count(engine, "daily_insights") == 0


def test_demo_then_materialize_and_report(app_env, engine, capsys):
    assert main(["demo", "--campaigns", "2", "--adsets-per-campaign", "2", "--ads-per-adset", "2",
                 "--days", "45", "--end-date", "2026-05-31"]) == 0
    out = capsys.readouterr().out
    assert "into act_demo" in out and "succeeded" in out and "ads: " in out
    assert count(engine, "ml_features", "account_id = 'act_demo'") == 2 + 4 + 8

    assert main(["materialize", "--account", "act_demo", "--select", "campaign_insights", "campaign_features"]) == 0
    with dg.DagsterInstance.get() as instance:  # $DAGSTER_HOME: the instance `dagster dev` shows
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.is_success for r in runs)
        assert instance.get_dynamic_partitions("ad_account") == ["act_demo"]

    assert main(["report", "--account", "act_demo"]) == 0
    out = capsys.readouterr().out
    assert "campaigns: 2 (2 active)" in out
    assert "amounts in BRL" in out and re.search(r"spend [\d,]+\.\d\d BRL", out)  # money with its currency
    assert re.search(r"(Campaign|Adset|Ad) \d+ \(238\d+\)", out)  # entities by name beside their id
    assert main(["report", "--account", "act_missing"]) == 1
    assert "account act_missing not found" in capsys.readouterr().err

    # A corrupted model file: the one-line error carries the root cause (the file and both hashes),
    # not Dagster's "Error occurred while loading input".
    with engine.connect() as conn:
        path = conn.execute(sa.text("select path from ml_trained_models where status = 'READY' and "
                                    "name = 'isolation_forest' and entity_type = 'campaign' limit 1")).scalar_one()
    Path(path).write_bytes(b"tampered")
    assert main(["materialize", "--account", "act_demo", "--select", "campaign_anomalies"]) == 0  # skipped, not fatal
    assert "does not match its checksum" in capsys.readouterr().err  # the warning in the run's log
    with engine.connect() as conn:
        level, path = conn.execute(sa.text("select entity_type, path from ml_trained_models where status = 'READY' "
                                           "and name = 'tier_classifier' order by entity_type limit 1")).one()
    Path(path).write_bytes(b"tampered")
    assert main(["materialize", "--account", "act_demo", "--select", f"{level}_classifications"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("ads-ml: error: run ") and f"{level}_classifications: " in err
    assert f"model file {path}" in err and "does not match its checksum" in err


def test_the_sample_export_in_readme_imports(app_env, engine, capsys):
    """README's first step after the demo: `ads-ml import` on the sample export shipped in examples/."""
    from ads_ml_tests.conftest import REPO_ROOT

    examples = REPO_ROOT / "examples"
    assert main(["import", "insights", str(examples / "sample_insights.csv"), "--account", "act_sample"]) == 0
    assert main(["import", "changes", str(examples / "sample_changes.csv"), "--account", "act_sample"]) == 0
    out = capsys.readouterr().out
    assert "227 ad-day rows" in out and "into act_sample" in out
    assert count(engine, "change_events", "account_id = 'act_sample'") == 2


def test_console_script_is_installed(app_env, tmp_path):
    canonical = write_csv(tmp_path / "c.csv", CANONICAL)
    exe = os.path.join(os.path.dirname(sys.executable), "ads-ml")
    done = subprocess.run([exe, "import", "insights", str(canonical), "--account", "act_sub"],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert "3 ad-day rows" in done.stdout
    bad = subprocess.run([exe, "import", "insights", str(tmp_path / "nope.csv"), "--account", "act_sub"],
                         capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert bad.returncode != 0 and bad.stderr.strip() == "ads-ml: error: nope.csv: file not found"


@pytest.mark.parametrize("argv", [["import", "insights", "x.csv"], ["materialize"], ["frobnicate"]])
def test_usage_errors_exit_non_zero(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code != 0
