"""The SQL text of the point-in-time features and labels: one source of truth for DuckDB and Spark.

The computation is a list of named steps (`Step`). Each step is one SELECT that may refer to the
names of earlier steps; a runner creates each step as a view or a (temporary) table under its name,
in order. `churnlens.features` runs them in DuckDB; a Spark runner does the same with
`spark.sql(step.sql).createOrReplaceTempView(step.name)` (plus `.cache()` when `step.materialize`).

Time is integer arithmetic on *epoch days* (days since 1970-01-01, column `day_n`): a row with a
timestamp on day `d` is visible at cutoff `t` iff `d <= t`; "the W days up to t" is `(t - W, t]`.

Plan (all cutoffs in one pass; every join below is an equi-join):

1. staging views `cl_*` (**dialect-specific**, `staging_steps`): read the five validated tables,
   cast columns, turn timestamps/dates into epoch days;
2. small inline VALUES tables. `cutoffs`: the output cutoffs plus `as_of`, flags
   `is_output`/`is_labelled`. Time is cut into non-overlapping segments `(previous end, p]` whose
   ends `p` are every window boundary `cutoff - o` (o = 0, each window, 30, 60, 90, 180);
   `day_segments` maps each day to its segment end `p` and `bucket` (the first cutoff on or after
   `p`); `window_map` says, per (p, output cutoff), which windows and comparison bands the segment
   lies in. `cust` gives customers an integer key `ck`; `ev_types` a bit per event type;
3. `act_daily` (a view, not stored: `segments` reads it once): events and transactions, in one
   scan of each, to one row per (customer, day), with the day's event types as bit masks (BIT_OR);
4. `segments`: daily rows rolled up per (customer, segment) through `day_segments`;
5. `win_usage` / `win_money`: segments joined to `window_map` (each segment reaches the few
   cutoffs whose look-back covers it) and summed per (customer, cutoff); event types are the
   bit count of the OR of the masks. Money is split off because only segments with transactions
   count there, and two narrower aggregations stay in memory where one wide one spills;
6. `buckets` + `grid`: lifetime quantities (last event / purchase / activity day, first event /
   purchase day, events in the first 14 days after signup, totals of events, active days,
   purchases, purchase days and net revenue, and for labels the next activity day *after* a
   cutoff) per (customer, bucket), carried over the cutoffs with running window functions (MIN,
   MAX, SUM) on the customers x cutoffs rows that have activity or are output rows: no row after
   `t` can reach a feature at `t`. Days before the first segment end are folded into the first
   segment, whose bucket is the earliest cutoff, so lifetime totals count them at every cutoff;
7. `win_tickets`, `last_nps`: the small support tables joined to the cutoffs (`day <= cutoff`);
8. `feature_rows`: population at each output cutoff + the feature families (`_usage_features`,
   `_purchase_features`, `_activity_features`, `_lifecycle_features`, `_support_features`) +
   the label (`churnlens.labels.label_sql`: what "churned" means is defined there, once).

Sums are accumulated as DOUBLE (DuckDB would widen integer sums to HUGEINT, which is slow); every
numeric feature leaves as DOUBLE (the model's MLflow signature takes doubles), money rounded to 1e-6
so that parallel summation order cannot change the output bytes. On 1M customers / 51.6M events /
22 cutoffs (2 cores, memory_limit 4GB) this layout builds the rows in 93 s; the previous one,
with range joins to the segment bounds and a separate scan for event types, took 265 s.

Dialect-specific pieces, and only these, live in `DIALECTS` and `staging_steps`:
* timestamp/date -> epoch day (`epoch_day`), epoch day -> DATE (`to_date`, last step only);
* identifier quoting (the column `timestamp` is quoted);
* reading the tables: `staging_steps` takes a FROM-able source per table (DuckDB:
  `read_parquet('...')` or an empty typed subquery; Spark: a temp view over `spark.read.parquet`).
Everything else (`feature_steps`, `bounds_sql`) is plain SQL that DuckDB and Spark SQL (ANSI mode)
both accept: CASE, SUM/MIN/MAX/COUNT, COALESCE, GREATEST, LOWER, TRIM, NULLIF, ABS, inline VALUES,
CROSS/LEFT JOIN, BIT_OR/BIT_COUNT, POWER, and ROW_NUMBER / running MIN/MAX/SUM windows with
explicit ROWS frames. (On Spark,
`cust` numbers customers with a global `ROW_NUMBER() OVER (ORDER BY customer_id)`: one partition,
fine for millions of customers.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from churnlens import labels
from churnlens.errors import ChurnlensError

LABEL_DEFINITIONS = labels.DEFINITIONS  # re-export

CHANGE_EVENTS_DAYS = 30      # events_change_30d compares (t-30, t] with (t-60, t-30]
CHANGE_REVENUE_DAYS = 90     # revenue_change_90d compares (t-90, t] with (t-180, t-90]
ONBOARDING_DAYS = 14         # events_first_14d: events on signup day .. signup day + 13
TICKETS_DAYS = 90            # tickets_90d
TYPE_BITS = 62               # event types per BIGINT bit mask word (2^61 is still exact as DOUBLE)

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


def daily_rows_sql() -> str:
    """(day_n, n): event + transaction rows per day with rows, ascending (for the default as_of,
    `snapshot.complete_as_of`)."""
    return """
SELECT day_n, COUNT(*) AS n FROM (
  SELECT day_n FROM cl_events UNION ALL SELECT day_n FROM cl_transactions
) u
GROUP BY day_n ORDER BY day_n"""


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


def window_offsets(windows: Sequence[int]) -> list[int]:
    """Every look-back boundary (days before a cutoff) some feature needs, ascending."""
    return sorted({0, *check_windows(windows), CHANGE_EVENTS_DAYS, 2 * CHANGE_EVENTS_DAYS,
                   CHANGE_REVENUE_DAYS, 2 * CHANGE_REVENUE_DAYS})


def feature_names(windows: Sequence[int]) -> list[str]:
    """Feature columns in output order (after `customer_id`, `cutoff`, `label`)."""
    ws = check_windows(windows)
    return [
        *(f"events_{w}d" for w in ws),
        *(f"active_days_{w}d" for w in ws),
        *(f"event_types_{w}d" for w in ws),
        "events_change_30d",
        "days_since_last_event",
        "events_total",
        "active_days_total",
        *(f"purchases_{w}d" for w in ws),
        *(f"revenue_{w}d" for w in ws),
        *(f"refunds_{w}d" for w in ws),
        "revenue_change_90d",
        "days_since_last_purchase",
        "purchases_total",
        "purchase_days_total",
        "revenue_total",
        "days_since_first_purchase",
        "avg_days_between_purchases",
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


def _values(rows: list[tuple[int, ...]], alias: str, columns: str) -> str:
    body = ", ".join("(" + ", ".join(str(int(v)) for v in row) + ")" for row in rows)
    return f"SELECT * FROM (VALUES {body}) AS {alias}({columns})"


def _cutoffs_sql(cutoffs: Sequence[int], as_of: int, horizon_days: int) -> str:
    """Every output cutoff plus as_of (the end of all label windows)."""
    outputs = set(cutoffs)
    rows = [(c, int(c in outputs), int(c in outputs and labels.is_labelled(c, as_of, horizon_days)))
            for c in sorted(outputs | {as_of})]
    return _values(rows, "v", "cutoff, is_output, is_labelled")


def _segment_ends(cutoffs: Sequence[int], as_of: int, offsets: Sequence[int]) -> list[int]:
    """Every segment end `p`, ascending: all `cutoff - offset` plus the grid (cutoffs and as_of)."""
    return sorted({c - o for c in cutoffs for o in offsets} | set(cutoffs) | {as_of})


def _day_segments_sql(ends: Sequence[int], grid: Sequence[int]) -> str:
    """Day -> (segment end `p`, `bucket`) for every day from the first segment end to as_of.

    `ends`: the segment ends, ascending (the last is as_of); `grid`: cutoffs and as_of, ascending.
    Days before the first end belong to the first segment; callers look up `GREATEST(day, p0)`.
    An equi-join on this small table replaces a range join against the segment bounds.
    """
    rows, pi, gi = [], 0, 0
    for day in range(ends[0], ends[-1] + 1):
        while ends[pi] < day:
            pi += 1
        while grid[gi] < ends[pi]:
            gi += 1
        rows.append((day, ends[pi], grid[gi]))
    return _values(rows, "v", "day_n, p, bucket")


def _window_map_sql(ends: Sequence[int], cutoffs: Sequence[int], span: int,
                    bands: Sequence[tuple[str, int, int]]) -> str:
    """(segment end `p`, output `cutoff`, one 0/1 column per band) for every p in a cutoff's span.

    A band `(name, lo, hi)` is the day range `(cutoff - lo, cutoff - hi]`; it is an exact union of
    segments because every `cutoff - offset` is a segment end.
    """
    rows = [(p, c, *(int(c - lo < p <= c - hi) for _, lo, hi in bands))
            for c in sorted(set(cutoffs)) for p in ends if c - span < p <= c]
    return _values(rows, "v", "p, cutoff, " + ", ".join(name for name, _, _ in bands))


def event_type_count_sql() -> str:
    """Distinct non-null event types; `feature_steps(event_type_count=...)` sizes its bit masks."""
    return "SELECT COUNT(DISTINCT event_type) FROM cl_events WHERE event_type IS NOT NULL"


def feature_steps(
    *,
    cutoffs: Sequence[int],
    as_of: int,
    horizon_days: int,
    definition: str,
    windows: Sequence[int],
    inactivity_days: int,
    event_type_count: int = TYPE_BITS,
    dialect: str = "duckdb",
) -> list[Step]:
    """Portable steps after the `cl_*` staging views; the last one is `feature_rows`.

    `cutoffs`, `as_of`: epoch days. Rows are produced for every cutoff in `cutoffs` (population at
    that cutoff); `label` is filled where `cutoff + horizon_days <= as_of`, else NULL. No row dated
    after `as_of` is read. Only `to_date` in the last step is dialect-specific.
    `event_type_count`: distinct event types (`event_type_count_sql`); it sets how many 62-bit
    masks carry the types, so it must not be lower than the true count.

    The steps, in order: lookup tables (`_lookup_steps`), daily activity rolled up into time
    segments (`_activity_steps`), window sums per cutoff (`_window_steps`), lifetime values
    carried over the cutoffs (`_lifetime_steps`), support (`_support_steps`), and the rows with
    every feature family and the label (`_feature_rows_step`).
    """
    labels.check_definition(definition)
    if not cutoffs:
        raise ChurnlensError("no cutoffs to compute features for")
    ws = check_windows(windows)
    offsets = window_offsets(ws)
    horizon_days, inactivity_days, as_of = int(horizon_days), int(inactivity_days), int(as_of)
    cutoffs = sorted({int(c) for c in cutoffs})
    if cutoffs[-1] > as_of:
        raise ChurnlensError("a cutoff lies after as_of")

    ends = _segment_ends(cutoffs, as_of, offsets)
    masks = _TypeMasks(event_type_count)
    return [
        *_lookup_steps(cutoffs, as_of, horizon_days, ends, max(offsets), _bands(ws)),
        *_activity_steps(as_of, ends[0], masks),
        *_window_steps(ws, masks),
        *_lifetime_steps(),
        *_support_steps(),
        _feature_rows_step(ws, masks, inactivity_days, dialect,
                           label=labels.label_sql(definition, horizon_days, cutoff="g.cutoff",
                                                  next_activity_day="g.next_act_day",
                                                  cancel_day="g.cancel_day")),
    ]


def _bands(ws: Sequence[int]) -> list[tuple[str, int, int]]:
    """The day ranges the window sums need: each look-back window and the comparison bands."""
    return ([(f"in_{w}", w, 0) for w in ws]
            + [("cur_30", CHANGE_EVENTS_DAYS, 0),
               ("prev_30", 2 * CHANGE_EVENTS_DAYS, CHANGE_EVENTS_DAYS),
               ("cur_90", CHANGE_REVENUE_DAYS, 0),
               ("prev_90", 2 * CHANGE_REVENUE_DAYS, CHANGE_REVENUE_DAYS)])


class _TypeMasks:
    """Event types as bits of `TYPE_BITS`-bit BIGINT words `tm0, tm1, ...` (enough words for
    `event_type_count` types); SQL snippets that carry, OR and count them."""

    def __init__(self, event_type_count: int) -> None:
        self.words = range(max(1, -(-int(event_type_count) // TYPE_BITS)))

    def from_event_type(self) -> str:
        """`tm{j}` columns of an event row (joined to `ev_types t`)."""
        return "".join(
            f",\n         CASE WHEN t.word = {j} THEN t.mask ELSE CAST(0 AS BIGINT) END AS tm{j}"
            for j in self.words)

    def none(self) -> str:
        """`tm{j}` columns of a row without event types (a transaction)."""
        return "".join(f", CAST(0 AS BIGINT) AS tm{j}" for j in self.words)

    def or_of(self, alias: str) -> str:
        """`BIT_OR` of `alias.tm{j}` over a group."""
        return "".join(f",\n       BIT_OR({alias}.tm{j}) AS tm{j}" for j in self.words)

    def in_window(self, w: int) -> list[str]:
        """`types_{w}d_{j}`: the OR of the masks of the segments in window `in_{w}`."""
        return [f"BIT_OR(CASE WHEN m.in_{w} = 1 THEN s.tm{j} ELSE 0 END) AS types_{w}d_{j}"
                for j in self.words]

    def count(self, w: int) -> str:
        """Distinct event types in window `w`: the bit count over the words."""
        return " + ".join(f"COALESCE(CAST(BIT_COUNT(w.types_{w}d_{j}) AS INT), 0)"
                          for j in self.words)


# --- steps ---------------------------------------------------------------------------------------

def _lookup_steps(cutoffs: list[int], as_of: int, horizon_days: int, ends: list[int], span: int,
                  bands: list[tuple[str, int, int]]) -> list[Step]:
    """`cutoffs`, `day_segments`, `window_map` (inline VALUES), `cust` and `ev_types`."""
    return [
        Step("cutoffs", _cutoffs_sql(cutoffs, as_of, horizon_days), materialize=False),
        Step("day_segments", _day_segments_sql(ends, sorted({*cutoffs, as_of})),
             materialize=False),
        Step("window_map", _window_map_sql(ends, cutoffs, span, bands), materialize=False),
        Step("cust", """
SELECT customer_id, CAST(ROW_NUMBER() OVER (ORDER BY customer_id) AS INT) AS ck,
       signup_day, cancel_day, segment
FROM cl_customers"""),
        Step("ev_types", f"""
SELECT event_type, CAST(FLOOR((rn - 1) / {TYPE_BITS}) AS INT) AS word,
       CAST(POWER(2, MOD(rn - 1, {TYPE_BITS})) AS BIGINT) AS mask
FROM (SELECT event_type, ROW_NUMBER() OVER (ORDER BY event_type) AS rn
      FROM (SELECT DISTINCT event_type FROM cl_events WHERE event_type IS NOT NULL) d) x"""),
    ]


def _activity_steps(as_of: int, first_end: int, masks: _TypeMasks) -> list[Step]:
    """`act_daily` (events and transactions per customer and day) and `segments` (those days
    rolled up per customer and time segment)."""
    return [
        Step("act_daily", f"""
SELECT k.ck, u.day_n,
       SUM(u.ev_qty) AS ev_qty, SUM(u.is_event) AS ev_rows,
       SUM(u.purchases) AS purchases, SUM(u.refunds) AS refunds,
       SUM(u.revenue) AS revenue{masks.or_of("u")}
FROM (
  SELECT e.customer_id, e.day_n, 1.0 AS is_event, e.qty AS ev_qty,
         CAST(0 AS DOUBLE) AS purchases, CAST(0 AS DOUBLE) AS refunds,
         CAST(0 AS DOUBLE) AS revenue{masks.from_event_type()}
  FROM cl_events e
  LEFT JOIN ev_types t ON t.event_type = e.event_type
  WHERE e.day_n <= {as_of}
  UNION ALL
  SELECT customer_id, day_n, 0.0, CAST(0 AS DOUBLE),
         CASE WHEN amount > 0 THEN 1.0 ELSE 0.0 END,
         CASE WHEN amount < 0 THEN 1.0 ELSE 0.0 END,
         amount{masks.none()}
  FROM cl_transactions
  WHERE day_n <= {as_of}
) u
JOIN cust k ON k.customer_id = u.customer_id
GROUP BY k.ck, u.day_n""", materialize=False),
        Step("segments", f"""
SELECT k.ck, m.p, m.bucket,
       SUM(a.ev_qty) AS ev_qty, CAST(COUNT(*) AS DOUBLE) AS act_days,
       SUM(a.purchases) AS purchases, SUM(a.refunds) AS refunds, SUM(a.revenue) AS revenue,
       SUM(CASE WHEN a.purchases > 0 THEN 1.0 ELSE 0.0 END) AS purchase_days,
       SUM(CASE WHEN a.day_n >= k.signup_day AND a.day_n < k.signup_day + {ONBOARDING_DAYS}
                THEN a.ev_qty ELSE 0.0 END) AS first14_qty,
       MAX(CASE WHEN a.ev_rows > 0 THEN a.day_n END) AS last_ev_day,
       MIN(CASE WHEN a.ev_rows > 0 THEN a.day_n END) AS first_ev_day,
       MAX(CASE WHEN a.purchases > 0 THEN a.day_n END) AS last_purchase_day,
       MIN(CASE WHEN a.purchases > 0 THEN a.day_n END) AS first_purchase_day,
       MAX(a.day_n) AS last_act_day,
       MIN(a.day_n) AS first_act_day{masks.or_of("a")}
FROM act_daily a
JOIN cust k ON k.ck = a.ck
JOIN day_segments m ON m.day_n = GREATEST(a.day_n, {first_end})
GROUP BY k.ck, m.p, m.bucket"""),
    ]


def _wsum(band: str, value: str, alias: str) -> str:
    return f"SUM(CASE WHEN m.{band} = 1 THEN s.{value} ELSE 0.0 END) AS {alias}"


def _window_steps(ws: list[int], masks: _TypeMasks) -> list[Step]:
    """`win_usage` / `win_money`: segments summed per (customer, cutoff) over each window."""
    usage_cols = ",\n  ".join(
        [_wsum(f"in_{w}", "ev_qty", f"events_{w}d") for w in ws]
        + [_wsum(f"in_{w}", "act_days", f"active_days_{w}d") for w in ws]
        + [_wsum("cur_30", "ev_qty", "ev_cur_30"), _wsum("prev_30", "ev_qty", "ev_prev_30")]
        + [col for w in ws for col in masks.in_window(w)]
    )
    money_cols = ",\n  ".join(
        [_wsum(f"in_{w}", "purchases", f"purchases_{w}d") for w in ws]
        + [_wsum(f"in_{w}", "revenue", f"revenue_{w}d") for w in ws]
        + [_wsum(f"in_{w}", "refunds", f"refunds_{w}d") for w in ws]
        + [_wsum("cur_90", "revenue", "rev_cur_90"), _wsum("prev_90", "revenue", "rev_prev_90")]
    )
    return [
        Step("win_usage", f"""
SELECT s.ck, m.cutoff,
  {usage_cols}
FROM segments s
JOIN window_map m ON m.p = s.p
GROUP BY s.ck, m.cutoff"""),
        Step("win_money", f"""
SELECT s.ck, m.cutoff,
  {money_cols}
FROM segments s
JOIN window_map m ON m.p = s.p
WHERE s.purchases > 0 OR s.refunds > 0 OR s.revenue <> 0  -- the other segments add only zeros
GROUP BY s.ck, m.cutoff"""),
    ]


def _lifetime_steps() -> list[Step]:
    """`buckets` (segments per customer and bucket) and `grid` (customers x cutoffs with the
    lifetime values carried over the cutoffs, and the next activity day after each)."""
    upto = "PARTITION BY k.ck ORDER BY c.cutoff ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW"
    after = "PARTITION BY k.ck ORDER BY c.cutoff ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING"
    return [
        Step("buckets", """
SELECT ck, bucket,
       MAX(last_ev_day) AS last_ev_day, MIN(first_ev_day) AS first_ev_day,
       MAX(last_purchase_day) AS last_purchase_day, MAX(last_act_day) AS last_act_day,
       MIN(first_act_day) AS first_act_day, SUM(first14_qty) AS first14_qty,
       MIN(first_purchase_day) AS first_purchase_day,
       SUM(ev_qty) AS ev_qty, SUM(act_days) AS act_days, SUM(purchases) AS purchases,
       SUM(purchase_days) AS purchase_days, SUM(revenue) AS revenue
FROM segments
GROUP BY ck, bucket"""),
        Step("grid", f"""
SELECT k.ck, k.customer_id, k.signup_day, k.cancel_day, k.segment,
       c.cutoff, c.is_output, c.is_labelled,
       MAX(b.last_ev_day) OVER ({upto}) AS last_ev_day,
       MIN(b.first_ev_day) OVER ({upto}) AS first_ev_day,
       MAX(b.last_purchase_day) OVER ({upto}) AS last_purchase_day,
       MAX(b.last_act_day) OVER ({upto}) AS last_act_day,
       SUM(b.first14_qty) OVER ({upto}) AS first14_qty,
       MIN(b.first_purchase_day) OVER ({upto}) AS first_purchase_day,
       SUM(b.ev_qty) OVER ({upto}) AS ev_qty_total,
       SUM(b.act_days) OVER ({upto}) AS act_days_total,
       SUM(b.purchases) OVER ({upto}) AS purchases_total,
       SUM(b.purchase_days) OVER ({upto}) AS purchase_days_total,
       SUM(b.revenue) OVER ({upto}) AS revenue_total,
       MIN(b.first_act_day) OVER ({after}) AS next_act_day
FROM cust k
CROSS JOIN cutoffs c
LEFT JOIN buckets b ON b.ck = k.ck AND b.bucket = c.cutoff
WHERE b.ck IS NOT NULL  -- rows without activity add nothing to the running values: only outputs
   OR (c.is_output = 1 AND k.signup_day <= c.cutoff
       AND (k.cancel_day IS NULL OR k.cancel_day > c.cutoff))"""),
    ]


def _support_steps() -> list[Step]:
    """`win_tickets` and `last_nps`: the small support tables joined to the output cutoffs."""
    return [
        Step("win_tickets", f"""
SELECT k.ck, c.cutoff,
       SUM(CASE WHEN a.closed_day IS NULL OR a.closed_day > c.cutoff THEN 1.0 ELSE 0.0 END)
         AS open_tickets,
       MAX(CASE WHEN a.closed_day IS NULL OR a.closed_day > c.cutoff
                THEN c.cutoff - a.opened_day END) AS oldest_open_ticket_days,
       SUM(CASE WHEN a.opened_day > c.cutoff - {TICKETS_DAYS} THEN 1.0 ELSE 0.0 END)
         AS tickets_90d
FROM cl_tickets a
JOIN cust k ON k.customer_id = a.customer_id
JOIN cutoffs c ON a.opened_day <= c.cutoff
WHERE c.is_output = 1
  AND (a.closed_day IS NULL OR a.closed_day > c.cutoff
       OR a.opened_day > c.cutoff - {TICKETS_DAYS})
GROUP BY k.ck, c.cutoff"""),
        Step("last_nps", """
SELECT ck, cutoff, score FROM (
  SELECT k.ck, c.cutoff, a.score,
         ROW_NUMBER() OVER (PARTITION BY k.ck, c.cutoff ORDER BY a.ts DESC, a.score DESC) AS rn
  FROM cl_nps a
  JOIN cust k ON k.customer_id = a.customer_id
  JOIN cutoffs c ON a.day_n <= c.cutoff
  WHERE c.is_output = 1
) x
WHERE rn = 1"""),
    ]


def _feature_rows_step(ws: list[int], masks: _TypeMasks, inactivity_days: int, dialect: str,
                       label: str) -> Step:
    """`feature_rows`: the population at each output cutoff, its `label` (SQL `label`, filled
    at labelled cutoffs) and the feature families in `feature_names` order."""
    final_cols = [
        *_usage_features(ws, masks),
        *_purchase_features(ws),
        *_activity_features(inactivity_days),
        *_lifecycle_features(),
        *_support_features(),
    ]
    assert len(final_cols) == len(feature_names(ws))
    sep = ",\n       "
    return Step("feature_rows", f"""
SELECT g.customer_id,
       {to_date('g.cutoff', dialect)} AS cutoff,
       CAST(CASE WHEN g.is_labelled = 1 THEN {label} END AS INT) AS label,
       {sep.join(final_cols)}
FROM grid g
LEFT JOIN win_usage w ON w.ck = g.ck AND w.cutoff = g.cutoff
LEFT JOIN win_money y ON y.ck = g.ck AND y.cutoff = g.cutoff
LEFT JOIN win_tickets k ON k.ck = g.ck AND k.cutoff = g.cutoff
LEFT JOIN last_nps n ON n.ck = g.ck AND n.cutoff = g.cutoff
WHERE g.is_output = 1
  AND g.signup_day <= g.cutoff
  AND (g.cancel_day IS NULL OR g.cancel_day > g.cutoff)""")


# --- feature families (columns of `feature_rows`) ------------------------------------------------

def _z(col: str, typ: str = "DOUBLE") -> str:
    return f"CAST(COALESCE({col}, 0) AS {typ})"


def _money(col: str) -> str:
    # parallel float sums differ in the last bits from run to run; rounding to 1e-6 keeps
    # the output byte-identical (amounts carry cents, so nothing real is lost)
    return f"ROUND(CAST(COALESCE({col}, 0) AS DOUBLE), 6)"


def _usage_features(ws: list[int], masks: _TypeMasks) -> list[str]:
    """events, active days and event types per window, their change, last event, totals."""
    return (
        [f"{_z(f'w.events_{w}d', 'DOUBLE')} AS events_{w}d" for w in ws]
        + [f"{_z(f'w.active_days_{w}d')} AS active_days_{w}d" for w in ws]
        + [f"CAST({masks.count(w)} AS DOUBLE) AS event_types_{w}d" for w in ws]
        + [
            "CAST((COALESCE(w.ev_cur_30, 0) - COALESCE(w.ev_prev_30, 0))"
            " / GREATEST(COALESCE(w.ev_prev_30, 0), 1) AS DOUBLE) AS events_change_30d",
            "CAST(g.cutoff - g.last_ev_day AS DOUBLE) AS days_since_last_event",
            f"{_z('g.ev_qty_total')} AS events_total",
            f"{_z('g.act_days_total')} AS active_days_total",
        ]
    )


def _purchase_features(ws: list[int]) -> list[str]:
    """purchases, revenue and refunds per window, revenue change, recency and lifetime values."""
    return (
        [f"{_z(f'y.purchases_{w}d')} AS purchases_{w}d" for w in ws]
        + [f"{_money(f'y.revenue_{w}d')} AS revenue_{w}d" for w in ws]
        + [f"{_z(f'y.refunds_{w}d')} AS refunds_{w}d" for w in ws]
        + [
            f"CAST(({_money('y.rev_cur_90')} - {_money('y.rev_prev_90')})"
            f" / GREATEST(ABS({_money('y.rev_prev_90')}), 1) AS DOUBLE) AS revenue_change_90d",
            "CAST(g.cutoff - g.last_purchase_day AS DOUBLE) AS days_since_last_purchase",
            f"{_z('g.purchases_total')} AS purchases_total",
            f"{_z('g.purchase_days_total')} AS purchase_days_total",
            f"{_money('g.revenue_total')} AS revenue_total",
            "CAST(g.cutoff - g.first_purchase_day AS DOUBLE) AS days_since_first_purchase",
            "CAST(CASE WHEN g.purchase_days_total >= 2 THEN"
            " CAST(g.last_purchase_day - g.first_purchase_day AS DOUBLE)"
            " / (g.purchase_days_total - 1) END AS DOUBLE) AS avg_days_between_purchases",
        ]
    )


def _activity_features(inactivity_days: int) -> list[str]:
    """Days since the last event or transaction (or signup), and the inactive flag."""
    return [
        "CAST(g.cutoff - COALESCE(g.last_act_day, g.signup_day) AS DOUBLE)"
        " AS days_since_last_activity",
        f"CAST(CASE WHEN g.cutoff - COALESCE(g.last_act_day, g.signup_day) >= {inactivity_days}"
        " THEN 1 ELSE 0 END AS DOUBLE) AS inactive_flag",
    ]


def _lifecycle_features() -> list[str]:
    """Tenure, trial, segment and onboarding (time to first event, events in the first days)."""
    return [
        "CAST(g.cutoff - g.signup_day AS DOUBLE) AS tenure_days",
        "CAST(CASE WHEN LOWER(g.segment) = 'trial' THEN 1 ELSE 0 END AS DOUBLE) AS is_trial",
        "g.segment AS segment",
        "CAST(g.first_ev_day - g.signup_day AS DOUBLE) AS days_to_first_event",
        f"{_z('g.first14_qty', 'DOUBLE')} AS events_first_14d",
    ]


def _support_features() -> list[str]:
    """Open tickets, the oldest one's age, recent tickets and the last NPS answer."""
    return [
        f"{_z('k.open_tickets')} AS open_tickets",
        "CAST(k.oldest_open_ticket_days AS DOUBLE) AS oldest_open_ticket_days",
        f"{_z('k.tickets_90d')} AS tickets_90d",
        "CAST(n.score AS DOUBLE) AS last_nps",
    ]
