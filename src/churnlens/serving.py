"""Which model scores: the registry's approved model, loaded without running code.

`load_approved_model(params)` is the one way to get the model that scores. The MLflow registry
is the single truth: its `champion` for this data source (`churnlens-<data folder>`) scores,
whatever `reports/promotion.json` or `models/churn_model` say. The champion's files are kept in
`models/serving/` (copied from `models/churn_model` when they are the same files, by SHA-256,
else downloaded from the registry and checked against the digest recorded at training), with
`models/serving/approved.json` naming the version.

Without a registry (`train.register_model: false`) or without a champion yet, the newly trained
`models/churn_model` scores. When the registry cannot be read (`mlflow.db` deleted or broken), the
last approved model kept in `models/serving/` scores, with a warning naming the command that
restores the registry; only when none is kept does the new model score, flagged as not approved.
A corrupt or tampered model stops with one line (`packaging.ModelFileError`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churnlens import paths
from churnlens.catalog import Catalog
from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.packaging import (
    LoadedModel,
    ModelFileError,
    feature_columns_of,
    load_model,
    model_digest,
)

log = get_logger("serving")
APPROVED_FILE = "approved.json"   # inside models/serving: which registered version the files are


@dataclass
class ApprovedModel:
    """The model that scores and why: `predict(rows)`, `info` (= `reports/serving.json`).

    `predict` scores LightGBM's trees with `churnlens.compiled_trees` (the same probabilities to
    the bit, about a quarter of the CPU; plain LightGBM when the kernel cannot be built, with a
    log line saying which); `model` is the loaded model as it is."""

    model: LoadedModel
    info: dict[str, Any]
    _scorer: LoadedModel | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def feature_columns(self) -> list[str]:
        return self.model.feature_columns

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        if self._scorer is None:
            from churnlens.compiled_trees import accelerated_model

            self._scorer = accelerated_model(self.model)
        return self._scorer.predict(rows)


def check_feature_schema(expected: list[str], features: pd.DataFrame, model_dir: Path) -> None:
    """Refuse to score when the model's features differ from the current feature table."""
    missing = [c for c in expected if c not in features.columns]
    if missing:
        raise ChurnlensError(
            f"model {model_dir} expects features missing from {paths.SCORING_ROWS}: "
            f"{', '.join(missing[:10])}; rerun `dvc repro train` so model and features match")


def _new_model(promotion: dict, reason: str, **extra: Any) -> dict[str, Any]:
    return {"model_dir": str(paths.MODEL_DIR), "scored_by": "new model",
            "version": promotion.get("version"), "new_version": promotion.get("version"),
            "champion_version": None, "waiting_for_approval": False, "reason": reason, **extra}


def _kept(folder: Path) -> dict[str, Any] | None:
    """What `approved.json` in `folder` says, if the files still have its digest."""
    try:
        kept = json.loads((folder / APPROVED_FILE).read_text())
        return kept if model_digest(folder) == kept.get("digest") else None
    except (OSError, ValueError, ChurnlensError):
        return None


def _fetch_champion(name: str, champion: dict[str, str], folder: Path,
                    root: str | Path = ".") -> None:
    """Put the champion's files into `folder` (reused, copied or downloaded from the store of
    the project folder `root`), atomically."""
    from churnlens import tracking
    from churnlens.io import atomic_path

    version, digest = champion["version"], champion.get("digest")
    kept = _kept(folder)
    if kept and kept.get("name") == name and kept.get("version") == version and (
            not digest or kept["digest"] == digest):
        return
    model_dir = Catalog(root).at(paths.MODEL_DIR)
    with atomic_path(folder) as tmp:
        if digest and model_dir.is_dir() and _digest_or_none(model_dir) == digest:
            shutil.copytree(model_dir, tmp)
        else:
            download = tmp.parent / "download"
            shutil.move(tracking.download_model_version(name, version, download, root), tmp)
        found = model_digest(tmp)
        if digest and found != digest:
            raise ModelFileError(f"{name} v{version}: the downloaded files do not match the "
                                 f"digest recorded at training ({tracking.DIGEST_TAG}); they were "
                                 "changed or damaged: `churnlens rollback` or rerun "
                                 "`dvc repro -f -s train`")
        (tmp / APPROVED_FILE).write_text(json.dumps(
            {"name": name, "version": version, "digest": found}))


def _digest_or_none(folder: Path) -> str | None:
    try:
        return model_digest(folder)
    except ChurnlensError:
        return None


def resolve(params: dict, promotion: dict | None = None,
            features: pd.DataFrame | None = None, root: str | Path = ".") -> dict[str, Any]:
    """Which model scores (see the module docstring); the dict `reports/serving.json` holds.
    Its `model_dir` is relative to the project folder `root` (the working directory by
    default), whose MLflow store and `models/` are used."""
    from churnlens import tracking

    promotion = promotion or {}
    register = promotion.get("registered",
                             bool((params.get("train") or {}).get("register_model", True)))
    name = promotion.get("registered_model") or tracking.registered_model_name(params)
    if not register:
        return _new_model(promotion, "the model registry is not used")
    try:
        champion = tracking.champion(name, root)
    except Exception as err:  # a deleted or broken store must not stop the weekly list
        return _without_registry(promotion, name, err, root)
    if champion is None:
        return _new_model(promotion, "no approved model yet")
    version = champion["version"]
    folder = Catalog(root).at(paths.SERVING_MODEL_DIR)
    try:
        _fetch_champion(name, champion, folder, root)
    except ModelFileError:
        raise
    except Exception as err:
        raise ModelFileError(f"approved model {name} v{version} could not be fetched from the "
                             f"registry ({type(err).__name__}: {err}); `churnlens rollback` or "
                             "rerun `dvc repro -f -s train`") from None
    if features is not None:
        try:
            check_feature_schema(feature_columns_of(folder), features, folder)
        except ChurnlensError as err:
            log.warning("approved model v%s cannot score today's features (%s): scoring with "
                        "the new model v%s", version, err, promotion.get("version"))
            return _new_model(promotion, f"the approved model v{version} cannot score today's "
                                         "features", champion_version=version)
    new = promotion.get("version")
    waiting = bool(new) and str(new) != version and not promotion.get("is_champion")
    reason = ("the new model is the approved model" if str(new) == version
              else promotion.get("reason") or "the champion alias points at it")
    if not waiting and str(new) != version and new:
        reason = f"the champion alias points at v{version} (moved by hand)"
    return {"model_dir": str(paths.SERVING_MODEL_DIR), "scored_by": "approved model",
            "version": version,
            "champion_version": version, "new_version": new, "registered_model": name,
            "model_sha256": model_digest(folder), "waiting_for_approval": waiting,
            "reason": reason}


def _without_registry(promotion: dict, name: str, err: Exception,
                      root: str | Path = ".") -> dict[str, Any]:
    problem = str(err) if isinstance(err, ChurnlensError) else (
        f"the model registry could not be read ({type(err).__name__}: {err})")
    folder = Catalog(root).at(paths.SERVING_MODEL_DIR)
    kept = _kept(folder)
    if kept and kept.get("name") == name:
        log.warning("%s; scoring with the last approved model %s v%s kept in %s", problem, name,
                    kept["version"], folder)
        return {"model_dir": str(paths.SERVING_MODEL_DIR), "scored_by": "approved model (kept)",
                "version": kept["version"], "champion_version": kept["version"],
                "new_version": promotion.get("version"), "registered_model": name,
                "model_sha256": kept["digest"], "waiting_for_approval": False,
                "reason": f"{problem}; the last approved model, kept locally, scores"}
    log.warning("%s; no approved model is kept locally: scoring with the new model, which "
                "nobody approved", problem)
    return _new_model(promotion, f"{problem}; no approved model is kept locally, so the new "
                                 "model scores unapproved", approved=False)


def load_approved_model(params: dict, features: pd.DataFrame | None = None,
                        promotion: dict | None = None, root: str | Path = ".") -> ApprovedModel:
    """The model that scores (the registry's champion, see the module docstring), loaded
    without unpickling, with `info` saying which and why. `features` (optional) are checked
    against the model's columns; `promotion` defaults to `reports/promotion.json`; paths,
    the MLflow store and `models/` are those of the project folder `root`."""
    catalog = Catalog(root)
    if promotion is None:
        promotion = catalog.read_json("promotion", required=False) or {}
    info = resolve(params, promotion, features, root)
    model_dir = catalog.at(info["model_dir"])
    if not model_dir.is_dir():
        raise ModelFileError(f"no model at {model_dir}: run `dvc repro train` first")
    model = load_model(model_dir)
    if features is not None:
        check_feature_schema(model.feature_columns, features, model_dir)
    info.setdefault("model_sha256", model_digest(model_dir))
    return ApprovedModel(model, info)
