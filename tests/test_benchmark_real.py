"""`scripts/benchmark_real.py`: CDNOW conversion, truth labels, baselines, metrics, checks and
the BG/NBD functions, on tiny hand-written logs (no network, no pipeline run by default)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline_helpers import load_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "benchmark_real.py"
CUT = pd.Timestamp("1997-06-30")  # label window (06-30, 09-28]; active window (04-01, 06-30]

# CDNOW_master.txt format: leading blanks, whitespace separated, ids zero-padded.
TINY_LOG = """\
 customer_id  date number_of_cds  dollar_value
 00001 19970101  1   11.77
 00002 19970115  1   12.00
 00002 19970620  5   77.00
 00003 19970201  2   20.76
 00003 19970710  2   20.76
 00004 19970301  1   10.00
 00004 19970625  3   30.50
 00004 19970801  1    9.99
 00005 19970701  2   25.00
 00006 19970630  1   15.00
 00006 19970928  1   15.00
 00007 19970110  4   44.00
 00007 19971001  1   12.00
 00008 19970401  1    8.00
 00009 19970402  1    8.50
 00009 19970815  2   17.00
 00010 19970105  1   10.00
 00010 19970105  2    0.00
 00010 19970901  1   11.00
"""
# customer: (churned, active) at CUT; 00005 first buys after the cut and is left out
EXPECTED = {"00001": (1, False), "00002": (1, True), "00003": (0, False), "00004": (0, True),
            "00006": (0, True), "00007": (1, False), "00008": (1, False), "00009": (0, True),
            "00010": (0, False)}


def _module():
    return load_script(SCRIPT, "churnlens_benchmark_real")


br = _module()


@pytest.fixture()
def tiny(tmp_path):
    path = tmp_path / "CDNOW_master.txt"
    path.write_text(TINY_LOG, encoding="ascii")
    return path


def _synthetic_log(n: int = 400, seed: int = 3) -> pd.DataFrame:
    """A CDNOW-like log: one 1997 Q1 cohort, Poisson buying with random dropout."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        day = pd.Timestamp("1997-01-01") + pd.Timedelta(days=int(rng.integers(0, 90)))
        rate, quit_p = rng.gamma(0.6, 1 / 20), rng.beta(1, 3)
        while day <= pd.Timestamp("1998-06-30"):
            rows.append((f"{i + 1:05d}", day, int(rng.integers(1, 4)),
                         round(float(rng.gamma(2, 10)), 2)))
            if rng.random() < quit_p:
                break
            day += pd.Timedelta(days=max(1, int(rng.exponential(1 / rate))))
    return pd.DataFrame(rows, columns=["customer_id", "date", "quantity", "amount"])


# -- conversion and truth ------------------------------------------------------------------------
def test_read_cdnow_keeps_zero_padded_ids_as_strings(tiny):
    log = br.read_cdnow(tiny)
    assert len(log) == 19
    assert log["customer_id"].iloc[0] == "00001"
    assert all(isinstance(v, str) for v in log["customer_id"])
    assert log["date"].iloc[1] == pd.Timestamp("1997-01-15")
    assert log["quantity"].sum() == 33 and log["amount"].iloc[2] == pytest.approx(77.0)


def test_to_contract_keeps_only_rows_up_to_the_cut(tiny):
    customers, transactions = br.to_contract(br.read_cdnow(tiny), CUT)
    assert list(customers.columns) == ["customer_id", "signup_date"]
    assert list(transactions.columns) == ["customer_id", "timestamp", "amount", "quantity"]
    assert sorted(customers["customer_id"]) == sorted(EXPECTED)  # 00005 starts after the cut
    assert customers.set_index("customer_id")["signup_date"].to_dict()["00006"] == "1997-06-30"
    assert customers.set_index("customer_id")["signup_date"].to_dict()["00003"] == "1997-02-01"
    assert len(transactions) == 12
    assert transactions["timestamp"].max() == "1997-06-30"
    assert "00005" not in set(transactions["customer_id"])
    # written and read back as text, ids keep their zeros
    buffer = io.StringIO()
    transactions.to_csv(buffer, index=False)
    back = pd.read_csv(io.StringIO(buffer.getvalue()), dtype=str)
    assert back["customer_id"].iloc[0] == "00001"
    assert back.loc[back["customer_id"] == "00004", "amount"].tolist() == ["10.00", "30.50"]


def test_truth_labels_and_active_flag(tiny):
    labels = br.truth(br.read_cdnow(tiny), CUT)
    got = {cid: (int(row.churned), bool(row.active)) for cid, row in labels.iterrows()}
    assert got == EXPECTED


def test_truth_refuses_a_cut_without_a_full_label_window(tiny):
    with pytest.raises(ValueError, match="label window"):
        br.truth(br.read_cdnow(tiny), pd.Timestamp("1997-08-01"))


def test_rfm_uses_rows_up_to_the_cutoff_only(tiny):
    summary = br.rfm(br.read_cdnow(tiny), CUT)
    assert "00005" not in summary.index
    row = summary.loc["00004"]
    assert (row.recency, row.purchase_days, row["T"], row.x, row.t_x) == (5, 2, 121, 1, 116)
    assert row.monetary == pytest.approx((10.00 + 30.50) / 2)
    same_day = summary.loc["00010"]  # two rows on one day are one purchase day
    assert (same_day.purchase_days, same_day.x, same_day.monetary) == (1, 0, 10.0)


# -- metrics and checks -------------------------------------------------------------------------
def test_metrics_of_on_hand_computed_values():
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.2, 0.4, 0.6])
    m = br.metrics_of(y, p, p)
    assert m["n"] == 5 and m["churn_rate"] == pytest.approx(0.6)
    assert m["roc_auc"] == pytest.approx(1.0) and m["ap_return"] == pytest.approx(1.0)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert m["ece"] == pytest.approx(np.mean(np.abs(p - y)))  # 5 rows: one per bin
    ranking_only = br.metrics_of(y, p * 100, None)  # recency in days: no probability
    assert ranking_only["roc_auc"] == pytest.approx(1.0) and ranking_only["brier"] is None


def test_evaluation_and_checks_on_the_tiny_log(tiny):
    log = br.read_cdnow(tiny)
    labels = br.truth(log, CUT)
    scores, details = br.baselines(log, CUT, labels.index)
    assert set(scores) == {"recency", "logistic_rfm", "bgnbd"}
    for frame in scores.values():
        assert frame.index.equals(labels.index)
        assert frame["probability"].between(0, 1).all()
    assert details["logistic_rfm"]["cutoffs"] == ["1997-04-01"]
    perfect = labels["churned"].astype(float).clip(0.01, 0.99)
    scores["churnlens"] = pd.DataFrame({"score": perfect, "probability": perfect})
    result = br.evaluate_scorers(labels, scores)
    assert result["churnlens"]["coverage"] == 1.0
    assert result["churnlens"]["all"]["n"] == 9
    assert result["churnlens"]["all"]["churn_rate"] == pytest.approx(4 / 9)
    assert result["churnlens"]["active"]["n"] == 4
    assert result["churnlens"]["all"]["roc_auc"] == pytest.approx(1.0)
    checks = br.checks(result)
    assert all(c["met"] for c in checks.values()), checks
    del result["churnlens"]
    assert not any(c["met"] for c in br.checks(result).values())


def test_baselines_on_a_synthetic_log_beat_chance():
    log = _synthetic_log()
    cut = pd.Timestamp("1998-03-31")
    labels = br.truth(log, cut)
    scores, details = br.baselines(log, cut, labels.index)
    result = br.evaluate_scorers(labels, scores)
    for name in ("recency", "logistic_rfm", "bgnbd"):
        assert result[name]["all"]["roc_auc"] > 0.6, (name, result[name])
        assert result[name]["all"]["brier"] < 0.25
    assert details["bgnbd"]["converged"]


def test_a_failing_pipeline_is_recorded_and_the_baselines_still_count(tiny, tmp_path,
                                                                     monkeypatch):
    fail = "import sys; print('churnlens validate: error: boom', file=sys.stderr); sys.exit(1)"
    monkeypatch.setattr(br, "churnlens_command", lambda: [sys.executable, "-c", fail, "--"])
    res = br.benchmark_cut(br.read_cdnow(tiny), "1997-06-30", tmp_path / "work")
    assert res["churnlens"]["ok"] is False
    assert res["churnlens"]["failed_stage"] == "validate"
    assert "boom" in res["churnlens"]["error"]
    assert "churnlens" not in res["scorers"] and "bgnbd" in res["scorers"]
    assert res["checks_met"] is False
    params = (tmp_path / "work" / "params.yaml").read_text()
    assert "as_of: '1997-06-30'" in params and "register_model: false" in params
    raw = pd.read_csv(tmp_path / "work" / "raw" / "customers.csv", dtype=str)
    assert raw["customer_id"].iloc[0] == "00001"


def test_main_without_the_pipeline_writes_the_json(tiny, tmp_path, capsys):
    out = tmp_path / "reports" / "benchmark_real.json"
    assert br.main(["--data", str(tiny), "--cuts", "1997-06-30", "--skip-pipeline",
                    "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data"]["sha256"] == hashlib.sha256(tiny.read_bytes()).hexdigest()
    assert result["data"]["is_reference_data"] is False
    assert result["data"]["customers"] == 10 and result["data"]["rows"] == 19
    cut = result["cuts"]["1997-06-30"]
    assert cut["population"] == {"all": 9, "active": 4}
    assert cut["scorers"]["logistic_rfm"]["all"]["n"] == 9
    assert set(cut["checks"]) == {"auc_vs_best_baseline", "ap_return_vs_logistic",
                                  "brier_vs_logistic", "ece"}
    assert "NOT met" in capsys.readouterr().out


def test_a_wheel_with_other_data_is_refused(tmp_path):
    wheel = tmp_path / "Lifetimes-0.11.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(br.CDNOW_MEMBER, TINY_LOG)
    with pytest.raises(SystemExit, match="expected eff6889e"):
        br.fetch_cdnow(tmp_path)
    assert not (tmp_path / "CDNOW_master.txt").exists()


# -- BG/NBD ---------------------------------------------------------------------------------------
PAPER = (0.243, 4.414, 0.793, 2.426)  # Fader, Hardie & Lee (2005), CDNOW sample, weeks
X = np.array([0, 1, 2, 7, 2, 0.0])
T_X = np.array([0, 1.71, 30.43, 35.0, 5.0, 0])
T = np.array([38.86, 38.86, 38.86, 38.86, 20.0, 5.0])


def test_bgnbd_log_likelihood_and_p_alive_match_lifetimes():
    # values computed with lifetimes 0.11.3 (BetaGeoFitter) at the paper's parameters
    ll = [-0.5547132764381585, -4.469093275032588, -9.45860630706627, -22.13694492750796,
          -7.408137352549089, -0.18405224234009054]
    alive = [1.0, 0.2121009853773791, 0.726578570080673, 0.8437678219280121,
             0.3375657233809425, 1.0]
    np.testing.assert_allclose(br.bgnbd_log_likelihood(PAPER, X, T_X, T), ll, rtol=1e-10)
    np.testing.assert_allclose(br.bgnbd_p_alive(PAPER, X, T_X, T), alive, rtol=1e-10)


def test_p_no_purchase_equals_the_likelihood_of_a_longer_quiet_period():
    # P(no purchase in (T, T+t]) = L(x, t_x, T+t) / L(x, t_x, T): same history, watched longer
    t = 90 / 7
    direct = np.exp(br.bgnbd_log_likelihood(PAPER, X, T_X, T + t)
                    - br.bgnbd_log_likelihood(PAPER, X, T_X, T))
    np.testing.assert_allclose(br.bgnbd_p_no_purchase(PAPER, X, T_X, T, t), direct, rtol=1e-10)
    # nobody is sure to return; a quiet longtime buyer is more likely gone than a new one
    p = br.bgnbd_p_no_purchase(PAPER, X, T_X, T, t)
    assert np.all((p > 0) & (p < 1))


def _simulate_bgnbd(n: int, params, T: float, seed: int = 0):
    r, alpha, a, b = params
    rng = np.random.default_rng(seed)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        lam, p = rng.gamma(r, 1 / alpha), rng.beta(a, b)
        now = 0.0
        while True:
            now += rng.exponential(1 / lam)
            if now > T:
                break
            x[i], t_x[i] = x[i] + 1, now
            if rng.random() < p:
                break
    return x, t_x, np.full(n, T)


def test_bgnbd_fit_recovers_parameters_of_simulated_customers():
    x, t_x, T_obs = _simulate_bgnbd(4000, PAPER, 39.0)
    fit = br.bgnbd_fit(x, t_x, T_obs)
    assert fit["converged"]
    fitted = (fit["r"], fit["alpha"], fit["a"], fit["b"])
    assert fit["log_likelihood"] >= br.bgnbd_log_likelihood(PAPER, x, t_x, T_obs).sum()
    assert fit["r"] == pytest.approx(PAPER[0], rel=0.2)
    assert fit["alpha"] == pytest.approx(PAPER[1], rel=0.3)
    # a and b are weakly identified separately; the mean dropout probability a/(a+b) is not
    assert fitted[2] / (fitted[2] + fitted[3]) == pytest.approx(0.793 / (0.793 + 2.426), abs=0.08)


CACHED_WHEEL = REPO / "data" / "external" / "Lifetimes-0.11.3-py3-none-any.whl"


@pytest.mark.skipif(not CACHED_WHEEL.exists(), reason="lifetimes wheel not cached (no download)")
def test_bgnbd_reproduces_the_paper_on_the_cdnow_sample():
    with zipfile.ZipFile(CACHED_WHEEL) as wheel:
        sample = pd.read_csv(io.BytesIO(
            wheel.read("lifetimes/datasets/cdnow_customers_summary.csv")))
    args = (sample["frequency"], sample["recency"], sample["T"])
    assert br.bgnbd_log_likelihood(PAPER, *args).sum() == pytest.approx(-9582.4, abs=0.1)
    fit = br.bgnbd_fit(*args)
    assert (fit["r"], fit["alpha"], fit["a"], fit["b"]) == pytest.approx(PAPER, abs=2e-3)


@pytest.mark.slow
def test_end_to_end_with_the_pipeline_on_a_synthetic_log(tmp_path):
    log = _synthetic_log(n=600)
    data = tmp_path / "log.txt"
    lines = [" customer_id  date number_of_cds  dollar_value"]
    lines += [f" {r.customer_id} {r.date:%Y%m%d} {r.quantity} {r.amount:.2f}"
              for r in log.itertuples()]
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "benchmark_real.json"
    assert br.main(["--data", str(data), "--workdir", str(tmp_path / "work"),
                    "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for cut in br.DEFAULT_CUTS:
        res = result["cuts"][cut]
        # either scored everyone, or the failure is recorded
        if res["churnlens"]["ok"]:
            assert res["scorers"]["churnlens"]["coverage"] == 1.0
        else:
            assert res["churnlens"]["error"]
