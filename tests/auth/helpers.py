"""Shared set-up for auth and audit tests: a facility, patients, backend clients with
their own key pairs, users enrolled with TOTP, and apps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyotp
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from joserfc import jwk

from hie.auth.clients import add_client
from hie.auth.service import AuthService
from hie.auth.users import Enrolment, add_user
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.ingest import ingest_bundle

HOSPITAL = "1110000011"
CLINIC = "1110000052"


def seed(node: Any) -> None:
    """Two facilities; patients p1 and p2 with an Observation each, disclosed by the hospital."""
    entries = []
    for fid, code in (("hosp", HOSPITAL), ("clinic", CLINIC)):
        entries.append({"resourceType": "Organization", "id": fid, "name": fid,
                        "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]})
    for pid in ("p1", "p2"):
        tag = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": HOSPITAL}]}
        entries.append({"resourceType": "Patient", "id": pid, "meta": tag, "gender": "female"})
        entries.append({"resourceType": "Observation", "id": f"obs-{pid}", "meta": tag, "status": "final",
                        "code": {"text": "BP"}, "subject": {"reference": f"Patient/{pid}"}})
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in entries]}
    ingest_bundle(node, bundle, source="test")


@dataclass
class Backend:
    client_id: str
    key: Any
    alg: str


def backend(node: Any, *, alg: str = "ES384", scope: str = "system/*.cruds", org: str = HOSPITAL,
            roles: list[str] | None = None, jwks_uri: str | None = None) -> Backend:
    key = jwk.ECKey.generate_key("P-384") if alg.startswith("ES") else jwk.RSAKey.generate_key(2048)
    key.ensure_kid()
    public = {"keys": [{**key.as_dict(private=False), "alg": alg, "kid": key.kid}]}
    with node.engine.begin() as conn:
        client, _ = add_client(conn, name=f"hospital system {alg}", kind="backend", scope=scope,
                               jwks=None if jwks_uri else public, jwks_uri=jwks_uri, organization_code=org,
                               roles=roles, now_us=node.clock.now_us())
    return Backend(client.client_id, key, alg)


class ShortAssertion(PrivateKeyJWT):
    """authlib's private_key_jwt with a SMART-sized lifetime (<= 5 minutes) and a fresh jti."""

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return private_key_jwt_sign(auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
                                    alg=self.alg, claims={"exp": int(time.time()) + 240},
                                    header={"kid": auth.client_secret.kid})


def user(node: Any, *, kind: str = "practitioner", username: str = "dr-tanaka", org: str | None = HOSPITAL,
         patient_id: str | None = None, roles: list[str] | None = None) -> Enrolment:
    svc = AuthService.for_node(node)
    with node.engine.begin() as conn:
        return add_user(conn, svc.box, username=username, display_name=username, kind=kind,
                        organization_code=org if kind in ("practitioner", "staff") else None,
                        practitioner_id="pr1" if kind == "practitioner" else None, patient_id=patient_id,
                        roles=roles, now_us=node.clock.now_us())


def app_client(node: Any, *, redirect: str = "http://127.0.0.1:9/cb",
               scope: str = "openid fhirUser offline_access launch/patient patient/*.rs user/*.rs") -> str:
    with node.engine.begin() as conn:
        client, _ = add_client(conn, name="Viewer app", kind="public", auth_method="none", scope=scope,
                               redirect_uris=[redirect], now_us=node.clock.now_us())
    return client.client_id


def totp_now(enrolment: Enrolment, offset_steps: int = 0) -> str:
    t = pyotp.TOTP(enrolment.totp_secret)
    return t.at(time.time() + offset_steps * t.interval)
