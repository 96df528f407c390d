"""Retention KPIs on a hand-computed fixture, both label definitions, and the edge cases.

Fixture: as_of 2024-04-30, period_days 10, horizon_days 15.
  current period  = 04-21..04-30 (customers_start counted at the end of 04-20)
  previous period = 04-11..04-20 (start: end of 04-10); the one before = 04-01..04-10
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from churnlens import kpis as K
from churnlens.io import write_json

AS_OF = "2024-04-30"
P, H = 10, 15
# annualisation of a 10-day churn rate c: 1 - (1 - c) ** 36.5
ANNUAL = {c: 1 - (1 - c) ** (365 / P) for c in (0.25, 1 / 3, 0.5)}


def customers() -> pd.DataFrame:
    rows = [
        # id, signup, segment, cancel
        ("A", "2024-01-10", "pro", None),
        ("B", "2024-02-05", "basic", "2024-04-25"),
        ("C", "2024-04-15", "basic", None),
        ("D", "2024-04-22", "pro", None),
        ("E", "2024-04-24", None, "2024-04-28"),
        ("F", "2024-03-01", "pro", "2024-04-12"),
        ("G", "2024-05-05", "basic", None),  # signs up after as_of: counted nowhere
        ("H", "2024-04-01", "basic", None),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "signup_date", "segment", "cancel_date"])
    for col in ("signup_date", "cancel_date"):
        df[col] = pd.to_datetime(df[col]).dt.date
    return df


def transactions() -> pd.DataFrame:
    rows = [
        ("A", "2023-01-15 12:00", 200.0),  # before A's signup and outside both 365-day windows
        ("A", "2024-04-05 09:00", 100.0),  # period before previous
        ("A", "2024-04-15 09:00", 100.0),  # previous
        ("A", "2024-04-22 09:00", 80.0),  # current
        ("A", "2024-04-25 23:59", 50.0),  # current
        ("B", "2024-04-08 10:00", 60.0),  # period before previous
        ("B", "2024-04-12 10:00", 50.0),  # previous
        ("B", "2024-04-18 10:00", -10.0),  # previous, refund (not a purchase)
        ("C", "2024-04-16 10:00", 30.0),  # previous
        ("C", "2024-04-23 10:00", 45.0),  # current
        ("D", "2024-04-26 10:00", 70.0),  # current
        ("D", "2024-04-27 10:00", 20.0),  # current
        ("F", "2024-04-02 10:00", 25.0),  # period before previous
        ("Z", "2024-04-25 10:00", 999.0),  # unknown customer: ignored
        ("A", "2024-05-02 10:00", 999.0),  # after as_of: invisible
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["quantity"] = pd.array([1] * len(df), dtype="Int64")
    return df


def events() -> pd.DataFrame:
    days = {
        # A: 01-05 is before signup (ignored); gaps <= 15 days, 02-15 -> 03-01 is exactly 15
        "A": ["2024-01-05", "2024-01-20", "2024-02-01", "2024-02-15", "2024-03-01",
              "2024-03-15", "2024-03-28"],
        "B": ["2024-02-10", "2024-02-20", "2024-03-01"],  # then nothing until 04-08
        "F": ["2024-03-10", "2024-03-20", "2024-03-30"],  # then tx 04-02, nothing after
        "H": ["2024-04-07"],
    }
    rows = [(cid, pd.Timestamp(d) + pd.Timedelta(hours=8), "login", 1.0)
            for cid, ds in days.items() for d in ds]
    return pd.DataFrame(rows, columns=["customer_id", "timestamp", "event_type", "quantity"])


def nps() -> pd.DataFrame:
    rows = [
        ("A", "2024-04-12 10:00", 9),  # previous: promoter
        ("C", "2024-04-19 10:00", 3),  # previous: detractor
        ("A", "2024-04-22 10:00", 10),  # current, superseded by A's later answer
        ("A", "2024-04-28 10:00", 6),  # current: A's latest -> detractor
        ("B", "2024-04-24 10:00", 9),  # promoter
        ("C", "2024-04-25 10:00", 8),  # passive
        ("D", "2024-04-29 10:00", 10),  # promoter
        ("Z", "2024-04-25 10:00", 0),  # unknown customer: ignored
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "timestamp", "score"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["score"] = df["score"].astype("Int64")
    return df


def report(definition="cancellation", **overrides):
    args = dict(customers=customers(), transactions=transactions(), events=events(), nps=nps())
    args.update(overrides)
    rep, trend = K.compute_kpis(
        args["customers"], args["transactions"], args["events"], args["nps"],
        as_of=AS_OF, period_days=P, definition=definition, horizon_days=H, crr_target=0.85,
    )
    return rep, trend


def panel(definition="cancellation", **overrides):
    args = dict(customers=customers(), transactions=transactions(), events=events(), nps=nps())
    args.update(overrides)
    return K.build_panel(args["customers"], args["transactions"], args["events"], args["nps"],
                         as_of=AS_OF, period_days=P, definition=definition, horizon_days=H)


# --------------------------------------------------------------------------- cancellation


def test_cancellation_current_period_by_hand():
    rep, _ = report("cancellation")
    assert rep["period"] == {"start": "2024-04-21", "end": "2024-04-30", "days": 10}
    cur = rep["current"]
    # at end of 04-20: A, B (cancels 04-25), C, H  (F cancelled 04-12; D, E, G later)
    assert cur["customers_start"] == 4
    # at end of 04-30: A, C, D, H  (B, E cancelled)
    assert cur["customers_end"] == 4
    assert cur["new"] == 2  # D, E
    assert cur["lost"] == 2  # B (from start), E (new, cancelled 04-28)
    assert cur["lost_from_start"] == 1
    assert cur["returned"] == 0
    assert cur["customers_end"] == cur["customers_start"] + cur["new"] - cur["lost"]
    assert cur["crr"] == pytest.approx((4 - 2) / 4)  # 0.5
    assert cur["churn_rate"] == pytest.approx(1 / 4)  # B only
    # start customers' revenue: current A 130 + B 0 + C 45 + H 0 = 175;
    # previous A 100 + B (50 - 10) + C 30 + H 0 = 170
    assert cur["ndr"] == pytest.approx(175 / 170, abs=1e-6)
    # capped: min(130,100) + min(0,40) + min(45,30) + 0 = 130
    assert cur["grr"] == pytest.approx(130 / 170, abs=1e-6)
    assert cur["revenue"] == pytest.approx(130 + 45 + 90)  # A, C, D; Z ignored
    # purchases in period: A 2, C 1, D 2 -> 2 repeaters / 3 buyers
    assert cur["rpr"] == pytest.approx(2 / 3, abs=1e-6)
    # last 365 days (2023-05-01..2024-04-30): net revenue A 330, B 100, C 75, D 90, F 25 = 620
    # in 11 purchases by 5 buyers -> 620/11 * 11/5 = 124 per buyer-year; churn 0.25
    assert cur["clv"] == pytest.approx(124 / ANNUAL[0.25], abs=0.01)
    # latest answers: A 6 (detractor), B 9, C 8, D 10 -> (2 - 1) / 4
    assert cur["nps"] == pytest.approx(25.0)
    assert rep["targets"] == {"crr": 0.85, "crr_met": False}


def test_cancellation_previous_period_by_hand():
    prev = report("cancellation")[0]["previous"]
    # at end of 04-10: A, B, F, H; at end of 04-20: A, B, C, H
    assert (prev["customers_start"], prev["customers_end"], prev["new"], prev["lost"]) == (
        4, 4, 1, 1)
    assert prev["crr"] == pytest.approx(3 / 4)
    assert prev["churn_rate"] == pytest.approx(1 / 4)  # F
    # A 100 + B 40 + F 0 = 140 over A 100 + B 60 + F 25 = 185; capped: 100 + 40 + 0
    assert prev["ndr"] == pytest.approx(140 / 185, abs=1e-6)
    assert prev["grr"] == pytest.approx(140 / 185, abs=1e-6)
    assert prev["rpr"] == pytest.approx(0.0)  # A, B, C one purchase each (B's refund no purchase)
    # 2023-04-21..2024-04-20: A 200, B 100, C 30, F 25 = 355 in 6 purchases by 4 buyers
    assert prev["clv"] == pytest.approx(355 / 4 / ANNUAL[0.25], abs=0.01)
    assert prev["nps"] == pytest.approx(0.0)  # A 9, C 3
    assert prev["revenue"] == pytest.approx(170.0)


def test_cancellation_by_segment():
    rep, _ = report("cancellation")
    seg = rep["by_segment"]
    assert set(seg) == {"pro", "basic", "unknown"}  # E has no segment
    pro = seg["pro"]  # A, D, F
    assert (pro["customers_start"], pro["customers_end"], pro["new"], pro["lost"]) == (1, 2, 1, 0)
    assert pro["crr"] == 1.0 and pro["churn_rate"] == 0.0
    assert pro["ndr"] == pytest.approx(1.3) and pro["grr"] == pytest.approx(1.0)  # A 130 / 100
    assert pro["rpr"] == 1.0
    assert pro["clv"] is None
    assert rep["notes"]["by_segment.pro.clv"] == K.REASON_ZERO_CHURN
    assert pro["nps"] == 0.0  # A 6, D 10
    basic = seg["basic"]  # B, C, G, H
    assert (basic["customers_start"], basic["customers_end"], basic["new"], basic["lost"]) == (
        3, 2, 0, 1)
    assert basic["crr"] == pytest.approx(2 / 3, abs=1e-6)
    assert basic["ndr"] == pytest.approx(45 / 70, abs=1e-6)  # B 0 + C 45 + H 0 over 40 + 30
    assert basic["grr"] == pytest.approx(30 / 70, abs=1e-6)
    assert basic["rpr"] == 0.0
    # B 100 + C 75 = 175 by 2 buyers -> 87.5 per buyer-year; churn 1/3
    assert basic["clv"] == pytest.approx(87.5 / ANNUAL[1 / 3], abs=0.01)
    assert basic["nps"] == 50.0  # B 9, C 8
    unknown = seg["unknown"]  # E
    assert (unknown["customers_start"], unknown["new"], unknown["lost"]) == (0, 1, 1)
    for kpi in ("crr", "churn_rate", "ndr", "grr", "rpr", "clv", "nps"):
        assert unknown[kpi] is None
        assert f"by_segment.unknown.{kpi}" in rep["notes"]
    assert rep["notes"]["by_segment.unknown.nps"] == K.REASON_NO_NPS_ANSWERS
    # segments add up to the total
    for key in ("customers_start", "customers_end", "new", "lost"):
        assert sum(s[key] for s in seg.values()) == rep["current"][key]


def test_cancellation_cohorts():
    rep, _ = report("cancellation")
    assert rep["cohorts"] == [
        {"cohort": "2024-01", "size": 1, "retention": [1.0, 1.0, 1.0, 1.0]},  # A
        {"cohort": "2024-02", "size": 1, "retention": [1.0, 1.0, 0.0]},  # B cancels 04-25
        {"cohort": "2024-03", "size": 1, "retention": [1.0, 0.0]},  # F cancels 04-12
        {"cohort": "2024-04", "size": 4, "retention": [0.75]},  # C, D, E (gone), H
    ]  # 2024-05 (G) ends after as_of: not a cohort yet


# --------------------------------------------------------------------------- inactivity


def test_inactivity_status_at_boundaries():
    pan = panel("inactivity")
    days = ("2024-03-31", "2024-04-20", "2024-04-30")
    at = {day: K.status_at(pan, day).to_dict() for day in days}
    assert all(at[d]["A"] for d in at)  # never 15 days idle
    # B: idle after 03-01 -> lapsed from 03-16, back with a purchase on 04-08
    assert not at["2024-03-31"]["B"] and at["2024-04-20"]["B"] and at["2024-04-30"]["B"]
    assert not at["2024-04-20"]["F"]  # last activity 04-02 -> lapsed from 04-17
    assert at["2024-04-20"]["H"] and not at["2024-04-30"]["H"]  # last activity 04-07 -> 04-22
    assert at["2024-04-30"]["E"]  # never active, but signed up only 6 days before
    assert not at["2024-04-30"]["G"]  # signs up after as_of
    with pytest.raises(KeyError):
        K.status_at(pan, "2024-04-29")  # not a period end or cohort month end


@pytest.mark.parametrize("horizon, customer", [(13, False), (14, True)])
def test_inactivity_exactly_horizon_days_idle_is_lost(horizon, customer):
    # H's only activity is 04-07; at 04-20 it has been idle for 13 days
    pan = K.build_panel(customers(), transactions(), events(), None, as_of=AS_OF,
                        period_days=P, definition="inactivity", horizon_days=horizon)
    assert K.status_at(pan, "2024-04-20")["H"] == customer


def test_inactivity_kpis_by_hand():
    rep, trend = report("inactivity")
    cur, prev = rep["current"], rep["previous"]
    # at end of 04-20: A, B (04-18), C, H (04-07)   [F lapsed 04-17]
    # at end of 04-30: A, B, C, D, E                [H lapsed 04-22]
    assert (cur["customers_start"], cur["customers_end"], cur["new"], cur["lost"]) == (4, 5, 2, 1)
    assert cur["returned"] == 0
    assert cur["crr"] == pytest.approx((5 - 2) / 4)
    assert cur["churn_rate"] == pytest.approx(1 / 4)  # H
    # same start set as under cancellation: A, B, C, H
    assert cur["ndr"] == pytest.approx(175 / 170, abs=1e-6)
    assert cur["grr"] == pytest.approx(130 / 170, abs=1e-6)
    assert cur["clv"] == pytest.approx(124 / ANNUAL[0.25], abs=0.01)
    # end of 04-10: A, B (04-08), F (04-02), H; end of 04-20: A, B, C, H; F lapsed
    assert (prev["customers_start"], prev["customers_end"], prev["new"], prev["lost"]) == (
        4, 4, 1, 1)
    assert prev["crr"] == pytest.approx(3 / 4)
    # period 04-01..04-10: start (03-31) A, F; end A, B, F, H; new H; B came back
    row = trend.set_index("period_end").loc["2024-04-10"]
    assert row["customers_end"] == 4
    # a returning customer counts like a new one
    assert row["crr"] == pytest.approx((4 - 1 - 1) / 2)
    assert row["churn_rate"] == 0.0
    # B lapsed in March and came back in April: its cohort's curve rises again
    assert [c["retention"] for c in rep["cohorts"]] == [
        [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 0.0], [0.75]]
    assert rep["label"] == {"definition": "inactivity", "horizon_days": H}


def test_inactivity_matches_a_naive_reference():
    rng = np.random.default_rng(3)
    n = 40
    start = pd.Timestamp("2024-01-01")
    cust = pd.DataFrame({
        "customer_id": [f"c{i:03d}" for i in range(n)],
        "signup_date": [(start + pd.Timedelta(days=int(d))).date()
                        for d in rng.integers(0, 90, n)],
        "segment": rng.choice(["a", "b", None], n),
    })
    m = 300
    log = pd.DataFrame({
        "customer_id": rng.choice(cust["customer_id"], m),
        "timestamp": start + pd.to_timedelta(rng.integers(0, 125 * 24, m), unit="h"),
        "amount": rng.normal(20, 15, m).round(2),
    })
    tx, ev = log.iloc[: m // 2], log.iloc[m // 2:].drop(columns="amount")
    pan = K.build_panel(cust, tx, ev, None, as_of="2024-04-30", period_days=P,
                        definition="inactivity", horizon_days=H)
    seen: dict[str, set[int]] = {}
    for cid, ts in zip(log["customer_id"], log["timestamp"], strict=True):
        seen.setdefault(cid, set()).add(K.to_day(ts))
    for b in pan.boundaries:
        got = K.status_at(pan, K.from_day(b)).to_dict()
        for cid, signup in zip(cust["customer_id"], cust["signup_date"], strict=True):
            g = K.to_day(signup)
            recent = any(b - H < d <= b for d in seen.get(cid, ()))
            assert got[cid] == (g <= b and (b - g < H or recent)), (cid, K.from_day(b))
    # the accounting identity holds in every period
    rep = K.kpi_report(pan)
    for scope in ("current", "previous"):
        k = rep[scope]
        assert k["customers_end"] == k["customers_start"] + k["new"] - k["lost"] + k["returned"]


# --------------------------------------------------------------------------- edge cases


def test_no_customers_at_start():
    cust = customers()
    cust = cust[cust["customer_id"].isin(["D", "E"])]  # both sign up in the current period
    rep, _ = report("cancellation", customers=cust)
    cur = rep["current"]
    assert cur["customers_start"] == 0 and cur["new"] == 2 and cur["customers_end"] == 1
    for kpi in ("crr", "churn_rate", "ndr", "grr"):
        assert cur[kpi] is None
    assert rep["notes"]["current.crr"] == K.REASON_NO_START
    assert rep["notes"]["current.churn_rate"] == K.REASON_NO_START
    assert rep["notes"]["current.ndr"] == K.REASON_NO_PREV_REVENUE
    assert rep["notes"]["current.clv"] == K.REASON_NO_CHURN
    assert cur["rpr"] == 1.0  # D bought twice
    assert rep["targets"]["crr_met"] is None


def test_no_revenue_in_previous_period():
    tx = transactions()
    tx = tx[tx["timestamp"] >= "2024-04-21"]  # only current-period purchases
    rep, _ = report("cancellation", transactions=tx)
    assert rep["current"]["ndr"] is None and rep["current"]["grr"] is None
    assert rep["notes"]["current.ndr"] == (
        "no revenue in the previous period from customers existing at its start")
    assert rep["current"]["rpr"] == pytest.approx(2 / 3, abs=1e-6)
    assert rep["previous"]["rpr"] is None
    assert rep["notes"]["previous.rpr"] == K.REASON_NO_PURCHASES


def test_no_nps_table_and_no_answers():
    rep, _ = report("cancellation", nps=None)
    assert rep["current"]["nps"] is None and rep["previous"]["nps"] is None
    assert rep["notes"]["current.nps"] == "no nps table"
    empty = nps().iloc[:0]
    rep, _ = report("cancellation", nps=empty)
    assert rep["notes"]["current.nps"] == "no answers in period"


def test_zero_churn_gives_null_clv():
    cust = customers()
    cust["cancel_date"] = None
    rep, _ = report("cancellation", customers=cust)
    cur = rep["current"]
    assert cur["churn_rate"] == 0.0 and cur["lost"] == 0
    assert cur["clv"] is None
    assert rep["notes"]["current.clv"] == K.REASON_ZERO_CHURN


def test_purchase_only_log_without_segments():
    cust = customers().drop(columns=["segment", "cancel_date"])
    rep, trend = report("inactivity", customers=cust, events=None, nps=None)
    assert list(rep["by_segment"]) == ["unknown"]
    assert rep["by_segment"]["unknown"]["customers_end"] == rep["current"]["customers_end"]
    pan = panel("inactivity", customers=cust, events=None)
    # without events: A is idle from signup 01-10 to its purchase on 04-05
    assert not K.status_at(pan, "2024-03-31")["A"] and K.status_at(pan, "2024-04-20")["A"]
    assert not K.status_at(pan, "2024-04-20")["H"]  # never active: lapsed 04-16
    # 0-row events table behaves like no events table
    empty_events = events().iloc[:0]
    rep2, trend2 = report("inactivity", customers=cust, events=empty_events, nps=None)
    assert rep2["current"] == rep["current"]
    pd.testing.assert_frame_equal(trend2, trend)
    # Inactivity over purchases only, H = 15: a customer at the end of day d signed up by d and
    # either within 15 days of signup or with a transaction in (d - 15, d].
    #   01-21 A (signup 01-10) | 01-31 none (A lost 01-25) | 02-10 B (02-05) | 02-20 none (B
    #   lost 02-20) | 03-01 F (03-01) | 03-11 F | 03-21 none (F lost 03-16) | 03-31 none |
    #   04-10 A (tx 04-05), B (04-08), F (04-02), H (signup 04-01) | 04-20 A, B, C (new);
    #   F and H lost | 04-30 A, B (04-18), C, D, E (new)
    assert trend["period_end"].tolist() == [
        "2024-01-21", "2024-01-31", "2024-02-10", "2024-02-20", "2024-03-01", "2024-03-11",
        "2024-03-21", "2024-03-31", "2024-04-10", "2024-04-20", "2024-04-30"]
    assert trend["customers_end"].tolist() == [1, 0, 1, 0, 1, 1, 0, 0, 4, 3, 5]
    nan = float("nan")
    # crr = (end - new) / start; null with nobody at the start (02-10, 03-01, 03-31, 04-10)
    np.testing.assert_allclose(trend["crr"], [1, 0, nan, 0, nan, 1, 0, nan, nan, 0.5, 1])
    np.testing.assert_allclose(trend["churn_rate"], [0, 1, nan, 1, nan, 0, 1, nan, nan, 0.5, 0])
    # revenue in the period: 04-01..04-10 A 100 + B 60 + F 25; 04-11..04-20 A 100 + B 50 - 10
    # + C 30; 04-21..04-30 A 80 + 50 + C 45 + D 70 + 20 (A's 2023 purchase is outside)
    assert trend["revenue"].tolist() == [0.0] * 8 + [185.0, 170.0, 265.0]
    # ndr: the start customers' revenue over their previous period's: 04-20 (A, B, F, H)
    # (100 + 40) / (100 + 60 + 25); 04-30 (A, B, C) (130 + 0 + 45) / (100 + 40 + 30)
    np.testing.assert_allclose(trend["ndr"], [nan] * 9 + [140 / 185, 175 / 170], rtol=1e-6)


def test_empty_customers_table():
    rep, trend = report("cancellation", customers=customers().iloc[:0])
    assert rep["by_segment"] == {} and rep["cohorts"] == []
    assert rep["current"]["customers_start"] == 0 and rep["current"]["crr"] is None
    assert K.is_json_safe(rep)


def test_trend_rows_and_current_row():
    rep, trend = report("cancellation")
    assert list(trend.columns) == list(K.TREND_COLUMNS)
    assert trend["period_end"].is_monotonic_increasing
    last = trend.iloc[-1]
    assert last["period_end"] == "2024-04-30"
    assert last["crr"] == rep["current"]["crr"]
    assert last["customers_end"] == rep["current"]["customers_end"]
    assert last["revenue"] == rep["current"]["revenue"]
    # periods starting on or after the first signup (01-10): ends 01-21, 01-31, .., 04-30
    assert trend["period_end"].iloc[0] == "2024-01-21"
    assert len(trend) == 11


def test_kpis_json_round_trips_without_nan(tmp_path):
    for definition in K.DEFINITIONS:
        rep, _ = report(definition, nps=None)
        path = write_json(rep, tmp_path / f"kpis_{definition}.json")

        def no_constants(name):
            raise AssertionError(f"non-JSON constant {name}")

        loaded = json.loads(path.read_text(), parse_constant=no_constants)
        assert loaded == json.loads(json.dumps(rep))
        for scope in ("current", "previous", *[f"by_segment.{s}" for s in rep["by_segment"]]):
            block = loaded[scope] if "." not in scope else loaded["by_segment"][scope[11:]]
            assert set(K.KPI_KEYS) <= set(block)
            for kpi in K.KPI_KEYS:
                value = block[kpi]
                assert value is None or (isinstance(value, int | float) and math.isfinite(value))
                if value is None:
                    assert f"{scope}.{kpi}" in loaded["notes"]
        assert set(loaded) >= {"period", "current", "previous", "by_segment", "cohorts", "notes"}


def test_bad_definition_is_a_user_error():
    from churnlens.errors import ChurnlensError

    with pytest.raises(ChurnlensError, match="label.definition"):
        report("churned")


# --------------------------------------------------------------------------- stage


def test_stage_writes_json_and_trend(tmp_path):
    import yaml

    from churnlens.stages import kpis as stage

    interim = tmp_path / "data" / "interim"
    interim.mkdir(parents=True)
    customers().to_parquet(interim / "customers.parquet", index=False)
    transactions().to_parquet(interim / "transactions.parquet", index=False)
    events().to_parquet(interim / "events.parquet", index=False)
    nps().iloc[:0].to_parquet(interim / "nps.parquet", index=False)  # absent table: 0 rows
    params = {"snapshot": {"as_of": None}, "label": {"definition": "cancellation",
                                                      "horizon_days": H},
              "kpis": {"period_days": P, "crr_target": 0.85}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stage.run(root=tmp_path)
    rep = json.loads((tmp_path / "reports" / "kpis.json").read_text())
    # as_of = day of the last event/transaction: A's 2024-05-02 purchase
    assert rep["as_of"] == "2024-05-02"
    assert rep["notes"]["current.nps"] == "no nps table"
    trend = pd.read_csv(tmp_path / "reports" / "plots" / "kpi_trend.csv")
    assert list(trend.columns) == list(K.TREND_COLUMNS)
    assert trend["period_end"].iloc[-1] == "2024-05-02"


# --------------------------------------------------------------------------- revenue window


def _purchase_log() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A purchase-only log for P = 10, H = 20 (so W = 20) at as_of 2024-04-30.

    current window  (04-10, 04-30], customers at the end of 04-10, against (03-21, 04-10]
    previous window (03-31, 04-20], customers at the end of 03-31, against (03-11, 03-31]
    """
    cust = pd.DataFrame({
        "customer_id": ["X", "Y", "Z", "V"],
        "signup_date": pd.to_datetime(["2024-01-01", "2024-01-01", "2024-04-15", "2024-01-01"]),
    })
    rows = [
        ("X", "2024-03-25", 100.0), ("X", "2024-04-20", 40.0),
        ("Y", "2024-04-05", 50.0), ("Y", "2024-04-15", 80.0), ("Y", "2024-04-28", 30.0),
        ("Z", "2024-04-20", 500.0),  # new in the window: not in NDR
        ("V", "2024-03-01", 60.0), ("V", "2024-04-25", 70.0),  # lapsed at 04-10, comes back
    ]
    tx = pd.DataFrame(rows, columns=["customer_id", "timestamp", "amount"])
    tx["timestamp"] = pd.to_datetime(tx["timestamp"]) + pd.Timedelta(hours=10)
    return cust, tx


def _purchase_report(**kw):
    cust, tx = _purchase_log()
    return K.compute_kpis(cust, tx, None, None, as_of=AS_OF, period_days=10,
                          definition="inactivity", horizon_days=20, **kw)


def test_purchase_only_log_uses_the_horizon_revenue_window_by_hand():
    rep, trend = _purchase_report(revenue_window="auto")
    window = rep["revenue_window"]
    assert window["days"] == 20 and window["period_days"] == 10
    assert (window["start"], window["previous_end"]) == ("2024-04-11", "2024-04-10")
    assert "purchase-only" in window["reason"]
    assert "20 days" in window["caveat"] and "\n" not in window["caveat"]
    cur, prev = rep["current"], rep["previous"]
    # at 04-10: X (03-25), Y (04-05); V lapsed (03-01 + 20 <= 04-10); Z not signed up
    assert cur["ndr"] == pytest.approx((40 + 110) / (100 + 50))  # X 40/100, Y 110/50
    assert cur["grr"] == pytest.approx((40 + 50) / (100 + 50))  # Y capped at 50
    # the 10-day period: at 04-20 X, Y, Z (new 04-15) -> 30 / (40 + 80 + 500)
    assert cur["ndr_period"] == pytest.approx(30 / 620, abs=1e-6)
    assert cur["grr_period"] == pytest.approx(30 / 620, abs=1e-6)
    # window ending 04-20, customers at 03-31: only X (Y's first activity is 04-05) -> 40 / 100
    assert prev["ndr"] == pytest.approx(0.4) and prev["grr"] == pytest.approx(0.4)
    assert set(K.KPI_KEYS) <= set(cur) and set(K.KPI_KEYS) <= set(rep["by_segment"]["unknown"])
    assert rep["by_segment"]["unknown"]["ndr"] == pytest.approx(1.0)
    assert trend["ndr"].iloc[-1] == pytest.approx(1.0)
    assert trend["ndr_period"].iloc[-1] == pytest.approx(30 / 620, abs=1e-6)
    assert K.is_json_safe(rep)


def test_default_revenue_window_is_the_period():
    rep, _ = _purchase_report()
    assert rep["revenue_window"]["days"] == 10 and rep["revenue_window"]["caveat"] is None
    assert rep["current"]["ndr"] == rep["current"]["ndr_period"]
    assert rep["current"]["ndr"] == pytest.approx(30 / 620, abs=1e-6)


def test_revenue_window_in_days_and_bad_value():
    rep, _ = _purchase_report(revenue_window=15)  # rounded up to 2 periods
    assert rep["revenue_window"]["days"] == 20
    assert rep["current"]["ndr"] == pytest.approx(1.0)
    with pytest.raises(K.ChurnlensError):
        _purchase_report(revenue_window="weekly")


def test_auto_window_keeps_the_period_when_usage_and_revenue_are_steady():
    cust = pd.DataFrame({"customer_id": ["A", "B"],
                         "signup_date": pd.to_datetime(["2023-01-01", "2023-01-01"])})
    days = pd.date_range("2023-01-05", AS_OF, freq="5D")
    tx = pd.DataFrame([(c, d, 10.0) for c in "AB" for d in days],
                      columns=["customer_id", "timestamp", "amount"])
    ev = tx.rename(columns={"amount": "quantity"}).assign(event_type="login")
    rep, trend = K.compute_kpis(cust, tx, ev, None, as_of=AS_OF, period_days=10,
                                definition="inactivity", horizon_days=20, revenue_window="auto")
    assert rep["revenue_window"]["days"] == 10 and rep["revenue_window"]["reason"] is None
    assert K.ndr_swing(trend)["median_move"] < K.LUMPY_NDR_MOVE
