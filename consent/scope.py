"""The effective scope of a nested Consent provision: its conditions intersected with its ancestors'.

R4 nested provisions (https://hl7.org/fhir/R4/consent-definitions.html#Consent.provision.provision)
are exceptions to their parent, so a nested rule applies only where every ancestor applies.
:class:`Scope` is that intersection, one set per dimension the grants table has; the parser
uses it to refuse nested provisions that can never apply, and :mod:`consent.grants` flattens
it into rows. ``None`` in a dimension means "not restricted". Pure code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from consent.periods import Period
from consent.vocab import intersect_purposes

if TYPE_CHECKING:
    from consent.model import Provision

ANY = "*"
Atom = tuple[str, str]
"""(viewer organization, viewer practitioner); ``*`` in either place matches any."""


def _meet(a: str, b: str) -> str | None:
    if a == ANY:
        return b
    if b == ANY or a == b:
        return a
    return None


@dataclass(frozen=True)
class Scope:
    atoms: frozenset[Atom] | None = None
    classes: frozenset[str] | None = None
    labels: frozenset[str] | None = None
    purposes: frozenset[str] | None = None
    period: Period = Period()
    data_period: Period = Period()

    def narrow(self, node: Provision) -> Scope | str:
        """This scope restricted by ``node``'s own conditions, or the name of the element
        whose restriction leaves nothing."""
        atoms = self.atoms
        if node.actors:
            own = frozenset((a.org, a.practitioner) for a in node.actors)
            if atoms is None:
                atoms = own
            else:
                met = set()
                for x in atoms:
                    for y in own:
                        org, pract = _meet(x[0], y[0]), _meet(x[1], y[1])
                        if org is not None and pract is not None:
                            met.add((org, pract))
                atoms = frozenset(met)
                if not atoms:
                    return "actor"
        classes = self.classes
        if node.classes:
            classes = node.classes if classes is None else classes & node.classes
            if not classes:
                return "class"
        labels = self.labels
        if node.security_labels:
            labels = node.security_labels if labels is None else labels & node.security_labels
            if not labels:
                return "securityLabel"
        purposes = self.purposes
        if node.purposes:
            purposes = node.purposes if purposes is None else intersect_purposes(purposes, node.purposes)
            if not purposes:
                return "purpose"
        period = self.period.intersect(node.period)
        if period is None:
            return "period"
        data_period = self.data_period.intersect(node.data_period)
        if data_period is None:
            return "dataPeriod"
        return Scope(atoms, classes, labels, purposes, period, data_period)
