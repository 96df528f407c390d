import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from churnlens.io import atomic_path, write_json, write_parquet


def test_failed_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "out.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_directory_outputs_are_replaced_whole(tmp_path):
    target = tmp_path / "folder"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]


def test_debris_of_a_killed_writer_is_cleaned_by_the_next_write(tmp_path):
    target = tmp_path / "t.parquet"
    write_parquet(pd.DataFrame({"a": [1]}), target)
    code = ("import os, signal, sys\n"
            "from churnlens.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n"
            "    tmp.write_bytes(b'partial')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ})
    assert done.returncode == -signal.SIGKILL
    assert pd.read_parquet(target)["a"].tolist() == [1]  # previous output intact
    assert any(p.name.startswith(".t.parquet.") for p in tmp_path.iterdir())
    write_parquet(pd.DataFrame({"a": [2]}), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]
