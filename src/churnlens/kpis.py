"""Retention KPIs: CRR, churn rate, NDR/GRR, RPR, CLV, NPS, signup cohorts and a KPI trend.

Pure functions over tables. Inputs are pandas DataFrames or anything else DuckDB can scan
(pyarrow Tables / Datasets, so the stage can stream 50M-row logs from Parquet). The heavy work
runs in DuckDB as a few group-bys by customer; numpy then turns the per-customer results into
per-group counts with `bincount`. No per-customer Python loops.

Definitions (every "day" is a calendar date; "at day d" means at the end of day d, seeing every
row with `date(timestamp) <= d`):

* period: the `period_days` (P) days ending at `as_of`, i.e. the days in `(as_of - P, as_of]`;
  the previous period is `(as_of - 2P, as_of - P]`. `period.start` in the JSON is the first day
  *inside* the period; "at the start" means at the end of the day before it (`as_of - P`).
* customer at day d: `signup_date <= d` and not lost at d, where lost at d means (the one
  definition, shared with the feature labels, is `churnlens.labels`)
  * `cancellation`: `cancel_date <= d`;
  * `inactivity`: no transaction or event in `(d - H, d]` and `signup_date <= d - H`
    (H = `horizon_days`). So a customer is lost on the first day on which they have gone H days
    without activity, counting from their last activity or from signup if never active
    (last activity r -> lost from r + H on, matching the label "no activity in (t, t + H]").
    Activity brings a lapsed customer back: status is point-in-time, not permanent.
    `cancel_date` is ignored under this definition.
* customers_start / customers_end: customers at the period start / end.
  new: `signup_date` inside the period.
  lost: customers at the start or new who are not customers at the end of the period (a lapse
  that is undone within the same period is not a loss); lost_from_start: those of them who were
  customers at the start. returned: customers at the end who were neither customers at the start
  nor new (came back after a lapse; always 0 under `cancellation`).
  Identity: customers_end = customers_start + new - lost + returned.
* CRR = (customers_end - new) / customers_start (DESIGN formula; = 1 - (lost - returned) /
  customers_start, so under `inactivity` returning customers can lift it above 1 - churn_rate);
  churn_rate = lost_from_start / customers_start.
* NDR = net revenue in the period of the customers at the start / their net revenue in the
  previous period; GRR caps each such customer's current revenue at their previous revenue.
  Revenue is the net sum of `amount` (refunds negative).
  Revenue window: NDR and GRR may be measured over a longer window W = m * P (m whole periods)
  ending at the period end: revenue in `(end - W, end]` of the customers at `end - W` against
  their revenue in `(end - 2W, end - W]`. `revenue_window="auto"` (the stage) takes W = the
  label horizon rounded up to whole periods when the log is purchase-only (no events table) or
  when the P-day NDR is lumpy (median month-to-month move >= `LUMPY_NDR_MOVE` over the trend):
  most buyers do not buy every period, so a P-day NDR mostly measures purchase timing. The
  P-day figures stay in `ndr_period` / `grr_period`; `revenue_window` in kpis.json says which
  window was used and why (`caveat`: one plain line for the report).
* RPR = customers with >= 2 purchases (transactions with amount > 0) in the period / customers
  with >= 1 (any customer of the customers table, whatever their status).
* CLV = net revenue per purchase x purchases per purchasing customer per year x expected
  lifetime, the first two over the `clv_days` (365) days ending at the period end (annualised
  over the days of transaction history when that is shorter); expected lifetime in years =
  1 / (1 - (1 - churn_rate) ** (365 / P)).
* NPS = % promoters (9-10) - % detractors (0-6) among the customers who answered in the period,
  taking each customer's latest answer in the period; in points (-100..100).
* segments: the customers table's `segment`, missing -> "unknown" (so a table without segments
  gives a single "unknown" group; an empty customers table gives no groups).
* cohorts: signup month; `retention[k]` = share of the cohort that is a customer at the last day
  of the k-th month after the signup month (k = 0: end of the signup month), while that day is
  on or before `as_of`; the last `max_cohorts` complete signup months that have signups. Under
  `inactivity` a retention curve can rise again (customers coming back).

A KPI that cannot be computed is None and `notes["<scope>.<kpi>"]` says why.
Transactions, events and answers of customer ids missing from the customers table are ignored;
rows after `as_of` are invisible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from churnlens import labels
from churnlens.errors import ChurnlensError
from churnlens.settings import DEFAULTS

KPI_KEYS = (
    "customers_start",
    "customers_end",
    "new",
    "lost",
    "crr",
    "churn_rate",
    "ndr",
    "grr",
    "rpr",
    "clv",
    "nps",
)
EXTRA_KEYS = ("lost_from_start", "returned", "revenue", "ndr_period", "grr_period")
TREND_COLUMNS = (
    "period_end", "crr", "churn_rate", "ndr", "customers_end", "revenue", "grr", "ndr_period",
)
REVENUE_WINDOWS = ("auto", "period")
LUMPY_NDR_MOVE = 0.10  # median |change| of the P-day NDR between periods that counts as lumpy
DEFINITIONS = labels.DEFINITIONS
UNKNOWN_SEGMENT = "unknown"
NEVER = np.int64(2**40)  # day number standing for "no date" (never signed up / never cancelled)
_EPOCH = date(1970, 1, 1)
_NO_SCORE = -1

REASON_NO_START = "no customers at the start of the period"
REASON_NO_PREV_REVENUE = "no revenue in the previous period from customers existing at its start"
REASON_NEG_PREV_REVENUE = (
    "net revenue in the previous period from customers existing at its start is negative"
)
REASON_NO_PURCHASES = "no purchases in the period"
REASON_NO_CLV_PURCHASES = "no purchases in the last {days} days"
REASON_ZERO_CHURN = "churn rate is 0 in the period: expected lifetime is unbounded"
REASON_NO_CHURN = "churn rate not computable (no customers at the start of the period)"
REASON_NO_NPS_TABLE = "no nps table"
REASON_NO_NPS_ANSWERS = "no answers in period"


# --------------------------------------------------------------------------- days


def to_day(value: Any) -> int:
    """Days since 1970-01-01 of a date / datetime / ISO string (the time of day is dropped)."""
    return (pd.Timestamp(value).date() - _EPOCH).days


def from_day(day: int) -> date:
    return _EPOCH + timedelta(days=int(day))


def _day_sql(column: str) -> str:
    return f"(CAST(CAST({column} AS TIMESTAMP) AS DATE) - DATE '1970-01-01')"


_TS_DAY = _day_sql('"timestamp"')  # day number of a row's timestamp


def _month_end(month: np.datetime64) -> int:
    """Day number of the last day of a `datetime64[M]` month."""
    return int((month + 1).astype("datetime64[D]").astype(np.int64)) - 1


def _months(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype("datetime64[M]")


def cohort_months(signup: np.ndarray, as_of_day: int, max_cohorts: int = 12) -> list:
    """The last `max_cohorts` signup months (datetime64[M]) whose last day is <= as_of."""
    signup = signup[signup <= as_of_day]
    if len(signup) == 0:
        return []
    return [m for m in np.unique(_months(signup)) if _month_end(m) <= as_of_day][-max_cohorts:]


# --------------------------------------------------------------------------- panel


@dataclass
class KpiPanel:
    """Everything the KPIs need, one row per customer (arrays aligned with `customer_id`).

    Period k ends at `as_of - k * period_days` (k = 0: the current period). `status[:, j]`
    says who is a customer at day `boundaries[j]` (period ends and cohort month ends).
    """

    as_of: date
    period_days: int
    definition: str
    horizon_days: int
    customer_id: np.ndarray  # str
    segment: np.ndarray  # str, "unknown" when missing
    signup: np.ndarray  # int64 day (NEVER when missing)
    boundaries: np.ndarray  # int64 days, ascending
    status: np.ndarray  # bool [n, len(boundaries)]
    revenue: np.ndarray  # float64 [n, n_periods]: net revenue in period k
    purchases: np.ndarray  # int64 [n, n_periods]: transactions with amount > 0 in period k
    clv_days: int
    clv_revenue: np.ndarray  # float64 [n, 2]: net revenue in the clv_days ending at period k end
    clv_purchases: np.ndarray  # int64 [n, 2]
    clv_window: tuple[int, int]  # days of transaction history in those windows (<= clv_days)
    nps_score: np.ndarray | None  # int64 [n, 2]: latest score in period k (-1 none); None: no table
    max_cohorts: int = 12
    revenue_periods: int = 1  # NDR/GRR window in whole periods (m; W = m * period_days)
    revenue_window_reason: str | None = None  # why m > 1 (None: the DESIGN period window)

    @property
    def as_of_day(self) -> int:
        return (self.as_of - _EPOCH).days

    @property
    def n_periods(self) -> int:
        return self.revenue.shape[1]

    @property
    def revenue_window_days(self) -> int:
        return self.revenue_periods * self.period_days

    def period_end(self, k: int) -> int:
        return self.as_of_day - k * self.period_days

    def customers_at(self, day: int) -> np.ndarray:
        """Boolean mask of the customers at `day` (must be one of `boundaries`)."""
        j = int(np.searchsorted(self.boundaries, day))
        if j >= len(self.boundaries) or self.boundaries[j] != day:
            raise KeyError(f"{from_day(day)} is not a boundary day of this panel")
        return self.status[:, j]


def _prepare_customers(customers: pd.DataFrame) -> pd.DataFrame:
    missing = {"customer_id", "signup_date"} - set(customers.columns)
    if missing:
        raise ChurnlensError(f"customers table: missing column(s) {sorted(missing)}")
    cust = customers.copy()
    for col in ("segment", "cancel_date"):
        if col not in cust.columns:
            cust[col] = None
    return cust[["customer_id", "signup_date", "segment", "cancel_date"]]


def _window_masks(days: np.ndarray, boundaries: np.ndarray, width: int) -> dict[str, np.ndarray]:
    """Per day, bit j (in 64-bit words w{j // 64}) set when `day` is in `(b_j - width, b_j]`."""
    words = {}
    for w in range((len(boundaries) + 63) // 64):
        mask = np.zeros(len(days), dtype=np.uint64)
        for j in range(w * 64, min(len(boundaries), w * 64 + 64)):
            covered = (days > boundaries[j] - width) & (days <= boundaries[j])
            mask |= covered.astype(np.uint64) << np.uint64(j - w * 64)
        words[f"w{w}"] = mask
    return words


def _ts_range(first_day: int, last_day: int) -> str:
    """SQL predicate on the raw `timestamp` column (prunable): day in [first_day, last_day]."""
    lo, hi = from_day(first_day).isoformat(), from_day(last_day + 1).isoformat()
    ts = 'CAST("timestamp" AS TIMESTAMP)'
    return f"{ts} >= TIMESTAMP '{lo}' AND {ts} < TIMESTAMP '{hi}'"


def _active_bits(con: duckdb.DuckDBPyConnection, sources: list[str], boundaries: np.ndarray,
                 width: int, n: int) -> np.ndarray:
    """bool [n, len(boundaries)]: some transaction/event in `(b - width, b]`, per customer.

    One pass over the logs grouped by customer: each row's day looks up (in a constant list)
    the bit mask of the boundaries whose window covers it, and `bit_or` collects them.
    """
    active = np.zeros((n, len(boundaries)), dtype=bool)
    if not len(boundaries):
        return active
    first, last = int(boundaries.min()) - width + 1, int(boundaries.max())
    days = np.arange(first, last + 1, dtype=np.int64)
    words = _window_masks(days, boundaries, width)
    union = " UNION ALL ".join(
        f"SELECT CAST(customer_id AS VARCHAR) AS customer_id, {_TS_DAY} AS day FROM {src} "
        f"WHERE {_ts_range(first, last)}"
        for src in sources
    )
    aggs = ", ".join(
        f"bit_or(([{','.join(str(int(x)) for x in mask)}]::UBIGINT[])[day - {first - 1}]) AS {w}"
        for w, mask in words.items()
    )
    rows = con.execute(
        f"""
        SELECT c.pos, a.* EXCLUDE (customer_id) FROM (
            SELECT customer_id, {aggs} FROM ({union}) GROUP BY 1
        ) a JOIN cust c USING (customer_id)
        """
    ).fetchnumpy()
    pos = rows["pos"].astype(np.int64)
    for w in words:
        bits = np.asarray(rows[w], dtype=np.uint64)
        first_bit = int(w[1:]) * 64
        for j in range(first_bit, min(len(boundaries), first_bit + 64)):
            active[pos, j] = ((bits >> np.uint64(j - first_bit)) & np.uint64(1)).astype(bool)
    return active


def build_panel(
    customers: pd.DataFrame,
    transactions: Any,
    events: Any = None,
    nps: Any = None,
    *,
    as_of: Any,
    period_days: int = DEFAULTS.kpis.period_days,
    definition: str = DEFAULTS.label.definition,
    horizon_days: int = DEFAULTS.label.horizon_days,
    n_periods: int = 13,
    max_cohorts: int = 12,
    clv_days: int = 365,
) -> KpiPanel:
    """Aggregate the validated tables into a `KpiPanel` (DuckDB does the heavy lifting).

    `transactions`, `events` and `nps` may be DataFrames, pyarrow Tables or Datasets; `events`
    None = no usage log, `nps` None = no nps table (NPS is then null with a note).
    `n_periods` periods of revenue are kept (a trend over m periods needs m + 1).
    Who is a customer (not lost) at a day is `churnlens.labels.customers_at`.
    """
    labels.check_definition(definition)
    if int(period_days) < 1 or int(horizon_days) < 1:
        raise ChurnlensError("kpis.period_days and label.horizon_days must be >= 1")
    period_days, horizon_days = int(period_days), int(horizon_days)
    n_periods = max(int(n_periods), 3)
    as_of_date = pd.Timestamp(as_of).date()
    a = (as_of_date - _EPOCH).days
    if transactions is None:
        transactions = pd.DataFrame(
            {"customer_id": [], "timestamp": pd.Series([], dtype="datetime64[us]"), "amount": []}
        )

    con = duckdb.connect()
    try:
        cust = _register_customers(con, customers)
        n = len(cust)
        signup = _days(cust["signup"])
        sources = _register_logs(con, transactions, events)
        boundaries = _boundaries(signup, a, period_days, n_periods, max_cohorts)
        active = None
        if labels.uses_activity(definition):
            active = _active_bits(con, sources, boundaries, horizon_days, n)
        status = labels.customers_at(definition, horizon_days, days=boundaries, signup=signup,
                                     cancel=_days(cust["cancel"]), active=active)
        revenue, purchases = _period_revenue(con, a, period_days, n_periods, n)
        clv_revenue, clv_purchases, clv_window = _clv_sums(con, a, period_days, clv_days, n)
        nps_score = None if nps is None else _nps_scores(con, nps, a, period_days, n)
    finally:
        con.close()

    return KpiPanel(
        as_of=as_of_date,
        period_days=period_days,
        definition=definition,
        horizon_days=horizon_days,
        customer_id=cust["customer_id"].to_numpy(dtype=object),
        segment=cust["segment"].to_numpy(dtype=object),
        signup=signup,
        boundaries=boundaries,
        status=status,
        revenue=revenue,
        purchases=purchases,
        clv_days=int(clv_days),
        clv_revenue=clv_revenue,
        clv_purchases=clv_purchases,
        clv_window=clv_window,
        nps_score=nps_score,
        max_cohorts=int(max_cohorts),
    )


def _days(column: pd.Series) -> np.ndarray:
    """Epoch days as int64, `NEVER` where missing."""
    return column.astype("float64").fillna(float(NEVER)).to_numpy().astype(np.int64)


def _register_customers(con: duckdb.DuckDBPyConnection, customers: pd.DataFrame) -> pd.DataFrame:
    """The temp table `cust` (one row per customer id, `pos` = row in the panel); its rows."""
    con.register("cust_in", _prepare_customers(customers))
    con.execute(
        """
        CREATE TEMP TABLE cust AS
        SELECT CAST(row_number() OVER (ORDER BY customer_id) - 1 AS BIGINT) AS pos, * FROM (
            SELECT CAST(customer_id AS VARCHAR) AS customer_id,
                   any_value(COALESCE(CAST(segment AS VARCHAR), ?)) AS segment,
                   any_value(CAST(signup_date AS DATE) - DATE '1970-01-01') AS signup,
                   any_value(CAST(cancel_date AS DATE) - DATE '1970-01-01') AS cancel
            FROM cust_in
            WHERE customer_id IS NOT NULL
            GROUP BY 1
        )
        """,
        [UNKNOWN_SEGMENT],
    )
    return con.sql("SELECT customer_id, segment, signup, cancel FROM cust ORDER BY pos").df()


def _register_logs(con: duckdb.DuckDBPyConnection, transactions: Any, events: Any) -> list[str]:
    """Register `tx` (and `ev` when there is a usage log); the activity sources."""
    con.register("tx", transactions)
    sources = ["tx"]
    if events is not None:
        con.register("ev", events)
        sources.append("ev")
    return sources


def _boundaries(signup: np.ndarray, a: int, p: int, n_periods: int,
                max_cohorts: int) -> np.ndarray:
    """The days the status is needed at: period ends and cohort month ends, ascending."""
    period_bounds = [a - k * p for k in range(n_periods + 1)]
    months = cohort_months(signup, a, max_cohorts)
    month_bounds = []
    if months:
        m = months[0]
        while _month_end(m) <= a:
            month_bounds.append(_month_end(m))
            m = m + 1
    return np.unique(np.asarray(period_bounds + month_bounds, dtype=np.int64))


def _period_revenue(con: duckdb.DuckDBPyConnection, a: int, p: int, n_periods: int,
                    n: int) -> tuple[np.ndarray, np.ndarray]:
    """Net revenue and purchases (amount > 0) per customer and period (k = 0: the current)."""
    revenue = np.zeros((n, n_periods), dtype=np.float64)
    purchases = np.zeros((n, n_periods), dtype=np.int64)
    rows = con.execute(
        f"""
        SELECT c.pos, t.b, t.revenue, t.purchases FROM (
            SELECT customer_id, CAST(({a} - d) // {p} AS BIGINT) AS b,
                   COALESCE(sum(amount), 0) AS revenue,
                   count(*) FILTER (WHERE amount > 0) AS purchases
            FROM (SELECT CAST(customer_id AS VARCHAR) AS customer_id,
                         {_TS_DAY} AS d, CAST(amount AS DOUBLE) AS amount
                  FROM tx WHERE {_ts_range(a - n_periods * p + 1, a)})
            GROUP BY 1, 2
        ) t JOIN cust c USING (customer_id)
        """
    ).fetchnumpy()
    pos, b = rows["pos"].astype(np.int64), rows["b"].astype(np.int64)
    revenue[pos, b] = np.asarray(rows["revenue"], dtype=np.float64)
    purchases[pos, b] = np.asarray(rows["purchases"], dtype=np.int64)
    return revenue, purchases


def _clv_sums(con: duckdb.DuckDBPyConnection, a: int, p: int, clv_days: int,
              n: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Revenue and purchases per customer in the `clv_days` ending at the end of period 0 and
    of period 1, and the days of transaction history in each of those windows."""
    e0, e1 = a, a - p
    rows = con.execute(
        f"""
        SELECT c.pos, t.* EXCLUDE (customer_id) FROM (
            SELECT customer_id,
                COALESCE(sum(amount) FILTER (WHERE d > {e0 - clv_days}), 0) AS rev0,
                count(*) FILTER (WHERE d > {e0 - clv_days} AND amount > 0) AS pur0,
                COALESCE(sum(amount) FILTER (WHERE d <= {e1}), 0) AS rev1,
                count(*) FILTER (WHERE d <= {e1} AND amount > 0) AS pur1
            FROM (SELECT CAST(customer_id AS VARCHAR) AS customer_id,
                         {_TS_DAY} AS d, CAST(amount AS DOUBLE) AS amount
                  FROM tx WHERE {_ts_range(e1 - clv_days + 1, e0)})
            GROUP BY 1
        ) t JOIN cust c USING (customer_id)
        """
    ).fetchnumpy()
    pos = rows["pos"].astype(np.int64)
    clv_revenue = np.zeros((n, 2), dtype=np.float64)
    clv_purchases = np.zeros((n, 2), dtype=np.int64)
    for k in (0, 1):
        clv_revenue[pos, k] = np.asarray(rows[f"rev{k}"], dtype=np.float64)
        clv_purchases[pos, k] = np.asarray(rows[f"pur{k}"], dtype=np.int64)
    first_tx = con.execute(
        f"SELECT min({_TS_DAY}) FROM tx WHERE amount IS NOT NULL"
    ).fetchall()[0][0]
    clv_window = tuple(
        0 if first_tx is None or first_tx > e else int(min(clv_days, e - first_tx + 1))
        for e in (e0, e1)
    )
    return clv_revenue, clv_purchases, clv_window


def _nps_scores(con: duckdb.DuckDBPyConnection, nps: Any, a: int, p: int, n: int) -> np.ndarray:
    """Latest NPS answer per customer in period 0 and 1 (`_NO_SCORE` when none)."""
    con.register("nps_in", nps)
    nps_score = np.full((n, 2), _NO_SCORE, dtype=np.int64)
    rows = con.execute(
        f"""
        SELECT c.pos, s.b, s.score FROM (
            SELECT customer_id, CAST(({a} - d) // {p} AS BIGINT) AS b,
                   arg_max(score, ts) AS score
            FROM (SELECT CAST(customer_id AS VARCHAR) AS customer_id,
                         CAST("timestamp" AS TIMESTAMP) AS ts, {_TS_DAY} AS d,
                         CAST(score AS BIGINT) AS score
                  FROM nps_in WHERE score IS NOT NULL)
            WHERE d <= {a} AND d > {a - 2 * p}
            GROUP BY 1, 2
        ) s JOIN cust c USING (customer_id)
        """
    ).fetchnumpy()
    nps_score[rows["pos"].astype(np.int64), rows["b"].astype(np.int64)] = np.asarray(
        rows["score"], dtype=np.int64
    )
    return nps_score


def daily_activity_rows(transactions: Any, events: Any = None) -> list[tuple[date, int]]:
    """(UTC day, transaction + event rows) for each day with rows, ascending: the counts the
    features stage gives `snapshot.default_as_of`, so both stages pick the same as_of."""
    con = duckdb.connect()
    try:
        parts = []
        for name, table in (("tx", transactions), ("ev", events)):
            if table is not None:
                con.register(name, table)
                parts.append(f'SELECT CAST(CAST("timestamp" AS TIMESTAMP) AS DATE) AS d '
                             f'FROM {name} WHERE "timestamp" IS NOT NULL')
        if not parts:
            return []
        rows = con.execute(f"SELECT d, COUNT(*) FROM ({' UNION ALL '.join(parts)}) u "
                           "GROUP BY d ORDER BY d").fetchall()
    finally:
        con.close()
    return [(pd.Timestamp(d).date(), int(n)) for d, n in rows]


def status_at(panel: KpiPanel, day: Any) -> pd.Series:
    """Is each customer a customer at `day` (a period end or cohort month end)? bool Series."""
    mask = panel.customers_at(to_day(day))
    return pd.Series(mask, index=pd.Index(panel.customer_id, name="customer_id"), name="customer")


# --------------------------------------------------------------------------- KPIs


def _period_sums(
    panel: KpiPanel, k: int, codes: np.ndarray, n_groups: int
) -> dict[str, np.ndarray]:
    """Per-group counts and sums for period k (the KPI numerators and denominators)."""
    m = panel.revenue_periods
    if k + max(2 * m, 2) > panel.n_periods:
        raise ValueError(
            f"period {k} needs {k + max(2 * m, 2)} periods of revenue, have {panel.n_periods}"
        )
    e = panel.period_end(k)
    s = e - panel.period_days
    signup = panel.signup

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=np.asarray(weights, dtype=np.float64), minlength=n_groups)

    in_start = panel.customers_at(s)
    in_end = panel.customers_at(e)
    new = (signup > s) & (signup <= e)
    gone = (in_start | new) & ~in_end
    cur, prev = panel.revenue[:, k], panel.revenue[:, k + 1]
    # revenue window: m periods ending at e against the m before, customers at e - m * P
    cur_w = panel.revenue[:, k:k + m].sum(axis=1)
    prev_w = panel.revenue[:, k + m:k + 2 * m].sum(axis=1)
    in_w_start = panel.customers_at(e - m * panel.period_days)
    pur = panel.purchases[:, k]
    sums = {
        "customers_start": total(in_start),
        "customers_end": total(in_end),
        "new": total(new),
        "lost": total(gone),
        "lost_from_start": total(gone & in_start),
        "returned": total(in_end & ~in_start & ~new),
        "revenue": total(cur),
        "ndr_num": total(np.where(in_w_start, cur_w, 0.0)),
        "ndr_den": total(np.where(in_w_start, prev_w, 0.0)),
        "grr_num": total(np.where(in_w_start, np.minimum(cur_w, prev_w), 0.0)),
        "ndr_p_num": total(np.where(in_start, cur, 0.0)),
        "ndr_p_den": total(np.where(in_start, prev, 0.0)),
        "grr_p_num": total(np.where(in_start, np.minimum(cur, prev), 0.0)),
        "buyers": total(pur >= 1),
        "repeat_buyers": total(pur >= 2),
    }
    if k < panel.clv_revenue.shape[1]:
        sums["clv_revenue"] = total(panel.clv_revenue[:, k])
        sums["clv_purchases"] = total(panel.clv_purchases[:, k])
        sums["clv_buyers"] = total(panel.clv_purchases[:, k] >= 1)
    if panel.nps_score is not None and k < panel.nps_score.shape[1]:
        score = panel.nps_score[:, k]
        sums["nps_n"] = total(score >= 0)
        sums["nps_promoters"] = total(score >= 9)
        sums["nps_detractors"] = total((score >= 0) & (score <= 6))
    return sums


def _ratio(num: float, den: float) -> float:
    return round(num / den, 6)


def _kpis_from_sums(
    sums: dict[str, float], panel: KpiPanel, k: int, scope: str, notes: dict[str, str]
) -> dict[str, Any]:
    """Turn one group's sums into K; every KPI that cannot be computed is None + a note."""
    out: dict[str, Any] = {}

    def null(kpi: str, reason: str) -> None:
        out[kpi] = None
        notes[f"{scope}.{kpi}"] = reason

    for key in ("customers_start", "customers_end", "new", "lost", "lost_from_start", "returned"):
        out[key] = int(round(sums[key]))
    out["revenue"] = round(float(sums["revenue"]), 2)

    start = out["customers_start"]
    if start > 0:
        out["crr"] = _ratio(out["customers_end"] - out["new"] - out["returned"], start)
        out["churn_rate"] = _ratio(out["lost_from_start"], start)
    else:
        null("crr", REASON_NO_START)
        null("churn_rate", REASON_NO_START)

    den = float(sums["ndr_den"])
    if den > 1e-9:
        out["ndr"] = _ratio(float(sums["ndr_num"]), den)
        out["grr"] = _ratio(float(sums["grr_num"]), den)
    else:
        reason = REASON_NEG_PREV_REVENUE if den < -1e-9 else REASON_NO_PREV_REVENUE
        null("ndr", reason)
        null("grr", reason)
    den_p = float(sums["ndr_p_den"])  # the P-day figures, for reference (no notes)
    out["ndr_period"] = _ratio(float(sums["ndr_p_num"]), den_p) if den_p > 1e-9 else None
    out["grr_period"] = _ratio(float(sums["grr_p_num"]), den_p) if den_p > 1e-9 else None

    if sums["buyers"] > 0:
        out["rpr"] = _ratio(float(sums["repeat_buyers"]), float(sums["buyers"]))
    else:
        null("rpr", REASON_NO_PURCHASES)

    if "clv_revenue" not in sums:
        null("clv", "not computed for this period")
    else:
        window = panel.clv_window[k]
        churn = out["churn_rate"]
        if sums["clv_purchases"] <= 0 or window <= 0:
            null("clv", REASON_NO_CLV_PURCHASES.format(days=panel.clv_days))
        elif churn is None:
            null("clv", REASON_NO_CHURN)
        elif churn <= 0:
            null("clv", REASON_ZERO_CHURN)
        else:
            per_purchase = sums["clv_revenue"] / sums["clv_purchases"]
            per_year = sums["clv_purchases"] / sums["clv_buyers"] * 365.0 / window
            annual_churn = 1.0 - (1.0 - churn) ** (365.0 / panel.period_days)
            out["clv"] = round(per_purchase * per_year / annual_churn, 2)

    if panel.nps_score is None:
        null("nps", REASON_NO_NPS_TABLE)
    elif "nps_n" not in sums or sums["nps_n"] <= 0:
        null("nps", REASON_NO_NPS_ANSWERS)
    else:
        net = sums["nps_promoters"] - sums["nps_detractors"]
        out["nps"] = round(100.0 * net / sums["nps_n"], 2)

    return {key: out[key] for key in KPI_KEYS + EXTRA_KEYS}


def period_kpis(
    panel: KpiPanel, k: int = 0, scope: str = "current", notes: dict | None = None
) -> dict:
    """K for all customers in period k (0 = current, 1 = previous); reasons go to `notes`."""
    notes = {} if notes is None else notes
    codes = np.zeros(len(panel.customer_id), dtype=np.int64)
    sums = _period_sums(panel, k, codes, 1)
    return _kpis_from_sums({key: v[0] for key, v in sums.items()}, panel, k, scope, notes)


def segment_kpis(panel: KpiPanel, k: int = 0, notes: dict | None = None) -> dict[str, dict]:
    """K per segment (missing segment = "unknown") in period k; notes as `by_segment.SEG.kpi`."""
    notes = {} if notes is None else notes
    codes, labels = pd.factorize(pd.Series(panel.segment, dtype=object), sort=True)
    if len(labels) == 0:
        return {}
    sums = _period_sums(panel, k, codes.astype(np.int64), len(labels))
    return {
        str(label): _kpis_from_sums(
            {key: v[g] for key, v in sums.items()}, panel, k, f"by_segment.{label}", notes
        )
        for g, label in enumerate(labels)
    }


def cohort_retention(panel: KpiPanel) -> list[dict]:
    """Monthly signup cohorts: size and retention[k] at the end of the k-th month after signup."""
    a = panel.as_of_day
    month = np.full(len(panel.signup), np.datetime64("NaT"), dtype="datetime64[M]")
    visible = panel.signup <= a
    month[visible] = _months(panel.signup[visible])
    cohorts = []
    for m in cohort_months(panel.signup, a, panel.max_cohorts):
        members = month == m
        size = int(members.sum())
        retention = []
        step = 0
        while _month_end(m + step) <= a:
            still = panel.customers_at(_month_end(m + step))[members].sum()
            retention.append(round(float(still) / size, 6))
            step += 1
        cohorts.append({"cohort": str(m), "size": size, "retention": retention})
    return cohorts


def kpi_trend(panel: KpiPanel, periods: int = 12) -> pd.DataFrame:
    """One row per period (oldest first) ending at as_of, as_of - P, ...: TREND_COLUMNS.

    Periods that start before the first signup are left out; at most as many periods as the
    panel has revenue for (`n_periods - 2 * revenue_periods + 1`). `ndr`/`grr` use the panel's
    revenue window, `ndr_period` the P-day window.
    """
    periods = min(int(periods), panel.n_periods - max(2 * panel.revenue_periods, 2) + 1)
    known = panel.signup[panel.signup < NEVER]
    first = int(known.min()) if len(known) else panel.as_of_day
    codes = np.zeros(len(panel.customer_id), dtype=np.int64)
    rows = []
    for k in range(periods):
        end = panel.period_end(k)
        if k > 0 and end - panel.period_days < first:
            break
        sums = _period_sums(panel, k, codes, 1)
        kpis = _kpis_from_sums({key: v[0] for key, v in sums.items()}, panel, k, "trend", {})
        row = {c: kpis[c] for c in TREND_COLUMNS[1:]}
        rows.append({"period_end": from_day(end).isoformat(), **row})
    return pd.DataFrame(rows[::-1], columns=list(TREND_COLUMNS))


def kpi_report(panel: KpiPanel, crr_target: float | None = None) -> dict:
    """The `reports/kpis.json` document (DESIGN shape plus a few extra keys)."""
    notes: dict[str, str] = {}
    p = panel.period_days
    current = period_kpis(panel, 0, "current", notes)
    previous = period_kpis(panel, 1, "previous", notes)
    by_segment = segment_kpis(panel, 0, notes)
    targets: dict[str, Any] = {}
    if crr_target is not None:
        crr = current["crr"]
        met = None if crr is None else bool(crr >= float(crr_target))
        targets = {"crr": float(crr_target), "crr_met": met}
    lost_rule = (
        "cancel_date on or before the day"
        if panel.definition == "cancellation"
        else f"no transaction/event in the {panel.horizon_days} days up to the day and signed up "
        f"at least {panel.horizon_days} days before it (activity brings a customer back)"
    )
    return {
        "as_of": panel.as_of.isoformat(),
        "period": {
            "start": from_day(panel.as_of_day - p + 1).isoformat(),
            "end": panel.as_of.isoformat(),
            "days": p,
        },
        "previous_period": {
            "start": from_day(panel.as_of_day - 2 * p + 1).isoformat(),
            "end": from_day(panel.as_of_day - p).isoformat(),
        },
        "label": {"definition": panel.definition, "horizon_days": panel.horizon_days},
        "revenue_window": revenue_window_info(panel),
        "current": current,
        "previous": previous,
        "by_segment": by_segment,
        "cohorts": cohort_retention(panel),
        "targets": targets,
        "notes": dict(sorted(notes.items())),
        "definitions": {
            "customer": f"signed up on or before the day and not lost: {lost_rule}",
            "customers_start": "customers at the end of the day before period.start",
            "lost": "customers at the start or new in the period who are not customers at its end",
            "returned": "customers at the end who were neither customers at the start nor new",
            "churn_rate": "lost_from_start / customers_start",
            "crr": (
                "(customers_end - new - returned) / customers_start; customers who come back "
                "after lapsing count like new ones, so CRR never exceeds 1"
            ),
            "clv": (
                f"net revenue per purchase x purchases per purchasing customer per year (last "
                f"{panel.clv_days} days) / annualised churn rate"
            ),
            "by_segment": f"customers table segment; missing = '{UNKNOWN_SEGMENT}'",
            "ndr": (
                f"net revenue in the {panel.revenue_window_days} days up to the period end from "
                f"the customers at their start / their net revenue in the "
                f"{panel.revenue_window_days} days before"
            ),
            "grr": "like ndr, each customer's revenue capped at their revenue in the window before",
            "ndr_period": f"ndr over the {p}-day period itself (DESIGN definition)",
        },
    }


def compute_kpis(
    customers: pd.DataFrame,
    transactions: Any,
    events: Any = None,
    nps: Any = None,
    *,
    as_of: Any,
    period_days: int = DEFAULTS.kpis.period_days,
    definition: str = DEFAULTS.label.definition,
    horizon_days: int = DEFAULTS.label.horizon_days,
    crr_target: float | None = None,
    trend_periods: int = 12,
    max_cohorts: int = 12,
    revenue_window: str | int = "period",
) -> tuple[dict, pd.DataFrame]:
    """kpis.json document and the KPI trend table from the validated tables.

    revenue_window: "period" (NDR/GRR over `period_days`, the DESIGN definition), "auto" (the
    label horizon when the log is purchase-only or the period NDR is lumpy, see
    `choose_revenue_window`) or a number of days (rounded up to whole periods).
    """
    p = int(period_days)
    if isinstance(revenue_window, str) and revenue_window not in REVENUE_WINDOWS:
        raise ChurnlensError(
            f"kpis.revenue_window must be one of {REVENUE_WINDOWS} or a number of days, "
            f"got {revenue_window!r}"
        )
    if revenue_window == "period":
        most = 1
    elif revenue_window == "auto":
        most = _whole_periods(int(horizon_days), p)
    else:
        most = _whole_periods(int(revenue_window), p)
    panel = build_panel(
        customers,
        transactions,
        events,
        nps,
        as_of=as_of,
        period_days=period_days,
        definition=definition,
        horizon_days=horizon_days,
        n_periods=max(trend_periods, 2) + 2 * most - 1,
        max_cohorts=max_cohorts,
    )
    if revenue_window == "auto":
        panel = choose_revenue_window(panel, has_events=events is not None,
                                      trend_periods=trend_periods)
    elif most > 1:
        panel = replace(panel, revenue_periods=most,
                        revenue_window_reason=f"kpis.revenue_window = {revenue_window} days")
    return kpi_report(panel, crr_target), kpi_trend(panel, trend_periods)


def _whole_periods(days: int, period_days: int) -> int:
    if days < 1 or period_days < 1:
        raise ChurnlensError("kpis.revenue_window, period_days and horizon_days must be >= 1")
    return max(1, -(-days // period_days))


def ndr_swing(trend: pd.DataFrame, column: str = "ndr") -> dict[str, float | None]:
    """How much `column` of a KPI trend moves between consecutive periods: median and max of
    |change|, and min / max of the values (None when fewer than two values)."""
    values = pd.to_numeric(trend[column], errors="coerce").dropna() if column in trend else []
    if len(values) < 2:
        return {"median_move": None, "max_move": None, "min": None, "max": None}
    moves = values.diff().abs().dropna()
    return {
        "median_move": round(float(moves.median()), 6),
        "max_move": round(float(moves.max()), 6),
        "min": round(float(values.min()), 6),
        "max": round(float(values.max()), 6),
    }


def choose_revenue_window(
    panel: KpiPanel, *, has_events: bool, trend_periods: int = 12
) -> KpiPanel:
    """`panel` with the NDR/GRR window set: the label horizon (in whole periods) when the log is
    purchase-only or the period NDR is lumpy, else the period itself.

    Needs a panel built with enough periods of revenue for the longer window.
    """
    p = panel.period_days
    room = max((panel.n_periods - trend_periods + 1) // 2, 1)  # periods of revenue available
    m = min(_whole_periods(panel.horizon_days, p), room)
    if m <= 1:
        return replace(panel, revenue_periods=1, revenue_window_reason=None)
    base = replace(panel, revenue_periods=1, revenue_window_reason=None)
    swing = ndr_swing(kpi_trend(base, trend_periods))
    if not has_events:
        reason = "purchase-only log (no usage events)"
    elif swing["median_move"] is not None and swing["median_move"] >= LUMPY_NDR_MOVE:
        reason = (
            f"lumpy revenue: the {p}-day NDR moved by a median "
            f"{swing['median_move'] * 100:.0f} pts from one period to the next"
        )
    else:
        return base
    if swing["min"] is not None:
        reason += (
            f"; {p}-day NDR ranged {swing['min'] * 100:.0f}-{swing['max'] * 100:.0f} % "
            f"over the last {trend_periods} periods"
        )
    return replace(panel, revenue_periods=m, revenue_window_reason=reason)


def revenue_window_info(panel: KpiPanel) -> dict[str, Any]:
    """kpis.json `revenue_window`: the NDR/GRR window, why, and one plain caveat line."""
    w, p, a = panel.revenue_window_days, panel.period_days, panel.as_of_day
    caveat = None
    if panel.revenue_periods > 1:
        caveat = (
            f"Revenue retention is measured over the last {w} days against the {w} days "
            f"before, not per {p}-day period: most customers here do not buy every {p} days, "
            f"so {p}-day figures mostly reflect when people happened to buy."
        )
    return {
        "days": w,
        "period_days": p,
        "start": from_day(a - w + 1).isoformat(),
        "end": from_day(a).isoformat(),
        "previous_start": from_day(a - 2 * w + 1).isoformat(),
        "previous_end": from_day(a - w).isoformat(),
        "reason": panel.revenue_window_reason,
        "caveat": caveat,
    }


def is_json_safe(obj: Any) -> bool:
    """True if `obj` has no NaN/inf floats (JSON without NaN)."""
    if isinstance(obj, dict):
        return all(is_json_safe(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return all(is_json_safe(v) for v in obj)
    if isinstance(obj, float):
        return math.isfinite(obj)
    return True
