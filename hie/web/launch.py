"""SMART EHR launch into the viewer: a hospital's EHR opens the viewer on its current patient.

1. The EHR (a registered backend client of its facility, or a logged-in user of it) asks
   ``POST /viewer/launch-context`` with its bearer token and ``patient=<id>``; the node reads
   that Patient with the EHR's own principal (404 exactly as a FHIR read when the EHR may not
   see it) and answers an opaque ``launch`` value: a short-lived JWT signed by the node
   (``typ`` ``hie-launch+jwt``, so it can never pass as an access token) naming the patient and
   the facility.
2. The EHR opens ``/viewer/launch?iss=<FHIR base>&launch=<value>``; the viewer starts the
   authorization-code flow with ``launch=<value>`` and the ``launch`` scope.
3. At login the authorization server resolves the value (:func:`patient_of`): the launch
   patient becomes the token's ``patient`` context only if the value is valid, unexpired and
   the clinician who logs in works for the facility that launched. The viewer then opens that
   patient's page.

Spec: https://hl7.org/fhir/smart-app-launch/app-launch.html#launch-app-ehr-launch ;
https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#launch-context-arrives-with-your-access_token
"""

from __future__ import annotations

import time
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from hie.auth.service import AuthService

LAUNCH_TYP = "hie-launch+jwt"
LAUNCH_AUD = "hie-viewer-launch"
LAUNCH_TTL = 300  # seconds


def mint(node: Any, *, patient_id: str, organization_code: str, fhir_base: str) -> str:
    svc = AuthService.for_node(node)
    key = svc.keys.signing("ES256")
    now = int(time.time())
    claims = {"iss": svc.issuer(fhir_base), "aud": LAUNCH_AUD, "patient": patient_id, "org": organization_code,
              "iat": now, "exp": now + LAUNCH_TTL}
    return jwt.encode({"alg": "ES256", "kid": key.kid, "typ": LAUNCH_TYP}, claims, key.key)


def patient_of(node: Any, launch: str | None, user: Any) -> str | None:
    """The patient of a valid ``launch`` value for ``user`` (same facility), else None."""
    if not launch or user is None or not getattr(user, "organization_code", None):
        return None
    svc = AuthService.for_node(node)
    try:
        from joserfc import jws

        header = jws.extract_compact(launch.encode()).headers()
        key = svc.keys.verification(str(header.get("kid")))
        if header.get("typ") != LAUNCH_TYP or key is None or key.alg != "ES256":
            return None
        claims = jwt.decode(launch, key.key, algorithms=["ES256"]).claims
    except (JoseError, ValueError, UnicodeError):
        return None
    if claims.get("aud") != LAUNCH_AUD or not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
        return None
    if claims.get("org") != user.organization_code:
        return None
    patient = claims.get("patient")
    return str(patient) if patient else None
