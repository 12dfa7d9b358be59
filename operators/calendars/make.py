"""Writes hose.csv and nyse.csv: the weekdays each exchange is closed,
2000-2026, as `date,name` rows.

    python -m venv /tmp/cal && /tmp/cal/bin/pip install -r requirements.txt
    /tmp/cal/bin/python make.py

NYSE: the closures of exchange_calendars' XNYS calendar, checked against
python-holidays' XNYS financial calendar (the script stops if the two
disagree on any day); names from python-holidays.
HOSE: Vietnam's public holidays as python-holidays lists them (the Labour
Code's holidays and the government's substitute days off), on which HOSE
does not trade (HOSE listing and trading rules, Article 13).
"""

import csv

import exchange_calendars as xc
import holidays
import pandas as pd

FIRST, LAST = 2000, 2026


def weekday_rows(days):
    return sorted((str(d), name) for d, name in days.items() if d.weekday() < 5)


def nyse():
    cal = xc.get_calendar("XNYS", start=f"{FIRST}-01-01", end=f"{LAST}-12-31")
    sessions = set(cal.sessions_in_range(cal.first_session, cal.last_session).strftime("%Y-%m-%d"))
    weekdays = pd.bdate_range(f"{FIRST}-01-01", f"{LAST}-12-31").strftime("%Y-%m-%d")
    closed = [d for d in weekdays if d not in sessions]
    named = dict(weekday_rows(holidays.financial_holidays("XNYS", years=range(FIRST, LAST + 1))))
    if set(closed) != set(named):
        raise SystemExit(f"the two NYSE calendars disagree: {sorted(set(closed) ^ set(named))}")
    return [(d, named[d]) for d in closed]


def hose():
    return weekday_rows(holidays.country_holidays("VN", years=range(FIRST, LAST + 1)))


for name, rows in (("nyse", nyse()), ("hose", hose())):
    with open(f"{name}.csv", "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["date", "name"])
        out.writerows(rows)
    print(f"{name}.csv: {len(rows)} closed weekdays, {FIRST}-{LAST}")
