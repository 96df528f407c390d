import numpy as np

from churnlens.packaging import estimator_of, feature_columns_of, load_model, save_model
from model_fixtures import FEATURES, churn_rows, fitted_model


def test_saved_model_predicts_the_calibrated_probability(tmp_path):
    model = fitted_model()
    rows = churn_rows(20, seed=5)
    save_model(model, FEATURES, tmp_path / "m", rows)
    loaded = load_model(tmp_path / "m")
    # the feature rows as written: id and label columns, an unknown column, another column order;
    # the model picks its own features by name
    wider = rows.assign(note="not a feature")
    predicted = loaded.predict(wider[list(reversed(wider.columns))])
    assert list(predicted.columns) == ["churn_probability"]
    np.testing.assert_allclose(predicted["churn_probability"],
                               model.predict_proba(rows[FEATURES])[:, 1], rtol=0, atol=1e-12)
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
