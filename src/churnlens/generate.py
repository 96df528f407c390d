"""Synthetic sample data: customers, purchases, usage, tickets and NPS with behaviour-driven churn.

The generator is a pure library (no file I/O); `churnlens.sample_io` writes its output as CSV
(for the generate stage, `churnlens.stages.generate`).

Public functions
----------------
* `generate_dataset(n_customers, start_date, end_date, seed, *, chunk_size, bad_rows)`
  -> `dict[str, pd.DataFrame]` with the five input tables (`TABLES`) plus the ground truth under
  `TRUTH_KEY` (`"_truth"`), which is *not* an input table and must never be written next to them.
* `iter_chunks(...)` yields the same content one customer chunk at a time (for large sizes: each
  chunk is independent, seeded by `SeedSequence(seed, spawn_key=(chunk_no,))`, so memory stays
  bounded by `chunk_size`). Concatenating the chunks gives exactly `generate_dataset`'s frames.

The frames mirror the raw CSV files: ids are zero-padded strings (`"000042"`), dates are
`YYYY-MM-DD` strings, timestamps ISO-8601 strings (`2025-03-04T13:05:09`, naive = UTC; about 0.5 %
carry `Z` or a `+01:00` offset, same instant), empty cells are missing values. Numeric columns are
numeric, except `transactions.amount` which is `object` when bad rows are injected. Same arguments
(including `chunk_size`) give the same frames and byte-identical CSV files. In `customers`,
`segment` is missing for 0.3 %, `country` for 1 % and `name` for 5 %; every customer has a fake
e-mail under example.com / example.org (personal data appears in no other table).

The model of the world (per customer; all customers of a chunk are simulated together as arrays,
one calendar month per step)
--------------------------------------------------------------------------------------------------
* Signups grow over the date range (density ~ exp(ln 3 * t / T)); ids are numbered in signup
  order. Segments `trial` (45 %), `basic`, `pro`, `enterprise` differ in price, seats, billing
  (monthly or annual; more annual contracts in larger plans), base usage and ticket rates.
* Latent engagement (log usage rate) = segment/customer base + an AR(1) random walk with a
  per-customer drift + a calendar effect (December/August dips). A *decline story* starts with
  probability 2 % per month (tenure >= 60 days): engagement then falls by 0.5-0.9 per month for
  2-4 months and stays down. About 6 % of customers are *seasonal*: usage and monthly billing pause
  for 2-4 months each year and come back, so "no activity for N days" is strong but imperfect.
* Usage: each day a customer is active with a probability driven by engagement (weekends lower,
  trial onboarding boost); an active day emits one row per event type used that day
  (`login`, `view_report`, `export`, `invite_user`, `api_call`, `key_action`) with the count in
  `quantity`.
* Purchases: subscription charges (monthly on the anchor day, or annual) for paying customers
  (`quantity` = seats), occasional one-off add-ons, ~2 % of charges refunded a few days later
  (negative amount, `quantity` = items refunded; partial refunds have an empty `quantity`).
  Subscription charges pause during a seasonal customer's break.
* Trials: 40 % of trial customers do not find value (lower usage, hardly any `key_action`). A
  trial customer who does a `key_action` in the first 14 days is *activated*; at the
  first month start after day 14, activated trials convert to paying (basic or pro price) with
  probability 0.55 (their `segment` stays `trial`, the plan they signed up with); non-activated
  trials get a large hazard bump and mostly leave.
* Tickets: monthly rate grows with the drop of engagement below the customer's base (and during a
  decline story); resolution time log-normal by priority; some tickets are never resolved
  (more often for declining customers) and stay open (`closed_at` empty). Tickets still open at
  `end_date` also have an empty `closed_at`. 2 % have no `priority`.
* NPS: a few % of customers with tenure >= 30 days answer each month; the score (0-10) follows
  engagement relative to base and drops with open tickets.
* Churn: at each month start the hazard is
  `sigmoid(-2.45 - 0.45*level - 1.2*min(trend, 0) + 0.55*open_tickets_older_than_7d (max 3)
  + 1.1*[last NPS <= 6] + 0.25*[NPS 7-8] - 0.35*[NPS >= 9] + 0.8*[no event for 30 d]
  + 0.7*[no event for 60 d] + 4.2*[trial not activated, at decision] + 0.4*[free user]
  - 0.4*[paying] - 0.7*[annual] + frailty + noise)`, where level is last month's engagement and
  trend its change over the two months before (both without the seasonal break, whose
  inactivity terms are also switched off). A churner stops all activity (events, purchases,
  tickets, NPS) from the churn day, which is uniform within the month. 85 % of paying churners
  and 60 % of free/trial churners get `cancel_date` = churn day (contractual cancellation or
  closed trial account); the others churn silently (activity just stops, no `cancel_date`).
  With the default params about 15-30 % of the population at a cutoff has no activity in the
  following 90 days, and 15-25 % cancels within 90 days.

Deliberately bad rows (only with `bad_rows=True`; injected into the first chunk at random
positions; a fixed handful per table, independent of `n_customers`)
------------------------------------------------------------------------------------------
* customers (7): one extra row repeating the `customer_id` of the chunk's last customer with
  another signup date and segment (conflicting duplicate), one exact copy of another customer's
  row, one row with an empty `customer_id`, two extra customers whose `signup_date` is
  unparseable (`2025-02-30`, `not a date`), one with an empty `signup_date`, one whose
  `cancel_date` is unparseable (`31/12/2025`). The rows of the other tables that name a known
  customer belong to that same last customer and are bad for another reason as well.
* transactions (10): three rows for unknown customers (ids above the generated range), two with an
  empty `customer_id`, two with an unparseable `timestamp` (`2025-13-01T10:00:00`, `yesterday`),
  two with a non-numeric `amount` (`abc`, `12,50`), one with an empty `amount`.
* events (9): three rows for unknown customers, two with an empty `customer_id`, two with an
  unparseable `timestamp` (`2025-06-31T08:00:00`, `31.12.2025 10:00`), one with an empty
  `timestamp`, one with an empty `event_type`.
* tickets (6): two for unknown customers, one with an empty `customer_id`, two with an unparseable
  `opened_at`, one with an unparseable `closed_at`.
* nps (7): two with score 11, one with score -1, one with an empty `customer_id`, two for unknown
  customers, one with an unparseable `timestamp`.
The number of bad rows per table is in `BAD_ROW_COUNTS`.

How the code is laid out: `iter_chunks` calls `_simulate_chunk` per chunk, which draws the
customers once (`_draw_customers` -> `_Customers`), then steps month by month over a `_State`
(`_engagement`, `_churn_hazard`, `_trial_decision`, `_activity_window`, `_usage_events`,
`_purchases`, `_support_tickets`, `_nps_answers`, `_remember`), optionally simulates outreach
(`_simulate_outreach`) and turns the rows into the tables (`_to_frames`); `_inject_bad_rows`
adds the bad rows. Every step draws from the chunk's random stream in a fixed order, so moving
or adding a draw changes the output bytes (the sample in git is the check).

Ground truth (`result[TRUTH_KEY]`, one row per generated customer, for tests only; hidden labels
must not reach the CSV files or any feature)
------------------------------------------------------------------------------------------------
`customer_id`, `segment` (plan, never missing), `paying` (bool, at the end), `billing`
(`monthly`/`annual`/`none`), `seasonal`, `activated` (trials), `converted` (trials),
`decline_story` (bool), `story_start` (first day of the month the decline began, NaT if none),
`story_months`, `churned`, `churn_date` (first day without activity, NaT if none),
`churn_kind` (`cancelled`/`silent`/missing), `open_tickets` (tickets open at `end_date`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnlens.errors import ChurnlensError
from churnlens.logs import get_logger
from churnlens.settings import DEFAULTS

TABLES = ("customers", "transactions", "events", "tickets", "nps")
TRUTH_KEY = "_truth"
DEFAULT_CHUNK_SIZE = 5_000

COLUMNS: dict[str, list[str]] = {
    "customers": [
        "customer_id",
        "signup_date",
        "segment",
        "country",
        "email",
        "name",
        "cancel_date",
    ],
    "transactions": ["customer_id", "timestamp", "amount", "quantity"],
    "events": ["customer_id", "timestamp", "event_type", "quantity"],
    "tickets": ["customer_id", "opened_at", "closed_at", "priority"],
    "nps": ["customer_id", "timestamp", "score"],
}
BAD_ROW_COUNTS = {"customers": 7, "transactions": 10, "events": 9, "tickets": 6, "nps": 7}

SEGMENTS = np.array(["trial", "basic", "pro", "enterprise"], dtype=object)
SEGMENT_P = np.array([0.45, 0.27, 0.20, 0.08])
MU_SEGMENT = np.array([0.0, 0.2, 0.7, 1.2])  # base log usage rate
UNIT_PRICE = np.array([0.0, 29.0, 79.0, 45.0])  # per seat and month
ANNUAL_P = np.array([0.0, 0.10, 0.25, 0.60])
TICKET_FACTOR = np.array([0.5, 1.0, 1.3, 2.5])

COUNTRIES = np.array(["US", "GB", "DE", "FR", "NL", "ES", "CA", "AU", "IN"], dtype=object)
COUNTRY_P = np.array([0.30, 0.14, 0.14, 0.09, 0.07, 0.06, 0.08, 0.05, 0.07])
COUNTRY_TZ = np.array([-5, 0, 1, 1, 1, 1, -5, 10, 5])  # hours from UTC (rough, no DST)

EVENT_TYPES = np.array(
    ["login", "view_report", "export", "invite_user", "api_call", "key_action"], dtype=object
)
PRIORITIES = np.array(["low", "normal", "high", "urgent"], dtype=object)
_EVENT_TYPES = pa.array(list(EVENT_TYPES))
_PRIORITIES = pa.array(list(PRIORITIES))
PRIORITY_P = np.array([0.30, 0.45, 0.20, 0.05])
PRIORITY_MEDIAN_H = np.array([96.0, 48.0, 24.0, 6.0])  # median resolution time in hours

# calendar effect on engagement by month of year (1..12)
CALENDAR_EFFECT = np.array([0, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, -0.05, -0.15, 0.05, 0.05, 0.0, -0.25])

FIRST_NAMES = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elif",
    "Finn",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Marco",
    "Nina",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoë",
    "José",
    "Chloé",
    "Søren",
    "Aiko",
]
LAST_NAMES = [
    "Smith",
    "Müller",
    "García",
    "Rossi",
    "Dubois",
    "Jansen",
    "Kowalski",
    "Novak",
    "Okafor",
    "Patel",
    "Nguyen",
    "Kim",
    "Silva",
    "Larsen",
    "O'Brien",
    "Schmidt",
    "Brown",
    "Martin",
    "Costa",
    "Yilmaz",
    "Ivanova",
    "Tanaka",
    "Fischer",
    "Moreau",
]
_ASCII = str.maketrans({"ë": "e", "é": "e", "ø": "o", "ü": "u", "í": "i", "'": "", "ç": "c"})

GROWTH = math.log(3.0)  # the last day sees 3x the signups of the first
P_STORY = 0.02  # monthly onset probability of a decline story
P_SEASONAL = 0.06
P_CONVERT = 0.55
P_TRIAL_MISFIT = 0.4
HAZARD_BASE = -2.45
OFFSET_SHARE = 0.005  # share of timestamps written with Z / +01:00

_NEVER = np.iinfo(np.int64).max // 4

log = get_logger("generate")


# --------------------------------------------------------------------------------------------
# calendar


@dataclass(frozen=True)
class _Calendar:
    start: np.datetime64  # first day (datetime64[D])
    n_days: int
    month_start: np.ndarray  # day index of the first simulated day of each month
    month_end: np.ndarray  # day index after the last simulated day of each month
    month_first: np.ndarray  # day index of the calendar 1st (negative for a partial month)
    month_days: np.ndarray  # calendar length of the month
    month_of_year: np.ndarray  # 1..12
    weekday: np.ndarray  # per day, 0 = Monday
    day_of_month: np.ndarray  # per day, 1..31
    month_of_day: np.ndarray  # per day, month index


def _calendar(start_date: str, end_date: str) -> _Calendar:
    try:
        start = np.datetime64(str(start_date), "D")
        end = np.datetime64(str(end_date), "D")
    except ValueError as err:
        raise ChurnlensError(f"generate: start_date/end_date must be ISO dates ({err})") from None
    n_days = int((end - start).astype(int)) + 1
    if n_days < 31:
        raise ChurnlensError("generate: end_date must be at least 30 days after start_date")
    months = np.arange(start.astype("datetime64[M]"), end.astype("datetime64[M]") + 1)
    first = (months.astype("datetime64[D]") - start).astype(np.int64)
    next_first = ((months + 1).astype("datetime64[D]") - start).astype(np.int64)
    days = np.arange(n_days)
    dates = start + days.astype("timedelta64[D]")
    month_of_day = np.searchsorted(first, days, side="right") - 1
    return _Calendar(
        start=start,
        n_days=n_days,
        month_start=np.maximum(first, 0),
        month_end=np.minimum(next_first, n_days),
        month_first=first,
        month_days=next_first - first,
        month_of_year=(months.astype(np.int64) % 12) + 1,
        weekday=((dates - np.datetime64("1970-01-05")).astype(np.int64)) % 7,
        day_of_month=(dates - dates.astype("datetime64[M]").astype("datetime64[D]")).astype(
            np.int64
        )
        + 1,
        month_of_day=month_of_day,
    )


# --------------------------------------------------------------------------------------------
# public API


def id_width(n_customers: int) -> int:
    """Digits of the zero-padded customer ids."""
    return max(6, len(str(int(n_customers))))


def format_ids(numbers: np.ndarray, width: int) -> list[str]:
    """Zero-padded id strings for 1-based customer numbers."""
    return [str(int(number)).zfill(width) for number in np.asarray(numbers)]


def n_chunks(n_customers: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    return max(1, math.ceil(n_customers / chunk_size))


def iter_chunks(
    n_customers: int,
    start_date: str,
    end_date: str,
    seed: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    bad_rows: bool = True,
    outreach: OutreachSettings | None = None,
) -> Iterator[dict[str, pd.DataFrame]]:
    """Yield `{table: frame, TRUTH_KEY: truth}` per chunk of at most `chunk_size` customers
    (with `outreach` weeks > 0 also `interventions` and `OUTREACH_KEY`, see `OutreachSettings`)."""
    n_customers, chunk_size, seed = int(n_customers), int(chunk_size), int(seed)
    if n_customers < 1:
        raise ChurnlensError("generate: n_customers must be >= 1")
    if chunk_size < 1:
        raise ChurnlensError("generate: chunk_size must be >= 1")
    cal = _calendar(start_date, end_date)
    if outreach is not None and outreach.weeks > 0:
        outreach.check(cal)
    else:
        outreach = None
    width = id_width(n_customers)
    total = n_chunks(n_customers, chunk_size)
    for chunk_no in range(total):
        first = chunk_no * chunk_size
        n = min(chunk_size, n_customers - first)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(chunk_no,)))
        out_rng = None
        if outreach is not None:  # its own stream: the main one is unchanged
            out_rng = np.random.default_rng(
                np.random.SeedSequence(seed, spawn_key=(chunk_no, OUTREACH_STREAM)))
        frames = _simulate_chunk(rng, first, n, n_customers, cal, width, verbose=total == 1,
                                 outreach=outreach, out_rng=out_rng)
        if bad_rows and chunk_no == 0:
            bad_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2**31,)))
            frames = _inject_bad_rows(frames, bad_rng, n_customers, width, cal)
        log.info(
            "chunk %d/%d: %d customers, %d transactions, %d events, %d tickets, %d nps",
            chunk_no + 1,
            total,
            len(frames["customers"]),
            len(frames["transactions"]),
            len(frames["events"]),
            len(frames["tickets"]),
            len(frames["nps"]),
        )
        yield frames


def generate_dataset(
    n_customers: int,
    start_date: str,
    end_date: str,
    seed: int,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    bad_rows: bool = True,
    outreach: OutreachSettings | None = None,
) -> dict[str, pd.DataFrame]:
    """Return the five input tables (`TABLES`) and the ground truth under `TRUTH_KEY` (with
    simulated outreach also `interventions` and `OUTREACH_KEY`).

    See the module docstring for the model, the bad rows and the truth columns.
    """
    parts: dict[str, list[pd.DataFrame]] = {}
    for frames in iter_chunks(
        n_customers, start_date, end_date, seed, chunk_size=chunk_size, bad_rows=bad_rows,
        outreach=outreach,
    ):
        for name, frame in frames.items():
            parts.setdefault(name, []).append(frame)
    return {
        name: frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        for name, frames in parts.items()
    }


# --------------------------------------------------------------------------------------------
# simulation of one chunk


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _uniform_day(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A uniform integer day in [lo, hi) per element (hi > lo)."""
    return lo + np.floor(rng.random(len(lo)) * (hi - lo)).astype(np.int64)


def _daytime_seconds(rng: np.random.Generator, tz: np.ndarray) -> np.ndarray:
    """Seconds after UTC midnight for activity in local working hours (wrapped into the UTC day)."""
    local = np.clip(rng.normal(13.5, 3.2, len(tz)) * 3600.0, 0, 86399)
    return np.mod(local - tz * 3600.0, 86400).astype(np.int64)


class _Rows:
    """Collects per-month arrays of one table and concatenates them at the end."""

    def __init__(self, *names: str) -> None:
        self.names = names
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def add(self, **cols: np.ndarray) -> None:
        for name in self.names:
            self.parts[name].append(np.asarray(cols[name]))

    def get(self) -> dict[str, np.ndarray]:
        return {
            name: np.concatenate(parts) if parts else np.array([], dtype=np.int64)
            for name, parts in self.parts.items()
        }


@dataclass
class _Customers:
    """The customers of one chunk, drawn once at the start (arrays over the chunk's customers).

    The plan fields (`paying`, `paying_from`, `unit`, `anchor_dom`, `anchor_month`) change when a
    trial converts; everything else stays as drawn.
    """

    gidx: np.ndarray  # 0-based global customer number
    signup: np.ndarray  # day index
    seg: np.ndarray  # index into SEGMENTS
    country: np.ndarray  # index into COUNTRIES
    tz: np.ndarray  # hours from UTC
    seats: np.ndarray
    unit: np.ndarray  # price per seat and month
    annual: np.ndarray
    paying: np.ndarray
    paying_from: np.ndarray  # first paying day (_NEVER: not paying)
    anchor_dom: np.ndarray  # billing day of month
    anchor_month: np.ndarray  # month index of the first charge (annual billing)
    mu: np.ndarray  # base log usage rate
    drift: np.ndarray
    frailty: np.ndarray
    seasonal: np.ndarray
    pause_start: np.ndarray  # month of year the seasonal break starts
    pause_len: np.ndarray
    api_user: np.ndarray
    invite_rate: np.ndarray
    is_trial: np.ndarray
    key_rate: np.ndarray  # key actions per unit of usage

    @property
    def n(self) -> int:
        return len(self.gidx)


def _draw_customers(rng: np.random.Generator, first: int, n: int, n_total: int,
                    cal: _Calendar) -> _Customers:
    """Signup day, segment, country, plan, usage base and traits of customers `first..first+n`."""
    T = cal.n_days
    gidx = np.arange(first, first + n)
    u = (gidx + rng.random(n)) / n_total  # stratified: ids in signup order
    signup = np.minimum(np.floor(T * np.log1p(u * math.expm1(GROWTH)) / GROWTH), T - 1)
    signup = signup.astype(np.int64)
    seg = rng.choice(4, size=n, p=SEGMENT_P)
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_P)
    tz = COUNTRY_TZ[country].astype(float)
    seats = np.ones(n, dtype=np.int64)
    seats[seg == 1] = 1 + (rng.random((seg == 1).sum()) < 0.1)
    seats[seg == 2] = np.minimum(rng.geometric(0.5, (seg == 2).sum()), 8)
    seats[seg == 3] = np.clip(
        np.round(np.exp(rng.normal(np.log(20), 0.6, (seg == 3).sum()))), 5, 200
    )
    unit = UNIT_PRICE[seg].copy()
    annual = rng.random(n) < ANNUAL_P[seg]
    paying = seg > 0
    paying_from = np.where(paying, signup, _NEVER)
    anchor_dom = cal.day_of_month[signup].copy()
    anchor_month = cal.month_of_day[signup].copy()
    mu = MU_SEGMENT[seg] + rng.normal(0.0, 0.55, n)
    drift = rng.normal(-0.01, 0.04, n)
    frailty = rng.normal(0.0, 0.4, n)
    seasonal = rng.random(n) < P_SEASONAL
    pause_start = rng.integers(1, 13, n)
    pause_len = rng.integers(2, 5, n)
    api_user = (seg >= 2) & (rng.random(n) < 0.4)
    invite_rate = 0.04 * np.log1p(seats)
    is_trial = seg == 0
    # trials that do not find the product useful: lower usage, hardly any key action
    misfit = is_trial & (rng.random(n) < P_TRIAL_MISFIT)
    mu -= 0.6 * misfit
    key_rate = np.where(misfit, 0.02, 0.5)
    return _Customers(
        gidx=gidx, signup=signup, seg=seg, country=country, tz=tz, seats=seats, unit=unit,
        annual=annual, paying=paying, paying_from=paying_from, anchor_dom=anchor_dom,
        anchor_month=anchor_month, mu=mu, drift=drift, frailty=frailty, seasonal=seasonal,
        pause_start=pause_start, pause_len=pause_len, api_user=api_user,
        invite_rate=invite_rate, is_trial=is_trial, key_rate=key_rate,
    )


@dataclass
class _State:
    """What the simulation carries from one month to the next (arrays over the customers)."""

    x: np.ndarray  # AR(1) part of engagement
    e1: np.ndarray  # engagement (without seasonal break) 1..3 months ago
    e2: np.ndarray
    e3: np.ndarray
    churn_day: np.ndarray  # first day without activity (_NEVER: not churned)
    last_event: np.ndarray  # day of the last event (-1: none)
    activated: np.ndarray  # trials: a key action in the first 14 days
    decided: np.ndarray  # trial decision taken (always for non-trials)
    converted: np.ndarray
    story_start: np.ndarray  # month index the decline story began (-1: none)
    story_len: np.ndarray
    story_delta: np.ndarray
    last_nps: np.ndarray  # latest NPS score (NaN: none)
    paused_prev: np.ndarray  # in the seasonal break last month
    tk_cust: np.ndarray  # every ticket so far: customer, opened and closed (-1 = never) second
    tk_open: np.ndarray
    tk_close: np.ndarray

    @classmethod
    def start(cls, customers: _Customers) -> _State:
        n = customers.n
        return cls(
            x=np.zeros(n),
            e1=np.full(n, np.nan),
            e2=np.full(n, np.nan),
            e3=np.full(n, np.nan),
            churn_day=np.full(n, _NEVER, dtype=np.int64),
            last_event=np.full(n, -1, dtype=np.int64),
            activated=np.zeros(n, dtype=bool),
            decided=~customers.is_trial,
            converted=np.zeros(n, dtype=bool),
            story_start=np.full(n, -1, dtype=np.int64),
            story_len=np.zeros(n, dtype=np.int64),
            story_delta=np.zeros(n),
            last_nps=np.full(n, np.nan),
            paused_prev=np.zeros(n, dtype=bool),
            tk_cust=np.array([], dtype=np.int64),
            tk_open=np.array([], dtype=np.int64),
            tk_close=np.array([], dtype=np.int64),
        )


@dataclass
class _Month:
    """One month's step: its days and what the parts of the step share."""

    m: int  # month index
    ms: int  # first simulated day
    me: int  # day after the last simulated day
    moy: int  # month of year
    started: np.ndarray  # signed up before the month ends
    gone: np.ndarray  # churned in an earlier month
    old: np.ndarray  # signed up before the month and not churned before it
    tenure: np.ndarray  # days since signup at the month start
    story_k: np.ndarray  # months into a decline story (0: none)
    story_eff: np.ndarray  # the story's effect on engagement
    e_ns: np.ndarray  # engagement without the seasonal break
    e: np.ndarray  # engagement
    paused: np.ndarray  # in the seasonal break
    lo: np.ndarray | None = None  # the month's window of activity [lo, hi) per customer
    hi: np.ndarray | None = None
    act: np.ndarray | None = None  # active at some day of the month

    @property
    def ml(self) -> int:
        return self.me - self.ms


@dataclass
class _Tables:
    """Rows of the four activity tables, collected month by month."""

    ev: _Rows = field(default_factory=lambda: _Rows("cust", "day", "sec", "type", "qty"))
    tx: _Rows = field(default_factory=lambda: _Rows("cust", "day", "sec", "amount", "qty"))
    tk: _Rows = field(default_factory=lambda: _Rows("cust", "open", "close", "prio"))
    nps: _Rows = field(default_factory=lambda: _Rows("cust", "day", "sec", "score"))


def _simulate_chunk(
    rng: np.random.Generator,
    first: int,
    n: int,
    n_total: int,
    cal: _Calendar,
    width: int,
    verbose: bool = False,
    outreach: OutreachSettings | None = None,
    out_rng: np.random.Generator | None = None,
) -> dict[str, pd.DataFrame]:
    """Customers `first..first+n` month by month (see the module docstring), as frames.

    The order of the random draws is part of the output: the steps below draw in a fixed order.
    """
    customers = _draw_customers(rng, first, n, n_total, cal)
    state = _State.start(customers)
    tables = _Tables()
    for m in range(len(cal.month_start)):
        month = _engagement(rng, cal, customers, state, m)
        open_old, decide, churn_now = _churn_hazard(rng, customers, state, month)
        _trial_decision(rng, cal, customers, state, month, decide, churn_now)
        ids = _activity_window(customers, state, month)
        n_event_rows = _usage_events(rng, cal, customers, state, month, ids, tables.ev)
        _purchases(rng, cal, customers, month, tables.tx)
        _support_tickets(rng, customers, state, month, tables.tk)
        _nps_answers(rng, customers, state, month, open_old, tables.nps)
        _remember(state, month)
        if verbose:
            log.info(
                "month %s: %d active customers, %d events rows, %d churned",
                str(cal.start + np.timedelta64(month.ms, "D"))[:7],
                len(ids),
                n_event_rows,
                churn_now.sum(),
            )

    rows = {"events": tables.ev.get(), "transactions": tables.tx.get(),
            "tickets": tables.tk.get(), "nps": tables.nps.get()}
    simulated = None
    if outreach is not None:
        simulated = _simulate_outreach(out_rng, outreach, cal, customers, state, rows["events"],
                                       rows["transactions"], rows["tickets"])
        state.churn_day = simulated.churn_day
        rows["events"] = simulated.events
    frames = _to_frames(rng, cal, width, customers, state, rows)
    if simulated is not None:
        frames.update(_outreach_frames(out_rng, simulated, cal, width, customers.gidx))
    return frames


def _engagement(rng: np.random.Generator, cal: _Calendar, c: _Customers, s: _State,
                m: int) -> _Month:
    """Month `m`'s engagement: the AR(1) walk, decline stories, calendar and seasonal break."""
    ms, me = int(cal.month_start[m]), int(cal.month_end[m])
    moy = int(cal.month_of_year[m])
    n = c.n
    started = c.signup < me
    gone = s.churn_day < _NEVER  # churned in an earlier month
    new = started & (c.signup >= ms)
    old = (c.signup < ms) & ~gone

    s.x = np.where(new, rng.normal(0.0, 0.3, n), s.x)
    s.x = np.where(old, 0.85 * s.x + c.drift + 0.3 * rng.normal(0.0, 1.0, n), s.x)
    tenure = ms - c.signup
    onset = old & (s.story_start < 0) & (tenure >= 60) & (rng.random(n) < P_STORY)
    s.story_start[onset] = m
    s.story_len[onset] = rng.integers(2, 5, onset.sum())
    s.story_delta[onset] = rng.uniform(0.5, 0.9, onset.sum())
    in_story = s.story_start >= 0
    story_k = np.where(in_story, np.clip(m - s.story_start + 1, 0, s.story_len), 0)
    story_eff = -s.story_delta * story_k
    e_ns = c.mu + s.x + story_eff + CALENDAR_EFFECT[moy]
    paused = c.seasonal & (((moy - c.pause_start) % 12) < c.pause_len)
    return _Month(m=m, ms=ms, me=me, moy=moy, started=started, gone=gone, old=old, tenure=tenure,
                  story_k=story_k, story_eff=story_eff, e_ns=e_ns, e=e_ns - 4.0 * paused,
                  paused=paused)


def _churn_hazard(rng: np.random.Generator, c: _Customers, s: _State,
                  month: _Month) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Who churns this month (hazard at the month start, from what happened before it); sets
    their churn day. Returns tickets open for over 7 days, the trials deciding now, churners."""
    n, ms = c.n, month.ms
    level = np.nan_to_num(s.e1, nan=0.0)
    trend = np.nan_to_num(s.e1 - 0.5 * (s.e2 + s.e3), nan=0.0)
    cutoff_s = ms * 86400
    is_open = (s.tk_open <= cutoff_s - 7 * 86400) & (
        (s.tk_close < 0) | (s.tk_close > cutoff_s)
    )
    open_old = np.bincount(s.tk_cust[is_open], minlength=n)
    since_event = ms - np.where(s.last_event >= 0, s.last_event, c.signup)
    season_break = c.seasonal & (month.paused | s.paused_prev)
    inactive_term = (0.8 * (since_event >= 30) + 0.7 * (since_event >= 60)) * ~season_break
    decide = month.old & ~s.decided & (month.tenure >= 14)
    z = (
        HAZARD_BASE
        - 0.45 * level
        - 1.2 * np.minimum(trend, 0.0)
        + 0.55 * np.minimum(open_old, 3)
        + 1.1 * (s.last_nps <= 6)
        + 0.25 * ((s.last_nps >= 7) & (s.last_nps <= 8))
        - 0.35 * (s.last_nps >= 9)
        + inactive_term
        + 4.2 * (decide & ~s.activated)
        + 0.4 * (c.is_trial & ~s.converted)
        - 0.4 * c.paying
        - 0.7 * (c.paying & c.annual)
        + c.frailty
        + rng.normal(0.0, 0.25, n)
    )
    churn_now = month.old & (rng.random(n) < _sigmoid(z))
    s.churn_day[churn_now] = ms + np.floor(rng.random(churn_now.sum()) * month.ml).astype(
        np.int64)
    return open_old, decide, churn_now


def _trial_decision(rng: np.random.Generator, cal: _Calendar, c: _Customers, s: _State,
                    month: _Month, decide: np.ndarray, churn_now: np.ndarray) -> None:
    """Trials deciding this month who stay convert to paying (activated ones mostly)."""
    convert = decide & ~churn_now & (rng.random(c.n) < np.where(s.activated, P_CONVERT, 0.05))
    s.decided |= decide
    if convert.any():
        k = convert.sum()
        conv_day = month.ms + rng.integers(0, min(5, month.ml), k)
        s.converted[convert] = True
        c.paying[convert] = True
        c.paying_from[convert] = conv_day
        c.unit[convert] = np.where(rng.random(k) < 0.7, UNIT_PRICE[1], UNIT_PRICE[2])
        c.anchor_dom[convert] = cal.day_of_month[conv_day]
        c.anchor_month[convert] = month.m


def _activity_window(c: _Customers, s: _State, month: _Month) -> np.ndarray:
    """Set this month's window of activity `[lo, hi)` (up to a churn day); the customers
    active in it."""
    month.lo = np.maximum(month.ms, c.signup)
    month.hi = np.minimum(month.me, s.churn_day)
    month.act = month.started & ~month.gone & (month.hi > month.lo)
    return np.flatnonzero(month.act)


def _usage_events(rng: np.random.Generator, cal: _Calendar, c: _Customers, s: _State,
                  month: _Month, ids: np.ndarray, ev: _Rows) -> int:
    """Active days and event rows of customers `ids`; marks activated trials and the last
    event day. Returns the number of event rows."""
    lo, hi = month.lo, month.hi
    days = np.arange(month.ms, month.me)
    valid = (days[None, :] >= lo[ids, None]) & (days[None, :] < hi[ids, None])
    onboarding = c.is_trial[ids, None] & (days[None, :] < c.signup[ids, None] + 14)
    lam = np.exp(month.e[ids])[:, None] * np.where(onboarding, 1.8, 1.0)
    weekday_factor = np.where(cal.weekday[days] >= 5, 0.35, 1.0)
    p_active = -np.expm1(-0.5 * lam) * weekday_factor[None, :]
    active = valid & (rng.random(valid.shape, dtype=np.float32) < p_active)
    r, col = np.nonzero(active)
    cust = ids[r]
    day = days[col]
    lam_k = lam[r, col]
    rates = np.column_stack(
        [
            0.4 * lam_k,
            1.0 * lam_k,
            0.25 * lam_k,
            c.invite_rate[cust] * lam_k,
            15.0 * lam_k * c.api_user[cust],
            c.key_rate[cust] * lam_k,
        ]
    )
    counts = rng.poisson(rates)
    counts[:, 0] += 1
    rk, tk_type = np.nonzero(counts)
    e_cust = cust[rk]
    e_day = day[rk]
    ev.add(
        cust=e_cust,
        day=e_day,
        sec=_daytime_seconds(rng, c.tz[e_cust]),
        type=tk_type,
        qty=counts[rk, tk_type],
    )
    key_early = (tk_type == 5) & (e_day < c.signup[e_cust] + 14)
    s.activated[e_cust[key_early]] = True
    if len(cust):
        np.maximum.at(s.last_event, cust, day)
    return len(rk)


def _purchases(rng: np.random.Generator, cal: _Calendar, c: _Customers, month: _Month,
               tx: _Rows) -> None:
    """Subscription charges, one-off add-ons and refunds of this month."""
    m, lo, hi, act, paused = month.m, month.lo, month.hi, month.act, month.paused
    n, annual = c.n, c.annual
    charge_day = cal.month_first[m] + np.minimum(c.anchor_dom, cal.month_days[m]) - 1
    due = act & c.paying & ~(paused & ~annual) & (charge_day >= lo) & (charge_day < hi)
    due &= charge_day >= c.paying_from
    due &= ~annual | ((m - c.anchor_month) % 12 == 0)
    sub = np.flatnonzero(due)
    sub_amount = np.round(c.unit[sub] * c.seats[sub] * np.where(annual[sub], 10.0, 1.0), 2)
    sub_sec = rng.integers(2 * 3600, 4 * 3600, len(sub))  # nightly billing run
    n_oo = rng.poisson(np.where(c.paying, 0.06 * np.exp(0.3 * month.e), 0.015) * act)
    oo = np.repeat(np.arange(n), n_oo)
    oo_day = _uniform_day(rng, lo[oo], hi[oo])
    oo_qty = 1 + rng.poisson(0.3, len(oo))
    oo_price = np.maximum(np.round(np.exp(rng.normal(np.log(40), 0.7, len(oo)))) - 0.01, 4.99)
    oo_amount = np.round(oo_price * oo_qty, 2)
    ch_cust = np.concatenate([sub, oo])
    ch_day = np.concatenate([charge_day[sub], oo_day])
    ch_sec = np.concatenate([sub_sec, _daytime_seconds(rng, c.tz[oo])])
    ch_amount = np.concatenate([sub_amount, oo_amount])
    ch_qty = np.concatenate([c.seats[sub], oo_qty]).astype(float)
    tx.add(cust=ch_cust, day=ch_day, sec=ch_sec, amount=ch_amount, qty=ch_qty)
    refund_u = rng.random(len(ch_cust))
    ref = np.flatnonzero(refund_u < 0.02)
    partial = refund_u[ref] < 0.007
    tx.add(
        cust=ch_cust[ref],
        day=ch_day[ref] + rng.integers(1, 15, len(ref)),
        sec=_daytime_seconds(rng, np.zeros(len(ref))),
        amount=-np.round(ch_amount[ref] * np.where(partial, 0.5, 1.0), 2),
        qty=np.where(partial, np.nan, ch_qty[ref]),
    )


def _support_tickets(rng: np.random.Generator, c: _Customers, s: _State, month: _Month,
                     tk: _Rows) -> None:
    """Tickets opened this month (more when engagement dropped), their resolution time."""
    lo, hi, act = month.lo, month.hi, month.act
    n = c.n
    drop = np.maximum(0.0, -(s.x + month.story_eff))
    t_rate = (0.05 * TICKET_FACTOR[c.seg] * np.exp(0.8 * drop) + 0.1 * (month.story_k > 0)) * act
    t_rate *= np.where(act, (hi - lo) / month.ml, 0.0)
    n_t = rng.poisson(t_rate)
    t_cust = np.repeat(np.arange(n), n_t)
    t_open = _uniform_day(rng, lo[t_cust], hi[t_cust]) * 86400 + _daytime_seconds(
        rng, c.tz[t_cust]
    )
    prio = rng.choice(4, size=len(t_cust), p=PRIORITY_P)
    hours = np.exp(rng.normal(np.log(PRIORITY_MEDIAN_H[prio]), 1.0))
    hours = np.minimum(hours, 60 * 24)
    never = rng.random(len(t_cust)) < 0.05 + 0.2 * (drop[t_cust] > 1.0)
    t_close = np.where(never, -1, t_open + np.round(hours * 3600).astype(np.int64))
    tk.add(cust=t_cust, open=t_open, close=t_close, prio=prio)
    s.tk_cust = np.concatenate([s.tk_cust, t_cust])
    s.tk_open = np.concatenate([s.tk_open, t_open])
    s.tk_close = np.concatenate([s.tk_close, t_close])


def _nps_answers(rng: np.random.Generator, c: _Customers, s: _State, month: _Month,
                 open_old: np.ndarray, nps: _Rows) -> None:
    """A few customers (30+ days in, not in their break) answer the survey this month."""
    lo, hi = month.lo, month.hi
    s_lo = np.maximum(lo, c.signup + 30)
    ask = month.act & ~month.paused & (hi > s_lo) & (rng.random(c.n) < 0.07)
    s_cust = np.flatnonzero(ask)
    open_now = np.minimum(open_old[s_cust], 2)
    raw = (
        7.0
        + 1.3 * (month.e_ns[s_cust] - c.mu[s_cust])
        + 0.35 * (c.mu[s_cust] - 0.5)
        - 0.6 * open_now
        + rng.normal(0.0, 1.5, len(s_cust))
    )
    score = np.clip(np.round(raw), 0, 10).astype(np.int64)
    nps.add(
        cust=s_cust,
        day=_uniform_day(rng, s_lo[s_cust], hi[s_cust]),
        sec=_daytime_seconds(rng, c.tz[s_cust]),
        score=score,
    )
    s.last_nps[s_cust] = score


def _remember(s: _State, month: _Month) -> None:
    """History for next month's hazard: engagement of the last three months, the break."""
    s.e3 = np.where(month.started, s.e2, s.e3)
    s.e2 = np.where(month.started, s.e1, s.e2)
    s.e1 = np.where(month.started, month.e_ns, s.e1)
    s.paused_prev = month.paused


# --------------------------------------------------------------------------------------------
# frames


@functools.lru_cache(maxsize=1)
def _clock_table() -> pa.Array:
    """`HH:MM:SS` for every second of a day."""
    return pa.array([f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86400)])


_SUFFIXES = pa.array(["", "Z", "+01:00"])


def _date_table(cal: _Calendar) -> pa.Array:
    """`YYYY-MM-DD` for every day of the range (and two more, for +01:00 shifts)."""
    days = cal.start + np.arange(cal.n_days + 2).astype("timedelta64[D]")
    return pa.array(np.datetime_as_string(days, unit="D").tolist())


def _as_str(values: pa.Array) -> pd.api.extensions.ExtensionArray:
    return pd.array(values, dtype="str")


def _timestamps(
    rng: np.random.Generator, dates: pa.Array, seconds: np.ndarray, valid: np.ndarray | None = None
):
    """ISO strings for `seconds` after the first day (UTC); a few with `Z` or `+01:00`.

    Built from lookup tables with Arrow (string formatting per row is the slow part at scale).
    """
    seconds = np.asarray(seconds, dtype=np.int64)
    pick = rng.random(len(seconds))
    code = np.where(pick < OFFSET_SHARE / 2, 1, np.where(pick < OFFSET_SHARE, 2, 0))
    local = seconds + 3600 * (code == 2)
    text = pc.binary_join_element_wise(
        dates.take(pa.array(local // 86400)),
        pa.scalar("T"),
        _clock_table().take(pa.array(local % 86400)),
        _SUFFIXES.take(pa.array(code)),
        "",
    )
    if valid is not None:
        text = pc.if_else(pa.array(valid), text, pa.scalar(None, pa.string()))
    return _as_str(text)


def _take(table: pa.Array, index: np.ndarray, valid: np.ndarray | None = None):
    """`table[index]` as a string column; missing where `valid` is False."""
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    return _as_str(table.take(pa.array(np.asarray(index, dtype=np.int64), mask=mask)))


def _contacts(rng: np.random.Generator, numbers: np.ndarray) -> tuple[list, list]:
    first = rng.integers(0, len(FIRST_NAMES), len(numbers))
    last = rng.integers(0, len(LAST_NAMES), len(numbers))
    domain = np.where(rng.random(len(numbers)) < 0.7, "example.com", "example.org")
    no_name = rng.random(len(numbers)) < 0.05
    fa = [f.lower().translate(_ASCII) for f in FIRST_NAMES]
    la = [s.lower().translate(_ASCII) for s in LAST_NAMES]
    emails = [
        f"{fa[f]}.{la[s]}{num}@{d}"
        for f, s, num, d in zip(first, last, numbers, domain, strict=True)
    ]
    names = [
        None if skip else f"{FIRST_NAMES[f]} {LAST_NAMES[s]}"
        for f, s, skip in zip(first, last, no_name, strict=True)
    ]
    return emails, names


def _to_frames(
    rng: np.random.Generator,
    cal: _Calendar,
    width: int,
    customers: _Customers,
    state: _State,
    rows: dict[str, dict[str, np.ndarray]],
) -> dict[str, pd.DataFrame]:
    """The five input tables and the truth of one chunk, from the simulated rows (`rows`:
    events, transactions, tickets, nps), keeping only rows before each customer's churn day
    and inside the date range. The tables draw their random details in this order."""
    out = _FrameContext(rng, cal, state.churn_day, pa.array(format_ids(customers.gidx + 1, width)),
                        _date_table(cal))
    events = _events_frame(out, rows["events"])
    transactions = _transactions_frame(out, rows["transactions"])
    tickets, open_at_end = _tickets_frame(out, rows["tickets"], customers.n)
    nps = _nps_frame(out, rows["nps"])
    customer_frame, cancel = _customers_frame(out, customers)
    return {
        "customers": customer_frame,
        "transactions": transactions,
        "events": events,
        "tickets": tickets,
        "nps": nps,
        TRUTH_KEY: _truth_frame(out, customers, state, cancel, open_at_end),
    }


@dataclass(frozen=True)
class _FrameContext:
    """What turning one chunk's rows into frames needs: the random stream, the calendar, the
    churn days, the id strings and the date strings."""

    rng: np.random.Generator
    cal: _Calendar
    churn_day: np.ndarray
    ids: pa.Array
    dates: pa.Array

    def keep(self, rows: dict[str, np.ndarray], day: np.ndarray) -> dict[str, np.ndarray]:
        """Rows before the customer's churn day and inside the date range."""
        k = (day < self.churn_day[rows["cust"]]) & (day < self.cal.n_days)
        return {key: v[k] for key, v in rows.items()}

    def timestamps(self, seconds: np.ndarray, valid: np.ndarray | None = None):
        return _timestamps(self.rng, self.dates, seconds, valid=valid)


def _ordered(cust: np.ndarray, day: np.ndarray, sec: np.ndarray) -> np.ndarray:
    return np.lexsort((cust, day * 86400 + sec))


def _events_frame(out: _FrameContext, ev: dict[str, np.ndarray]) -> pd.DataFrame:
    ev = out.keep(ev, ev["day"])
    o = _ordered(ev["cust"], ev["day"], ev["sec"])
    return pd.DataFrame(
        {
            "customer_id": _take(out.ids, ev["cust"][o]),
            "timestamp": out.timestamps(ev["day"][o] * 86400 + ev["sec"][o]),
            "event_type": _take(_EVENT_TYPES, ev["type"][o]),
            "quantity": ev["qty"][o].astype(np.int64),
        }
    )


def _transactions_frame(out: _FrameContext, tx: dict[str, np.ndarray]) -> pd.DataFrame:
    tx = out.keep(tx, tx["day"])
    o = _ordered(tx["cust"], tx["day"], tx["sec"])
    return pd.DataFrame(
        {
            "customer_id": _take(out.ids, tx["cust"][o]),
            "timestamp": out.timestamps(tx["day"][o] * 86400 + tx["sec"][o]),
            "amount": tx["amount"][o].astype(float),
            "quantity": pd.array(tx["qty"][o], dtype="Int64"),
        }
    )


def _tickets_frame(out: _FrameContext, tk: dict[str, np.ndarray],
                   n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Tickets opened before churn; `closed_at` empty when never closed or still open at the
    end. Also the tickets open at the end per customer."""
    end_s = out.cal.n_days * 86400
    tk = out.keep(tk, tk["open"] // 86400)
    o = _ordered(tk["cust"], np.zeros(len(tk["open"]), dtype=np.int64), tk["open"])
    closed = (tk["close"][o] >= 0) & (tk["close"][o] < end_s)
    close_text = out.timestamps(np.where(closed, tk["close"][o], 0), valid=closed)
    tickets = pd.DataFrame(
        {
            "customer_id": _take(out.ids, tk["cust"][o]),
            "opened_at": out.timestamps(tk["open"][o]),
            "closed_at": close_text,
            "priority": _take(_PRIORITIES, tk["prio"][o], valid=out.rng.random(len(o)) >= 0.02),
        }
    )
    open_at_end = np.bincount(
        tk["cust"][~((tk["close"] >= 0) & (tk["close"] < end_s))], minlength=n
    )
    return tickets, open_at_end


def _nps_frame(out: _FrameContext, nps: dict[str, np.ndarray]) -> pd.DataFrame:
    nps = out.keep(nps, nps["day"])
    o = _ordered(nps["cust"], nps["day"], nps["sec"])
    return pd.DataFrame(
        {
            "customer_id": _take(out.ids, nps["cust"][o]),
            "timestamp": out.timestamps(nps["day"][o] * 86400 + nps["sec"][o]),
            "score": nps["score"][o].astype(np.int64),
        }
    )


def _customers_frame(out: _FrameContext, c: _Customers) -> tuple[pd.DataFrame, np.ndarray]:
    """The customers table (contacts, a few missing segments and countries) and who got a
    `cancel_date` (most paying churners, fewer free ones; the others churn silently)."""
    rng, n = out.rng, c.n
    churned = out.churn_day < _NEVER
    cancel = churned & (rng.random(n) < np.where(c.paying, 0.85, 0.6))
    emails, names = _contacts(rng, c.gidx + 1)
    segment = SEGMENTS[c.seg].copy()
    segment[rng.random(n) < 0.003] = None
    country_col = COUNTRIES[c.country].copy()
    country_col[rng.random(n) < 0.01] = None
    customers = pd.DataFrame(
        {
            "customer_id": _as_str(out.ids),
            "signup_date": _take(out.dates, c.signup),
            "segment": segment,
            "country": country_col,
            "email": emails,
            "name": names,
            "cancel_date": _take(out.dates, np.where(cancel, out.churn_day, 0), valid=cancel),
        }
    )
    return customers, cancel


def _truth_frame(out: _FrameContext, c: _Customers, s: _State, cancel: np.ndarray,
                 open_at_end: np.ndarray) -> pd.DataFrame:
    """The ground truth per customer (tests only; see the module docstring)."""
    cal, churn_day = out.cal, out.churn_day
    churned = churn_day < _NEVER
    month_first_day = cal.start + np.maximum(cal.month_first, 0).astype("timedelta64[D]")
    has_story = s.story_start >= 0
    return pd.DataFrame(
        {
            "customer_id": _as_str(out.ids),
            "segment": SEGMENTS[c.seg],
            "paying": c.paying,
            "billing": np.where(c.paying, np.where(c.annual, "annual", "monthly"), "none"),
            "seasonal": c.seasonal,
            "activated": s.activated,
            "converted": s.converted,
            "decline_story": has_story,
            "story_start": pd.to_datetime(
                np.where(
                    has_story, month_first_day[np.maximum(s.story_start, 0)],
                    np.datetime64("NaT")
                )
            ),
            "story_months": np.where(has_story, s.story_len, 0),
            "churned": churned,
            "churn_date": pd.to_datetime(
                np.where(
                    churned,
                    cal.start + np.where(churned, churn_day, 0).astype("timedelta64[D]"),
                    np.datetime64("NaT"),
                )
            ),
            "churn_kind": np.where(churned, np.where(cancel, "cancelled", "silent"), None),
            "open_tickets": open_at_end,
        }
    )


# --------------------------------------------------------------------------------------------
# bad rows


def _inject_bad_rows(
    frames: dict[str, pd.DataFrame],
    rng: np.random.Generator,
    n_customers: int,
    width: int,
    cal: _Calendar,
) -> dict[str, pd.DataFrame]:
    """Add the documented handful of bad rows per table at random positions."""
    customers = frames["customers"]
    # the latest signup of the chunk: its other rows are few, so a validator that drops both
    # conflicting rows of a duplicate id loses little real activity
    some_id = customers["customer_id"].iloc[-1]
    exact_copy = customers.iloc[[len(customers) // 3]]
    unknown = [str(n_customers + 100 + i).zfill(width) for i in range(8)]
    extra = [str(n_customers + 200 + i).zfill(width) for i in range(4)]
    mid = str(cal.start + np.timedelta64(cal.n_days // 2, "D"))
    ts = f"{mid}T12:00:00"

    bad = {
        "customers": pd.DataFrame(
            {
                "customer_id": [some_id, None, extra[0], extra[1], extra[2], extra[3]],
                "signup_date": [mid, mid, "2025-02-30", "not a date", None, mid],
                "segment": ["pro", "basic", "basic", "trial", "pro", "basic"],
                "country": ["US", "DE", "GB", "FR", "US", "NL"],
                "email": [
                    f"dup{some_id}@example.com",
                    "missing.id@example.org",
                    "bad.date1@example.com",
                    "bad.date2@example.com",
                    "no.date@example.org",
                    "bad.cancel@example.com",
                ],
                "name": ["Dup Licate", "Miss Ing", "Bad Date", "Bad Date", "No Date", "Bad Cancel"],
                "cancel_date": [None, None, None, None, None, "31/12/2025"],
            }
        ),
        "customers_copy": exact_copy,
        "transactions": pd.DataFrame(
            {
                "customer_id": [
                    unknown[0],
                    unknown[1],
                    unknown[2],
                    None,
                    None,
                    some_id,
                    some_id,
                    some_id,
                    some_id,
                    some_id,
                ],
                "timestamp": [ts, ts, ts, ts, ts, "2025-13-01T10:00:00", "yesterday", ts, ts, ts],
                "amount": [29.0, 79.0, -29.0, 45.0, 12.5, 29.0, 29.0, "abc", "12,50", None],
                "quantity": pd.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype="Int64"),
            }
        ),
        "events": pd.DataFrame(
            {
                "customer_id": [
                    unknown[3],
                    unknown[4],
                    unknown[5],
                    None,
                    None,
                    some_id,
                    some_id,
                    some_id,
                    some_id,
                ],
                "timestamp": [
                    ts,
                    ts,
                    ts,
                    ts,
                    ts,
                    "2025-06-31T08:00:00",
                    "31.12.2025 10:00",
                    "",
                    ts,
                ],
                "event_type": [
                    "login",
                    "export",
                    "login",
                    "login",
                    "view_report",
                    "login",
                    "login",
                    "key_action",
                    None,
                ],
                "quantity": [1, 2, 1, 1, 3, 1, 1, 1, 1],
            }
        ),
        "tickets": pd.DataFrame(
            {
                "customer_id": [unknown[6], unknown[7], None, some_id, some_id, some_id],
                "opened_at": [ts, ts, ts, "2025-02-29T09:00:00", "soon", ts],
                "closed_at": [None, ts, None, None, None, "never"],
                "priority": ["high", "low", "normal", "urgent", "normal", "low"],
            }
        ),
        "nps": pd.DataFrame(
            {
                "customer_id": [some_id, some_id, some_id, None, unknown[0], unknown[3], some_id],
                "timestamp": [ts, ts, ts, ts, ts, ts, "2025-04-31T12:00:00"],
                "score": [11, 11, -1, 8, 9, 3, 7],
            }
        ),
    }
    bad["customers"] = pd.concat([bad["customers"], bad.pop("customers_copy")], ignore_index=True)
    out = dict(frames)
    for name, rows in bad.items():
        assert len(rows) == BAD_ROW_COUNTS[name]
        clean = frames[name]
        n_clean = len(clean)
        if name == "transactions":
            clean = clean.astype({"amount": object})
        rows = rows[clean.columns].astype(clean.dtypes.to_dict())
        combined = pd.concat([clean, rows], ignore_index=True)
        key = np.concatenate(
            [2 * np.arange(n_clean), 2 * rng.integers(0, max(n_clean, 1), len(rows)) + 1]
        )
        out[name] = combined.iloc[np.argsort(key, kind="stable")].reset_index(drop=True)
    return out


# --------------------------------------------------------------------------------------------
# simulated outreach (opt-in: generate.outreach_weeks > 0)

OUTREACH_KEY = "_outreach"  # per assignment: arm, true potential outcomes, covariates (tests only)
OUTREACH_STREAM = 2**30  # spawn key of the outreach random stream (the main stream is untouched)
INTERVENTION_COLUMNS = ["customer_id", "timestamp", "action", "channel", "cost"]
# action -> (channel, cost of one contact)
OUTREACH_CHANNELS = {
    "Onboarding call": ("phone", 25.0),
    "Reactivation campaign": ("email", 0.5),
    "Discount offer": ("email", 12.0),
}
# (action, subgroup) -> (kind, rate). rescue q: a contacted customer who would have left (no
# activity in the window) stays with probability q; harm h: a contacted customer who would have
# stayed leaves the day after the list with probability h.
TRUE_EFFECTS: dict[tuple[str, str], tuple[str, float]] = {
    ("Onboarding call", "idle trial"): ("rescue", 0.35),
    ("Onboarding call", "trial in use"): ("rescue", 0.05),
    ("Reactivation campaign", "inactive 30-59 days"): ("rescue", 0.20),
    ("Reactivation campaign", "inactive 60+ days"): ("rescue", 0.02),  # the riskiest, hardly helped
    ("Discount offer", "open ticket"): ("harm", 0.30),  # a promotion while a problem is open
    ("Discount offer", "small plan"): ("rescue", 0.30),  # trial/basic: price-sensitive
    ("Discount offer", "large plan"): ("rescue", 0.0),  # pro/enterprise: a discount changes nothing
}
OUTREACH_COVARIATES = (
    "segment_code", "tenure_days", "days_since_activity", "open_tickets", "events_30d",
    "events_prev_30d", "revenue_90d", "paying", "trial_activated",
)


@dataclass(frozen=True)
class OutreachSettings:
    """Weekly outreach by a simulated customer-success team (`generate.outreach_*` params).

    `weeks` lists, 7 days apart, the last one `horizon_days` before `end_date` (so every list's
    window has passed by the end). Each list holds every customer not listed before who signed
    up at least 14 days earlier, was active in the 90 days before the list day and shows a sign
    (first that matches): an open ticket -> "Discount offer" (subgroup "open ticket"); a trial
    not yet paying, 14-119 days old, not activated or idle for 14+ days -> "Onboarding call"
    ("idle trial" when idle for 7+ days, else "trial in use"); no activity for 30+ days ->
    "Reactivation campaign" ("inactive 30-59 days"/"inactive 60+ days"); events in the last 30
    days below half of the 30 before (at least 6 before) -> "Discount offer" ("small plan" for
    trial/basic, else "large plan"). A share `holdout_share` is the control group (not
    contacted); the others get one `interventions` row (1-3 days after the list, with the
    action's channel and cost) and the true effect `TRUE_EFFECTS` of their action and subgroup.
    A customer is listed at most once.
    """

    weeks: int = DEFAULTS.generate.outreach_weeks
    horizon_days: int = DEFAULTS.generate.outreach_horizon_days
    holdout_share: float = DEFAULTS.generate.outreach_holdout_share

    def check(self, cal: _Calendar) -> None:
        if not 0.0 < float(self.holdout_share) < 1.0:
            raise ChurnlensError("generate: outreach_holdout_share must be in (0, 1)")
        if int(self.horizon_days) < 7:
            raise ChurnlensError("generate: outreach_horizon_days must be >= 7")
        if self.list_days(cal)[0] < 120:
            raise ChurnlensError(
                "generate: outreach_weeks/outreach_horizon_days leave less than 120 days of "
                "history before the first list")

    def list_days(self, cal: _Calendar) -> np.ndarray:
        last = cal.n_days - 1 - int(self.horizon_days)
        return last - 7 * np.arange(int(self.weeks) - 1, -1, -1)


@dataclass
class _Outreach:
    churn_day: np.ndarray
    events: dict[str, np.ndarray]
    assigned: dict[str, np.ndarray]  # one entry per assignment (local customer index `cust`)
    contact_day: np.ndarray  # per assignment (meaningful for the treated)
    contact_sec: np.ndarray


def _simulate_outreach(rng: np.random.Generator, settings: OutreachSettings, cal: _Calendar,
                       customers: _Customers, state: _State, ev: dict[str, np.ndarray],
                       tx: dict[str, np.ndarray], tk: dict[str, np.ndarray]) -> _Outreach:
    """Weekly lists, control groups and their true effects on one chunk (see `OutreachSettings`).

    Y0 (no contact) is the simulated activity in (list day, list day + horizon]; Y1 follows
    from Y0 and one uniform draw per assignment by the action's rescue/harm rate; contacted
    customers get Y1: a rescued one gets logins through the window (and leaves after it), a
    harmed one leaves the day after the list."""
    seen = _Seen.of(cal, state.churn_day, ev, tx, tk)
    assigned = _weekly_lists(rng, settings, cal, customers, state.activated, seen)
    _potential_outcomes(rng, assigned, seen, customers.n, int(settings.horizon_days))
    cust, day = assigned["cust"], assigned["day"]
    contact_day = day + rng.integers(1, 4, len(cust))
    contact_sec = _daytime_seconds(rng, customers.tz[cust])
    churn_day, events = _contacted_get_y1(rng, cal, customers.tz, state.churn_day, assigned, ev,
                                          int(settings.horizon_days))
    return _Outreach(churn_day, events, assigned, contact_day, contact_sec)


@dataclass(frozen=True)
class _Seen:
    """The chunk's rows as they end up in the tables (before churn, inside the date range):
    what the simulated team can see."""

    act_cust: np.ndarray  # events and transactions
    act_day: np.ndarray
    ev_cust: np.ndarray
    ev_day: np.ndarray
    tx_cust: np.ndarray
    tx_day: np.ndarray
    tx_amount: np.ndarray
    tk_cust: np.ndarray
    tk_open: np.ndarray
    tk_close: np.ndarray

    @classmethod
    def of(cls, cal: _Calendar, churn_day: np.ndarray, ev: dict[str, np.ndarray],
           tx: dict[str, np.ndarray], tk: dict[str, np.ndarray]) -> _Seen:
        def kept(rows: dict[str, np.ndarray], day: np.ndarray) -> np.ndarray:
            return (day < churn_day[rows["cust"]]) & (day < cal.n_days)

        ev_keep = kept(ev, ev["day"])
        tx_keep = kept(tx, tx["day"])
        tk_keep = (tk["open"] // 86400) < churn_day[tk["cust"]]
        return cls(
            act_cust=np.concatenate([ev["cust"][ev_keep], tx["cust"][tx_keep]]),
            act_day=np.concatenate([ev["day"][ev_keep], tx["day"][tx_keep]]),
            ev_cust=ev["cust"][ev_keep], ev_day=ev["day"][ev_keep],
            tx_cust=tx["cust"][tx_keep], tx_day=tx["day"][tx_keep],
            tx_amount=tx["amount"][tx_keep].astype(float),
            tk_cust=tk["cust"][tk_keep], tk_open=tk["open"][tk_keep],
            tk_close=tk["close"][tk_keep],
        )


def _weekly_lists(rng: np.random.Generator, settings: OutreachSettings, cal: _Calendar,
                  c: _Customers, activated: np.ndarray, seen: _Seen) -> dict[str, np.ndarray]:
    """Each list day's new customers with a sign, their action, subgroup, arm (control with
    probability `holdout_share`) and covariates; one entry per assignment."""
    signup, seg, n = c.signup, c.seg, c.n
    listed = np.zeros(n, dtype=bool)
    rows: dict[str, list] = {k: [] for k in ("cust", "day", "holdout", "action", "subgroup",
                                            *OUTREACH_COVARIATES)}
    for a in settings.list_days(cal):
        a = int(a)
        last = np.full(n, -1, dtype=np.int64)
        before = seen.act_day <= a
        np.maximum.at(last, seen.act_cust[before], seen.act_day[before])
        since = np.where(last >= 0, a - last, 10**6)
        tenure = a - signup
        eligible = ~listed & (tenure >= 14) & (since < 90)
        end_s = (a + 1) * 86400
        open_now = (seen.tk_open < end_s) & ((seen.tk_close < 0) | (seen.tk_close >= end_s))
        open_tickets = np.bincount(seen.tk_cust[open_now], minlength=n)
        ev_cust, ev_day = seen.ev_cust, seen.ev_day
        ev30 = np.bincount(ev_cust[(ev_day > a - 30) & (ev_day <= a)], minlength=n)
        ev_prev = np.bincount(ev_cust[(ev_day > a - 60) & (ev_day <= a - 30)], minlength=n)
        in90 = (seen.tx_day > a - 90) & (seen.tx_day <= a)
        revenue = np.bincount(seen.tx_cust[in90], weights=seen.tx_amount[in90], minlength=n)
        paying = c.paying_from <= a
        trial = (seg == 0) & ~paying & (tenure < 120) & (~activated | (since >= 14))
        decline = (ev_prev >= 6) & (ev30 < 0.5 * ev_prev)
        action = np.full(n, "", dtype=object)
        subgroup = np.full(n, "", dtype=object)
        for mask, name, sub in (
            (open_tickets > 0, "Discount offer", np.full(n, "open ticket", dtype=object)),
            (trial, "Onboarding call", np.where(since >= 7, "idle trial", "trial in use")),
            (since >= 30, "Reactivation campaign",
             np.where(since >= 60, "inactive 60+ days", "inactive 30-59 days")),
            (decline, "Discount offer", np.where(seg <= 1, "small plan", "large plan")),
        ):
            pick = eligible & mask & (action == "")
            action[pick], subgroup[pick] = name, sub[pick]
        ids = np.flatnonzero(eligible & (action != ""))
        listed[ids] = True
        rows["cust"].append(ids)
        rows["day"].append(np.full(len(ids), a, dtype=np.int64))
        rows["holdout"].append(rng.random(len(ids)) < settings.holdout_share)
        rows["action"].append(action[ids])
        rows["subgroup"].append(subgroup[ids])
        covariates = {
            "segment_code": seg, "tenure_days": tenure, "days_since_activity": since,
            "open_tickets": open_tickets, "events_30d": ev30, "events_prev_30d": ev_prev,
            "revenue_90d": revenue, "paying": paying,
            "trial_activated": activated & ((seg != 0) | (tenure >= 14)),
        }
        for key, values in covariates.items():
            rows[key].append(np.asarray(values)[ids])
    assigned = {k: np.concatenate(v) if v else np.array([]) for k, v in rows.items()}
    assigned["cust"] = assigned["cust"].astype(np.int64)
    assigned["day"] = assigned["day"].astype(np.int64)
    return assigned


def _potential_outcomes(rng: np.random.Generator, assigned: dict[str, np.ndarray], seen: _Seen,
                        n: int, H: int) -> None:
    """Add Y0 (activity in the window without contact), Y1 (by the action's true effect), the
    outcome of the arm (`retained`) and `tau` = Y1 - Y0 to `assigned`."""
    cust, day = assigned["cust"], assigned["day"]
    list_day = np.full(n, -(10**6), dtype=np.int64)
    list_day[cust] = day
    d = list_day[seen.act_cust]
    hit = (seen.act_day > d) & (seen.act_day <= d + H)
    y0 = (np.bincount(seen.act_cust[hit], minlength=n) > 0)[cust]
    kinds = [TRUE_EFFECTS[(a, s)] for a, s in zip(assigned["action"], assigned["subgroup"],
                                                     strict=True)]
    rescue = np.array([k == "rescue" for k, _ in kinds], dtype=bool)
    rate = np.array([r for _, r in kinds], dtype=float)
    u = rng.random(len(cust))
    y1 = np.where(rescue, y0 | (u < rate), y0 & ~(u < rate))
    treated = ~assigned["holdout"].astype(bool)
    assigned.update(y0=y0, y1=y1, retained=np.where(treated, y1, y0),
                    tau=y1.astype(np.int64) - y0.astype(np.int64))


def _contacted_get_y1(rng: np.random.Generator, cal: _Calendar, tz: np.ndarray,
                      churn_day: np.ndarray, assigned: dict[str, np.ndarray],
                      ev: dict[str, np.ndarray], H: int) -> tuple[np.ndarray, dict]:
    """Churn days and events after contact: a rescued customer gets a login a week through
    the window (and leaves after it), a harmed one leaves the day after the list."""
    T = cal.n_days
    churn_day = churn_day.copy()
    cust, day = assigned["cust"], assigned["day"]
    treated = ~assigned["holdout"].astype(bool)
    y0, y1 = assigned["y0"], assigned["y1"]
    saved = treated & (y1 & ~y0)
    lost = treated & (y0 & ~y1)
    new_ev = {k: [v] for k, v in ev.items()}
    for i in np.flatnonzero(saved):
        c, a = cust[i], day[i]
        days = a + 1 + rng.integers(0, 7) + np.arange(0, H, 7)
        days = days[days <= min(a + H, T - 1)]
        if len(days) == 0:
            days = np.array([a + 1])
        new_ev["cust"].append(np.full(len(days), c))
        new_ev["day"].append(days)
        new_ev["sec"].append(_daytime_seconds(rng, np.full(len(days), tz[c])))
        new_ev["type"].append(np.zeros(len(days), dtype=np.int64))
        new_ev["qty"].append(np.ones(len(days), dtype=np.int64))
        later = max(int(churn_day[c]), a + H + 1)
        churn_day[c] = later if later < T else _NEVER
    churn_day[cust[lost]] = np.minimum(churn_day[cust[lost]], day[lost] + 1)
    events = {k: np.concatenate(v) for k, v in new_ev.items()}
    return churn_day, events


def _outreach_frames(rng, sim: _Outreach, cal: _Calendar, width: int,
                     gidx: np.ndarray) -> dict[str, pd.DataFrame]:
    """The `interventions` table (one row per contacted customer) and the `OUTREACH_KEY` truth."""
    a = sim.assigned
    ids = np.array(format_ids(gidx + 1, width), dtype=object)
    dates = _date_table(cal)
    treated = ~a["holdout"].astype(bool)
    order = np.lexsort((a["cust"][treated], sim.contact_day[treated] * 86400
                        + sim.contact_sec[treated]))
    t_cust = a["cust"][treated][order]
    t_action = a["action"][treated][order]
    seconds = (sim.contact_day[treated] * 86400 + sim.contact_sec[treated])[order]
    interventions = pd.DataFrame({
        "customer_id": _as_str(pa.array(list(ids[t_cust]), type=pa.string())),
        "timestamp": _timestamps(rng, dates, seconds),
        "action": t_action.astype(object),
        "channel": np.array([OUTREACH_CHANNELS[x][0] for x in t_action], dtype=object),
        "cost": np.array([OUTREACH_CHANNELS[x][1] for x in t_action], dtype=float),
    }, columns=INTERVENTION_COLUMNS)
    truth = pd.DataFrame({
        "list_date": np.datetime_as_string(
            cal.start + a["day"].astype("timedelta64[D]"), unit="D").astype(object),
        "customer_id": ids[a["cust"]],
        "holdout": a["holdout"].astype(bool),
        "treated": treated,
        "action": a["action"].astype(object),
        "subgroup": a["subgroup"].astype(object),
        "y0": a["y0"].astype(bool), "y1": a["y1"].astype(bool),
        "retained": a["retained"].astype(bool), "tau": a["tau"].astype(np.int64),
        **{k: a[k] for k in OUTREACH_COVARIATES},
    })
    truth["value"] = np.round(truth["revenue_90d"].astype(float), 2)
    return {"interventions": interventions, OUTREACH_KEY: truth}


def true_effects(truth: pd.DataFrame, settings: OutreachSettings) -> dict:
    """The simulated truth for `true_effects.json`: the rates (`TRUE_EFFECTS`) and, per action
    and per action x subgroup, the assigned customers and the true effect on retention, the mean
    of Y1 - Y0 over them (treated and control alike: what a perfect experiment would measure)."""
    def row(frame: pd.DataFrame, action: str, subgroup: str) -> dict:
        return {"action": action, "subgroup": subgroup, "assigned": len(frame),
                "treated": int(frame["treated"].sum()), "control": int(frame["holdout"].sum()),
                "retention_without_contact": round(float(frame["y0"].mean()), 4),
                "effect": round(float(frame["tau"].mean()), 4)}

    effects = []
    for action, group in truth.groupby("action", sort=True):
        effects.append(row(group, action, "all"))
        for sub, part in group.groupby("subgroup", sort=True):
            effects.append(row(part, action, sub))
    return {
        "weeks": int(settings.weeks), "horizon_days": int(settings.horizon_days),
        "holdout_share": float(settings.holdout_share),
        "list_dates": sorted(truth["list_date"].unique().tolist()),
        "label_definition": "inactivity",
        "rates": [{"action": a, "subgroup": s, "kind": k, "rate": r}
                  for (a, s), (k, r) in TRUE_EFFECTS.items()],
        "effects": effects,
    }
