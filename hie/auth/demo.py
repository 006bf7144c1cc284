"""Credentials for the demo region (``hie serve`` on an empty database), one user per role:
an operator (the region: registry, Consents, audit), a clinician of 利根地域中央病院, a
registrar at the same hospital's counter (records patients' Consents), identity staff of
羽生総合医療センター (links that facility's patients), a patient (山田太郎, demo-p1), an emergency
physician of くき歯科医院 (role ``emergency-clinician``: break-the-glass in the viewer, since
山田太郎's consent excludes that clinic); plus the
hospital's backend system (an ES384 key pair) and a public viewer app. Each missing user is
added on start (an older demo database gains the new roles). Secrets are generated, written once to
``<data_dir>/demo-credentials.txt`` (mode 0600) and printed at every start; never
committed. Not for production: a real region enrols people with ``hie admin``.

Spec: https://hl7.org/fhir/smart-app-launch/
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from joserfc import jwk

from hie.auth.clients import add_client, get_client
from hie.auth.service import AuthService
from hie.auth.users import add_user, get_by_username
from hie.storage.db import write_tx

HOSPITAL_CODE = "1110000011"  # tone-central in hie.demo
IDENTITY_FACILITY_CODE = "1110000029"  # hanyu-general in hie.demo

# (username, display name, kind, facility code, practitioner id, patient id, roles)
USERS: list[tuple[str, str, str, str | None, str | None, str | None, list[str]]] = [
    ("demo-operator", "Region operator", "operator", None, None, None, []),
    ("demo-doctor", "田中 一郎 (tone-central)", "practitioner", HOSPITAL_CODE, "demo-pr1", None, []),
    ("demo-registrar", "受付 花子 (tone-central, consent counter)", "staff", HOSPITAL_CODE, None, None, ["registrar"]),
    ("demo-identity", "名寄 次郎 (hanyu-general, identity staff)", "staff", IDENTITY_FACILITY_CODE, None, None,
     ["identity-staff"]),
    ("demo-patient", "山田 太郎", "patient", None, None, "demo-p1", []),
    ("demo-er", "救急 三郎 (kuki-dental, emergency)", "practitioner", "1130000016", "demo-pr2", None,
     ["emergency-clinician"]),
]
APP_REDIRECT = "http://127.0.0.1:8765/callback"


def provision(node: Any) -> Path:
    """Create the demo participants once; return the credentials file."""
    data = Path(node.settings.data_dir)
    creds = data / "demo-credentials.txt"
    svc = AuthService.for_node(node)
    lines: list[str] = []
    with write_tx(node.engine) as conn:
        for username, name, kind, code, practitioner, patient, roles in USERS:
            if get_by_username(conn, username) is not None:
                continue
            e = add_user(conn, svc.box, username=username, display_name=name, kind=kind, now_us=node.clock.now_us(),
                         organization_code=code, practitioner_id=practitioner, patient_id=patient, roles=roles)
            role_text = f" ({kind}{', ' + ' '.join(roles) if roles else ''}{' at ' + code if code else ''})"
            lines += [f"user {username}{role_text}: password {e.password}", f"  TOTP: {e.totp_uri}",
                      f"  recovery codes: {' '.join(e.recovery_codes)}"]
        if get_client(conn, "demo-hospital-system") is None:
            key = jwk.ECKey.generate_key("P-384")
            key.ensure_kid()
            public = {"keys": [{**key.as_dict(private=False), "alg": "ES384", "kid": key.kid}]}
            add_client(conn, client_id="demo-hospital-system", name="利根地域中央病院 電子カルテ", kind="backend",
                       scope="system/*.cruds", jwks=public, organization_code=HOSPITAL_CODE,
                       now_us=node.clock.now_us())
            keyfile = data / "demo-hospital-system.private.jwk.json"
            fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**key.as_dict(private=True), "alg": "ES384", "kid": key.kid}, f)
            lines.append(f"backend client demo-hospital-system (private_key_jwt ES384), private key: {keyfile}")
        if get_client(conn, "demo-viewer-app") is None:
            add_client(conn, client_id="demo-viewer-app", name="Demo viewer", kind="public", auth_method="none",
                       scope="openid fhirUser offline_access launch/patient patient/*.rs user/*.rs",
                       redirect_uris=[APP_REDIRECT], now_us=node.clock.now_us())
            lines.append(f"public app demo-viewer-app (PKCE S256), redirect URI {APP_REDIRECT}")
    if lines:
        fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write("\n".join(lines) + "\n")
    return creds
