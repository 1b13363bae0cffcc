"""The model IO manager: atomic files, ml_trained_models rows, newest READY, checksum refusal."""

import zipfile
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
import pandas as pd

from ads_ml.db.model_registry import ModelArtifact, ModelIntegrityError, ModelNotFoundError, ModelRegistry, StoredModel
from ads_ml.definitions import build_resources
from ads_ml.defs.io_managers import model_asset_metadata
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.ml.tiers import TierClassifier

X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 3})
Y = (["HIGH_PERFORMER"] * 3 + ["UNDERPERFORMER"] * 3) * 3


def _toy_model() -> TierClassifier:
    return TierClassifier(feature_columns=("x",)).fit(X, Y)


@dg.asset(
    partitions_def=ad_account_partitions,
    io_manager_key="model_io_manager",
    metadata=model_asset_metadata("toy_classifier", "campaign"),
)
def toy_classifier(context: dg.AssetExecutionContext) -> ModelArtifact:
    model = _toy_model()
    return ModelArtifact(
        name="toy_classifier",
        model_type="xgboost.XGBClassifier",
        entity_type="campaign",
        model=model,
        parameters={"C": 1.0},
        feature_columns=["x"],
        metrics={"accuracy": float((model.predict(X) == np.asarray(Y)).mean()), "log_loss": np.float64(0.25)},
    )


@dg.asset(partitions_def=ad_account_partitions)
def toy_predictions(toy_classifier: StoredModel) -> list[str]:
    return toy_classifier.model.predict(pd.DataFrame({"x": [0.5, 4.5]})).tolist()


@dg.asset(
    partitions_def=ad_account_partitions,
    io_manager_key="model_io_manager",
    metadata=model_asset_metadata("toy_entity_model", "ad", per_entity=True),
)
def toy_entity_models() -> list[ModelArtifact]:
    return [
        ModelArtifact("toy_entity_model", "xgboost.XGBClassifier", "ad", _toy_model(), entity_id=e)
        for e in ("123", "../../escape", "ad with spaces")
    ]


@dg.asset(partitions_def=ad_account_partitions)
def toy_entity_count(toy_entity_models: dict) -> int:
    return len(toy_entity_models)


@dg.asset(partitions_def=ad_account_partitions, io_manager_key="model_io_manager",
          metadata=model_asset_metadata("toy_none", "adset"))
def toy_insufficient() -> None:
    return None


def _run(instance, selection, resources):
    return dg.materialize(
        [toy_classifier, toy_predictions, toy_entity_models, toy_entity_count, toy_insufficient],
        selection=selection,
        partition_key="act_models",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )


def _rows(engine, name):
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select version, status, checksum, path, parameters, feature_columns, training_metrics "
                    "from ml_trained_models where name = :n order by entity_id, version"),
            {"n": name},
        ).all()


def test_round_trip_versions_and_corrupted_file(dagster_instance, engine, tmp_path):
    dagster_instance.add_dynamic_partitions("ad_account", ["act_models"])
    resources = build_resources()
    assert _run(dagster_instance, [toy_classifier.key, toy_predictions.key], resources).success

    (row,) = _rows(engine, "toy_classifier")
    assert row.version == 1 and row.status == "READY" and len(row.checksum) == 64
    assert Path(row.path).is_file() and Path(row.path).is_relative_to(tmp_path / "models")
    params = row.parameters if isinstance(row.parameters, dict) else __import__("json").loads(row.parameters)
    assert params == {"C": 1.0}
    prediction = dagster_instance.get_latest_materialization_event(toy_predictions.key)
    assert prediction is not None
    with zipfile.ZipFile(row.path) as stored:  # XGBoost's own format inside, no pickle
        assert sorted(stored.namelist()) == ["booster.ubj", "model.json", "state.json"]
    assert not list(Path(row.path).parent.glob("*.tmp"))  # nothing half-written left behind

    # A second training deprecates the first; loading picks the newest READY one.
    assert _run(dagster_instance, [toy_classifier.key], resources).success
    rows = _rows(engine, "toy_classifier")
    assert [(r.version, r.status) for r in rows] == [(1, "DEPRECATED"), (2, "READY")]

    # Corrupt the newest file: the downstream load refuses it.
    Path(rows[1].path).write_bytes(b"tampered")
    result = _run(dagster_instance, [toy_predictions.key], resources)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "does not match its checksum" in str(failure.event_specific_data.error)


def test_per_entity_models_and_sanitised_paths(dagster_instance, engine, tmp_path):
    dagster_instance.add_dynamic_partitions("ad_account", ["act_models"])
    result = _run(dagster_instance, [toy_entity_models.key, toy_entity_count.key], build_resources())
    assert result.success
    assert result.output_for_node("toy_entity_count") == 3
    rows = _rows(engine, "toy_entity_model")
    assert len(rows) == 3
    models_dir = (tmp_path / "models").resolve()
    for r in rows:
        path = Path(r.path)
        assert path.resolve().is_relative_to(models_dir)
        assert " " not in path.name and ".." not in path.name


def test_no_model_means_no_row(dagster_instance, engine):
    dagster_instance.add_dynamic_partitions("ad_account", ["act_models"])
    assert _run(dagster_instance, [toy_insufficient.key], build_resources()).success
    assert _rows(engine, "toy_none") == []


def test_registry_missing_and_failed_models(engine, tmp_path):
    registry = ModelRegistry(engine, tmp_path / "models")
    with pytest.raises(ModelNotFoundError, match="no READY model"):
        registry.load("act_x", "anything", "campaign")
    registry.record_failure("act_x", "iforest", "sklearn.IsolationForest", "ad", "42", "too few samples")
    with pytest.raises(ModelNotFoundError):
        registry.load("act_x", "iforest", "ad", "42")
    stored = registry.save("act_x", ModelArtifact("iforest", "sklearn.IsolationForest", "ad", {"w": 1}, entity_id="42"))
    assert stored.version == 2 and stored.status == "READY"
    Path(stored.path).unlink()
    with pytest.raises(ModelIntegrityError, match="is missing"):
        registry.load("act_x", "iforest", "ad", "42")
