"""Configuration from the environment (12-factor): nothing secret lives in the repository.

| variable | meaning | default |
|---|---|---|
| ``HIE_DATABASE_URL`` | ``sqlite:///path`` or ``postgresql+psycopg://user@host/db`` | ``sqlite:///<HIE_DATA_DIR>/hie.sqlite`` |
| ``HIE_DATA_DIR`` | where the embedded database and key files live | ``var/`` of the source checkout the node runs from (see :func:`resolve_data_dir`) |
| ``HIE_BASE_URL`` | public base URL of the FHIR API (``https://hie.example.jp/fhir``) | derived from each request |
| ``HIE_DB_POOL_SIZE`` | connections per process | ``10`` |
| ``HIE_AUDIT_SYSTEM_USE`` | ``off``: do not audit the node's own use of the system principal (ingest, maintenance) | ``on`` |
| ``HIE_TOKEN_CHECK_INTERVAL_MS`` | how stale a process's view of token revocation and signing keys may be (``0``: check on every request; ADR 0008) | ``1000`` |
| ``HIE_MAX_BODY_BYTES`` | largest request body the API reads (413 beyond, every route) | ``16777216`` (16 MiB) |
| ``HIE_MAX_ELEMENT_BYTES`` | longest string in a JSON body, UTF-8 bytes (413 naming the element) | ``4194304`` (4 MiB) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """The environment does not say where the node's data lives (the message says how)."""


def _checkout() -> Path | None:
    """The source checkout this package runs from (``pip install -e .`` or the tree itself)."""
    root = Path(__file__).resolve().parent.parent
    try:
        project = (root / "pyproject.toml").read_text("utf-8")
    except OSError:
        return None
    return root if 'name = "hie-node"' in project else None


def resolve_data_dir(env: dict[str, str]) -> tuple[Path, str]:
    """The data directory and where the choice came from. The same from any working
    directory: ``HIE_DATA_DIR`` if set (a relative value is taken from the working
    directory, as the shell would), else ``var/`` of the source checkout the node runs
    from; an installed package without ``HIE_DATA_DIR`` is refused."""
    given = env.get("HIE_DATA_DIR")
    if given:
        return Path(given).expanduser().resolve(), "HIE_DATA_DIR"
    root = _checkout()
    if root is not None:
        return root / "var", f"var/ of the source checkout {root}"
    raise ConfigError("HIE_DATA_DIR is not set and the node does not run from its source checkout: "
                      "set HIE_DATA_DIR to the node's data directory (e.g. /var/lib/hie)")


def _int(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}: {value!r} is not a whole number") from None


@dataclass(frozen=True)
class Settings:
    database_url: str
    data_dir: Path
    base_url: str | None = None
    pool_size: int = 10
    #: Record an AuditEvent for each ingest and maintenance run as the system principal.
    audit_system_use: bool = True
    #: Request limits of the HTTP API (hie/api/limits.py): body size and longest JSON string.
    max_body_bytes: int = 16 * 1024 * 1024
    max_element_bytes: int = 4 * 1024 * 1024
    #: Bound on how long a revocation, deactivation or key retirement takes to reach every process.
    token_check_interval_ms: int = 1000
    extra: dict[str, str] = field(default_factory=dict)
    #: Where ``data_dir`` came from (``HIE_DATA_DIR``, the checkout's var/), for messages.
    data_dir_source: str = "given"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        data_dir, source = resolve_data_dir(e)
        url = e.get("HIE_DATABASE_URL") or f"sqlite:///{data_dir / 'hie.sqlite'}"
        return cls(
            database_url=url,
            data_dir=data_dir,
            base_url=(e.get("HIE_BASE_URL") or None),
            pool_size=_int(e, "HIE_DB_POOL_SIZE", "10"),
            audit_system_use=e.get("HIE_AUDIT_SYSTEM_USE", "on").lower() not in ("off", "0", "false", "no"),
            max_body_bytes=_int(e, "HIE_MAX_BODY_BYTES", str(16 * 1024 * 1024)),
            max_element_bytes=_int(e, "HIE_MAX_ELEMENT_BYTES", str(4 * 1024 * 1024)),
            token_check_interval_ms=max(0, _int(e, "HIE_TOKEN_CHECK_INTERVAL_MS", "1000")),
            data_dir_source=source,
        )
