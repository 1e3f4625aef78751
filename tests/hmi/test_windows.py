"""Consent time windows: daily local windows (also past midnight) and absolute ISO intervals, on a given now."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from hmi_agent.windows import WindowError, next_opening, parse_window


def t(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def test_daily_window_gives_the_occurrence_containing_now_or_the_next_one() -> None:
    w = parse_window("02:00-04:00", timezone.utc)
    assert w.occurrence(t("2026-11-21T01:00:00")) == (t("2026-11-21T02:00:00"), t("2026-11-21T04:00:00"))
    assert w.occurrence(t("2026-11-21T03:00:00")) == (t("2026-11-21T02:00:00"), t("2026-11-21T04:00:00"))
    assert w.contains(t("2026-11-21T03:00:00")) and not w.contains(t("2026-11-21T04:00:00"))
    assert w.occurrence(t("2026-11-21T04:00:00")) == (t("2026-11-22T02:00:00"), t("2026-11-22T04:00:00"))


def test_daily_window_past_midnight_started_yesterday() -> None:
    w = parse_window("23:30-01:00", timezone.utc)
    assert w.occurrence(t("2026-11-21T00:30:00")) == (t("2026-11-20T23:30:00"), t("2026-11-21T01:00:00"))
    assert w.occurrence(t("2026-11-21T12:00:00")) == (t("2026-11-21T23:30:00"), t("2026-11-22T01:00:00"))


def test_absolute_interval_is_gone_once_it_ended() -> None:
    w = parse_window("2026-11-21T10:00:00+00:00/2026-11-21T11:00:00+00:00")
    assert w.occurrence(t("2026-11-21T09:00:00")) == (t("2026-11-21T10:00:00"), t("2026-11-21T11:00:00"))
    assert w.contains(t("2026-11-21T10:30:00"))
    assert w.occurrence(t("2026-11-21T11:00:00")) is None


def test_next_opening_is_the_earliest_of_several_windows() -> None:
    windows = [parse_window("22:00-23:00", timezone.utc), parse_window("02:00-04:00", timezone.utc),
               parse_window("2026-11-21T01:00:00+00:00/2026-11-21T01:30:00+00:00")]
    w, start, _end = next_opening(windows, t("2026-11-21T00:00:00")) or (None, 0.0, 0.0)
    assert w is windows[2] and start == t("2026-11-21T01:00:00")
    w, start, _end = next_opening(windows, t("2026-11-21T05:00:00")) or (None, 0.0, 0.0)
    assert w is windows[0] and start == t("2026-11-21T22:00:00")
    assert next_opening([], 0.0) is None


@pytest.mark.parametrize(("spec", "reason"), [
    ("2-4", "expected HH:MM-HH:MM"), ("25:00-04:00", "hours 00-23"), ("02:00-02:00", "empty"),
    ("2026-11-21T11:00:00/2026-11-21T10:00:00", "ends before it starts"), ("tomorrow/later", "window"),
])
def test_bad_windows_are_refused_with_the_reason(spec: str, reason: str) -> None:
    with pytest.raises(WindowError, match=reason):
        parse_window(spec)
