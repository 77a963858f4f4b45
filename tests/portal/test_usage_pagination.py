"""The usage table's count and pages come from the daily rollups' counts plus today's records; they must list
exactly what counting and paging the records themselves would, for every filter and every page."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.core.paginator import Paginator
from django.utils import timezone

from billing.jobs import usage_aggregate
from billing.models import UsageRecord
from billing.selectors import (
    UsageFilter,
    UsageSpan,
    span_seek,
    usage_days_list,
    usage_record_pages,
    usage_records_filter,
)
from portal.accounts.services import key_create

pytestmark = pytest.mark.django_db

DAYS = 6


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=UTC)


@pytest.fixture
def history(user, other_user, models):
    """Requests over the last DAYS days (today included) on two keys and two models, rolled up: some at
    midnight exactly, some sharing one timestamp, some failed; and another user's requests beside them."""
    a, _ = key_create(owner=user, name="key-a")
    b, _ = key_create(owner=user, name="key-b")
    today = timezone.now().date()
    rows = []
    for back in range(DAYS):
        day = today - timedelta(days=back)
        stamps = [at(day, 0), at(day, 0), at(day, 0, 0, 1)] + [at(day, 0, m, 7) for m in range(3 + 2 * back)]
        stamps += [at(day, 23, 59, 59)] if back else []  # today's 23:59 is still to come
        for i, when in enumerate(stamps):
            rows.append(
                UsageRecord(user=user, key=b if i % 2 else a, model=models["paid" if i % 3 == 0 else "free"],
                            status=502 if i % 5 == 4 else 200, created_at=when)
            )  # fmt: skip
    other, _ = key_create(owner=other_user, name="other")
    rows += [
        UsageRecord(user=other_user, key=other, model=models["free"], status=200, created_at=at(today, 0, 3))
    ]
    UsageRecord.objects.bulk_create(rows)
    usage_aggregate(days=DAYS + 1)
    return {"a": a, "b": b, "today": today}


def filters(history, models) -> list[UsageFilter]:
    today = history["today"]
    week = today - timedelta(days=DAYS - 1)
    a, paid = history["a"].pk, models["paid"].pk
    return [
        UsageFilter(week, today),
        UsageFilter(week, today, key_id=a),
        UsageFilter(week, today, model_id=paid),
        UsageFilter(week, today, key_id=a, model_id=paid),
        UsageFilter(today - timedelta(days=3), today - timedelta(days=1)),  # closed days only
        UsageFilter(today, today + timedelta(days=2)),  # today and days still to come
        UsageFilter(week - timedelta(days=30), week - timedelta(days=1)),  # nothing
    ]


def pages_of(user, usage_filter: UsageFilter, now: datetime, per_page: int) -> Paginator:
    days = usage_days_list(
        user=user, since=usage_filter.since, until=usage_filter.until,
        key_id=usage_filter.key_id, model_id=usage_filter.model_id,
    )  # fmt: skip
    return Paginator(usage_record_pages(user=user, usage_filter=usage_filter, days=days, now=now), per_page)


@pytest.mark.parametrize("per_page", [1, 4, 7, 50])
def test_every_page_of_every_filter_lists_what_paging_the_records_themselves_would(
    user, models, history, per_page
):
    now = timezone.now()
    for usage_filter in filters(history, models):
        records = usage_records_filter(user=user, usage_filter=usage_filter)
        expected = list(records.values_list("pk", flat=True))
        paginator = pages_of(user, usage_filter, now, per_page)
        assert paginator.count == records.count() == len(expected), usage_filter
        for number in paginator.page_range:
            page = [r.pk for r in paginator.page(number)]
            assert page == expected[(number - 1) * per_page : number * per_page], (usage_filter, number)


def test_requests_at_midnight_and_in_the_same_microsecond_are_each_listed_once(user, models, history):
    usage_filter = filters(history, models)[0]
    paginator = pages_of(user, usage_filter, timezone.now(), per_page=1)
    listed = [r.pk for n in paginator.page_range for r in paginator.page(n)]
    assert len(listed) == len(set(listed)) == UsageRecord.objects.filter(user=user).count()
    created = dict(UsageRecord.objects.filter(user=user).values_list("pk", "created_at"))
    assert listed == sorted(listed, key=lambda pk: (created[pk], pk), reverse=True)


def test_the_day_just_ended_is_counted_from_its_records_until_its_rollup_is_final(user, models, history):
    """Just after midnight the last rollup of the day before may lack its last seconds: count them live."""
    today = history["today"]
    yesterday = today - timedelta(days=1)
    late = [
        UsageRecord(user=user, key=history["a"], model=models["free"], status=200, created_at=at(yesterday, 23, 59, 59))
        for _ in range(3)
    ]  # fmt: skip
    UsageRecord.objects.bulk_create(late)  # settled after the last rollup
    usage_filter = UsageFilter(today - timedelta(days=DAYS - 1), today)
    records = usage_records_filter(user=user, usage_filter=usage_filter)
    just_after_midnight = at(today, 0, 2)
    paginator = pages_of(user, usage_filter, just_after_midnight, per_page=5)
    assert paginator.count == records.count()
    listed = [r.pk for n in paginator.page_range for r in paginator.page(n)]
    assert listed == list(records.values_list("pk", flat=True))

    usage_aggregate(days=2)  # the next run of the job makes the rollup final
    assert pages_of(user, usage_filter, timezone.now(), per_page=5).count == records.count()


def test_span_seek_finds_the_span_of_an_offset_and_the_offset_within_it():
    t = [datetime(2025, 3, d, tzinfo=UTC) for d in (4, 3, 2, 1)]
    spans = [UsageSpan(t[0], 3), UsageSpan(t[1], 0), UsageSpan(t[2], 2), UsageSpan(t[3], 4)]
    assert [span_seek(spans, offset) for offset in range(10)] == [
        (t[0], 0), (t[0], 1), (t[0], 2), (t[2], 0), (t[2], 1), (t[3], 0), (t[3], 1), (t[3], 2), (t[3], 3), None,
    ]  # fmt: skip
    assert span_seek([], 0) is None


def test_a_page_past_the_end_shows_the_oldest_requests(user, client_of, models, add_usage):
    key, _ = key_create(owner=user, name="busy")
    for ago in (1, 2, 3):
        add_usage(user, key=key, model=models["free"], n=40, ago=ago)
    add_usage(user, key=key, model=models["paid"], n=10)
    response = client_of(user).get("/usage?page=999")
    page = response.context["page"]
    assert (page.number, page.paginator.num_pages, page.paginator.count) == (3, 3, 130)
    oldest = UsageRecord.objects.filter(user=user).order_by("created_at", "request_id")[:30]
    assert [r.pk for r in page] == [r.pk for r in reversed(oldest)]
    assert "Page 3 of 3" in response.content.decode()
