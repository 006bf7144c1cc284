"""Keep ``consent_grant`` in step with Consent resources, in the same transaction.

A write listener (:class:`hie.storage.repository.WriteListener`): whenever a Consent is
created, updated or deleted, its rows are deleted and, if the Consent is active, compiled
again with :func:`consent.grants.compile_grants`. Revocation (status ``inactive``) therefore
takes effect on the very next request. A Consent that does not fit the node's profile is
rejected with the element path (the whole write rolls back).

Viewer keys: a provision's actor ``Organization/<id>`` is stored as that facility's key —
its 10-digit medical-institution code, the same key the ``custodian`` column and a
principal's ``organization_id`` carry — looked up in the facility directory
(:mod:`hie.enforcement.facilities`). An active Consent is refused (422, ``HIE-1011``, the
actor's element path) when a permit names an Organization that is not a registered, active
facility whose network role lets it view, or when any provision (a deny included) names an
Organization that is not in the registry at all. A deny may name a facility that cannot view
today: an exclusion never widens access and must hold if the facility's role changes later.
Practitioner actors are matched by id and need no registry entry. A provision without
actors reaches every facility the access predicate treats as viewing (registered, active,
role viewing or both): see :mod:`hie.enforcement.policy`.

Holding: a Consent recorded by a facility (its custodian is a facility code: its registrar
or its feed wrote it, whatever the facility's network role) permits only while that facility holds
the patient's regional person -- a current Patient in its custody linked to the person by a
link that is not a scored ``auto`` link, the rule the write guard applies at write time
(:meth:`hie.enforcement.writes.WriteGuard.holds`). While it does not, its permits compile to
nothing and its exclusions stay (an exclusion never widens access). Patient-authored
Consents (custodian ``patient-source``), those the operator recorded (custodian
``operator-recorded``, set by the write guard from who wrote them) and those the system wrote
without a facility are unaffected. Identity changes that
move records between persons or change how a record is linked recompile the Consents of
both persons through :func:`follow_identity`, and so does a Patient created or deleted, so
the rule holds at all times.

Spec: https://hl7.org/fhir/R4/consent.html ; the node's profile: docs/consent-profile.md
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert

from consent.errors import ConsentError
from consent.grants import compile_grants
from consent.model import Consent, parse_consent
from consent.scope import ANY
from hie.enforcement.tables import consent_grant as G
from hie.enforcement import facilities
from hie.enforcement.writes import OPERATOR_SOURCE, PATIENT_SOURCE
from hie.errors import ConsentActorRefused, InvalidResource
from hie.storage.repository import Repository, Stored, WriteResult


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1_000_000)


def _actor_problem(facility: facilities.Facility | None, effect: str) -> str | None:
    if facility is None:
        return "is not a registered facility (no Organization with a medical-institution code)"
    if effect == "deny":
        return None
    if not facility.active:
        return "is not an active facility"
    if not facility.may_view:
        return f"has the network role '{facility.network_role}', which does not let it view other facilities' data"
    return None


def viewer_keys(conn: Any, consent: Consent) -> dict[str, str]:
    """The facility key of every Organization actor of ``consent``, or the refusal of the
    first actor the registry does not allow (see the module docstring)."""
    keys: dict[str, str] = {}
    for chain in consent.provision.walk():
        node = chain[-1]
        for actor in node.actors:
            if actor.kind != "Organization":
                continue
            facility = facilities.organization(conn, actor.id)
            problem = _actor_problem(facility, node.type)
            if problem is not None or facility is None:
                path = actor.path if actor.path.endswith(".reference") else f"{actor.path}.reference"
                raise ConsentActorRefused(f"{path}: Organization/{actor.id} {problem}", expression=[path])
            keys[actor.id] = facility.code
    return keys


def parse_stored_consent(resource: dict[str, Any], patient_key: str | None) -> Consent:
    try:
        return parse_consent(resource, patient_key=patient_key)
    except ConsentError as err:
        path = getattr(err, "path", None) or "Consent"
        raise InvalidResource(f"{path}: {err.message}", expression=[path]) from None


def grant_rows(conn: Any, consent_pk: int, consent: Consent) -> list[dict[str, Any]]:
    grants = compile_grants(consent)
    keys = viewer_keys(conn, consent) if grants else {}
    rows = []
    for g in grants:
        org = g.viewer_org if g.viewer_org == ANY else keys[g.viewer_org]
        rows.append({
            "consent_pk": consent_pk, "consent_id": g.consent_id, "patient_key": g.patient,
            "effect": g.effect, "viewer_org": org, "viewer_practitioner": g.viewer_practitioner,
            "data_class": g.data_class, "security_label": g.security_label, "purpose": g.purpose,
            "data_from": _us(g.data_from), "data_to": _us(g.data_to),
            "valid_from": _us(g.valid_from), "valid_to": _us(g.valid_to),
            "provision_path": g.provision_path[:256],
        })
    return rows


def recording_facility(custodian: str | None) -> str | None:
    """The facility whose registrar (or feed) recorded a Consent with this ``custodian``:
    the holding rule applies to every facility code, whatever its network role. None for the
    Consents nobody's facility recorded: ``patient-source`` (the patient), ``operator-recorded``
    (the operator, marked by the write guard at creation) and no custodian (the system)."""
    if not custodian or custodian in (PATIENT_SOURCE, OPERATOR_SOURCE):
        return None
    return custodian


def holds(repo: Repository, code: str, key: str) -> bool:
    """Facility ``code`` holds person ``key`` (the write guard's rule, see the module docstring)."""
    from hie.identity.store import vouched_members

    # a fact about custody, not data: like the write guard's check it returns nothing to a caller
    return repo._custodial("Patient", vouched_members(repo.conn, key), code)


def _in_force(repo: Repository, pk: int, patient_key: str) -> bool:
    custodian = repo.row_custodian(pk)
    code = recording_facility(custodian)
    return code is None or holds(repo, code, patient_key)


def on_write(repo: Repository, results: list[WriteResult]) -> None:
    """Write listener: recompile the grants of every Consent that changed (permits only
    while the recording facility holds the patient, see the module docstring). A Patient
    deleted or created changes what its facility holds: the Consents of its person follow."""
    holders: list[str] = []
    for res in results:
        st = res.stored
        if st is not None and st.res_type == "Patient" and res.outcome in ("created", "deleted"):
            key = repo.row_patient_key(st.pk)
            if key is not None:
                holders.append(key)
        if st is None or st.res_type != "Consent":
            continue
        repo.conn.execute(delete(G).where(G.c.consent_pk == st.pk))
        if st.deleted or st.content is None:
            continue
        patient_key = repo.row_patient_key(st.pk)
        if patient_key is None:
            raise InvalidResource("Consent.patient: a Consent must name the Patient it is about",
                                  expression=["Consent.patient"])
        consent = parse_stored_consent(st.resource(), patient_key)
        rows = grant_rows(repo.conn, st.pk, consent)
        if rows and not _in_force(repo, st.pk, patient_key):
            rows = [r for r in rows if r["effect"] != "permit"]
        if rows:
            repo.conn.execute(insert(G), rows)
    if holders:
        follow_identity(repo, holders)


def follow_identity(repo: Repository, keys: list[str]) -> None:
    """Identity changed which person a record belongs to, or how it is linked (link,
    auto-link, unlink, merge, unmerge): every current Consent of the persons ``keys`` is
    compiled again, so the grants carry the Consent's new patient key and the holding rule
    sees the links as they are now. Called after the links were set."""
    from hie.identity.rekey import current_rows

    for key in dict.fromkeys(keys):
        rows = current_rows(repo.conn, "Consent", key)
        if rows:
            on_write(repo, [WriteResult("updated", Stored(*row)) for row in rows])


def follow_registry(conn: Any, renamed: dict[str, str], removed: set[str]) -> None:
    """Keep grant rows on the facility their Consent named when the registry changes its code
    (``renamed``: old code -> new code) or drops it (``removed``: the permits of that code
    go, so a code registered again later inherits nothing; its exclusions stay)."""
    from sqlalchemy import update

    for old, new in renamed.items():
        conn.execute(update(G).where(G.c.viewer_org == old).values(viewer_org=new))
    if removed:
        conn.execute(delete(G).where(G.c.viewer_org.in_(sorted(removed)), G.c.effect == "permit"))
