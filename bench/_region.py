"""The benchmark region: the Synthea corpus held by registered facilities, with consents.

Every Synthea bundle (one patient) is put in the custody of one of five disclosing
facilities (``meta.tag`` custodian on each clinical resource, as a hospital feed names its
facility), those facilities and one viewing facility are registered as active
Organizations of the facility directory, and each patient's Consent to share with all
participating facilities is recorded by the facility that holds the patient. The viewing
facility discloses nothing of its own, so every row it sees passes through the consent
grants. Tokens: the node's own client (the system principal, ``system/*.rs``) and a
practitioner of the viewing facility (``user/*.rs``), each for a given FHIR base.

Only what the tree under test offers is used (old checkouts run the same region).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench._common import corpus

FACILITIES = ["1110000011", "1110000029", "1110000037", "1110000045", "1110000052"]
VIEWER = "1130000016"
VIEWER_USER = "bench-viewer"
#: Synthea types that hold no patient data (registry and products): no custodian tag.
ADMINISTRATIVE = frozenset({"Organization", "Practitioner", "PractitionerRole", "Location", "Medication"})
CONSENT_DATE = "2026-01-10T10:00:00+09:00"


@dataclass
class Region:
    patients: list[str] = field(default_factory=list)
    holder: dict[str, str] = field(default_factory=dict)  # patient id -> facility code


def organization(code: str, role: str) -> dict[str, Any]:
    from hie.auth.registry import NETWORK_ROLE_EXT
    from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM

    return {"resourceType": "Organization", "id": f"bench-org-{code}", "name": f"Bench facility {code}",
            "active": True, "extension": [{"url": NETWORK_ROLE_EXT, "valueCode": role}],
            "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]}


def held(res: dict[str, Any], code: str) -> dict[str, Any]:
    from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM

    meta = dict(res.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), {"system": CUSTODIAN_TAG_SYSTEM, "code": code}]
    return {**res, "meta": meta}


def put_all(node: Any, resources: list[dict[str, Any]], source: str) -> None:
    from hie.ingest import ingest_bundle

    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source=source)


def tagged_bundles(count: int, out: Path) -> tuple[list[Path], Region]:
    """The first ``count`` Synthea bundles, each resource held by its patient's facility."""
    out.mkdir(parents=True, exist_ok=True)
    region = Region()
    files = sorted((corpus() / "synthea-r4" / "bundles").glob("*.json"))[:count]
    paths = []
    for i, f in enumerate(files):
        code = FACILITIES[i % len(FACILITIES)]
        bundle = json.loads(f.read_bytes())
        for e in bundle["entry"]:
            res = e["resource"]
            if res["resourceType"] == "Patient":
                region.patients.append(res["id"])
                region.holder[res["id"]] = code
            if res["resourceType"] not in ADMINISTRATIVE:
                e["resource"] = held(res, code)
        paths.append(out / f.name)
        paths[-1].write_text(json.dumps(bundle))
    return paths, region


def build(node: Any, bundles: int, workdir: Path, workers: int = 2) -> Region:
    """Register the facilities, load the tagged corpus, record every patient's Consent."""
    from consent import builder
    from hie.loader import load_paths

    put_all(node, [organization(c, "disclosing") for c in FACILITIES] + [organization(VIEWER, "viewing")],
            "bench-facilities")
    paths, region = tagged_bundles(bundles, workdir / "bundles")
    load_paths(node, paths, workers=workers)
    consents = [held(builder.all_facilities(f"bench-consent-{pid}", f"Patient/{pid}",
                                            recorded_by=f"Organization/bench-org-{code}", date_time=CONSENT_DATE),
                     code) for pid, code in region.holder.items()]
    put_all(node, consents, "bench-consents")
    from hie.auth.service import AuthService
    from hie.auth.users import add_user
    from hie.storage.db import write_tx

    with write_tx(node.engine) as conn:
        svc = AuthService.for_node(node)
        svc.ensure_local_client(conn)
        add_user(conn, svc.box, username=VIEWER_USER, display_name="Bench viewer (practitioner)",
                 kind="practitioner", organization_code=VIEWER, now_us=node.clock.now_us())
    return region


def tokens(node: Any, fhir_base: str, expires_in: int = 4 * 3600) -> dict[str, str]:
    """Bearer tokens for ``fhir_base``: {"system": node's own client, "viewer": the practitioner}."""
    from hie.auth.service import LOCAL_CLIENT_ID, AuthService, system_token
    from hie.auth.users import get_by_username
    from hie.storage.db import write_tx

    svc = AuthService.for_node(node)
    with write_tx(node.engine) as conn:
        user = get_by_username(conn, VIEWER_USER)
        if user is None:
            raise LookupError(f"{VIEWER_USER} is not enrolled: build() the region first")
        viewer = svc.tokens.issue(conn, issuer=svc.issuer(fhir_base), audience=fhir_base, client_id=LOCAL_CLIENT_ID,
                                  kind="user", scope=["user/*.rs"], expires_in=expires_in, user=user,
                                  organization_code=VIEWER, roles=user.roles).token
    return {"system": system_token(node, "system/*.rs", fhir_base=fhir_base, expires_in=expires_in),
            "viewer": viewer}
