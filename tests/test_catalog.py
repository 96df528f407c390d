"""The catalog: named inputs and outputs, one 'run X first' message, writes by name."""

import pytest

from churnlens.catalog import ENTRIES, Catalog, MissingInput
from churnlens.errors import ChurnlensError


def test_a_missing_input_names_the_file_and_the_stage_that_writes_it(tmp_path):
    catalog = Catalog(tmp_path)
    with pytest.raises(MissingInput, match=r"training.parquet is missing: run `dvc repro "
                       r"features` first") as err:
        catalog.require("training_rows")
    assert isinstance(err.value, ChurnlensError)  # the CLI turns it into one line
    assert str(tmp_path) in str(err.value)


def test_optional_json_is_none_until_written_then_read_back(tmp_path):
    catalog = Catalog(tmp_path)
    assert catalog.read_json("promotion", required=False) is None
    written = catalog.write_json({"run_id": "abc"}, "promotion")
    assert written == tmp_path / "reports/promotion.json"
    assert catalog.read_json("promotion") == {"run_id": "abc"}


def test_every_entry_is_written_by_a_dvc_stage():
    from pathlib import Path

    import yaml

    dvc_yaml = Path(__file__).resolve().parent.parent / "dvc.yaml"
    stages = yaml.safe_load(dvc_yaml.read_text(encoding="utf-8"))["stages"]
    for name, entry in ENTRIES.items():
        assert entry.stage in stages, name
        outs = [next(iter(o)) if isinstance(o, dict) else o
                for o in stages[entry.stage].get("outs", []) + stages[entry.stage].get(
                    "metrics", [])]
        assert any(str(entry.path) == o or str(entry.path).startswith(o + "/")
                   for o in outs), (name, entry.stage)


def test_paths_are_under_the_root_and_unchanged_for_the_working_directory(tmp_path):
    from pathlib import Path

    from churnlens import paths

    here, there = Catalog(), Catalog(tmp_path)
    assert here.path("features_meta") == paths.FEATURES_META  # log lines name data/features/...
    assert there.path("features_meta") == tmp_path / paths.FEATURES_META
    assert there.at(paths.INTERIM) == tmp_path / "data/interim"
    assert here.params() == Path("params.yaml") and there.params() == tmp_path / "params.yaml"
    assert there.params("other.yaml") == Path("other.yaml")  # a given file is taken as given
