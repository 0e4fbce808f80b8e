"""Times and counts as pages write them: a time carries its zone, a count its noun in the right number."""
from datetime import datetime, timedelta, timezone

import pytest

from web.readable import local_time, plural


@pytest.mark.parametrize("moment", [datetime(2026, 12, 7, 14, 5, 9),                       # a record's, naive UTC
                                    datetime(2026, 12, 7, 14, 5, 9, tzinfo=timezone.utc),
                                    datetime(2026, 12, 7, 15, 5, 9, tzinfo=timezone(timedelta(hours=1))),
                                    "2026-12-07T14:05:09+00:00",                           # a card's or a manifest's
                                    "2026-12-07T09:05:09-05:00"])
def test_a_time_is_written_in_utc_with_its_zone_and_its_exact_moment_for_the_script(moment):
    assert str(local_time(moment)) == ('<time datetime="2026-12-07T14:05:09+00:00" data-local="minute">'
                                       '2026-12-07 14:05 UTC</time>')
    assert str(local_time(moment, seconds=True)).endswith('data-local="second">2026-12-07 14:05:09 UTC</time>')


@pytest.mark.parametrize("moment", [None, "", "not a time"])
def test_no_time_is_written_where_there_is_none(moment):
    assert local_time(moment) == ""


@pytest.mark.parametrize("count, noun, nouns, written", [(0, "photo", None, "0 photos"), (1, "photo", None, "1 photo"),
                                                         (2, "token", None, "2 tokens"), (1, "time", None, "1 time"),
                                                         (3, "person", "people", "3 people")])
def test_a_count_is_written_with_its_noun_in_the_right_number(count, noun, nouns, written):
    assert plural(count, noun, nouns) == written
