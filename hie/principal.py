"""Who is asking: the principal every data access carries.

The repository cannot be asked for data without one; ingest and maintenance use the
explicit :data:`SYSTEM` principal, never a bypass flag (ARCHITECTURE.md, "one choke
point"). Authentication (a later layer) turns a token into a ``Principal``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Principal:
    kind: str  # "system" | "client" | "user" | "patient" | "anonymous"
    name: str
    client_id: str | None = None
    user_id: str | None = None
    organization_id: str | None = None  # the facility the principal acts for
    practitioner_id: str | None = None
    patient_id: str | None = None  # for patient-context access
    roles: frozenset[str] = field(default_factory=frozenset)
    scopes: frozenset[str] = field(default_factory=frozenset)
    purpose_of_use: str | None = None
    token_id: str | None = None  # the access token's jti (audit, revocation)
    network_address: str | None = None  # the caller's IP address as the node saw it (audit)
    #: Every row this principal reads or writes must be in this Patient's compartment
    #: (patient tokens; clinician requests that rely on ``patient/`` scopes). Enforced by
    #: :mod:`hie.auth.compartment`; principals of kind "patient" are confined regardless.
    patient_compartment: str | None = None

    @property
    def is_system(self) -> bool:
        return self.kind == "system"


SYSTEM = Principal(kind="system", name="system")
