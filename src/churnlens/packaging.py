"""The trained estimator as an MLflow pyfunc model (`models/churn_model`).

`predict(df)` takes feature rows and returns a DataFrame with `churn_probability`. The package
code travels with the model (`code_paths`) so it also loads on a Spark cluster.
"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import mlflow.pyfunc
import pandas as pd
from mlflow.models import infer_signature

ESTIMATOR_FILE = "estimator.joblib"
FEATURES_FILE = "feature_columns.json"
PACKAGE_DIR = Path(__file__).resolve().parent
RUNTIME_PACKAGES = ("lightgbm", "scikit-learn", "pandas", "numpy", "pyarrow", "joblib")


class ChurnModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: feature rows in, calibrated `churn_probability` out."""

    def load_context(self, context: Any) -> None:
        self.estimator = joblib.load(context.artifacts["estimator"])
        self.feature_columns = json.loads(Path(context.artifacts["features"]).read_text())

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None):
        data = model_input
        missing = [c for c in self.feature_columns if c not in data.columns]
        if missing:
            raise ValueError(f"model input lacks feature columns: {missing}")
        frame = to_model_input(data, self.feature_columns)
        proba = self.estimator.predict_proba(frame)[:, 1]
        return pd.DataFrame({"churn_probability": proba}, index=data.index)


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


def _pip_requirements() -> list[str]:
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_PACKAGES]


def _artifact_files(estimator: Any, feature_columns: list[str], folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, folder / ESTIMATOR_FILE)
    (folder / FEATURES_FILE).write_text(json.dumps(list(feature_columns)))
    return {"estimator": str(folder / ESTIMATOR_FILE), "features": str(folder / FEATURES_FILE)}


def _model_kwargs(artifacts: dict[str, str], input_example: pd.DataFrame,
                  output: pd.DataFrame) -> dict:
    example = input_example.head(5)
    return {
        "python_model": ChurnModel(),
        "artifacts": artifacts,
        "code_paths": [str(PACKAGE_DIR)],
        "signature": infer_signature(example, output.head(5)),
        "input_example": example,
        "pip_requirements": _pip_requirements(),
    }


def save_model(estimator: Any, feature_columns: list[str], path: Path,
               input_example: pd.DataFrame) -> None:
    """Save `estimator` (with `predict_proba`) as an MLflow pyfunc model at `path` (must be new)."""
    import tempfile

    example = to_model_input(input_example.head(5), feature_columns)
    output = pd.DataFrame({"churn_probability": estimator.predict_proba(example)[:, 1]})
    with tempfile.TemporaryDirectory() as tmp:
        artifacts = _artifact_files(estimator, feature_columns, Path(tmp))
        mlflow.pyfunc.save_model(path=str(path), **_model_kwargs(artifacts, example, output))


def log_saved_model(model_dir: Path, name: str = "model", registered_name: str | None = None):
    """Log an already saved churn model into the active MLflow run; returns the ModelInfo."""
    model = load_model(model_dir)
    inner = model.unwrap_python_model()
    example = pd.read_json(Path(model_dir) / "input_example.json", orient="split") \
        if (Path(model_dir) / "input_example.json").exists() else None
    artifacts = {
        "estimator": str(Path(model_dir) / "artifacts" / ESTIMATOR_FILE),
        "features": str(Path(model_dir) / "artifacts" / FEATURES_FILE),
    }
    if example is None:
        raise FileNotFoundError(f"{model_dir}: no input_example.json")
    example = to_model_input(example, inner.feature_columns)
    output = inner.predict(None, example)
    return mlflow.pyfunc.log_model(
        name=name, registered_model_name=registered_name,
        **_model_kwargs(artifacts, example, output),
    )


def load_model(path: str | Path):
    """Load a churn model saved by `save_model` (a pyfunc model)."""
    return mlflow.pyfunc.load_model(str(path))


def feature_columns_of(path: str | Path) -> list[str]:
    """Feature columns the saved model expects, read without loading the estimator."""
    return json.loads((Path(path) / "artifacts" / FEATURES_FILE).read_text())


def estimator_of(path: str | Path) -> Any:
    """The raw fitted estimator inside a saved model (for SHAP)."""
    return joblib.load(Path(path) / "artifacts" / ESTIMATOR_FILE)
