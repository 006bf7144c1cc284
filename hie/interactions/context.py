"""Per-request context handed to every interaction.

There is no raw connection here: interactions reach stored data only through
``repo`` (the principal's repository, which carries the access predicate into every
statement). Tables that are not resource data (auth, audit, identity, consent grants,
node settings) are read and written by named functions of their own modules, which
take the connection from the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hie.principal import Principal
from hie.storage.access import AccessPredicate
from hie.storage.repository import Repository


@dataclass
class Context:
    principal: Principal
    registry: Any  # hie.search.registry.SearchRegistry
    repo: Repository
    base_url: str  # e.g. "http://localhost:8080/fhir"
    prefer_return: str = "representation"  # minimal | representation | OperationOutcome
    prefer_strict: bool = False  # Prefer: handling=strict

    @property
    def access(self) -> AccessPredicate:
        return self.repo.access

    def full_url(self, res_type: str, res_id: str) -> str:
        return f"{self.base_url}/{res_type}/{res_id}"
