"""Model files without pickle: a zip holding ``model.json`` (what kind of object it is) and the
object's own files — XGBoost boosters in XGBoost's UBJ format, Isolation Forests as their training
rows (``EntityForest.to_files``), plain values as JSON. Loading builds only the kinds listed in
``KINDS``; nothing in a file can name code to run.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from ads_ml.ml.anomalies import EntityForest
from ads_ml.ml.tiers import TierClassifier

FORMAT_VERSION = 1
#: Kinds of object a model file may hold, by the name written into it.
KINDS: dict[str, type] = {"tier_classifier": TierClassifier, "entity_forest": EntityForest}
META = "model.json"


class ModelFormatError(ValueError):
    """A file that is not an ads_ml model file, or holds a kind this version cannot read."""


def dumps(model: Any) -> bytes:
    kind = next((name for name, cls in KINDS.items() if isinstance(model, cls)), None)
    if kind is not None:
        files = model.to_files()
    else:
        try:
            files = {"value.json": json.dumps(model, allow_nan=False).encode()}
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"cannot store a {type(model).__name__} as a model file: {exc}") from None
        kind = "json"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(META, json.dumps({"format": FORMAT_VERSION, "kind": kind}))
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            meta = json.loads(archive.read(META))
            files = {name: archive.read(name) for name in archive.namelist() if name != META}
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelFormatError(f"not an ads_ml model file ({exc}); files of the old pickle format are "
                               "not loaded: re-materialise the model asset") from None
    kind = meta.get("kind")
    if meta.get("format") != FORMAT_VERSION or (kind != "json" and kind not in KINDS):
        raise ModelFormatError(f"model file of format {meta.get('format')!r} and kind {kind!r} cannot be read "
                               f"by this version (format {FORMAT_VERSION}: {', '.join(['json', *KINDS])})")
    if kind == "json":
        return json.loads(files["value.json"])
    return KINDS[kind].from_files(files)
