"""Authentication and authorization of everyone who reads or writes the node.

SMART App Launch 2.0 (authorization code + PKCE, OpenID Connect, refresh tokens) and
SMART Backend Services (client_credentials with ``private_key_jwt``), served by an
authlib authorization server (:mod:`hie.auth.server`); bearer-token verification and
SMART v2 scope checks for every FHIR interaction (:mod:`hie.auth.bearer`,
:mod:`hie.auth.scopes`); two-factor login for people (:mod:`hie.auth.passwords`).

Spec: https://hl7.org/fhir/smart-app-launch/
"""
