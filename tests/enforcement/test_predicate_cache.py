"""The consent predicate's compiled SQL is cached and reused for every viewer and moment.

``hie.enforcement.policy.FacilityAccess`` renders its SQL only when SQLAlchemy compiles a
statement shape for the first time; later requests reuse that compilation with their own
bind parameters. If any per-request value (the viewer's organization, practitioner,
purposes, the clock) were baked into the cached SQL instead of passed as a parameter, the
second viewer would see with the first viewer's rights. These tests run one statement
shape for several viewers and moments on one engine, check that the compiled form really
was reused (otherwise they would prove nothing), and that each answer is the viewer's own.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.engine.interfaces import CacheStats

from hie.clock import FixedClock
from hie.principal import Principal
from hie.storage.tables import resource
from tests.enforcement.scenario import ORGS, consents, region
from tests.enforcement.test_sql_matches_reference import NOW_US, VIEWERS, write_all

CACHE_HIT = CacheStats.CACHE_HIT
P1_LAB = "Observation/lab-a-2026"


def _run(node, principal) -> tuple[set[str], object]:
    with node.context(principal, write=False) as ctx:
        result = ctx.repo.conn.execute(select(resource.c.res_type, resource.c.res_id).where(
            resource.c.deleted.is_(False), ctx.access(resource)))
        hit = result.context.cache_hit
        ids = {f"{t}/{i}" for t, i in result.all()}
    return ids, hit


def _setup(node, state: str, now_us: int = NOW_US) -> None:
    node.clock = FixedClock(now_us)
    node.policy.clock = node.clock
    write_all(node, region())
    write_all(node, consents()[state])


def test_one_compiled_statement_answers_each_viewer_with_its_own_rights(node):
    _setup(node, "facility-b-only")
    _run(node, VIEWERS["facility-a"])  # compiles (or reuses) the shape
    seen_b, hit_b = _run(node, VIEWERS["facility-b"])
    seen_c, hit_c = _run(node, VIEWERS["facility-c"])
    seen_b2, hit_b2 = _run(node, VIEWERS["facility-b"])
    assert hit_b == hit_c == hit_b2 == CACHE_HIT
    assert P1_LAB in seen_b and seen_b2 == seen_b
    assert P1_LAB not in seen_c
    # a named practitioner is a different shape; the per-individual consent names dr-c only
    write_all(node, consents()["per-individual"])
    assert P1_LAB in _run(node, VIEWERS["dr-c-at-c"])[0]
    other = Principal(kind="user", name="x", user_id="ux", organization_id=ORGS["org-c"], practitioner_id="dr-x")
    seen_x, hit_x = _run(node, other)
    assert hit_x == CACHE_HIT
    assert P1_LAB not in seen_x


def test_the_clock_is_a_parameter_of_the_cached_statement(node):
    # consent in force during 2025 only, for facilities B and C
    in_2025 = int(datetime(2025, 6, 1, tzinfo=timezone.utc).timestamp() * 1_000_000)
    _setup(node, "expired", now_us=in_2025)
    _run(node, VIEWERS["facility-c"])
    seen_then, _ = _run(node, VIEWERS["facility-c"])
    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    seen_now, hit = _run(node, VIEWERS["facility-c"])
    assert hit == CACHE_HIT
    assert P1_LAB in seen_then
    assert P1_LAB not in seen_now


def test_purposes_are_a_parameter_of_the_cached_statement(node):
    # a permit for research only: TREAT does not see, HRESCH does
    from consent import builder

    _setup(node, "none")
    write_all(node, [builder.consent("c1", "Patient/p1", builder.provision(
        "permit", actors=["Organization/org-c"], purposes=["HRESCH"]),
        recorded_by="Organization/org-a", date_time="2026-01-10T10:00:00+09:00")])
    treat = VIEWERS["facility-c"]
    research = Principal(kind="user", name="c", user_id="uc", organization_id=ORGS["org-c"], purpose_of_use="HRESCH")
    _run(node, treat)
    seen_treat, _ = _run(node, treat)
    seen_research, hit = _run(node, research)
    assert hit == CACHE_HIT
    assert P1_LAB not in seen_treat
    assert P1_LAB in seen_research


def test_the_predicate_binds_tighter_than_the_conditions_around_it(node):
    # The facility branches render as one OR; ANDed with other conditions it must stay whole.
    _setup(node, "facility-b-only")
    for name in ("facility-a", "facility-b", "facility-c"):
        with node.context(VIEWERS[name], write=False) as ctx:
            types = set(ctx.repo.conn.execute(select(resource.c.res_type).where(
                resource.c.res_type == "Observation", ctx.access(resource))).scalars())
            hidden = ctx.repo.conn.execute(select(resource.c.res_id).where(
                resource.c.res_id == "lab-a-2026", resource.c.deleted.is_(True), ctx.access(resource))).all()
        assert types <= {"Observation"}, name
        assert hidden == [], name
