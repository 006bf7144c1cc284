"""Values shared by the parts of the identity service: configuration, the result of a
staff action and the conflict error (see :mod:`hie.identity.service`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from hie.errors import FhirError
from hie.fhir.naming import NODE_CANONICAL
from hie.identity.rekey import RekeyCount
from hie.identity.score import DEFAULT_THRESHOLDS, DEFAULT_WEIGHTS, Thresholds, Weights

REGIONAL_SYSTEM_DEFAULT: Final = f"{NODE_CANONICAL}/sid/regional-person"
IDENTITY_TAG_SYSTEM: Final = f"{NODE_CANONICAL}/CodeSystem/identity"
SERVICE_ACTOR: Final = "identity-service"


class IdentityConflict(FhirError):
    status, issue_code, hie_code = 409, "conflict", "HIE-6001"


@dataclass(frozen=True)
class IdentityConfig:
    """Configuration (environment: ``HIE_REGIONAL_ID_SYSTEM``, ``HIE_IDENTITY_AUTO_LINK``
    = 0 to send every match to review, ``HIE_IDENTITY_AUTO_LINK_THRESHOLD``,
    ``HIE_IDENTITY_REVIEW_THRESHOLD``)."""

    regional_system: str = REGIONAL_SYSTEM_DEFAULT
    auto_link: bool = True
    weights: Weights = DEFAULT_WEIGHTS
    thresholds: Thresholds = DEFAULT_THRESHOLDS
    max_block: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IdentityConfig:
        t = DEFAULT_THRESHOLDS
        thresholds = Thresholds(
            auto_link=float(env.get("HIE_IDENTITY_AUTO_LINK_THRESHOLD", t.auto_link)),
            review=float(env.get("HIE_IDENTITY_REVIEW_THRESHOLD", t.review)),
            possible=t.possible,
        )
        return cls(regional_system=env.get("HIE_REGIONAL_ID_SYSTEM") or REGIONAL_SYSTEM_DEFAULT,
                   auto_link=env.get("HIE_IDENTITY_AUTO_LINK", "1") not in ("0", "false", "no"),
                   thresholds=thresholds)


@dataclass
class ActionResult:
    """What a staff action did (returned by operations and the CLI)."""

    action: str
    event: int | None
    person_key: str | None
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)  # patient -> (from, to)
    rekeyed: RekeyCount = field(default_factory=RekeyCount)


class IdentityForbidden(FhirError):
    """An identity action outside the caller's authority (facility vs region)."""

    status, issue_code, hie_code = 403, "forbidden", "HIE-6002"
