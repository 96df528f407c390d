"""The SQL text of the point-in-time features and labels: one source of truth for DuckDB and Spark.

The computation is a list of named steps (`Step`). Each step is one SELECT that may refer to the
names of earlier steps; a runner creates each step as a view or a (temporary) table under its name,
in order. `churnlens.features` runs them in DuckDB; a Spark runner does the same with
`spark.sql(step.sql).createOrReplaceTempView(step.name)` (plus `.cache()` when `step.materialize`).

Time is integer arithmetic on *epoch days* (days since 1970-01-01, column `day_n`): a row with a
timestamp on day `d` is visible at cutoff `t` iff `d <= t`; "the W days up to t" is `(t - W, t]`.

Plan (many cutoffs in one pass):

1. staging views `cl_*` (**dialect-specific**, `staging_steps`): read the five validated tables,
   cast columns, turn timestamps/dates into epoch days;
2. `cutoffs`: a small inline VALUES table, one row per cutoff (plus `as_of`), with the previous
   cutoff (`prev_cutoff`) so the cutoffs also cut time into non-overlapping buckets
   `(prev_cutoff, cutoff]`; flags `is_output` and `is_labelled`;
3. `act_daily`: events and transactions aggregated to one row per (customer, day);
   `ev_type_daily`: distinct (customer, day, event_type);
4. `win_act` / `win_types`: daily rows range-joined to the cutoffs
   (`day_n > cutoff - span AND day_n <= cutoff`, span = the longest look-back needed) with
   conditional aggregation per window;
5. `buckets` + `grid`: lifetime quantities (last event / purchase / activity day, first event day,
   events in the first 14 days after signup, and for labels the next activity day *after* a cutoff)
   are aggregated per (customer, bucket) and carried over the cutoffs with running window
   functions over a customers x cutoffs grid: no row after `t` can reach a feature at `t`;
6. `win_tickets`, `last_nps`: the small support tables joined to the cutoffs (`day <= cutoff`);
7. `feature_rows`: population at each output cutoff + features + label.

Dialect-specific pieces, and only these, live in `DIALECTS` and `staging_steps`:
* timestamp/date -> epoch day (`epoch_day`), epoch day -> DATE (`to_date`);
* identifier quoting (the column `timestamp` is quoted);
* reading the tables: `staging_steps` takes a FROM-able source per table (DuckDB:
  `read_parquet('...')` or an empty typed subquery; Spark: a temp view over `spark.read.parquet`).
Everything else (`feature_steps`, `bounds_sql`) is plain SQL that DuckDB and Spark SQL (ANSI mode)
both accept: CASE, SUM/MIN/MAX/COUNT, COALESCE, GREATEST, LOWER, TRIM, NULLIF, inline VALUES,
CROSS/LEFT JOIN, and ROW_NUMBER / running MIN/MAX/SUM windows with explicit ROWS frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from churnlens.errors import ChurnlensError

LABEL_DEFINITIONS = ("inactivity", "cancellation")

CHANGE_EVENTS_DAYS = 30      # events_change_30d compares (t-30, t] with (t-60, t-30]
CHANGE_REVENUE_DAYS = 90     # revenue_change_90d compares (t-90, t] with (t-180, t-90]
ONBOARDING_DAYS = 14         # events_first_14d: events on signup day .. signup day + 13
TICKETS_DAYS = 90            # tickets_90d
NO_PREVIOUS_CUTOFF = -1_000_000_000  # prev_cutoff of the first bucket: "since the beginning"

# --- dialect-specific snippets -------------------------------------------------------------------

DIALECTS: dict[str, dict[str, str]] = {
    "duckdb": {
        "epoch_day": "CAST(CAST({x} AS DATE) - DATE '1970-01-01' AS INTEGER)",
        "to_date": "CAST(DATE '1970-01-01' + CAST({x} AS INTEGER) AS DATE)",
        "quote": '"{x}"',
    },
    "spark": {
        "epoch_day": "unix_date(CAST({x} AS DATE))",
        "to_date": "date_from_unix_date(CAST({x} AS INT))",
        "quote": "`{x}`",
    },
}

TABLES = ("customers", "transactions", "events", "tickets", "nps")
REQUIRED_TABLES = ("customers", "transactions")


@dataclass(frozen=True)
class Step:
    """One named SELECT; `materialize` = worth a (temp) table / cache rather than a view."""

    name: str
    sql: str
    materialize: bool = True


def _snippet(dialect: str, key: str, x: str) -> str:
    try:
        return DIALECTS[dialect][key].format(x=x)
    except KeyError:
        raise ChurnlensError(
            f"unknown SQL dialect '{dialect}' (expected one of {sorted(DIALECTS)})"
        ) from None


def epoch_day(x: str, dialect: str) -> str:
    """SQL for the epoch-day number (INTEGER) of a timestamp or date expression."""
    return _snippet(dialect, "epoch_day", x)


def to_date(x: str, dialect: str) -> str:
    """SQL for the DATE of an epoch-day number."""
    return _snippet(dialect, "to_date", x)


def staging_steps(sources: Mapping[str, str], dialect: str) -> list[Step]:
    """Dialect-specific: the `cl_*` views over the validated tables, with epoch days.

    `sources[table]` is anything that can follow FROM (a view name, `read_parquet('...')`, a
    subquery in parentheses) exposing the interim columns of that table.
    """
    q = lambda name: _snippet(dialect, "quote", name)  # noqa: E731
    day = lambda col: epoch_day(q(col), dialect)  # noqa: E731
    return [
        Step("cl_customers", f"""
SELECT CAST(customer_id AS STRING) AS customer_id,
       {day('signup_date')} AS signup_day,
       {day('cancel_date')} AS cancel_day,
       COALESCE(NULLIF(TRIM(CAST(segment AS STRING)), ''), 'unknown') AS segment
FROM {sources['customers']}
WHERE customer_id IS NOT NULL AND signup_date IS NOT NULL""", materialize=False),
        Step("cl_transactions", f"""
SELECT CAST(customer_id AS STRING) AS customer_id,
       {day('timestamp')} AS day_n,
       CAST(amount AS DOUBLE) AS amount
FROM {sources['transactions']}
WHERE customer_id IS NOT NULL AND {q('timestamp')} IS NOT NULL""", materialize=False),
        Step("cl_events", f"""
SELECT CAST(customer_id AS STRING) AS customer_id,
       {day('timestamp')} AS day_n,
       CAST(event_type AS STRING) AS event_type,
       CAST(COALESCE(quantity, 1) AS DOUBLE) AS qty
FROM {sources['events']}
WHERE customer_id IS NOT NULL AND {q('timestamp')} IS NOT NULL""", materialize=False),
        Step("cl_tickets", f"""
SELECT CAST(customer_id AS STRING) AS customer_id,
       {day('opened_at')} AS opened_day,
       {day('closed_at')} AS closed_day
FROM {sources['tickets']}
WHERE customer_id IS NOT NULL AND opened_at IS NOT NULL""", materialize=False),
        Step("cl_nps", f"""
SELECT CAST(customer_id AS STRING) AS customer_id,
       CAST({q('timestamp')} AS TIMESTAMP) AS ts,
       {day('timestamp')} AS day_n,
       CAST(score AS DOUBLE) AS score
FROM {sources['nps']}
WHERE customer_id IS NOT NULL AND {q('timestamp')} IS NOT NULL AND score IS NOT NULL""",
             materialize=False),
    ]


# --- portable SQL --------------------------------------------------------------------------------

def bounds_sql() -> str:
    """One row: first data day (signup/event/transaction), last event/transaction day."""
    return """
SELECT MIN(first_day) AS first_day, MAX(last_day) AS last_day FROM (
  SELECT MIN(signup_day) AS first_day, CAST(NULL AS INT) AS last_day FROM cl_customers
  UNION ALL SELECT MIN(day_n), MAX(day_n) FROM cl_events
  UNION ALL SELECT MIN(day_n), MAX(day_n) FROM cl_transactions
) b"""


def check_windows(windows: Sequence[int]) -> list[int]:
    """Sorted distinct positive look-back windows (days)."""
    try:
        clean = sorted({int(w) for w in windows})
    except (TypeError, ValueError):
        raise ChurnlensError(
            f"features.windows must be a list of whole days, got {windows!r}"
        ) from None
    if not clean or clean[0] <= 0 or any(int(w) != w for w in windows):
        raise ChurnlensError(f"features.windows must be positive whole days, got {list(windows)!r}")
    return clean


def lookback_span(windows: Sequence[int]) -> int:
    """Days before a cutoff that the windowed range join must reach."""
    return max(max(check_windows(windows)), 2 * CHANGE_EVENTS_DAYS, 2 * CHANGE_REVENUE_DAYS,
               TICKETS_DAYS)


def feature_names(windows: Sequence[int]) -> list[str]:
    """Feature columns in output order (after `customer_id`, `cutoff`, `label`)."""
    ws = check_windows(windows)
    return [
        *(f"events_{w}d" for w in ws),
        *(f"active_days_{w}d" for w in ws),
        *(f"event_types_{w}d" for w in ws),
        "events_change_30d",
        "days_since_last_event",
        *(f"purchases_{w}d" for w in ws),
        *(f"revenue_{w}d" for w in ws),
        *(f"refunds_{w}d" for w in ws),
        "revenue_change_90d",
        "days_since_last_purchase",
        "days_since_last_activity",
        "inactive_flag",
        "tenure_days",
        "is_trial",
        "segment",
        "days_to_first_event",
        "events_first_14d",
        "open_tickets",
        "oldest_open_ticket_days",
        "tickets_90d",
        "last_nps",
    ]


def _cutoffs_values(cutoffs: Sequence[int], as_of: int, horizon_days: int) -> str:
    """Inline table of the buckets: every output cutoff plus as_of (end of all label windows)."""
    outputs = set(cutoffs)
    points = sorted(outputs | {as_of})
    rows, prev = [], NO_PREVIOUS_CUTOFF
    for c in points:
        is_output = int(c in outputs)
        is_labelled = int(is_output and c + horizon_days <= as_of)
        rows.append(f"({c}, {prev}, {is_output}, {is_labelled})")
        prev = c
    return ("SELECT * FROM (VALUES " + ", ".join(rows)
            + ") AS v(cutoff, prev_cutoff, is_output, is_labelled)")


def _in(lo: str, hi: str) -> str:
    """`day_n` in the half-open day range (cutoff - lo, cutoff - hi]."""
    return f"a.day_n > c.cutoff - {lo} AND a.day_n <= c.cutoff - {hi}"


def feature_steps(
    *,
    cutoffs: Sequence[int],
    as_of: int,
    horizon_days: int,
    definition: str,
    windows: Sequence[int],
    inactivity_days: int,
    dialect: str = "duckdb",
) -> list[Step]:
    """Portable steps after the `cl_*` staging views; the last one is `feature_rows`.

    `cutoffs`, `as_of`: epoch days. Rows are produced for every cutoff in `cutoffs` (population at
    that cutoff); `label` is filled where `cutoff + horizon_days <= as_of`, else NULL. No row dated
    after `as_of` is read. Only `to_date` in the last step is dialect-specific.
    """
    if definition not in LABEL_DEFINITIONS:
        raise ChurnlensError(
            f"label.definition must be one of {', '.join(LABEL_DEFINITIONS)}, got {definition!r}"
        )
    if not cutoffs:
        raise ChurnlensError("no cutoffs to compute features for")
    ws = check_windows(windows)
    span = lookback_span(ws)
    horizon_days, inactivity_days, as_of = int(horizon_days), int(inactivity_days), int(as_of)
    cutoffs = [int(c) for c in cutoffs]
    if max(cutoffs) > as_of:
        raise ChurnlensError("a cutoff lies after as_of")
    first_needed = min(cutoffs) - span

    win_act_cols = ",\n  ".join(
        [f"SUM(CASE WHEN a.day_n > c.cutoff - {w} THEN a.ev_qty ELSE 0 END) AS events_{w}d"
         for w in ws]
        + [f"SUM(CASE WHEN a.day_n > c.cutoff - {w} THEN 1 ELSE 0 END) AS active_days_{w}d"
           for w in ws]
        + [f"SUM(CASE WHEN a.day_n > c.cutoff - {w} THEN a.purchases ELSE 0 END) AS purchases_{w}d"
           for w in ws]
        + [f"SUM(CASE WHEN a.day_n > c.cutoff - {w} THEN a.revenue ELSE 0 END) AS revenue_{w}d"
           for w in ws]
        + [f"SUM(CASE WHEN a.day_n > c.cutoff - {w} THEN a.refunds ELSE 0 END) AS refunds_{w}d"
           for w in ws]
        + [
            f"SUM(CASE WHEN {_in(str(CHANGE_EVENTS_DAYS), '0')} THEN a.ev_qty ELSE 0 END)"
            " AS ev_cur_30",
            f"SUM(CASE WHEN {_in(str(2 * CHANGE_EVENTS_DAYS), str(CHANGE_EVENTS_DAYS))}"
            " THEN a.ev_qty ELSE 0 END) AS ev_prev_30",
            f"SUM(CASE WHEN {_in(str(CHANGE_REVENUE_DAYS), '0')} THEN a.revenue ELSE 0 END)"
            " AS rev_cur_90",
            f"SUM(CASE WHEN {_in(str(2 * CHANGE_REVENUE_DAYS), str(CHANGE_REVENUE_DAYS))}"
            " THEN a.revenue ELSE 0 END) AS rev_prev_90",
        ]
    )
    win_type_cols = ",\n  ".join(
        f"SUM(CASE WHEN last_day > cutoff - {w} THEN 1 ELSE 0 END) AS event_types_{w}d" for w in ws
    )

    if definition == "inactivity":
        label_expr = ("CASE WHEN g.next_act_day IS NULL OR g.next_act_day > g.cutoff + "
                      f"{horizon_days} THEN 1 ELSE 0 END")
    else:
        label_expr = ("CASE WHEN g.cancel_day IS NOT NULL AND g.cancel_day > g.cutoff "
                      f"AND g.cancel_day <= g.cutoff + {horizon_days} THEN 1 ELSE 0 END")

    def z(col: str, typ: str = "BIGINT") -> str:
        return f"CAST(COALESCE({col}, 0) AS {typ})"

    final_cols = (
        [f"{z(f'w.events_{w}d', 'DOUBLE')} AS events_{w}d" for w in ws]
        + [f"{z(f'w.active_days_{w}d')} AS active_days_{w}d" for w in ws]
        + [f"{z(f't.event_types_{w}d')} AS event_types_{w}d" for w in ws]
        + [
            "CAST((COALESCE(w.ev_cur_30, 0) - COALESCE(w.ev_prev_30, 0))"
            " / GREATEST(COALESCE(w.ev_prev_30, 0), 1) AS DOUBLE) AS events_change_30d",
            "CAST(g.cutoff - g.last_ev_day AS DOUBLE) AS days_since_last_event",
        ]
        + [f"{z(f'w.purchases_{w}d')} AS purchases_{w}d" for w in ws]
        + [f"{z(f'w.revenue_{w}d', 'DOUBLE')} AS revenue_{w}d" for w in ws]
        + [f"{z(f'w.refunds_{w}d')} AS refunds_{w}d" for w in ws]
        + [
            "CAST((COALESCE(w.rev_cur_90, 0) - COALESCE(w.rev_prev_90, 0))"
            " / GREATEST(ABS(COALESCE(w.rev_prev_90, 0)), 1) AS DOUBLE) AS revenue_change_90d",
            "CAST(g.cutoff - g.last_purchase_day AS DOUBLE) AS days_since_last_purchase",
            "CAST(g.cutoff - COALESCE(g.last_act_day, g.signup_day) AS DOUBLE)"
            " AS days_since_last_activity",
            f"CAST(CASE WHEN g.cutoff - COALESCE(g.last_act_day, g.signup_day) >= {inactivity_days}"
            " THEN 1 ELSE 0 END AS INT) AS inactive_flag",
            "CAST(g.cutoff - g.signup_day AS DOUBLE) AS tenure_days",
            "CAST(CASE WHEN LOWER(g.segment) = 'trial' THEN 1 ELSE 0 END AS INT) AS is_trial",
            "g.segment AS segment",
            "CAST(g.first_ev_day - g.signup_day AS DOUBLE) AS days_to_first_event",
            f"{z('g.first14_qty', 'DOUBLE')} AS events_first_14d",
            f"{z('k.open_tickets')} AS open_tickets",
            "CAST(k.oldest_open_ticket_days AS DOUBLE) AS oldest_open_ticket_days",
            f"{z('k.tickets_90d')} AS tickets_90d",
            "CAST(n.score AS DOUBLE) AS last_nps",
        ]
    )
    assert len(final_cols) == len(feature_names(ws))
    running = "PARTITION BY s.customer_id ORDER BY c.cutoff"

    return [
        Step("cutoffs", _cutoffs_values(cutoffs, as_of, horizon_days), materialize=False),
        Step("act_daily", f"""
SELECT customer_id, day_n,
       SUM(ev_qty) AS ev_qty, SUM(ev_rows) AS ev_rows,
       SUM(purchases) AS purchases, SUM(refunds) AS refunds, SUM(revenue) AS revenue,
       SUM(tx_rows) AS tx_rows
FROM (
  SELECT customer_id, day_n, SUM(qty) AS ev_qty, COUNT(*) AS ev_rows,
         CAST(0 AS BIGINT) AS purchases, CAST(0 AS BIGINT) AS refunds,
         CAST(0 AS DOUBLE) AS revenue, CAST(0 AS BIGINT) AS tx_rows
  FROM cl_events WHERE day_n <= {as_of}
  GROUP BY customer_id, day_n
  UNION ALL
  SELECT customer_id, day_n, CAST(0 AS DOUBLE), CAST(0 AS BIGINT),
         SUM(CASE WHEN amount > 0 THEN 1 ELSE 0 END), SUM(CASE WHEN amount < 0 THEN 1 ELSE 0 END),
         SUM(amount), COUNT(*)
  FROM cl_transactions WHERE day_n <= {as_of}
  GROUP BY customer_id, day_n
) u
GROUP BY customer_id, day_n"""),
        Step("ev_type_daily", f"""
SELECT customer_id, day_n, event_type
FROM cl_events
WHERE day_n <= {as_of} AND day_n > {first_needed} AND event_type IS NOT NULL
GROUP BY customer_id, day_n, event_type"""),
        Step("win_act", f"""
SELECT a.customer_id, c.cutoff,
  {win_act_cols}
FROM act_daily a
JOIN cutoffs c ON a.day_n > c.cutoff - {span} AND a.day_n <= c.cutoff
WHERE c.is_output = 1 AND a.day_n > {first_needed}
GROUP BY a.customer_id, c.cutoff"""),
        Step("win_types", f"""
SELECT customer_id, cutoff,
  {win_type_cols}
FROM (
  SELECT a.customer_id, c.cutoff, a.event_type, MAX(a.day_n) AS last_day
  FROM ev_type_daily a
  JOIN cutoffs c ON a.day_n > c.cutoff - {max(ws)} AND a.day_n <= c.cutoff
  WHERE c.is_output = 1
  GROUP BY a.customer_id, c.cutoff, a.event_type
) x
GROUP BY customer_id, cutoff"""),
        Step("buckets", f"""
SELECT a.customer_id, c.cutoff AS bucket,
       MAX(CASE WHEN a.ev_rows > 0 THEN a.day_n END) AS last_ev_day,
       MIN(CASE WHEN a.ev_rows > 0 THEN a.day_n END) AS first_ev_day,
       MAX(CASE WHEN a.purchases > 0 THEN a.day_n END) AS last_purchase_day,
       MAX(a.day_n) AS last_act_day,
       MIN(a.day_n) AS first_act_day,
       SUM(CASE WHEN a.day_n >= s.signup_day AND a.day_n < s.signup_day + {ONBOARDING_DAYS}
                THEN a.ev_qty ELSE 0 END) AS first14_qty
FROM act_daily a
JOIN cl_customers s ON s.customer_id = a.customer_id
JOIN cutoffs c ON a.day_n > c.prev_cutoff AND a.day_n <= c.cutoff
GROUP BY a.customer_id, c.cutoff"""),
        Step("grid", f"""
SELECT s.customer_id, s.signup_day, s.cancel_day, s.segment,
       c.cutoff, c.is_output, c.is_labelled,
       MAX(b.last_ev_day) OVER ({running} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS last_ev_day,
       MIN(b.first_ev_day) OVER ({running} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS first_ev_day,
       MAX(b.last_purchase_day) OVER ({running} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS last_purchase_day,
       MAX(b.last_act_day) OVER ({running} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS last_act_day,
       SUM(b.first14_qty) OVER ({running} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
         AS first14_qty,
       MIN(b.first_act_day) OVER ({running} ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
         AS next_act_day
FROM cl_customers s
CROSS JOIN cutoffs c
LEFT JOIN buckets b ON b.customer_id = s.customer_id AND b.bucket = c.cutoff"""),
        Step("win_tickets", f"""
SELECT a.customer_id, c.cutoff,
       SUM(CASE WHEN a.closed_day IS NULL OR a.closed_day > c.cutoff THEN 1 ELSE 0 END)
         AS open_tickets,
       MAX(CASE WHEN a.closed_day IS NULL OR a.closed_day > c.cutoff
                THEN c.cutoff - a.opened_day END) AS oldest_open_ticket_days,
       SUM(CASE WHEN a.opened_day > c.cutoff - {TICKETS_DAYS} THEN 1 ELSE 0 END) AS tickets_90d
FROM cl_tickets a
JOIN cutoffs c ON a.opened_day <= c.cutoff
WHERE c.is_output = 1
  AND (a.closed_day IS NULL OR a.closed_day > c.cutoff
       OR a.opened_day > c.cutoff - {TICKETS_DAYS})
GROUP BY a.customer_id, c.cutoff"""),
        Step("last_nps", """
SELECT customer_id, cutoff, score FROM (
  SELECT a.customer_id, c.cutoff, a.score,
         ROW_NUMBER() OVER (PARTITION BY a.customer_id, c.cutoff
                            ORDER BY a.ts DESC, a.score DESC) AS rn
  FROM cl_nps a
  JOIN cutoffs c ON a.day_n <= c.cutoff
  WHERE c.is_output = 1
) x
WHERE rn = 1"""),
        Step("feature_rows", f"""
SELECT g.customer_id,
       {to_date('g.cutoff', dialect)} AS cutoff,
       CAST(CASE WHEN g.is_labelled = 1 THEN {label_expr} END AS INT) AS label,
       {(','+chr(10)+'       ').join(final_cols)}
FROM grid g
LEFT JOIN win_act w ON w.customer_id = g.customer_id AND w.cutoff = g.cutoff
LEFT JOIN win_types t ON t.customer_id = g.customer_id AND t.cutoff = g.cutoff
LEFT JOIN win_tickets k ON k.customer_id = g.customer_id AND k.cutoff = g.cutoff
LEFT JOIN last_nps n ON n.customer_id = g.customer_id AND n.cutoff = g.cutoff
WHERE g.is_output = 1
  AND g.signup_day <= g.cutoff
  AND (g.cancel_day IS NULL OR g.cancel_day > g.cutoff)"""),
    ]
