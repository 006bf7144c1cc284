"""The consent access predicate: SQL that every repository statement carries.

:class:`ConsentPolicy` implements :class:`hie.storage.access.AccessPolicy`. For a principal
it returns ``access(alias)``, a boolean SQL expression over any table alias with the
enforcement columns (``resource``, ``resource_version``). A row is visible when one of
these holds (``consent.grants`` specifies the grant semantics exactly; the tests prove
this SQL equal to :func:`consent.grants.grants_permit`):

1. it is not about a patient and is administrative (facilities, practitioners, definitions);
2. the principal's facility disclosed it (``custodian``);
3. the principal is the patient it is about, and it is not tagged ``UNINFORMED``;
4. the principal's facility holds a matching permit grant and no matching deny grant
   (each sensitive label needs its own permit) — never for AuditEvents;
5. the principal has the operator role and it is an AuditEvent;
6. break-the-glass: an emergency clinician declared an emergency for this patient less
   than the configured time ago, and the row is in the emergency dataset;
7. disaster mode is on, the principal has a disaster-response role, and the row is in
   the emergency dataset.

Anything else is absent: reads answer 404, searches and totals do not count it.

Spec: https://hl7.org/fhir/R4/consent.html ; IHE BALP for the audit side.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, String, and_, exists, false, literal, not_, or_, select, true, union_all

from consent.classes import ADMINISTRATIVE, AUDIT
from consent.policy import DEFAULT_POLICY, EmergencyRule, Policy
from consent.vocab import SENSITIVE_LABELS, TREAT, purpose_closure
from hie.enforcement.tables import break_glass as BG
from hie.enforcement.tables import consent_grant as G
from hie.enforcement.tables import node_setting as S
from hie.principal import Principal
from hie.storage.access import AccessPredicate

OPERATOR_ROLE = "operator"

#: The sensitive-label codes as a constant row source (no table: nothing can empty it).
_LABELS = union_all(*(select(literal(code, String(16)).label("code")) for code in sorted(SENSITIVE_LABELS)))
DISASTER_SETTING = "disaster_mode"


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
        own_key = None
        if principal.kind == "patient" and principal.patient_id and conn is not None:
            own_key = self._patient_key(conn, principal.patient_id)
        glass_keys: list[str] = []
        if conn is not None and roles & self.policy.emergency_roles:
            glass_keys = [k for (k,) in conn.execute(
                select(BG.c.patient_key).where(BG.c.principal == principal_key(principal), BG.c.expires_at > now)
            ).all()]
        disaster = bool(roles & self.policy.disaster_roles) and conn is not None and disaster_mode_on(conn)

        built: dict[int, tuple[Any, ColumnElement[bool]]] = {}

        def access(r: Any) -> ColumnElement[bool]:
            # One request asks for the same alias several times (page, count, load).
            hit = built.get(id(r))
            if hit is not None and hit[0] is r:
                return hit[1]
            expr = build(r)
            built[id(r)] = (r, expr)
            return expr

        def build(r: Any) -> ColumnElement[bool]:
            c = r.c
            clauses: list[ColumnElement[bool]] = [and_(c.patient_key.is_(None), c.data_class == ADMINISTRATIVE)]
            if org:
                clauses.append(c.custodian == org)
                clauses.append(and_(c.patient_key.isnot(None), c.data_class != AUDIT,
                                    self._grant_visible(r, org, practitioner, purposes, now)))
            if own_key:
                clauses.append(and_(c.patient_key == own_key, c.hidden_from_patient.is_(False)))
            if OPERATOR_ROLE in roles:
                clauses.append(c.data_class == AUDIT)
            if glass_keys:
                clauses.append(and_(c.patient_key.in_(glass_keys), self._emergency(r, now)))
            if disaster:
                clauses.append(and_(c.patient_key.isnot(None), self._emergency(r, now)))
            return or_(*clauses)

        return access

    # -- grants ------------------------------------------------------------------------

    @staticmethod
    def _match(g: Any, r: Any, org: str, practitioner: str | None, purposes: list[str], now: int) -> ColumnElement[bool]:
        c = r.c
        dated = or_(
            and_(c.clinical_date.is_(None),
                 or_(g.c.effect == "deny", and_(g.c.data_from.is_(None), g.c.data_to.is_(None)))),
            and_(c.clinical_date.isnot(None),
                 or_(g.c.data_from.is_(None), g.c.data_from <= c.clinical_date),
                 or_(g.c.data_to.is_(None), c.clinical_date <= g.c.data_to)),
        )
        return and_(
            g.c.patient_key == c.patient_key,
            g.c.viewer_org.in_(["*", org]),
            g.c.viewer_practitioner.in_(["*", practitioner]) if practitioner else g.c.viewer_practitioner == "*",
            or_(g.c.data_class == "*", g.c.data_class == c.data_class),
            g.c.purpose.in_(["*", *purposes]),
            or_(g.c.valid_from.is_(None), g.c.valid_from <= now),
            or_(g.c.valid_to.is_(None), g.c.valid_to >= now),
            dated,
        )

    def _grant_visible(self, r: Any, org: str, practitioner: str | None, purposes: list[str],
                       now: int) -> ColumnElement[bool]:
        c = r.c

        def grants(effect: str, label_cond: Callable[[Any], ColumnElement[bool]]) -> ColumnElement[bool]:
            g = G.alias()
            # Only ``g`` is local: auto-correlation reaches just the immediately enclosing
            # SELECT, and the per-label permit check sits two levels below ``r`` (left to
            # itself it would scan a fresh, uncorrelated ``resource AS r``).
            return exists().where(g.c.effect == effect, self._match(g, r, org, practitioner, purposes, now),
                                  label_cond(g)).correlate_except(g)

        def carries(label: Any) -> ColumnElement[bool]:
            return c.sensitive_labels.contains(literal(" ") + label + literal(" "))

        denied = grants("deny", lambda g: or_(g.c.security_label == "*", carries(g.c.security_label)))
        ordinary = and_(c.sensitive_labels == " ", grants("permit", lambda g: g.c.security_label == ""))
        # A labelled row: no label it carries lacks a permit of its own.
        lab = _LABELS.subquery()
        unpermitted = exists().where(
            carries(lab.c.code),
            not_(grants("permit", lambda g: g.c.security_label == lab.c.code)),
        )
        labeled = and_(c.sensitive_labels != " ", not_(unpermitted))
        return and_(not_(denied), or_(ordinary, labeled))

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
