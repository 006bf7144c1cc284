"""``hie admin``: the operator's commands for participants, credentials and keys.

| command | what |
|---|---|
| ``add-facility`` | an ``Organization`` with its 10-digit code, kind, network role, region |
| ``add-user`` | a person with password + TOTP (prints the enrolment URI and recovery codes) |
| ``reset-user`` | new password, TOTP seed and recovery codes; unlock |
| ``add-client`` | a hospital system (JWKS file or URL) or an app; prints the client id |
| ``disable-user``, ``enable-user`` | a person cannot log in and their tokens stop working (or again can) |
| ``disable-client``, ``enable-client`` | the same for a client |
| ``revoke-tokens`` | revoke every token of a user or client, or one token by its ``jti`` |
| ``rotate-keys`` | new token-signing and audit-checkpoint keys (``--retire-previous``: old ones out at once) |
| ``retire-key`` | delete one token-signing key: the tokens it signed stop verifying |
| ``token`` | an access token for scripts (``--client ID --scope "..."``) |
| ``renew-registrations`` | extend registered physicians to the new fiscal year |

Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html ; ADR docs/adr/0002-auth-and-audit.md
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from hie.cli_support import CliError

admin_app = typer.Typer(help="Participants, credentials and keys (operator).", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


def _node():  # noqa: ANN202
    from hie.cli_support import open_node

    return open_node()


def _check_resource(node, option: str, res_type: str, res_id: str | None) -> None:  # noqa: ANN001
    """A user's Patient or Practitioner must exist (read as the system principal, audited)."""
    from hie.errors import Gone, NotFound
    from hie.principal import SYSTEM

    if res_id is None:
        return
    node.system_use("maintenance", f"hie admin add-user: does {res_type}/{res_id} exist")
    with node.context(SYSTEM, write=False) as ctx:
        try:
            ctx.repo.read(res_type, res_id)
        except (NotFound, Gone):
            raise CliError(f"{option}: there is no {res_type}/{res_id}", 2) from None


def _check_redirect_uri(uri: str) -> None:
    """An absolute URI: http(s) with a host, or a native app's private-use scheme (RFC 8252)."""
    from urllib.parse import urlsplit

    from hie.cli_support import usage

    parts = urlsplit(uri)
    web = parts.scheme in ("http", "https")
    if not parts.scheme or any(c.isspace() for c in uri) or (web and not parts.hostname) or parts.fragment:
        usage("--redirect-uri", f"{uri!r} is not an absolute URI without a fragment "
              "(https://app.example.jp/callback, http://127.0.0.1:8765/callback, jp.example.app:/callback)")


def _check_scope(scope: str) -> None:
    """Every scope must be one the node understands (a typo would grant nothing, silently)."""
    from hie.auth.scopes import OTHER_SCOPES, parse_one
    from hie.cli_support import usage

    bad = [s for s in scope.split() if s not in OTHER_SCOPES and parse_one(s) is None]
    if bad or not scope.split():
        usage("--scope", f"{' '.join(bad) or repr(scope)} is not a SMART scope (e.g. system/*.rs, "
              "system/Patient.rs, user/*.cruds, openid)")


@admin_app.command("add-facility")
def add_facility(
    code: str = typer.Option(..., help="10-digit medical-institution code."),
    name: str = typer.Option(..., help="Facility name."),
    kind: str = typer.Option(
        "clinic", help="hospital | clinic | dental-clinic | pharmacy | care-facility | imaging-centre | lab-centre"),
    role: str = typer.Option("both", help="Role in the network: disclosing | viewing | both."),
    region: str = typer.Option(..., help="Region (prefecture or secondary medical area)."),
    fid: str = typer.Option(None, "--id", help="Organization id (default: org-<code>)."),
) -> None:
    """Register a facility as an Organization resource (re-run with the same --id to change it)."""
    from hie.auth.registry import FACILITY_KINDS, NETWORK_ROLES, facility
    from hie.cli_support import CliError, choice, facility_code
    from hie.enforcement.facilities import lookup
    from hie.ingest import ingest_bundle

    facility_code("--code", code)
    for option, value in (("--name", name), ("--region", region)):
        if not value.strip():
            raise CliError(f"{option}: must not be empty", 2)
    choice("--kind", kind, FACILITY_KINDS)
    choice("--role", role, NETWORK_ROLES)
    res = facility(fid=fid or f"org-{code}", code=code, name=name, kind=kind, role=role, region=region)
    node = _node()
    try:
        with node.engine.connect() as conn:
            same = lookup(conn, code)
        if same is not None and same.org_id != res["id"]:  # one code is one facility
            raise CliError(f"--code: {code} is already registered as Organization/{same.org_id} ({same.name}); "
                           f"give --id {same.org_id} to change that facility", 1)
        ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": res, "request": {"method": "PUT", "url": f"Organization/{res['id']}"}}]}, source="hie admin")
    finally:
        node.close()
    out.print(f"Organization/{res['id']} ({code} {name})")


@admin_app.command("add-user")
def add_user_cmd(
    username: str = typer.Argument(...),
    name: str = typer.Option(..., help="Display name."),
    kind: str = typer.Option("practitioner", help="practitioner | staff | patient | operator"),
    facility: str = typer.Option(None, help="Medical-institution code of the facility they act for."),
    practitioner: str = typer.Option(None, help="Practitioner resource id (clinicians)."),
    patient: str = typer.Option(None, help="Patient resource id (patients)."),
    role: list[str] = typer.Option([], help="Extra roles (repeatable): operator, registrar, identity-staff, "
                                    "emergency-clinician, disaster-response."),
) -> None:
    """Add a person; prints the password, the TOTP enrolment URI and recovery codes once."""
    from hie.auth.service import AuthService
    from hie.auth.users import KINDS, add_user, get_by_username
    from hie.cli_support import USER_ROLES, CliError, choice, choices, facility_code, registered_facility
    from hie.storage.db import write_tx

    choice("--kind", kind, KINDS)
    choices("--role", role, USER_ROLES)
    facility_code("--facility", facility)
    node = _node()
    try:
        registered_facility(node, "--facility", facility)
        _check_resource(node, "--patient", "Patient", patient)
        _check_resource(node, "--practitioner", "Practitioner", practitioner)
        with write_tx(node.engine) as conn:
            if get_by_username(conn, username) is not None:
                raise CliError(f"username: a user {username!r} exists already (hie admin reset-user {username} "
                               "gives them new credentials)", 1)
            try:
                e = add_user(conn, AuthService.for_node(node).box, username=username, display_name=name, kind=kind,
                             organization_code=facility, practitioner_id=practitioner, patient_id=patient,
                             roles=list(role), now_us=node.clock.now_us())
            except ValueError as exc:  # a missing --facility or --patient for the kind
                raise CliError(str(exc), 2) from None
    finally:
        node.close()
    _print_enrolment(e)


def _print_enrolment(e) -> None:  # noqa: ANN001
    typer.echo(f"user:      {e.user.username} ({e.user.kind}, id {e.user.user_id})")
    typer.echo(f"password:  {e.password}")
    typer.echo(f"TOTP URI:  {e.totp_uri}")
    typer.echo("recovery:  " + " ".join(e.recovery_codes))


@admin_app.command("reset-user")
def reset_user_cmd(username: str = typer.Argument(...)) -> None:
    """New password, TOTP seed and recovery codes; clears a lock."""
    from hie.auth.service import AuthService
    from hie.auth.users import reset_user
    from hie.storage.db import write_tx

    node = _node()
    try:
        with write_tx(node.engine) as conn:
            e = reset_user(conn, AuthService.for_node(node).box, username)
    finally:
        node.close()
    _print_enrolment(e)


@admin_app.command("add-client")
def add_client_cmd(
    name: str = typer.Option(...),
    kind: str = typer.Option("backend", help="backend | confidential | public"),
    jwks: Path = typer.Option(None, exists=True, help="JWKS file with the client's public keys."),
    jwks_uri: str = typer.Option(None, help="URL of the client's JWKS."),
    scope: str = typer.Option("system/*.rs", help="The most this client may be granted."),
    facility: str = typer.Option(None, help="Medical-institution code of the facility it acts for."),
    redirect_uri: list[str] = typer.Option([], help="Redirect URIs (apps)."),
    auth_method: str = typer.Option(None, help="private_key_jwt | client_secret_basic | none"),
    role: list[str] = typer.Option([], help="Roles: operator, resource-server."),
) -> None:
    """Register a client; prints its client id (and secret, for secret-authenticated apps)."""
    from joserfc.errors import JoseError

    from hie.auth.clients import AUTH_METHODS, KINDS, add_client
    from hie.cli_support import CLIENT_ROLES, CliError, choice, choices, facility_code, read_json, registered_facility
    from hie.storage.db import write_tx

    choice("--kind", kind, KINDS)
    choice("--auth-method", auth_method, AUTH_METHODS)
    choices("--role", role, CLIENT_ROLES)
    facility_code("--facility", facility)
    _check_scope(scope)
    for uri in redirect_uri:
        _check_redirect_uri(uri)
    keys = read_json("--jwks", jwks) if jwks else None
    if keys is not None and not (isinstance(keys, dict) and isinstance(keys.get("keys"), list)):
        raise CliError(f"--jwks: {jwks} is not a JWKS (an object with a \"keys\" list)", 2)
    node = _node()
    try:
        registered_facility(node, "--facility", facility)
        with write_tx(node.engine) as conn:
            try:
                client, secret = add_client(
                    conn, name=name, kind=kind, scope=scope, jwks=keys, jwks_uri=jwks_uri,
                    redirect_uris=list(redirect_uri), organization_code=facility, auth_method=auth_method,
                    roles=list(role), now_us=node.clock.now_us(),
                )
            except ValueError as exc:  # option combinations
                raise CliError(f"{exc}", 2) from None
            except JoseError as exc:  # a key set that does not import (public keys only: safe to name)
                raise CliError(f"--jwks: {jwks}: the key set does not import ({exc.error}: {exc.description})",
                               2) from None
    finally:
        node.close()
    typer.echo(client.client_id)
    if secret:
        typer.echo(f"secret: {secret}")


@admin_app.command("rotate-keys")
def rotate_keys(
    retire_previous: bool = typer.Option(False, help="Retire the previous token keys at once (after a compromise)."),
) -> None:
    """New signing keys; the previous token keys stay published until the next rotation."""
    from hie.auth.revocation import record
    from hie.auth.service import AuthService
    from hie.storage.db import write_tx

    node = _node()
    try:
        kids = AuthService.for_node(node).keys.rotate(retire_previous=retire_previous)
        with write_tx(node.engine) as conn:  # every process reloads its keys within the bound
            record(conn, *(("keys", kid) for kid in kids), by="hie admin rotate-keys")
    finally:
        node.close()
    out.print("signing with: " + ", ".join(kids))


@admin_app.command("retire-key")
def retire_key(kid: str = typer.Argument(..., help="The key id (kid) to retire, as GET /auth/jwks lists it.")) -> None:
    """Delete a token-signing key: tokens it signed stop verifying on every process within
    HIE_TOKEN_CHECK_INTERVAL_MS."""
    from hie.auth.revocation import record
    from hie.auth.service import AuthService
    from hie.storage.db import write_tx

    node = _node()
    try:
        AuthService.for_node(node).keys.retire(kid)
        with write_tx(node.engine) as conn:
            record(conn, ("keys", kid), by="hie admin retire-key")
    except (LookupError, ValueError) as exc:  # one line, exit 1 (hie.cli.run)
        raise CliError(str(exc), 1) from None
    finally:
        node.close()
    out.print(f"retired {kid}")


def _set_active(what: str, name: str, active: bool) -> None:
    from hie.auth.clients import set_client_active
    from hie.auth.users import set_user_active
    from hie.storage.db import write_tx

    node = _node()
    try:
        with write_tx(node.engine) as conn:
            if what == "user":
                set_user_active(conn, name, active)
            elif not set_client_active(conn, name, active):
                raise LookupError(f"no client {name!r}")
    except LookupError as exc:  # one line, exit 1 (hie.cli.run)
        raise CliError(str(exc), 1) from None
    finally:
        node.close()
    out.print(f"{what} {name} {'enabled' if active else 'disabled'}")


@admin_app.command("disable-user")
def disable_user(username: str = typer.Argument(...)) -> None:
    """The user cannot log in; their tokens stop working within HIE_TOKEN_CHECK_INTERVAL_MS."""
    _set_active("user", username, False)


@admin_app.command("enable-user")
def enable_user(username: str = typer.Argument(...)) -> None:
    """Let a disabled user log in again (tokens revoked meanwhile stay revoked)."""
    _set_active("user", username, True)


@admin_app.command("disable-client")
def disable_client(client_id: str = typer.Argument(...)) -> None:
    """The client gets no tokens; its tokens stop working within HIE_TOKEN_CHECK_INTERVAL_MS."""
    _set_active("client", client_id, False)


@admin_app.command("enable-client")
def enable_client(client_id: str = typer.Argument(...)) -> None:
    """Let a disabled client work again."""
    _set_active("client", client_id, True)


@admin_app.command("revoke-tokens")
def revoke_tokens(
    user: str = typer.Option(None, "--user", help="Username: revoke every token of this user."),
    client: str = typer.Option(None, "--client", help="Client id: revoke every token issued to this client."),
    jti: str = typer.Option(None, "--jti", help="Revoke one access token by its jti (AuditEvent policy)."),
) -> None:
    """Revoke tokens (RFC 7009 from the operator's side): in force on every process within
    HIE_TOKEN_CHECK_INTERVAL_MS."""
    from hie.auth.tokens import TokenService
    from hie.auth.users import get_by_username
    from hie.storage.db import write_tx

    if sum(x is not None for x in (user, client, jti)) != 1:
        raise CliError("give exactly one of --user, --client, --jti", 2)
    node = _node()
    try:
        with write_tx(node.engine) as conn:
            if jti is not None:
                if TokenService.find(conn, jti) is None:
                    raise LookupError(f"no token with jti {jti!r}")
                TokenService.revoke(conn, jti)
                n = 1
            elif user is not None:
                person = get_by_username(conn, user)
                if person is None:
                    raise LookupError(f"no user {user!r}")
                n = TokenService.revoke_all(conn, user_id=person.user_id)
            else:
                from hie.auth.clients import get_client

                if get_client(conn, client) is None:
                    raise LookupError(f"no client {client!r}")
                n = TokenService.revoke_all(conn, client_id=client)
    except LookupError as exc:  # one line, exit 1 (hie.cli.run)
        raise CliError(str(exc), 1) from None
    finally:
        node.close()
    out.print(f"revoked {n} token(s)")


@admin_app.command("token")
def token(
    client: str = typer.Option(None, "--client", help="Client id (default: the node's own client)."),
    scope: str = typer.Option("system/*.rs", help="Scopes, e.g. 'system/Patient.rs system/Observation.rs'."),
    expires_in: int = typer.Option(300, min=1, max=86400, help="Lifetime in seconds (1 to 86400)."),
) -> None:
    """Print an access token for scripts."""
    from hie.auth.service import AuthService

    _check_scope(scope)
    node = _node()
    try:
        issued = AuthService.for_node(node).token_for_client(client, scope, expires_in=expires_in)
    except (LookupError, ValueError) as exc:  # one line, exit 1 (hie.cli.run)
        raise CliError(str(exc), 1) from None
    finally:
        node.close()
    typer.echo(issued.token)


@admin_app.command("renew-registrations")
def renew() -> None:
    """Extend registered physicians (not withdrawn) to 31 March of the current fiscal year."""
    from hie.auth.registry import renew_registrations

    node = _node()
    try:
        n = renew_registrations(node)
    finally:
        node.close()
    out.print(f"renewed {n} registration(s)")
