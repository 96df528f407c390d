import numpy as np

from churnlens.packaging import estimator_of, feature_columns_of, load_model, save_model
from model_fixtures import FEATURES, churn_rows, fitted_model


def test_saved_model_predicts_the_calibrated_probability(tmp_path):
    model = fitted_model()
    rows = churn_rows(20, seed=5)
    save_model(model, FEATURES, tmp_path / "m", rows)
    loaded = load_model(tmp_path / "m")
    predicted = loaded.predict(rows.assign(events_change_30d=rows["events_change_30d"]))
    assert list(predicted.columns) == ["churn_probability"]
    assert np.allclose(predicted["churn_probability"], model.predict_proba(rows[FEATURES])[:, 1])
    assert feature_columns_of(tmp_path / "m") == FEATURES
    assert type(estimator_of(tmp_path / "m")).__name__ == "ChurnClassifier"


def test_integer_typed_input_is_accepted(tmp_path):
    model = fitted_model()
    rows = churn_rows(10, seed=6)
    save_model(model, FEATURES, tmp_path / "m", rows)
    rows["days_since_last_activity"] = rows["days_since_last_activity"].astype("int64")
    from churnlens.packaging import to_model_input

    out = load_model(tmp_path / "m").predict(to_model_input(rows, FEATURES))
    assert out["churn_probability"].between(0, 1).all()
