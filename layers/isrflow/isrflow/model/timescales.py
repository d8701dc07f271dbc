"""TAI -> UTC without astropy: the leap-second table (pure Python, for the registry-only layer).

Since 1972 UTC differs from TAI by a whole number of seconds, changed only by leap seconds
announced by the IERS (Bulletin C). ``TAI - UTC`` from each UTC date on:

========== ===  ========== ===  ========== ===
1972-01-01  10  1979-01-01  18  1993-07-01  28
1972-07-01  11  1980-01-01  19  1994-07-01  29
1973-01-01  12  1981-07-01  20  1996-01-01  30
1974-01-01  13  1982-07-01  21  1997-07-01  31
1975-01-01  14  1983-07-01  22  1999-01-01  32
1976-01-01  15  1985-07-01  23  2006-01-01  33
1977-01-01  16  1988-01-01  24  2009-01-01  34
1978-01-01  17  1990-01-01  25  2012-07-01  35
                1991-01-01  26  2015-07-01  36
                1992-07-01  27  2017-01-01  37
========== ===  ========== ===  ========== ===

No leap second has been inserted since 2017-01-01 (Bulletin C keeps announcing none), so
37 s holds for every later date until a new entry is added here. Times before 1972 are
refused: the pre-1972 "rubber second" relation is not a whole-second offset.
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: (first UTC day the offset applies, TAI - UTC in seconds), oldest first.
LEAP_SECONDS: tuple[tuple[datetime, int], ...] = tuple(
    (datetime(y, m, 1), offset)
    for y, m, offset in (
        (1972, 1, 10),
        (1972, 7, 11),
        (1973, 1, 12),
        (1974, 1, 13),
        (1975, 1, 14),
        (1976, 1, 15),
        (1977, 1, 16),
        (1978, 1, 17),
        (1979, 1, 18),
        (1980, 1, 19),
        (1981, 7, 20),
        (1982, 7, 21),
        (1983, 7, 22),
        (1985, 7, 23),
        (1988, 1, 24),
        (1990, 1, 25),
        (1991, 1, 26),
        (1992, 7, 27),
        (1993, 7, 28),
        (1994, 7, 29),
        (1996, 1, 30),
        (1997, 7, 31),
        (1999, 1, 32),
        (2006, 1, 33),
        (2009, 1, 34),
        (2012, 7, 35),
        (2015, 7, 36),
        (2017, 1, 37),
    )
)


def tai_minus_utc(utc: datetime) -> int:
    """TAI - UTC (seconds) in force at a naive UTC time (1972 or later)."""
    if utc < LEAP_SECONDS[0][0]:
        raise ValueError(f"{utc.isoformat()} is before 1972: TAI-UTC is not a whole number of seconds")
    offset = LEAP_SECONDS[0][1]
    for start, value in LEAP_SECONDS:
        if utc >= start:
            offset = value
        else:
            break
    return offset


def tai_to_utc(tai: datetime) -> datetime:
    """A naive TAI time as a naive UTC time.

    The offset is chosen so that the resulting UTC time lies in the offset's own range: a TAI
    time just after a leap-second boundary already uses the new offset. (A TAI time inside an
    inserted leap second maps to the first instant of the next UTC day, as UTC has no
    ``23:59:60`` in Python.)
    """
    for start, offset in reversed(LEAP_SECONDS):
        utc = tai - timedelta(seconds=offset)
        if utc >= start:
            return utc
    raise ValueError(f"{tai.isoformat()} (TAI) is before 1972: TAI-UTC is not a whole number of seconds")


__all__ = ["LEAP_SECONDS", "tai_minus_utc", "tai_to_utc"]
