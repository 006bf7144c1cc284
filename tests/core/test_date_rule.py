"""One rule for dates and dateTimes without a time zone (consent.periods.instant_range): they
are read in the node's zone (JST, +09:00) by search indexing, search values, ``_since``/``_at``
and consent periods alike, so a date-only search and a consent ``dataPeriod`` put every record
on the same side of a day boundary. Database tests run on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from consent import builder
from consent.periods import NODE_TZ, DateValueError, instant_range, parse_datetime, parse_period
from consent.request import clinical_date_of
from hie.clock import FixedClock, parse_instant_us
from hie.interactions.search import search_bundle
from hie.principal import SYSTEM, Principal
from hie.search.indexer import date_values
from hie.search.normalize import date_range
from hie.storage.repository import Write
from tests.enforcement.scenario import ORGS, lab, org, patient, recorded_at_a

A = ORGS["org-a"]
UTC = timezone.utc
NOW_US = int(datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp() * 1_000_000)
FACILITY_B = Principal(kind="user", name="b", user_id="ub", organization_id=ORGS["org-b"])

#: Oct 1 in Japan, written without a zone (late evening) and with +09:00 (just after midnight,
#: still 30 September in UTC); the neighbours fall on 30 September and 2 October in Japan.
OCT1_ZONELESS = "2026-10-01T23:30:00"
OCT1_JST = "2026-10-01T00:30:00+09:00"
SEP30_JST = "2026-09-30T23:30:00+09:00"
OCT2_JST = "2026-10-02T00:30:00+09:00"
RECORDS = {"rule-oct1-zoneless": OCT1_ZONELESS, "rule-oct1-jst": OCT1_JST, "rule-sep30": SEP30_JST,
           "rule-oct2": OCT2_JST}
OCT1 = {"Observation/rule-oct1-zoneless", "Observation/rule-oct1-jst"}


def _us(dt: datetime) -> int:
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# -- the rule, pure -----------------------------------------------------------------------


def test_a_date_is_the_whole_day_in_japan():
    low, high = instant_range("2026-10-01")
    assert low == _us(datetime(2026, 9, 30, 15, 0, tzinfo=UTC))
    assert high == _us(datetime(2026, 10, 1, 15, 0, tzinfo=UTC)) - 1
    assert instant_range("2026-10") == (_us(datetime(2026, 9, 30, 15, tzinfo=UTC)),
                                        _us(datetime(2026, 10, 31, 15, tzinfo=UTC)) - 1)
    assert instant_range("2026") == (_us(datetime(2025, 12, 31, 15, tzinfo=UTC)),
                                     _us(datetime(2026, 12, 31, 15, tzinfo=UTC)) - 1)


def test_a_datetime_without_zone_is_read_in_japan_and_a_written_zone_is_kept():
    assert instant_range(OCT1_ZONELESS) == instant_range("2026-10-01T23:30:00+09:00")
    assert instant_range("2026-10-01T14:30:00Z") == instant_range(OCT1_ZONELESS)
    assert instant_range("2026-10-01T23:30:00+0900") == instant_range(OCT1_ZONELESS)
    assert instant_range("2026-10-01T10:00:00-05:00")[0] == _us(datetime(2026, 10, 1, 15, tzinfo=UTC))
    # precision: a minute, a second, a millisecond
    low, high = instant_range("2026-10-01T10:00+09:00")
    assert high - low == 60_000_000 - 1
    low, high = instant_range("2026-10-01T10:00:00.123+09:00")
    assert high - low == 1000 - 1


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "2026-10-01T24:00:00+09:00", "01-10-2026", "2026-1-1"])
def test_invalid_values_are_refused_by_the_one_parser(bad):
    with pytest.raises(DateValueError):
        instant_range(bad)
    with pytest.raises(ValueError):
        date_range(bad)
    with pytest.raises(ValueError):
        parse_instant_us(bad)


@pytest.mark.parametrize("value", [OCT1_ZONELESS, OCT1_JST, SEP30_JST, "2026-10-01", "2026-10", "2026",
                                   "2026-10-01T14:30:00.5Z"])
def test_every_site_follows_the_rule(value):
    low, high = instant_range(value)
    assert date_range(value) == (low, high)  # search indexing and search values
    assert date_values(value) == [(low, high)]  # the indexer
    assert parse_instant_us(value) == low  # _since / _at / break-glass report
    # the clinical date of a record and consent periods
    assert _us(clinical_date_of({"resourceType": "Observation", "effectiveDateTime": value})) == low
    assert _us(parse_datetime(value, "x", require_zone=False)) == low
    assert _us(parse_datetime(value, "x", upper=True, require_zone=False)) == high


def test_consent_periods_are_inclusive_whole_days_in_japan():
    period = parse_period({"start": "2026-10-01", "end": "2026-10-01"}, "Consent.provision.dataPeriod")
    assert period.start == datetime(2026, 10, 1, tzinfo=NODE_TZ)
    assert period.end == datetime(2026, 10, 2, tzinfo=NODE_TZ) - timedelta(microseconds=1)
    on_oct1 = [clinical_date_of({"resourceType": "Observation", "effectiveDateTime": v}) for v in (OCT1_ZONELESS,
                                                                                                  OCT1_JST)]
    assert all(d is not None and period.contains(d) for d in on_oct1)
    for v in (SEP30_JST, OCT2_JST):
        d = clinical_date_of({"resourceType": "Observation", "effectiveDateTime": v})
        assert d is not None and not period.contains(d)


def test_a_consent_still_needs_a_zone_on_its_own_datetimes():
    from consent.errors import ConsentError

    with pytest.raises(ConsentError, match="time zone"):
        parse_datetime("2026-10-01T10:00:00", "Consent.dateTime")


# -- search and consent on the database agree ---------------------------------------------


@pytest.fixture
def dated_node(node):
    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    resources = [org("org-a"), org("org-b"), patient("p1", A),
                 *(lab(rid, "p1", A, when) for rid, when in RECORDS.items())]
    _write(node, resources)
    return node


def _write(node, resources) -> None:
    with node.context(SYSTEM, write=True) as ctx:
        ctx.repo.write_batch([Write("update", r["resourceType"], r["id"], r) for r in resources])


def _search(node, principal, params) -> set[str]:
    with node.context(principal, write=False) as ctx:
        bundle = search_bundle(ctx, "Observation", [("_count", "100"), *params])
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry") or ()}


def _data_period_consent(start: str, end: str) -> dict:
    return recorded_at_a(builder.all_facilities(
        "rule-consent", "Patient/p1", recorded_by="Organization/org-a", date_time="2026-01-10T10:00:00+09:00",
        provision_kw={"data_period": builder.period(start, end)}))


def test_a_date_search_and_a_data_period_agree_on_the_day_boundary(dated_node):
    node = dated_node
    assert _search(node, SYSTEM, [("date", "2026-10-01")]) == OCT1
    assert _search(node, SYSTEM, [("date", "lt2026-10-01")]) == {"Observation/rule-sep30"}
    assert _search(node, SYSTEM, [("date", "gt2026-10-01")]) == {"Observation/rule-oct2"}
    assert _search(node, SYSTEM, [("date", "ge2026-10-01T00:00:00"), ("date", "le2026-10-01T23:59:59")]) == OCT1

    _write(node, [_data_period_consent("2026-10-01", "2026-10-01")])
    assert _search(node, FACILITY_B, [("subject", "Patient/p1")]) == OCT1
    assert _search(node, FACILITY_B, [("date", "2026-10-01")]) == OCT1
    assert _search(node, FACILITY_B, [("date", "ne2026-10-01")]) == set()

    _write(node, [_data_period_consent("2026-09-01", "2026-09-30")])
    assert _search(node, FACILITY_B, [("subject", "Patient/p1")]) == {"Observation/rule-sep30"}
    assert _search(node, FACILITY_B, [("date", "2026-10-01")]) == set()


def test_history_since_a_date_starts_at_midnight_in_japan():
    from hie.interactions.history import _time_param

    assert _time_param({"_since": "2026-10-01"}, "_since") == _us(datetime(2026, 9, 30, 15, tzinfo=UTC))
    assert _time_param({"_at": "2026-10-01T09:00:00"}, "_at") == _us(datetime(2026, 10, 1, tzinfo=UTC))
