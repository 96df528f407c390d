"""Hand-made validated (interim) tables for the feature tests on both engines.

A plain module (no fixtures): `write_interim` writes TABLE.parquet files in the validated-table
schemas; CUSTOMERS .. NPS are the 3(+1)-customer example whose features are computed by hand in
`test_features.py`; `random_tables` makes small random histories for the property tests. The
fixtures built on them (`fixture_paths`, `con`, `spark`) live in `conftest.py`.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from churnlens.features import interim_paths

WINDOWS = (7, 30, 90, 180)

SCHEMAS = {
    "customers": pa.schema([("customer_id", pa.string()), ("signup_date", pa.date32()),
                            ("segment", pa.string()), ("country", pa.string()),
                            ("cancel_date", pa.date32())]),
    "transactions": pa.schema([("customer_id", pa.string()), ("timestamp", pa.timestamp("us")),
                               ("amount", pa.float64()), ("quantity", pa.int64())]),
    "events": pa.schema([("customer_id", pa.string()), ("timestamp", pa.timestamp("us")),
                         ("event_type", pa.string()), ("quantity", pa.float64())]),
    "tickets": pa.schema([("customer_id", pa.string()), ("opened_at", pa.timestamp("us")),
                          ("closed_at", pa.timestamp("us")), ("priority", pa.string())]),
    "nps": pa.schema([("customer_id", pa.string()), ("timestamp", pa.timestamp("us")),
                      ("score", pa.int64())]),
}


def D(s: str) -> date:
    return date.fromisoformat(s)


def TS(s: str) -> datetime:
    return datetime.fromisoformat(s if len(s) > 10 else s + " 12:00")


def write_interim(folder: Path, skip: tuple[str, ...] = (), **tables: list[tuple]) -> dict:
    """Write TABLE.parquet for the five tables (rows as tuples in schema order; absent = 0 rows)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in SCHEMAS.items():
        if name in skip:
            continue
        rows = tables.get(name, [])
        columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
        arrays = [pa.array(list(col), type=f.type)
                  for col, f in zip(columns, schema, strict=True)]
        table = pa.table(arrays, schema=schema)
        pq.write_table(table, folder / f"{name}.parquet")
    return interim_paths(folder)


# --- the 3(+1)-customer fixture ------------------------------------------------------------------
T1, T2, AS_OF = D("2025-03-31"), D("2025-04-30"), D("2025-07-29")   # T1 + 90 = 2025-06-29

CUSTOMERS = [
    ("c1", D("2025-01-01"), "Trial", "DE", None),
    ("c2", D("2025-02-15"), None, None, D("2025-05-10")),
    ("c3", D("2025-04-20"), "pro", "FR", None),         # signs up between T1 and T2
    ("c4", D("2024-12-01"), "basic", None, D("2025-03-31")),  # cancelled on T1
]
EVENTS = [
    ("c1", TS("2025-01-03 09:00"), "login", 1.0),
    ("c1", TS("2025-01-10"), "feature_x", 2.0),
    ("c1", TS("2025-03-25"), "login", 1.0),
    ("c1", TS("2025-03-31 23:59:59"), "feature_x", 4.0),  # end of T1: visible at T1
    ("c1", TS("2025-06-29 08:00"), "login", 1.0),        # exactly T1 + horizon
    ("c2", TS("2025-02-20"), "login", 1.0),
    ("c2", TS("2025-03-31 10:00"), "login", 1.0),        # on T1: not future activity at T1
    ("c3", TS("2025-04-21"), "login", 1.0),
]
TRANSACTIONS = [
    ("c1", TS("2025-01-05"), 50.0, 1),
    ("c1", TS("2025-03-10"), -10.0, None),
    ("c1", TS("2025-03-28"), 30.0, 2),
    ("c2", TS("2025-03-01"), 20.0, 1),                    # exactly T1 - 30: outside 30d window
    ("c3", TS("2025-04-25"), 15.0, 1),
]
TICKETS = [
    ("c1", TS("2025-03-01"), TS("2025-03-05"), "low"),
    ("c1", TS("2025-03-20"), TS("2025-04-10"), "high"),  # open at T1, closed at T2
    ("c2", TS("2025-04-28"), None, None),                # open at T2
]
NPS = [
    ("c1", TS("2025-02-01"), 9),
    ("c1", TS("2025-04-15"), 3),
    ("c2", TS("2025-04-01"), 6),
]



BASE = D("2025-01-01")
TYPES = ("login", "report", "export")


def random_tables(rng: random.Random, n_customers: int = 5, n_rows: int = 25, days: int = 240):
    def day(lo=0, hi=days):
        return BASE + timedelta(days=rng.randint(lo, hi))

    def ts(lo=0, hi=days):
        return datetime.combine(day(lo, hi), datetime.min.time()) + timedelta(
            seconds=rng.randint(0, 86399))

    ids = [f"{i:03d}" for i in range(n_customers)]
    customers = []
    for cid in ids:
        signup = day(0, days // 2)
        cancel = day((signup - BASE).days + 1, days + 30) if rng.random() < 0.3 else None
        customers.append((cid, signup, rng.choice(["trial", "pro", None]), None, cancel))
    events = [(rng.choice(ids), ts(), rng.choice(TYPES), float(rng.randint(1, 3)))
              for _ in range(n_rows)]
    transactions = [(rng.choice(ids), ts(), rng.choice([-5.0, 10.0, 20.0]), 1)
                    for _ in range(n_rows // 2)]
    tickets = []
    for _ in range(4):
        opened = ts()
        closed = opened + timedelta(days=rng.randint(0, 60)) if rng.random() < 0.6 else None
        tickets.append((rng.choice(ids), opened, closed, None))
    nps = [(rng.choice(ids), ts(), rng.randint(0, 10)) for _ in range(4)]
    return dict(customers=customers, events=events, transactions=transactions, tickets=tickets,
                nps=nps)
