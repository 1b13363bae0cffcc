"""``ADS_ML_EXECUTOR``: Dagster's own executors, or an integration's (dagster-celery, dagster-k8s)
configured from the environment, in the definitions every process loads."""

from __future__ import annotations

import datetime as dt

import pytest

from ads_ml.definitions import build_definitions, build_executor

ACCOUNT = "act_dask"
END = dt.date(2026, 6, 30)


@pytest.mark.parametrize(("kind", "name"), [("in_process", "in_process"), ("multiprocess", "multiprocess_executor"),
                                            ("celery", "celery_executor"), ("k8s", "k8s")])
def test_the_environment_chooses_the_executor(kind: str, name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ADS_ML_EXECUTOR", kind)
    monkeypatch.setenv("ADS_ML_CELERY_BROKER_URL", "pyamqp://guest@rabbit//")
    executor = build_executor()
    assert executor.name == name
    if kind == "celery":
        assert executor.apply_config_mapping({}).value["config"]["broker"] == "pyamqp://guest@rabbit//"
    job = build_definitions().resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == name


def test_an_unknown_executor_is_refused_by_name(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ADS_ML_EXECUTOR", "ray")
    with pytest.raises(ValueError, match="ADS_ML_EXECUTOR must be one of in_process, multiprocess, celery, k8s, not 'ray'"):
        build_executor()
