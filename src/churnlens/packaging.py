"""The trained model on disk (`models/churn_model`), in a format that cannot run code.

A saved model is an MLflow pyfunc folder (so `mlflow.pyfunc.load_model` and Spark's
`spark_udf` keep working) whose `artifacts/` hold the fitted `ChurnClassifier` as plain data:

* `lightgbm.txt` - LightGBM's own text model of the booster;
* `model.json`   - everything else as numbers and strings: the feature columns, the ordinal
  categories, the blend weight, the calibrators (Platt coefficients or isotonic thresholds),
  the logistic side (medians, means, scales, coefficients) and the fit's diagnostics;
* `feature_columns.json` - the feature columns alone (read without loading the model).

`load_model(path)` rebuilds the classifier from those files with the installed churnlens code:
nothing in the folder is unpickled or imported, so whoever can write `models/`, `mlruns/` or
the DVC remote can at worst change the scores, not run code (an old folder holding only a
pickled `estimator.joblib` is refused, not loaded). `mlflow.pyfunc.load_model` on the same
folder does unpickle MLflow's `python_model.pkl` and imports the bundled `code/`: use it only on
folders you trust. `model_digest(path)` is the SHA-256 of the three files; the registry keeps it
as the version tag `model_sha256` (see `churnlens.tracking`).
"""

from __future__ import annotations

import hashlib
import json
import math
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnlens.errors import ChurnlensError

FORMAT = "churnlens-model/1"
MODEL_FILE = "model.json"
BOOSTER_FILE = "lightgbm.txt"
FEATURES_FILE = "feature_columns.json"
LEGACY_FILE = "estimator.joblib"          # pickle written before FORMAT existed: never loaded
DIGEST_FILES = (MODEL_FILE, BOOSTER_FILE, FEATURES_FILE)
PACKAGE_DIR = Path(__file__).resolve().parent
RUNTIME_PACKAGES = ("lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow")
RETRAIN = "rerun `dvc repro -f train` (or `churnlens rollback` to an earlier version)"


class ModelFileError(ChurnlensError):
    """A saved model is missing, corrupt or in a format churnlens does not load (one line)."""


# -- the estimator as plain data -------------------------------------------------------------
_KNOWN = {"lgbm_params", "seed", "early_stopping_rounds", "calibration", "cv_folds",
          "blend_weights", "preprocessor_", "classes_", "blend_weight_", "blend_losses_",
          "calibrator_", "tree_calibrator_", "out_of_fold_", "lgbm_", "linear_",
          "best_iteration_", "calibration_method_", "calibration_scores_"}


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values, dtype="float64").ravel()]


def _plain(value: Any) -> Any:
    """JSON-able copy of diagnostics (dicts with float keys, numpy scalars, tuples)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _calibrator_spec(calibrator: Any) -> dict[str, Any]:
    from churnlens.model import IsotonicCalibrator, SigmoidCalibrator

    if isinstance(calibrator, SigmoidCalibrator):
        if calibrator.constant_ is not None:
            return {"kind": "sigmoid", "constant": float(calibrator.constant_)}
        return {"kind": "sigmoid", "coef": _floats(calibrator.lr_.coef_),
                "intercept": _floats(calibrator.lr_.intercept_)}
    if isinstance(calibrator, IsotonicCalibrator):
        iso = calibrator.iso_
        return {"kind": "isotonic", "x": _floats(iso.X_thresholds_),
                "y": _floats(iso.y_thresholds_)}
    raise TypeError(f"cannot store a calibrator of type {type(calibrator).__name__}")


def _linear_spec(linear: Any) -> dict[str, Any]:
    steps = linear.pipeline_.named_steps
    return {"columns": list(linear.columns), "columns_": list(linear.columns_),
            "seed": int(linear.seed), "C": float(linear.C),
            "medians": _floats(steps["impute"].statistics_),
            "mean": _floats(steps["scale"].mean_), "scale": _floats(steps["scale"].scale_),
            "coef": _floats(steps["lr"].coef_), "intercept": _floats(steps["lr"].intercept_)}


def estimator_spec(estimator: Any) -> tuple[dict[str, Any], str]:
    """A fitted `ChurnClassifier` as (JSON-able dict, LightGBM model text)."""
    from churnlens.model import ChurnClassifier

    if not isinstance(estimator, ChurnClassifier):
        raise TypeError(f"only a fitted ChurnClassifier can be saved, not "
                        f"{type(estimator).__name__}")
    unknown = sorted(set(vars(estimator)) - _KNOWN)
    if unknown:  # a new fitted attribute would be lost on load: store it here first
        raise TypeError(f"packaging does not know how to store ChurnClassifier.{unknown}")
    pre = estimator.preprocessor_
    categories = [[None if c is None or (isinstance(c, float) and math.isnan(c)) else str(c)
                   for c in cats] for cats in pre._categories()]
    spec = {
        "format": FORMAT,
        "params": {"lgbm_params": _plain(estimator.lgbm_params or {}),
                   "seed": int(estimator.seed),
                   "early_stopping_rounds": estimator.early_stopping_rounds,
                   "calibration": str(estimator.calibration),
                   "cv_folds": int(estimator.cv_folds),
                   "blend_weights": _floats(estimator.blend_weights)},
        "preprocessor": {"feature_names": list(pre.feature_names_),
                         "categorical": list(pre.categorical_), "categories": categories},
        "blend_weight": float(estimator.blend_weight_),
        "calibrator": _calibrator_spec(estimator.calibrator_),
        "tree_calibrator": _calibrator_spec(estimator.tree_calibrator_),
        "linear": _linear_spec(estimator.linear_),
        "diagnostics": {"best_iteration": int(estimator.best_iteration_),
                        "blend_losses": _plain(estimator.blend_losses_),
                        "calibration_method": estimator.calibration_method_,
                        "calibration_scores": _plain(estimator.calibration_scores_),
                        "out_of_fold": _plain(estimator.out_of_fold_)},
    }
    return spec, estimator.lgbm_.booster_.model_to_string()


# Stand-ins for the fitted scikit-learn parts, computing exactly what they computed.
class _Logistic:
    """Binary logistic regression from its coefficients (scikit-learn's arithmetic)."""

    def __init__(self, coef: list[float], intercept: list[float]) -> None:
        self.coef_ = np.asarray(coef, dtype="float64").reshape(1, -1)
        self.intercept_ = np.asarray(intercept, dtype="float64")
        self.classes_ = np.array([0, 1])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype="float64") @ self.coef_.T + self.intercept_).ravel()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        p = expit(self.decision_function(X))
        return np.vstack([1 - p, p]).T


class _Isotonic:
    """Linear interpolation between the isotonic thresholds, clipped outside them."""

    def __init__(self, x: list[float], y: list[float]) -> None:
        self.X_thresholds_ = np.asarray(x, dtype="float64")
        self.y_thresholds_ = np.asarray(y, dtype="float64")

    def predict(self, score: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(score, dtype="float64"), self.X_thresholds_,
                         self.y_thresholds_)


class _Step:
    """One step of the logistic side's pipeline: `transform(X)` with plain numpy."""

    def __init__(self, kind: str, *arrays: list[float]) -> None:
        self.kind = kind
        self.arrays = [np.asarray(a, dtype="float64") for a in arrays]
        if kind == "impute":
            self.statistics_ = self.arrays[0]
        if kind == "scale":
            self.mean_, self.scale_ = self.arrays

    def transform(self, X: np.ndarray) -> np.ndarray:
        from churnlens.baselines import log_and_raw

        X = np.asarray(X, dtype="float64")
        if self.kind == "expand":
            return log_and_raw(X)
        if self.kind == "impute":
            return np.where(np.isnan(X), self.statistics_, X)
        return (X - self.mean_) / self.scale_


class _LinearPipeline:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.named_steps = {"expand": _Step("expand"), "impute": _Step("impute", spec["medians"]),
                            "scale": _Step("scale", spec["mean"], spec["scale"]),
                            "lr": _Logistic(spec["coef"], spec["intercept"])}

    def _features(self, X: np.ndarray) -> np.ndarray:
        for name in ("expand", "impute", "scale"):
            X = self.named_steps[name].transform(X)
        return X

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.named_steps["lr"].decision_function(self._features(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.named_steps["lr"].predict_proba(self._features(X))


class _Categories:
    def __init__(self, categories: list[list[str | None]]) -> None:
        self.categories_ = [np.array(c, dtype=object) for c in categories]


class _Booster:
    """What `ChurnClassifier` reads from its fitted `LGBMClassifier`: the booster."""

    def __init__(self, booster: Any) -> None:
        self.booster_ = booster


def _calibrator_from(spec: dict[str, Any]):
    from churnlens.model import IsotonicCalibrator, SigmoidCalibrator

    if spec["kind"] == "isotonic":
        calibrator = IsotonicCalibrator()
        calibrator.iso_ = _Isotonic(spec["x"], spec["y"])
        return calibrator
    calibrator = SigmoidCalibrator()
    calibrator.constant_ = spec.get("constant")
    if calibrator.constant_ is None:
        calibrator.lr_ = _Logistic(spec["coef"], spec["intercept"])
    return calibrator


def estimator_from_spec(spec: dict[str, Any], booster_text: str) -> Any:
    """Rebuild the fitted `ChurnClassifier` from `estimator_spec`'s output."""
    import lightgbm as lgb

    from churnlens.baselines import LogisticBaseline
    from churnlens.model import ChurnClassifier, Preprocessor

    params = spec["params"]
    model = ChurnClassifier(lgbm_params=params["lgbm_params"], seed=params["seed"],
                            early_stopping_rounds=params["early_stopping_rounds"],
                            calibration=params["calibration"], cv_folds=params["cv_folds"],
                            blend_weights=tuple(params["blend_weights"]))
    pre = Preprocessor()
    pre.feature_names_ = list(spec["preprocessor"]["feature_names"])
    pre.categorical_ = list(spec["preprocessor"]["categorical"])
    pre.encoder_ = _Categories(spec["preprocessor"]["categories"]) if pre.categorical_ else None
    model.preprocessor_ = pre
    model.classes_ = np.array([0, 1])
    model.blend_weight_ = float(spec["blend_weight"])
    model.calibrator_ = _calibrator_from(spec["calibrator"])
    model.tree_calibrator_ = _calibrator_from(spec["tree_calibrator"])
    lin = spec["linear"]
    linear = LogisticBaseline(columns=tuple(lin["columns"]), seed=lin["seed"], C=lin["C"])
    linear.columns_ = list(lin["columns_"])
    linear.pipeline_ = _LinearPipeline(lin)
    linear.classes_ = np.array([0, 1])
    model.linear_ = linear
    model.lgbm_ = _Booster(lgb.Booster(model_str=booster_text))
    diag = spec["diagnostics"]
    model.best_iteration_ = int(diag["best_iteration"])
    model.blend_losses_ = {float(k): v for k, v in (diag.get("blend_losses") or {}).items()}
    model.calibration_method_ = diag.get("calibration_method")
    model.calibration_scores_ = diag.get("calibration_scores") or {}
    model.out_of_fold_ = diag.get("out_of_fold") or {}
    return model


# -- the folder ------------------------------------------------------------------------------
def to_model_input(df: pd.DataFrame, feature_columns: list[str]) -> pd.DataFrame:
    """Feature columns in model order; numbers as float64 so the MLflow signature never narrows."""
    frame = df[list(feature_columns)]  # copy-on-write: changing a column never touches `df`
    for column in frame.columns:
        if (pd.api.types.is_numeric_dtype(frame[column])
                or pd.api.types.is_bool_dtype(frame[column])):
            frame[column] = frame[column].astype("float64")
        else:
            frame[column] = frame[column].astype(object).fillna("unknown").astype(str)
    return frame


def write_artifacts(estimator: Any, feature_columns: list[str], folder: Path) -> dict[str, str]:
    """Write the three data files of `estimator` into `folder`; returns MLflow's artifacts map."""
    spec, booster_text = estimator_spec(estimator)
    spec["feature_columns"] = list(feature_columns)
    # LightGBM aborts the process on some damaged model texts: the text is checked first
    spec["booster_sha256"] = hashlib.sha256(booster_text.encode()).hexdigest()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_text(json.dumps(spec, indent=1))
    (folder / BOOSTER_FILE).write_text(booster_text)
    (folder / FEATURES_FILE).write_text(json.dumps(list(feature_columns)))
    return {"model": str(folder / MODEL_FILE), "booster": str(folder / BOOSTER_FILE),
            "features": str(folder / FEATURES_FILE)}


def read_estimator(artifacts: str | Path, where: str | Path | None = None) -> Any:
    """Rebuild the estimator from an `artifacts/` folder; `ModelFileError` (one line) if the
    files are missing, corrupt or of another format. Nothing is unpickled."""
    folder = Path(artifacts)
    where = where or folder
    model_file, booster_file = folder / MODEL_FILE, folder / BOOSTER_FILE
    if not model_file.is_file():
        if (folder / LEGACY_FILE).exists():
            raise ModelFileError(
                f"{where}: model saved as a pickle ({LEGACY_FILE}) by an older churnlens; pickles "
                f"are not loaded (they can run code): {RETRAIN}")
        raise ModelFileError(f"{where}: no model file ({MODEL_FILE}): {RETRAIN}")
    try:
        spec = json.loads(model_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{where}: {MODEL_FILE} is corrupt ({_short(err)}): {RETRAIN}") \
            from None
    if not isinstance(spec, dict) or spec.get("format") != FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise ModelFileError(f"{where}: {MODEL_FILE} is not a {FORMAT} model (found {found!r}): "
                             f"{RETRAIN}")
    try:
        booster_bytes = booster_file.read_bytes()
        booster_text = booster_bytes.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{where}: {BOOSTER_FILE} unreadable ({_short(err)}): {RETRAIN}") \
            from None
    if hashlib.sha256(booster_bytes).hexdigest() != spec.get("booster_sha256"):
        raise ModelFileError(f"{where}: {BOOSTER_FILE} is corrupt (its SHA-256 differs from the "
                             f"one in {MODEL_FILE}): {RETRAIN}")
    try:
        return estimator_from_spec(spec, booster_text)
    except Exception as err:  # LightGBMError, KeyError, TypeError, ValueError of a bad file
        raise ModelFileError(f"{where}: model files are corrupt ({type(err).__name__}: "
                             f"{_short(err)}): {RETRAIN}") from None


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:160] + ("..." if len(text) > 160 else "")


class LoadedModel:
    """A churn model read by `load_model`: `predict(rows)` -> DataFrame `churn_probability`."""

    def __init__(self, estimator: Any, feature_columns: list[str], path: Path) -> None:
        self.estimator = estimator
        self.feature_columns = list(feature_columns)
        self.path = path

    def predict(self, model_input: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.feature_columns if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks feature columns: {missing}")
        frame = to_model_input(model_input, self.feature_columns)
        proba = self.estimator.predict_proba(frame)[:, 1]
        return pd.DataFrame({"churn_probability": proba}, index=model_input.index)

    def unwrap_python_model(self) -> LoadedModel:
        """Same object (the interface of an MLflow pyfunc model, for older callers)."""
        return self


def load_model(path: str | Path) -> LoadedModel:
    """Load a churn model folder written by `save_model`, without unpickling anything."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFileError(f"no model at {path}: run `dvc repro train` first")
    estimator, columns = estimator_of(path), feature_columns_of(path)
    if list(estimator.feature_names) != [c for c in columns if c in estimator.feature_names] \
            or set(estimator.feature_names) != set(columns):
        raise ModelFileError(f"{path}: {FEATURES_FILE} does not match {MODEL_FILE}: {RETRAIN}")
    return LoadedModel(estimator, columns, path)


def feature_columns_of(path: str | Path) -> list[str]:
    """Feature columns the saved model expects, read without loading the estimator."""
    file = Path(path) / "artifacts" / FEATURES_FILE
    try:
        columns = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelFileError(f"{path}: {FEATURES_FILE} missing or corrupt ({_short(err)}): "
                             f"{RETRAIN}") from None
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ModelFileError(f"{path}: {FEATURES_FILE} is not a list of column names: {RETRAIN}")
    return columns


def estimator_of(path: str | Path) -> Any:
    """The fitted `ChurnClassifier` inside a saved model (for SHAP), rebuilt from plain data."""
    return read_estimator(Path(path) / "artifacts", where=path)


def model_digest(path: str | Path) -> str:
    """SHA-256 over the model's data files (names and bytes); `ModelFileError` if one is missing."""
    digest = hashlib.sha256()
    for name in DIGEST_FILES:
        file = Path(path) / "artifacts" / name
        try:
            data = file.read_bytes()
        except OSError as err:
            raise ModelFileError(f"{path}: {name} missing ({_short(err)}): {RETRAIN}") from None
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return digest.hexdigest()


# -- MLflow pyfunc ---------------------------------------------------------------------------
def _pyfunc_class():
    import mlflow.pyfunc

    class ChurnModel(mlflow.pyfunc.PythonModel):
        """pyfunc wrapper: feature rows in, calibrated `churn_probability` out."""

        def load_context(self, context: Any) -> None:
            folder = Path(context.artifacts["model"]).parent
            self.model = LoadedModel(read_estimator(folder),
                                     json.loads(Path(context.artifacts["features"]).read_text()),
                                     folder)
            self.feature_columns = self.model.feature_columns

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
            return self.model.predict(model_input)

    return ChurnModel


def _pip_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def pyfunc_kwargs(artifacts: dict[str, str], input_example: pd.DataFrame,
                  output: pd.DataFrame) -> dict:
    from mlflow.models import infer_signature

    example = input_example.head(5)
    return {
        "python_model": _pyfunc_class()(),
        "artifacts": artifacts,
        "code_paths": [str(PACKAGE_DIR)],
        "signature": infer_signature(example, output.head(5)),
        "input_example": example,
        "pip_requirements": _pip_requirements(),
    }


def save_model(estimator: Any, feature_columns: list[str], path: Path,
               input_example: pd.DataFrame) -> None:
    """Save a fitted `ChurnClassifier` as an MLflow pyfunc model at `path` (must be new).

    The stored files are read back and must give the same probabilities on the input example.
    """
    import tempfile

    import mlflow.pyfunc

    example = to_model_input(input_example.head(5), feature_columns)
    proba = estimator.predict_proba(example)[:, 1]
    output = pd.DataFrame({"churn_probability": proba})
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = write_artifacts(estimator, feature_columns, Path(tmp))
        again = read_estimator(tmp).predict_proba(example)[:, 1]
        if not np.allclose(again, proba, rtol=1e-9, atol=1e-12):
            raise RuntimeError("the stored model does not reproduce the fitted one: "
                               f"{list(proba)} vs {list(again)}")
        mlflow.pyfunc.save_model(path=str(path), **pyfunc_kwargs(artifacts, example, output))


def saved_model_kwargs(model_dir: Path) -> dict:
    """The `mlflow.pyfunc` keyword arguments that rebuild an already saved churn model
    (`churnlens.tracking.log_saved_model` logs it with them)."""
    model_dir = Path(model_dir)
    model = load_model(model_dir)
    example_file = model_dir / "input_example.json"
    if not example_file.exists():
        raise ModelFileError(f"{model_dir}: no input_example.json: {RETRAIN}")
    example = to_model_input(pd.read_json(example_file, orient="split"), model.feature_columns)
    artifacts = {key: str(model_dir / "artifacts" / file) for key, file in
                 (("model", MODEL_FILE), ("booster", BOOSTER_FILE), ("features", FEATURES_FILE))}
    return pyfunc_kwargs(artifacts, example, model.predict(example))
