"""Which part of a window the archive answers, and from which of its tables (pure
functions of `usage_lib.history.archive`; the figures themselves are checked against the
direct path in test_archive_equality.py and test_sync.py)."""

from __future__ import annotations

from datetime import datetime, timezone

from usage_lib.core.spans import range_window, window, zone
from usage_lib.history.archive import _cover, plan
from usage_lib.history.schema import DAY, HOUR, SLICE
from usage_lib.history.store import State

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp())


def state(first: str = "2026-11-01T00:00", watermark: str = "2026-11-24T10:00", oldest: str = "2026-11-10T00:00") -> State:
    return State(first_slice=at(first), watermark=at(watermark), gateway_oldest=at(oldest),
                 settle_seconds=7200, synced_at=at("2026-11-24T12:00"), health_from=at(first))


def test_a_range_is_covered_by_days_in_the_middle_and_finer_pieces_at_its_ends():
    pieces = _cover(at("2026-11-01T22:45"), at("2026-11-04T01:30"), [DAY, HOUR, SLICE])
    assert pieces == [
        (SLICE, at("2026-11-01T22:45"), at("2026-11-01T23:00")),
        (HOUR, at("2026-11-01T23:00"), at("2026-11-02T00:00")),
        (DAY, at("2026-11-02T00:00"), at("2026-11-04T00:00")),
        (HOUR, at("2026-11-04T00:00"), at("2026-11-04T01:00")),
        (SLICE, at("2026-11-04T01:00"), at("2026-11-04T01:30")),
    ]


def test_a_range_shorter_than_an_hour_is_covered_by_slices_alone():
    assert _cover(at("2026-11-01T10:15"), at("2026-11-01T10:45"), [DAY, HOUR, SLICE]) == [
        (SLICE, at("2026-11-01T10:15"), at("2026-11-01T10:45"))]


def test_a_week_in_utc_reads_days_and_leaves_the_tail_after_the_watermark_to_the_gateway():
    chosen = plan(window("1w", NOW, zone("UTC")), state())
    assert chosen.grid == DAY
    assert (chosen.start, chosen.end) == (at("2026-11-17T12:00"), at("2026-11-24T10:00"))
    assert chosen.gateway_ranges == ((datetime.fromtimestamp(at("2026-11-24T10:00"), timezone.utc), None),)
    assert chosen.notices == ()


def test_a_week_in_vienna_reads_hours_and_in_kolkata_slices():
    assert plan(window("1w", NOW, zone("Europe/Vienna")), state()).grid == HOUR
    assert plan(window("1w", NOW, zone("Asia/Kolkata")), state()).grid == SLICE


def test_minute_buckets_the_gateway_still_holds_are_left_to_it():
    assert plan(window("1h", NOW, zone("UTC")), state()) is None


def test_a_start_inside_a_slice_the_gateway_still_holds_is_read_from_the_gateway():
    chosen = plan(range_window("2026-11-20T08:07", "2026-11-21T08:00", NOW, zone("UTC")), state())
    assert chosen.start == at("2026-11-20T08:15")
    assert chosen.gateway_ranges[0] == (datetime(2026, 11, 20, 8, 7, tzinfo=zone("UTC")),
                                        datetime.fromtimestamp(at("2026-11-20T08:15"), timezone.utc))
    assert chosen.notices == ()


def test_a_start_inside_a_slice_the_gateway_forgot_snaps_to_the_slice_with_a_notice():
    chosen = plan(range_window("2026-11-05T08:07", "2026-11-06T08:00", NOW, zone("UTC")), state())
    assert chosen.start == at("2026-11-05T08:00")
    assert chosen.gateway_ranges == ()
    assert chosen.notices == ("The gateway no longer holds the requests at the range's start: shown from "
                              "2026-11-05 08:00, the start of the archive's 15-minute slice.",)


def test_a_window_over_a_gap_names_it_and_marks_it_unrecorded():
    gap = (at("2026-11-03T00:00"), at("2026-11-04T06:00"))
    chosen = plan(range_window("2026-11-02T00:00", "2026-11-06T00:00", NOW, zone("UTC")), state(), [gap])
    assert chosen.unrecorded == (gap,)
    assert chosen.notices == ("No usage recorded from 2026-11-03 00:00 to 2026-11-04 06:00: the gateway "
                              "deleted those requests before a sync saved them.",)
