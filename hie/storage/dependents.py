"""Rows whose enforcement columns come from another resource follow it.

A Binary with ``securityContext`` takes its target's patient key, data class, sensitive
labels, clinical date and ``UNINFORMED`` (:data:`hie.storage.rowmeta.EXPLICIT`,
docs/adr/0006-version-visibility.md). Taken only at the Binary's write time, the columns went
stale when the target changed: a DocumentReference relabelled ``PSY``, tagged
``UNINFORMED``, moved to another patient or deleted left its Binary readable as before.

So the node indexes ``Binary.securityContext`` (:data:`SECURITY_CONTEXT`, a built-in
SearchParameter added to every registry the node builds, the way :mod:`hie.audit.search`
configures AuditEvent), and a write listener (:func:`on_write`, in the same transaction,
after the identity listener) finds, for every resource a batch changed or deleted, the
Binaries that point at it and recomputes their enforcement columns and those of their
versions from the target's current state (:meth:`Repository.recompute_enforcement_of`, the
code ``hie reindex`` uses, as the system principal). The target is resolved as the
Binary's custodian facility would see it, and a deleted target gives nothing: the Binary is
then patient data of no single patient, visible to its custodian only. Re-keying of a
target's patient (:mod:`hie.identity.rekey`) moves such Binaries with it.

Binaries stored before this index existed are found after ``hie reindex``.

Spec: https://hl7.org/fhir/R4/binary.html (securityContext); R5 defines the same search
parameter (``Binary`` has none in R4).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

#: The built-in SearchParameter (R4 has none for Binary; R5's has this code and expression).
SECURITY_CONTEXT: Final[dict[str, Any]] = {
    "resourceType": "SearchParameter",
    "id": "hie-binary-security-context",
    "url": "http://hie.example.jp/fhir/SearchParameter/binary-security-context",
    "name": "security-context",
    "status": "active",
    "description": "The resource a Binary takes its access rules from (Binary.securityContext)",
    "code": "security-context",
    "base": ["Binary"],
    "type": "reference",
    "expression": "Binary.securityContext",
}

#: (type of the dependent rows, its reference parameter naming the resource they follow).
DEPENDENT_PARAMS: Final = (("Binary", "security-context"),)

_OR_CHUNK = 100  # references per search (comma = OR)


def configure(registry: Any) -> None:
    """Add :data:`SECURITY_CONTEXT` to ``registry`` (composition root and rebuilt registries)."""
    register = getattr(registry, "register", None)
    if register is not None and registry.get("Binary", "security-context") is None:
        register(dict(SECURITY_CONTEXT))


def dependents_of(system_repo: Any, refs: Iterable[str]) -> list[int]:
    """``resource.pk`` of the current rows whose enforcement columns follow one of ``refs``
    (``Type/id``), found through the search index as the system principal."""
    refs = sorted(set(refs))
    pks: set[int] = set()
    for res_type, param in DEPENDENT_PARAMS:
        if system_repo.registry.get(res_type, param) is None:
            continue
        for i in range(0, len(refs), _OR_CHUNK):
            pks.update(system_repo.find_pks(res_type, [(param, ",".join(refs[i: i + _OR_CHUNK]))]))
    return sorted(pks)


def follow(repo: Any, refs: Iterable[str]) -> int:
    """Recompute the rows that follow ``refs``; returns how many rows changed."""
    system = repo.system_view()
    pks = dependents_of(system, refs)
    return system.recompute_enforcement_of(pks) if pks else 0


def on_write(repo: Any, results: list[Any]) -> None:
    """Write listener: the dependents of every resource the batch created, changed or deleted."""
    refs = [f"{r.stored.res_type}/{r.stored.res_id}" for r in results if r.stored is not None]
    if refs:
        follow(repo, refs)


def install(node: Any) -> None:
    configure(node.registry)
    node.registry_hooks.append(configure)
    node.write_listeners.append(on_write)
