#!/usr/bin/env python
"""Real-data benchmark: churnlens vs recency, logistic-RFM and BG/NBD on the public CDNOW log.

    python scripts/benchmark_real.py             # both cuts; writes reports/benchmark_real.json
    python scripts/benchmark_real.py --cuts 1998-03-31          # one cut
    python scripts/benchmark_real.py --data CDNOW_master.txt    # a local copy, no download

Data: `lifetimes/datasets/CDNOW_master.txt` from the `lifetimes==0.11.3` wheel on PyPI
(`pip download --no-deps`), checked against SHA-256 `CDNOW_SHA256` and cached in
`data/external/` (git-ignored by its own `.gitignore`), so reruns are offline. 23,570 customers,
69,659 purchases 1997-01 .. 1998-06; whitespace separated `customer_id date number_of_cds
dollar_value`, ids zero-padded (kept as strings).

Per cut (default 1998-03-31 and 1997-12-31), with `HORIZON_DAYS` = 90:

* truth: churned = no purchase in (cut, cut + 90 days]; population = every customer whose first
  purchase is on or before the cut; "active" = a purchase in (cut - 90 days, cut].
* churnlens: the rows up to the cut as `customers.csv` (signup_date = first purchase) and
  `transactions.csv` in `WORKDIR/CUT/raw/`, the repo's params.yaml with `data.raw_dir`,
  `snapshot.as_of` = cut, `label: inactivity / 90` and `train.register_model: false`, then
  `churnlens validate/features/train/score` as subprocesses in that folder (its own MLflow store).
  Evaluated: `data/processed/predictions.parquet`. A failing stage is recorded, not fatal.
* baselines, fitted on the rows up to the cut only:
  - recency: days since the last purchase (AUC, AP); Brier/ECE after isotonic regression of the
    label on recency at the earlier cutoff cut - 90 days (labelled with data <= cut);
  - logistic-RFM: logistic regression on log1p(recency, purchase days, spend per purchase day,
    tenure T) and raw recency, purchase days, T; trained on the rows at the latest cutoff whose
    label window ends by the cut, cut - 90 days (`LOGISTIC_CUTOFFS`);
  - BG/NBD (Fader, Hardie & Lee 2005), maximum likelihood on the cut data (our implementation
    below: `lifetimes` is unmaintained, PyMC-Marketing is a 0.6 GB stack that fits with priors);
    churn = P(no purchase in the next 90 days) = 1 - P(alive) + P(alive) * ((a+T)/(a+T+t))^(r+x).
* metrics (`churnlens.metrics`): ROC AUC of churn, AP of "returns" (positive = buys again,
  score = 1 - churn probability), Brier, ECE (10 equal-count bins), churn rate and n; for the
  whole population and the active one.
* checks (issue 10): churnlens AUC >= best baseline AUC - 0.001, AP(return) >= logistic-RFM
  - 0.005, Brier <= logistic-RFM, ECE <= 0.015.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import optimize, special
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout even without an installed package

from churnlens.io import read_json, write_json  # noqa: E402
from churnlens.metrics import evaluate, expected_calibration_error  # noqa: E402

CDNOW_SHA256 = "eff6889ed364c5199d6eacbbeb7a6d559971df4406ac876f322c373f00a072ef"
CDNOW_WHEEL = "lifetimes==0.11.3"
CDNOW_MEMBER = "lifetimes/datasets/CDNOW_master.txt"
CACHE_DIR = REPO / "data" / "external"
DEFAULT_CUTS = ("1998-03-31", "1997-12-31")
HORIZON_DAYS = 90
LOGISTIC_STEP_DAYS = 30
# Training cutoffs of logistic-RFM: only the latest fully labelled one (cut - 90 days). Stacking
# older cutoffs barely moves its AUC on CDNOW but worsens its calibration (ECE 0.014 -> 0.023 at
# 1998-03-31 with all 10): the single 1997 cohort ages, so old rows describe other customers.
LOGISTIC_CUTOFFS = 1
ECE_BINS = 10
STAGES = ("validate", "features", "train", "score")
SCORERS = ("churnlens", "recency", "logistic_rfm", "bgnbd")
SHIPPED_KEYS = ("shipped", "gate")  # copied from the pipeline's reports/metrics.json when present
# Baseline figures measured by the issue author (AUC, AP(return), Brier, ECE; None = not given).
REFERENCE = {
    "1998-03-31": {"churn_rate": 0.860, "recency": (0.828, None, None, None),
                   "bgnbd": (0.830, None, 0.0895, 0.022),
                   "logistic_rfm": (0.840, 0.537, 0.0887, 0.012)},
    "1997-12-31": {"churn_rate": 0.838, "recency": (0.793, None, None, None),
                   "bgnbd": (0.793, None, 0.1055, 0.019),
                   "logistic_rfm": (0.808, 0.528, 0.1040, 0.015)},
}


# -- data --------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _pip_command() -> list[str]:
    """A pip that can download: the Makefile's `.uv/bin/pip`, this interpreter's, or PATH's."""
    for pip in (REPO / ".uv" / "bin" / "pip",):
        if pip.exists():
            return [str(pip)]
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    found = shutil.which("pip3") or shutil.which("pip")
    if found:
        return [found]
    raise SystemExit("benchmark-real: no pip found to download the CDNOW log; run `make setup` "
                     "(creates .uv/bin/pip) or pass --data CDNOW_master.txt")


def fetch_cdnow(cache_dir: Path = CACHE_DIR) -> Path:
    """The verified CDNOW_master.txt in `cache_dir`, downloaded from PyPI only when missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    ignore = cache_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# downloaded data, never committed\n*\n", encoding="utf-8")
    target = cache_dir / "CDNOW_master.txt"
    if target.exists() and sha256_of(target) == CDNOW_SHA256:
        return target
    wheels = [w for w in glob.glob(str(cache_dir / "*.whl"))
              if Path(w).name.lower().startswith("lifetimes-0.11.3-")]
    if not wheels:
        print(f"downloading {CDNOW_WHEEL} (PyPI) into {cache_dir} ...", flush=True)
        cmd = [*_pip_command(), "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--dest", str(cache_dir), CDNOW_WHEEL]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark-real: `{' '.join(cmd)}` failed:\n{proc.stderr.strip()}")
        wheels = [w for w in glob.glob(str(cache_dir / "*.whl"))
                  if Path(w).name.lower().startswith("lifetimes-0.11.3-")]
        if not wheels:
            raise SystemExit(f"benchmark-real: pip download left no lifetimes wheel in {cache_dir}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        payload = wheel.read(CDNOW_MEMBER)
    digest = hashlib.sha256(payload).hexdigest()
    if digest != CDNOW_SHA256:
        raise SystemExit(f"benchmark-real: {CDNOW_MEMBER} in {wheels[0]} has SHA-256 {digest}, "
                         f"expected {CDNOW_SHA256}; not the published CDNOW log, stopping")
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, target)
    return target


def read_cdnow(path: Path) -> pd.DataFrame:
    """customer_id (str, as written), date (datetime64), quantity (int), amount (float)."""
    rows = []
    with open(path, encoding="ascii") as handle:
        header = handle.readline().split()
        if header[:2] != ["customer_id", "date"]:
            raise ValueError(f"{path}: unexpected header {header}")
        for number, line in enumerate(handle, start=2):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 4:
                raise ValueError(f"{path}:{number}: expected 4 fields, got {line.strip()!r}")
            rows.append(fields)
    frame = pd.DataFrame(rows, columns=["customer_id", "date", "quantity", "amount"])
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype(str),
        "date": pd.to_datetime(frame["date"], format="%Y%m%d"),
        "quantity": frame["quantity"].astype(int),
        "amount": frame["amount"].astype(float),
    })


def to_contract(log: pd.DataFrame, cut: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """churnlens input tables from the rows on or before `cut` (string columns, ISO dates)."""
    seen = log[log["date"] <= cut].sort_values(["customer_id", "date"], kind="stable")
    first = seen.groupby("customer_id", sort=True)["date"].min()
    customers = pd.DataFrame({"customer_id": first.index.astype(str),
                              "signup_date": first.dt.strftime("%Y-%m-%d").to_numpy()})
    transactions = pd.DataFrame({
        "customer_id": seen["customer_id"].astype(str).to_numpy(),
        "timestamp": seen["date"].dt.strftime("%Y-%m-%d").to_numpy(),
        "amount": seen["amount"].map(lambda v: f"{v:.2f}").to_numpy(),
        "quantity": seen["quantity"].astype(str).to_numpy(),
    })
    return customers, transactions


def truth(log: pd.DataFrame, cut: pd.Timestamp, horizon: int = HORIZON_DAYS) -> pd.DataFrame:
    """Per customer signed up by `cut`: churned (no purchase in (cut, cut+h]) and active."""
    end = cut + pd.Timedelta(days=horizon)
    if log["date"].max() < end:
        raise ValueError(f"the log ends {log['date'].max():%Y-%m-%d}, before {end:%Y-%m-%d}: "
                         f"the cut {cut:%Y-%m-%d} has no full {horizon}-day label window")
    first = log.groupby("customer_id")["date"].min()
    population = first.index[first <= cut]
    after = log[(log["date"] > cut) & (log["date"] <= end)]["customer_id"].unique()
    recent = log[(log["date"] > cut - pd.Timedelta(days=horizon)) & (log["date"] <= cut)]
    frame = pd.DataFrame(index=pd.Index(sorted(population), name="customer_id"))
    frame["churned"] = (~frame.index.isin(after)).astype(int)
    frame["active"] = frame.index.isin(recent["customer_id"].unique())
    return frame


def rfm(log: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Per customer with a purchase on or before `cutoff`, from those rows only (days):
    recency, purchase_days, monetary (spend per purchase day), tenure T, x (repeat purchase
    days), t_x (first to last purchase)."""
    seen = log[log["date"] <= cutoff]
    days = seen.groupby(["customer_id", "date"], sort=True)["amount"].sum().reset_index()
    per = days.groupby("customer_id", sort=True).agg(
        first=("date", "min"), last=("date", "max"), purchase_days=("date", "size"),
        spend=("amount", "sum"))
    out = pd.DataFrame(index=per.index)
    out["recency"] = (cutoff - per["last"]).dt.days.astype(float)
    out["purchase_days"] = per["purchase_days"].astype(float)
    out["monetary"] = (per["spend"] / per["purchase_days"]).clip(lower=0.0)
    out["T"] = (cutoff - per["first"]).dt.days.astype(float)
    out["x"] = out["purchase_days"] - 1
    out["t_x"] = (per["last"] - per["first"]).dt.days.astype(float)
    return out


def labels_at(log: pd.DataFrame, cutoff: pd.Timestamp, index: pd.Index,
              horizon: int = HORIZON_DAYS) -> np.ndarray:
    """1 = no purchase in (cutoff, cutoff + horizon] (for customers in `index`)."""
    window = log[(log["date"] > cutoff) & (log["date"] <= cutoff + pd.Timedelta(days=horizon))]
    return (~index.isin(window["customer_id"].unique())).astype(int)


# -- BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") -------------------
def bgnbd_log_likelihood(params, x, t_x, T) -> np.ndarray:
    """Per-customer log-likelihood of (x repeat purchases, last at t_x, observed for T)."""
    r, alpha, a, b = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    a2 = (special.gammaln(a + b) + special.gammaln(b + x) - special.gammaln(b)
          - special.gammaln(a + b + x))
    a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    a4 = np.full_like(x, -np.inf)
    a4[repeat] = (np.log(a) - np.log(b + x[repeat] - 1)
                  - (r + x[repeat]) * np.log(alpha + t_x[repeat]))
    return a1 + a2 + np.logaddexp(a3, a4)


def bgnbd_fit(x, t_x, T) -> dict[str, float]:
    """Maximum-likelihood r, alpha, a, b (no penalty); identical rows are weighted once."""
    frame = pd.DataFrame({"x": x, "t_x": t_x, "T": T}).astype(float)
    grouped = frame.groupby(["x", "t_x", "T"]).size().reset_index(name="w")
    gx, gtx, gT, w = (grouped[c].to_numpy() for c in ("x", "t_x", "T", "w"))

    def loss(theta: np.ndarray) -> float:
        value = -np.sum(w * bgnbd_log_likelihood(np.exp(theta), gx, gtx, gT)) / w.sum()
        return float(value) if np.isfinite(value) else 1e10

    start = np.log([1.0, max(float(np.mean(gT)), 1e-3), 1.0, 1.0])
    result = optimize.minimize(loss, start, method="Nelder-Mead",
                               options={"xatol": 1e-7, "fatol": 1e-10, "maxiter": 20_000,
                                        "maxfev": 20_000})
    result = optimize.minimize(loss, result.x, method="L-BFGS-B")
    r, alpha, a, b = np.exp(result.x)
    return {"r": float(r), "alpha": float(alpha), "a": float(a), "b": float(b),
            "log_likelihood": float(-result.fun * w.sum()), "converged": bool(result.success)}


def bgnbd_p_alive(params, x, t_x, T) -> np.ndarray:
    r, alpha, a, b = params
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    ratio = np.zeros_like(x)
    repeat = x > 0
    ratio[repeat] = (a / (b + x[repeat] - 1)
                     * ((alpha + T[repeat]) / (alpha + t_x[repeat])) ** (r + x[repeat]))
    return 1.0 / (1.0 + ratio)


def bgnbd_p_no_purchase(params, x, t_x, T, t) -> np.ndarray:
    """P(no purchase in (T, T + t]): dead, or alive with zero Poisson-gamma purchases."""
    r, alpha, _, _ = params
    x, T = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
    alive = bgnbd_p_alive(params, x, t_x, T)
    none_if_alive = ((alpha + T) / (alpha + T + t)) ** (r + x)
    return 1.0 - alive + alive * none_if_alive


# -- baselines ---------------------------------------------------------------------------------
def rfm_matrix(summary: pd.DataFrame) -> np.ndarray:
    """log1p of recency, purchase days, spend per purchase day and tenure, plus the raw
    recency, purchase days and tenure (a logistic model on logs alone bends too little)."""
    raw = summary[["recency", "purchase_days", "T"]].to_numpy(float)
    logs = np.log1p(summary[["recency", "purchase_days", "monetary", "T"]].to_numpy(float))
    return np.hstack([logs, raw])


def logistic_cutoffs(log: pd.DataFrame, cut: pd.Timestamp, horizon: int = HORIZON_DAYS,
                     count: int = LOGISTIC_CUTOFFS) -> list[pd.Timestamp]:
    """cut - h, cut - h - 30, ... (`count` of them, none before the first purchase + h): the
    latest cutoffs whose label window ends on or before the cut."""
    earliest = log["date"].min() + pd.Timedelta(days=horizon)
    cutoffs, cutoff = [], cut - pd.Timedelta(days=horizon)
    while cutoff >= earliest and len(cutoffs) < count:
        cutoffs.append(cutoff)
        cutoff -= pd.Timedelta(days=LOGISTIC_STEP_DAYS)
    return cutoffs or [cut - pd.Timedelta(days=horizon)]


def baselines(log: pd.DataFrame, cut: pd.Timestamp, index: pd.Index,
              horizon: int = HORIZON_DAYS) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Churn scores of recency, logistic-RFM and BG/NBD for `index`, using rows <= cut only.

    Returns {scorer: frame(score, probability)} (score ranks, probability may be NaN) and
    per-scorer details (fitted parameters, training rows)."""
    seen = log[log["date"] <= cut]
    now = rfm(seen, cut).reindex(index)
    scores, info = {}, {}

    earlier = cut - pd.Timedelta(days=horizon)
    before = rfm(seen, earlier)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(before["recency"].to_numpy(), labels_at(seen, earlier, before.index, horizon))
    scores["recency"] = pd.DataFrame({"score": now["recency"].to_numpy(),
                                      "probability": iso.predict(now["recency"].to_numpy())},
                                     index=index)
    info["recency"] = {"isotonic_cutoff": f"{earlier:%Y-%m-%d}", "isotonic_rows": len(before)}

    frames, ys = [], []
    cutoffs = logistic_cutoffs(seen, cut, horizon)
    for cutoff in cutoffs:
        summary = rfm(seen, cutoff)
        frames.append(rfm_matrix(summary))
        ys.append(labels_at(seen, cutoff, summary.index, horizon))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(np.vstack(frames), np.concatenate(ys))
    p = model.predict_proba(rfm_matrix(now))[:, 1]
    scores["logistic_rfm"] = pd.DataFrame({"score": p, "probability": p}, index=index)
    info["logistic_rfm"] = {"cutoffs": [f"{c:%Y-%m-%d}" for c in cutoffs],
                            "rows": int(sum(len(y) for y in ys))}

    weeks = 7.0
    fit = bgnbd_fit(now["x"], now["t_x"] / weeks, now["T"] / weeks)
    params = (fit["r"], fit["alpha"], fit["a"], fit["b"])
    p = bgnbd_p_no_purchase(params, now["x"], now["t_x"] / weeks, now["T"] / weeks,
                            horizon / weeks)
    scores["bgnbd"] = pd.DataFrame({"score": p, "probability": p}, index=index)
    info["bgnbd"] = {**fit, "time_unit": "week"}
    return scores, info


# -- evaluation --------------------------------------------------------------------------------
def metrics_of(y: np.ndarray, score: np.ndarray, probability: np.ndarray | None) -> dict:
    """AUC (churn) and AP(return) from `score`; Brier and ECE from `probability` if given."""
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    out: dict[str, Any] = {"n": int(len(y)), "churn_rate": float(y.mean()) if len(y) else None}
    two = len(np.unique(y)) == 2
    out["roc_auc"] = evaluate(y, score)["roc_auc"] if two else None
    out["ap_return"] = float(average_precision_score(1 - y, -score)) if two else None
    if probability is not None and np.all(np.isfinite(probability)):
        full = evaluate(y, probability)
        out["brier"] = full["brier"]
        out["ece"] = expected_calibration_error(y, probability, n_bins=ECE_BINS)
        out["log_loss"] = full["log_loss"]
        out["mean_probability"] = float(np.mean(probability))
    else:
        out.update(brier=None, ece=None, log_loss=None, mean_probability=None)
    return out


def evaluate_scorers(labels: pd.DataFrame, scores: dict[str, pd.DataFrame]) -> dict:
    """{scorer: {"all": metrics, "active": metrics}} on the customers each scorer scored."""
    out = {}
    for name, frame in scores.items():
        joined = labels.join(frame, how="inner")
        block = {"coverage": float(len(joined) / len(labels)) if len(labels) else None}
        for population, rows in (("all", joined), ("active", joined[joined["active"]])):
            block[population] = metrics_of(rows["churned"].to_numpy(), rows["score"].to_numpy(),
                                           rows["probability"].to_numpy())
        out[name] = block
    return out


def checks(results: dict[str, dict]) -> dict[str, dict]:
    """Issue 10's four targets on the whole population; `met` False when churnlens is missing."""
    ours = (results.get("churnlens") or {}).get("all") or {}
    base = {k: v["all"] for k, v in results.items() if k != "churnlens"}
    best_name = max(base, key=lambda k: base[k]["roc_auc"] or -1.0)
    logistic = base["logistic_rfm"]
    spec = {
        "auc_vs_best_baseline": ("roc_auc", ">=", base[best_name]["roc_auc"] - 0.001,
                                 f"best baseline AUC ({best_name}) - 0.001"),
        "ap_return_vs_logistic": ("ap_return", ">=", logistic["ap_return"] - 0.005,
                                  "logistic-RFM AP(return) - 0.005"),
        "brier_vs_logistic": ("brier", "<=", logistic["brier"], "logistic-RFM Brier"),
        "ece": ("ece", "<=", 0.015, "0.015"),
    }
    out = {}
    for name, (key, op, bound, what) in spec.items():
        value = ours.get(key)
        met = value is not None and (value >= bound if op == ">=" else value <= bound)
        out[name] = {"value": value, "op": op, "bound": bound, "bound_is": what, "met": bool(met)}
    return out


# -- churnlens pipeline ------------------------------------------------------------------------
def write_params(target: Path, cut: str, horizon: int = HORIZON_DAYS) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["data"]["raw_dir"] = "raw"
    params["snapshot"]["as_of"] = cut
    params["label"].update(definition="inactivity", horizon_days=horizon)
    params["train"]["register_model"] = False
    target.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return params


def churnlens_command() -> list[str]:
    exe = Path(sys.executable).with_name("churnlens")
    if exe.exists():
        return [str(exe)]
    venv = REPO / ".venv" / "bin" / "churnlens"
    return [str(venv)] if venv.exists() else [sys.executable, "-m", "churnlens.cli"]


def last_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "(no output)"


def run_pipeline(log: pd.DataFrame, cut: str, workdir: Path) -> dict[str, Any]:
    """Convert, run validate/features/train/score in `workdir`; never raises for a stage."""
    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "raw").mkdir(parents=True)
    (workdir / "logs").mkdir()
    customers, transactions = to_contract(log, pd.Timestamp(cut))
    customers.to_csv(workdir / "raw" / "customers.csv", index=False)
    transactions.to_csv(workdir / "raw" / "transactions.csv", index=False)
    write_params(workdir / "params.yaml", cut)
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env.setdefault("GIT_PYTHON_REFRESH", "quiet")
    status: dict[str, Any] = {"ok": False, "error": None, "failed_stage": None, "stages_s": {},
                              "customers": len(customers), "transactions": len(transactions)}
    base = churnlens_command()
    for stage in STAGES:
        cmd = [*base, stage, *(["raw", "data/interim"] if stage == "validate" else [])]
        start = time.perf_counter()
        with open(workdir / "logs" / f"{stage}.log", "w", encoding="utf-8") as out:
            proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=out,
                                  stderr=subprocess.PIPE, text=True, check=False)
            out.write(proc.stderr)
        status["stages_s"][stage] = round(time.perf_counter() - start, 2)
        if proc.returncode != 0:
            status.update(failed_stage=stage,
                          error=f"{stage} exit {proc.returncode}: {last_error_line(proc.stderr)}")
            return status
    status["ok"] = True
    metrics_path = workdir / "reports" / "metrics.json"
    if metrics_path.exists():
        shipped = read_json(metrics_path)
        status["pipeline_metrics"] = {k: shipped[k] for k in SHIPPED_KEYS if k in shipped}
        gate = shipped.get("gate") or {}
        if gate:
            status["shipped"] = {"scorer": gate.get("shipped"),
                                 "lightgbm_weight": gate.get("lightgbm_weight"),
                                 "summary": gate.get("summary")}
    return status


def churnlens_scores(workdir: Path) -> pd.DataFrame:
    pred = pd.read_parquet(workdir / "data" / "processed" / "predictions.parquet",
                           columns=["customer_id", "churn_probability"])
    pred["customer_id"] = pred["customer_id"].astype(str)
    if pred["customer_id"].duplicated().any():
        raise ValueError("predictions.parquet holds a customer twice")
    p = pred["churn_probability"].to_numpy(float)
    return pd.DataFrame({"score": p, "probability": p},
                        index=pd.Index(pred["customer_id"], name="customer_id"))


# -- one cut, the table, main ------------------------------------------------------------------
def benchmark_cut(log: pd.DataFrame, cut: str, workdir: Path | None,
                  horizon: int = HORIZON_DAYS) -> dict[str, Any]:
    """Everything for one cut; `workdir` None skips the churnlens pipeline."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    when = pd.Timestamp(cut)
    labels = truth(log, when, horizon)
    scores, details = baselines(log, when, labels.index, horizon)
    timings["baselines_s"] = round(time.perf_counter() - start, 2)
    out: dict[str, Any] = {"cut": cut, "horizon_days": horizon,
                           "label_window": [f"{when:%Y-%m-%d}",
                                            f"{when + pd.Timedelta(days=horizon):%Y-%m-%d}"],
                           "population": {"all": int(len(labels)),
                                          "active": int(labels["active"].sum())},
                           "baseline_details": details}
    if workdir is not None:
        start = time.perf_counter()
        status = run_pipeline(log, cut, workdir)
        timings["churnlens_s"] = round(time.perf_counter() - start, 2)
        if status["ok"]:
            try:
                scores = {"churnlens": churnlens_scores(workdir), **scores}
            except Exception as err:  # noqa: BLE001 - recorded, the baselines still count
                status.update(ok=False, error=f"predictions.parquet: {err}")
        out["churnlens"] = status
    out["scorers"] = evaluate_scorers(labels, scores)
    out["checks"] = checks(out["scorers"])
    out["checks_met"] = all(c["met"] for c in out["checks"].values())
    out["reference"] = REFERENCE.get(cut)
    out["timings"] = timings
    return out


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(result: dict[str, Any]) -> str:
    lines = []
    for cut, res in result["cuts"].items():
        pop = res["population"]
        lines.append(f"\nCDNOW cut {cut}  (truth: a purchase in ({res['label_window'][0]}, "
                     f"{res['label_window'][1]}]; {pop['all']} customers, {pop['active']} active)")
        lines.append(f"{'scorer':<13}{'pop':<7}{'n':>6}{'churn':>7}{'AUC':>7}{'AP(ret)':>8}"
                     f"{'Brier':>8}{'ECE':>7}   reference AUC/AP/Brier/ECE")
        status = res.get("churnlens") or {}
        for name in SCORERS:
            block = res["scorers"].get(name)
            if block is None:
                if name == "churnlens":
                    lines.append(f"{name:<13}{'all':<7}  not scored: "
                                 f"{status.get('error') or 'pipeline skipped'}")
                continue
            for population in ("all", "active"):
                m = block[population]
                ref = ""
                if population == "all" and res.get("reference") and name in res["reference"]:
                    ref = "   " + " / ".join(_fmt(v, 4 if i == 2 else 3)
                                             for i, v in enumerate(res["reference"][name]))
                lines.append(f"{name if population == 'all' else '':<13}{population:<7}"
                             f"{m['n']:>6}{_fmt(m['churn_rate']):>7}{_fmt(m['roc_auc']):>7}"
                             f"{_fmt(m['ap_return']):>8}{_fmt(m['brier'], 4):>8}"
                             f"{_fmt(m['ece']):>7}{ref}")
            if name == "churnlens" and block["coverage"] != 1.0:
                lines.append(f"{'':<13}scored {block['coverage']:.1%} of the population")
        if status.get("shipped"):
            shipped = status["shipped"]
            lines.append(f"pipeline shipped: {shipped['scorer']} (LightGBM weight "
                         f"{shipped['lightgbm_weight']}): {shipped['summary']}")
        lines.append("done when (churnlens, whole population):")
        for name, c in res["checks"].items():
            lines.append(f"  {'met    ' if c['met'] else 'NOT met'}  {name}: "
                         f"{_fmt(c['value'], 4)} {c['op']} {_fmt(c['bound'], 4)} "
                         f"({c['bound_is']})")
    return "\n".join(lines)


def git_state() -> dict[str, Any]:
    """The commit the pipeline ran from and whether src/ had uncommitted changes."""
    def git(*args: str) -> str | None:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    status = git("status", "--porcelain", "--", "src", "params.yaml")
    return {"commit": git("rev-parse", "HEAD"),
            "src_modified": None if status is None else bool(status)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", default=",".join(DEFAULT_CUTS),
                   help="comma-separated cut dates (default %(default)s)")
    p.add_argument("--workdir", type=Path, default=REPO / "bench" / "real",
                   help="scratch folder, one subfolder per cut (default bench/real, git-ignored)")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "benchmark_real.json")
    p.add_argument("--data", type=Path, help="a local CDNOW_master.txt (skips the download)")
    p.add_argument("--skip-pipeline", action="store_true",
                   help="baselines only (no churnlens run)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    total = time.perf_counter()
    path = args.data if args.data else fetch_cdnow()
    digest = sha256_of(path)
    if args.data and digest != CDNOW_SHA256:
        print(f"note: {path} is not the published CDNOW log (SHA-256 {digest})", flush=True)
    log = read_cdnow(path)
    cuts = [c.strip() for c in args.cuts.split(",") if c.strip()]
    result: dict[str, Any] = {
        "data": {"source": f"{CDNOW_MEMBER} from the {CDNOW_WHEEL} wheel (PyPI)",
                 "path": str(path), "sha256": digest, "sha256_expected": CDNOW_SHA256,
                 "is_reference_data": digest == CDNOW_SHA256, "rows": int(len(log)),
                 "customers": int(log["customer_id"].nunique()),
                 "first_date": f"{log['date'].min():%Y-%m-%d}",
                 "last_date": f"{log['date'].max():%Y-%m-%d}"},
        "repo": git_state(),
        "horizon_days": HORIZON_DAYS, "label_definition": "inactivity", "ece_bins": ECE_BINS,
        "cut_list": cuts, "cuts": {},
    }
    tmp_root = None
    workdir = args.workdir
    if workdir is None:
        tmp_root = workdir = Path(tempfile.mkdtemp(prefix="benchmark_real."))
    for cut in cuts:
        print(f"cut {cut}: baselines and churnlens pipeline ...", flush=True)
        start = time.perf_counter()
        res = benchmark_cut(log, cut, None if args.skip_pipeline else workdir.resolve() / cut)
        res["timings"]["total_s"] = round(time.perf_counter() - start, 2)
        result["cuts"][cut] = res
    if tmp_root is not None:
        shutil.rmtree(tmp_root, ignore_errors=True)
    result["checks_met"] = all(r["checks_met"] for r in result["cuts"].values())
    result["timings"] = {"total_s": round(time.perf_counter() - total, 2)}
    print(table(result))
    print(f"\nall checks met: {result['checks_met']}   total {result['timings']['total_s']:.0f} s")
    write_json(result, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
