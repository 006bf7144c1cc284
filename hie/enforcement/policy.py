"""The consent access predicate: SQL that every repository statement carries.

:class:`ConsentPolicy` implements :class:`hie.storage.access.AccessPolicy`. For a principal
it returns ``access(alias)``, a boolean SQL expression over any table alias with the
enforcement columns (``resource``, ``resource_version``). A row is visible when one of
these holds (``consent.grants`` specifies the grant semantics exactly; the tests prove
this SQL equal to :func:`consent.grants.grants_permit`):

1. it is not about a patient and is administrative (facilities, practitioners, definitions);
2. the principal's facility disclosed it (``custodian``) and may disclose;
3. the principal is the patient it is about, and it is not tagged ``UNINFORMED``;
4. the principal's facility may view, holds a matching permit grant and no matching deny
   grant (each sensitive label needs its own permit) — never for AuditEvents, and never for
   Consents (a viewer facility does not learn what a patient allowed or whom they excluded);
5. the principal has the operator role and it is an AuditEvent or a Consent;
6. break-the-glass: an emergency clinician of a facility that may view declared an emergency
   for this patient less than the configured time ago, and the row is in the emergency dataset;
7. disaster mode is on, the principal has a disaster-response role at a facility that may
   view, and the row is in the emergency dataset.

"May disclose" and "may view" come from the facility directory
(:mod:`hie.enforcement.facilities`): the principal's facility code must be a registered,
active Organization whose network role allows it. A code nobody registered (or an inactive
one) gets branches 1, 3 and 5 only — so a Consent without actors ("any facility") never
matches it.

Anything else is absent: reads answer 404, searches and totals do not count it.

Spec: https://hl7.org/fhir/R4/consent.html ; IHE BALP for the audit side.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Boolean,
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

from consent.classes import ADMINISTRATIVE, AUDIT, CONSENT
from consent.policy import DEFAULT_POLICY, EmergencyRule, Policy
from consent.vocab import SENSITIVE_LABELS, TREAT, purpose_closure
from hie.enforcement import facilities
from hie.enforcement.tables import break_glass as BG
from hie.enforcement.tables import consent_grant as G
from hie.enforcement.tables import node_setting as S
from hie.principal import Principal
from hie.storage.access import AccessPredicate

OPERATOR_ROLE = "operator"

DISASTER_SETTING = "disaster_mode"


def put_setting(conn: Connection, name: str, value: str, *, by: str, now: int) -> None:
    """Set a region-wide switch in ``node_setting`` (insert or update)."""
    values = {"value": value, "changed_at": now, "changed_by": by}
    if conn.execute(select(S.c.name).where(S.c.name == name)).first():
        conn.execute(S.update().where(S.c.name == name).values(**values))
    else:
        conn.execute(S.insert(), {"name": name, **values})


def disaster_mode_on(conn: Connection) -> bool:
    value = conn.execute(select(S.c.value).where(S.c.name == DISASTER_SETTING)).scalar_one_or_none()
    return value == "on"


def principal_key(principal: Principal) -> str:
    return f"user:{principal.user_id}" if principal.user_id else f"client:{principal.client_id or principal.name}"


class ConsentPolicy:
    def __init__(
        self,
        *,
        clock: Any,
        patient_key: Callable[[Connection, str], str] | None = None,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self.clock = clock
        self.policy = policy
        self._patient_key = patient_key or (lambda _conn, pid: pid)

    def set_patient_key_resolver(self, resolver: Callable[[Connection, str], str]) -> None:
        self._patient_key = resolver

    # -- the predicate -----------------------------------------------------------------

    def predicate(self, principal: Principal, conn: Connection | None = None) -> AccessPredicate:
        if principal.is_system:
            return lambda _r: true()
        now = self.clock.now_us()
        org = principal.organization_id
        practitioner = principal.practitioner_id
        purposes = sorted(purpose_closure(principal.purpose_of_use or TREAT))
        roles = principal.roles
        # "May view" and "may disclose" are tested inside the statement (FacilityAccess reads
        # the facility's role row): no lookup here. Break-the-glass and disaster mode need the
        # facility before they add their branches, so only their principals look it up.
        glass_role = self.policy.break_glass.admits(roles, principal.purpose_of_use)
        disaster_role = bool(roles & self.policy.disaster_roles)
        facility = (facilities.lookup(conn, org) if org and conn is not None and (glass_role or disaster_role)
                    else None)
        may_view = facility is not None and facility.may_view
        own_key = None
        if principal.kind == "patient" and principal.patient_id and conn is not None:
            own_key = self._patient_key(conn, principal.patient_id)
        glass_keys: list[str] = []
        # consent.policy.BreakGlassRule: an emergency role and the ETREAT purpose, on every request
        if conn is not None and may_view and glass_role:
            glass_keys = [k for (k,) in conn.execute(
                select(BG.c.patient_key).where(BG.c.principal == principal_key(principal), BG.c.expires_at > now)
            ).all()]
        disaster = may_view and disaster_role and conn is not None and disaster_mode_on(conn)
        viewer = FacilityViewer.of(org, practitioner, purposes, now) if org else None

        built: dict[int, tuple[Any, ColumnElement[bool]]] = {}

        def access(r: Any) -> ColumnElement[bool]:
            # One request may ask for the same alias several times (page and count).
            hit = built.get(id(r))
            if hit is not None and hit[0] is r:
                return hit[1]
            expr = build(r)
            built[id(r)] = (r, expr)
            return expr

        def build(r: Any) -> ColumnElement[bool]:
            c = r.c
            clauses: list[ColumnElement[bool]] = [
                FacilityAccess(r, viewer) if viewer is not None else _administrative(c)]
            if own_key:
                clauses.append(and_(c.patient_key == own_key, c.hidden_from_patient.is_(False)))
            if OPERATOR_ROLE in roles:
                clauses.append(or_(c.data_class == AUDIT, c.data_class == CONSENT))
            if glass_keys:
                clauses.append(and_(c.patient_key.in_(glass_keys), self._emergency(r, now)))
            if disaster:
                clauses.append(and_(c.patient_key.isnot(None), self._emergency(r, now)))
            return clauses[0] if len(clauses) == 1 else or_(*clauses)

        return access

    # -- emergency dataset -------------------------------------------------------------

    def _emergency(self, r: Any, now: int) -> ColumnElement[bool]:
        c = r.c
        rules = [self._rule(c, rule, now) for rule in self.policy.emergency_dataset.rules]
        cond = or_(*rules) if rules else false()
        if not self.policy.emergency_includes_sensitive:
            cond = and_(cond, c.sensitive_labels == " ")
        return and_(cond, c.data_class != AUDIT)

    @staticmethod
    def _rule(c: Any, rule: EmergencyRule, now: int) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = [c.data_class == rule.data_class]
        if rule.include_statuses is not None:
            parts.append(c.status.in_(sorted(rule.include_statuses)))
        if rule.exclude_statuses:
            parts.append(or_(c.status.is_(None), c.status.notin_(sorted(rule.exclude_statuses))))
        if rule.max_age_days is not None:
            oldest = now - int(timedelta(days=rule.max_age_days).total_seconds() * 1_000_000)
            parts.append(and_(c.clinical_date.isnot(None), c.clinical_date >= oldest))
        return and_(*parts)


# -- what a facility sees -------------------------------------------------------------------
#
# Branches 1, 2 and 4 of the module docstring for a principal with a facility code, i.e.
# administrative rows, the facility's own disclosures (if it may disclose) and
# ``visible(r)`` of ``consent.grants`` (if it may view). "May disclose" / "may view" are
# tested in the statement itself: an uncorrelated EXISTS on the facility's role row in
# ``node_setting`` (:func:`hie.enforcement.facilities.role_setting`, kept by the directory's
# write listener), which PostgreSQL runs once per statement as an InitPlan (one primary-key
# probe) and SQLite once per statement too. No request reads the directory first, and a
# role change committed by any process holds from the next statement on. A code nobody
# registered (or an inactive one) has no row: administrative rows only.
# Branch 4 is ONE correlated aggregate over the matching grants:
#
#   coalesce((SELECT CASE
#               WHEN max(<deny row covering r's labels>) = 1          THEN 0
#               WHEN r.sensitive_labels = ' '                          THEN max(<ordinary permit>)
#               WHEN (r carries no ETH OR max(<ETH grant>) = 1) AND ... (every sensitive code)
#                                                                      THEN 1 END
#             FROM consent_grant cg WHERE match(cg, r)), 0) = 1
#
# Measured on PostgreSQL 15 at 1M resources (docs/adr/0004-consent-enforcement.md): the
# former shape -- NOT EXISTS deny, EXISTS permit, and a NOT EXISTS over the label set nesting
# a third EXISTS -- took ~0.8 ms to plan (three SubPlans), this one ~0.3 ms; execution is one
# probe of ``ix_consent_grant_lookup`` per candidate row either way. ``max(CASE ...)`` per
# sensitive code avoids ``count(DISTINCT ...)``, which sets up a sort for every row.
#
# It is a custom construct so that a request builds next to nothing: its cache key is the
# row alias, the viewer's bind parameters (organization, practitioner, each purpose of the
# closure, now) and which of them are present; the SQL is generated only when SQLAlchemy
# compiles a statement shape it has not cached yet, and that compilation is then reused for
# every viewer. Hence the rule: every per-request value reaches the SQL through those bind
# parameters and nothing else. tests/enforcement/test_predicate_cache.py checks that a
# reused compilation answers each viewer, moment and purpose with its own rights.


class FacilityViewer:
    """The per-request values of :class:`FacilityAccess`, as bind parameters."""

    __slots__ = ("now", "org", "practitioner", "purposes")

    def __init__(self, org: Any, practitioner: Any, purposes: tuple[Any, ...], now: Any) -> None:
        self.org = org
        self.practitioner = practitioner
        self.purposes = purposes
        self.now = now

    @classmethod
    def of(cls, org: str, practitioner: str | None, purposes: list[str], now: int) -> FacilityViewer:
        return cls(
            bindparam("consent_org", org, type_=String(64), unique=True),
            None if not practitioner else bindparam("consent_practitioner", practitioner, type_=String(64),
                                                    unique=True),
            # one parameter per purpose rather than an expanding IN: no per-execution rewrite
            tuple(bindparam("consent_purpose", p, type_=String(32), unique=True) for p in purposes),
            bindparam("consent_now", now, type_=BigInteger(), unique=True),
        )


class FacilityAccess(ColumnElement[bool]):
    """What a facility's principal may see of row ``r`` (see the block comment above)."""

    __visit_name__ = "hie_consent_facility_access"
    type = Boolean()
    _traverse_internals = [
        ("row", InternalTraversal.dp_clauseelement),
        ("org", InternalTraversal.dp_clauseelement),
        ("practitioner", InternalTraversal.dp_clauseelement),
        ("purposes", InternalTraversal.dp_clauseelement_tuple),
        ("now", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, row: Any, viewer: FacilityViewer) -> None:
        self.row = row
        self.org = viewer.org
        self.practitioner = viewer.practitioner
        self.purposes = viewer.purposes
        self.now = viewer.now

    @property
    def _from_objects(self) -> list[Any]:
        return [self.row]

    def expand(self) -> ColumnElement[bool]:
        """The plain SQLAlchemy expression (built at compile time only)."""
        c = self.row.c
        return or_(
            _administrative(c),
            and_(c.custodian == self.org, self._role_in(facilities.DISCLOSING_ROLES)),
            and_(c.patient_key.isnot(None), c.data_class != _k(AUDIT), c.data_class != _k(CONSENT),
                 self._role_in(facilities.VIEWING_ROLES), self._grants()),
        )

    def _role_in(self, roles: frozenset[str]) -> ColumnElement[bool]:
        """The principal's facility is registered, active and has one of ``roles``
        (uncorrelated: evaluated once per statement)."""
        fr = S.alias("fr")
        return exists().where(fr.c.name == _k(facilities.ROLE_PREFIX) + self.org,
                              fr.c.value.in_([_k(r) for r in sorted(roles)]))

    def _grants(self) -> ColumnElement[bool]:
        c = self.row.c
        g = G.alias("cg")  # never nested in another grant check, so one name is unambiguous
        deny, permit, anything = _k("deny"), _k("permit"), _k("*")
        dated = or_(
            and_(c.clinical_date.is_(None),
                 or_(g.c.effect == deny, and_(g.c.data_from.is_(None), g.c.data_to.is_(None)))),
            and_(c.clinical_date.isnot(None),
                 or_(g.c.data_from.is_(None), g.c.data_from <= c.clinical_date),
                 or_(g.c.data_to.is_(None), c.clinical_date <= g.c.data_to)),
        )
        match = and_(
            g.c.patient_key == c.patient_key,
            g.c.viewer_org.in_([anything, self.org]),
            (g.c.viewer_practitioner == anything if self.practitioner is None
             else g.c.viewer_practitioner.in_([anything, self.practitioner])),
            or_(g.c.data_class == anything, g.c.data_class == c.data_class),
            g.c.purpose.in_([anything, *self.purposes]),
            or_(g.c.valid_from.is_(None), g.c.valid_from <= self.now),
            or_(g.c.valid_to.is_(None), g.c.valid_to >= self.now),
            dated,
        )

        def flag(cond: ColumnElement[bool]) -> Any:
            """1 if a matching grant satisfies ``cond``, else NULL (no such grant)."""
            return func.max(case((cond, _k(1))))

        one = _k(1)
        denied = flag(and_(g.c.effect == deny, or_(
            g.c.security_label == anything,
            c.sensitive_labels.like(_k("% ") + g.c.security_label + _k(" %")))))
        ordinary = flag(and_(g.c.effect == permit, g.c.security_label == _k("")))
        # Reached only when no matching deny covers a label the row carries, so every
        # matching grant whose label the row carries is a permit: no effect test needed.
        every_label = and_(*(
            or_(c.sensitive_labels.notlike(_k(f"% {code} %")), flag(g.c.security_label == _k(code)) == one)
            for code in sorted(SENSITIVE_LABELS)))
        verdict = case(
            (denied == one, _k(0)),
            (c.sensitive_labels == _k(" "), ordinary),
            (every_label, one),
        )
        sub = select(verdict).where(match).correlate_except(g).scalar_subquery()
        return func.coalesce(sub, _k(0)) == one


_CONSTANT = re.compile(r"[A-Za-z0-9 %*_:]*")


def _k(value: str | int) -> Any:
    """A constant of the predicate rendered inline: the statement stays short and carries few
    parameters (psycopg re-parses every statement above 4,096 characters or 50 parameters on
    each execution, ~1 ms). Only this module's fixed vocabulary gets here, never input."""
    if isinstance(value, int):
        return literal_column(str(int(value)), Integer())
    if not _CONSTANT.fullmatch(value):
        raise ValueError(f"not a predicate constant: {value!r}")
    return literal_column(f"'{value}'", String())


def _administrative(c: Any) -> ColumnElement[bool]:
    return and_(c.patient_key.is_(None), c.data_class == _k(ADMINISTRATIVE))


@compiles(FacilityAccess)
def _compile_facility_access(element: FacilityAccess, compiler: Any, **kw: Any) -> str:
    # Always parenthesized: the expansion is an OR, and the statement around it ANDs.
    return f"({compiler.process(element.expand(), **kw)})"
