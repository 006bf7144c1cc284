"""Human-readable consent explanations for a (patient, facility[, resource]) pair.

Backs the operator operation ``$consent-explain``: for each of the patient's Consents
(https://hl7.org/fhir/R4/consent.html) it lists every provision, what that provision covers
once its ancestors' restrictions are applied, and whether and why it applies to the facility
(and to the resource, when one is given). Without a resource it adds the outcome per data class
for ordinary data dated today; with one it adds :func:`consent.decision.decide`'s decision.
Pure code: the caller loads the consents and renders or serializes the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from consent.classes import ADMINISTRATIVE, ALL_CLASSES
from consent.decision import Decision, chain_mismatch, decide, label_scope
from consent.model import Consent, Provision
from consent.policy import DEFAULT_POLICY, Policy
from consent.request import AccessRequest, ResourceFacts
from consent.scope import ANY, Scope
from consent.vocab import TREAT


@dataclass(frozen=True)
class ProvisionFinding:
    path: str
    effect: str
    applies: bool
    why: str
    covers: str


@dataclass(frozen=True)
class ConsentFinding:
    consent_id: str | None
    status: str
    in_effect: bool
    note: str
    provisions: tuple[ProvisionFinding, ...]


@dataclass(frozen=True)
class Explanation:
    patient: str
    viewer_org: str
    viewer_practitioner: str | None
    purpose: str | None
    now: datetime
    consents: tuple[ConsentFinding, ...]
    by_class: tuple[tuple[str, Decision], ...] = ()
    decision: Decision | None = None

    def render(self) -> str:
        viewer = f"Organization/{self.viewer_org}"
        if self.viewer_practitioner:
            viewer += f" (Practitioner/{self.viewer_practitioner})"
        lines = [f"Consent explanation for {self.patient} and {viewer}, purpose {self.purpose}, "
                 f"at {self.now.isoformat()}"]
        if not self.consents:
            lines.append("  The patient has no consent on file: nothing is shared (opt-in).")
        for c in self.consents:
            lines.append(f"Consent/{c.consent_id} ({c.status}){'' if c.in_effect else ': ' + c.note}")
            for p in c.provisions:
                verdict = "applies" if p.applies else "does not apply"
                lines.append(f"  - {p.path} [{p.effect}] {verdict}: {p.why}")
                lines.append(f"      covers: {p.covers}")
        if self.by_class:
            lines.append("Outcome per data class (ordinary data dated today, custodians excepted):")
            for data_class, decision in self.by_class:
                sources = sorted({f"Consent/{r.consent_id} {r.provision_path}" for r in decision.reasons
                                  if r.consent_id and r.provision_path and r.effect is decision.effect})
                tail = f" ({'; '.join(sources)})" if sources else ""
                lines.append(f"  {data_class}: {decision.effect.value}{tail}")
        if self.decision is not None:
            lines.append("Decision for the resource:")
            lines.extend("  " + line for line in self.decision.render().splitlines())
        return "\n".join(lines)


def describe_scope(scope: Scope, effect: str) -> str:
    """What a rule covers once its ancestors' restrictions are applied."""
    if scope.atoms is None:
        who = "every participating facility"
    else:
        parts = []
        for org, practitioner in sorted(scope.atoms):
            if practitioner == ANY:
                parts.append(f"Organization/{org}")
            elif org == ANY:
                parts.append(f"Practitioner/{practitioner} (at any facility)")
            else:
                parts.append(f"Practitioner/{practitioner} at Organization/{org}")
        who = ", ".join(parts)
    what = "all data classes" if scope.classes is None else ", ".join(sorted(scope.classes))
    if scope.labels is not None:
        labels = "sensitive labels " + ", ".join(sorted(scope.labels))
    else:
        labels = "ordinary data only" if effect == "permit" else "ordinary and sensitive data"
    out = [who, what, labels]
    if scope.purposes is not None:
        out.append("purpose " + ", ".join(sorted(scope.purposes)))
    if scope.period.start or scope.period.end:
        out.append(f"in force {scope.period.describe()}")
    if scope.data_period.start or scope.data_period.end:
        out.append(f"data dated {scope.data_period.describe()}")
    return "; ".join(out)


def _scopes(root: Provision) -> dict[str, Scope]:
    out: dict[str, Scope] = {}

    def walk(node: Provision, inherited: Scope) -> None:
        scope = inherited.narrow(node)
        if isinstance(scope, str):
            return
        out[node.path] = scope
        for child in node.provisions:
            walk(child, scope)

    walk(root, Scope())
    return out


def _label_note(chain: tuple[Provision, ...], facts: ResourceFacts) -> tuple[bool, str]:
    """Does the rule's label scope reach this resource, and how."""
    node = chain[-1]
    scope = label_scope(chain)
    labels = facts.sensitive_labels
    if node.type == "deny":
        if scope is None:
            return True, "denies this resource"
        hit = scope & labels
        if hit:
            return True, "denies labels " + ", ".join(sorted(hit))
        return False, "the resource carries none of its labels " + ", ".join(sorted(scope))
    if scope is None:
        if labels:
            return False, ("it covers ordinary data only; the resource carries sensitive labels "
                           + ", ".join(sorted(labels)))
        return True, "permits this resource"
    hit = scope & labels
    if hit:
        return True, "permits labels " + ", ".join(sorted(hit))
    return False, "it covers sensitive labels " + ", ".join(sorted(scope)) + " only, none of which the resource carries"


def explain(
    patient: str,
    viewer_org: str,
    consents: Iterable[Consent],
    *,
    now: datetime,
    viewer_practitioner: str | None = None,
    purpose: str | None = TREAT,
    resource: ResourceFacts | None = None,
    policy: Policy = DEFAULT_POLICY,
    viewer_may_view: bool = True,
    viewer_may_disclose: bool = True,
) -> Explanation:
    """Explain what ``viewer_org`` may see of ``patient``'s record, and why.

    ``patient`` is the key consents and facts carry (see :class:`consent.model.Consent`);
    ``viewer_may_view`` / ``viewer_may_disclose`` are the facility's network role from the
    registry (see :class:`consent.request.AccessRequest`).
    """
    mine = [c for c in consents if c.patient == patient]
    facts = resource or ResourceFacts(patient=patient, custodian="", data_class=ADMINISTRATIVE)
    request = AccessRequest(resource=facts, now=now, viewer_org=viewer_org,
                            viewer_practitioner=viewer_practitioner, purpose=purpose,
                            viewer_may_view=viewer_may_view, viewer_may_disclose=viewer_may_disclose)
    findings = []
    for consent in mine:
        scopes = _scopes(consent.provision)
        provisions = []
        for chain in consent.provision.walk():
            node = chain[-1]
            covers = describe_scope(scopes[node.path], node.type) if node.path in scopes else "nothing"
            if not consent.is_active:
                applies, why = False, f"the consent is {consent.status}"
            else:
                mismatch = chain_mismatch(chain, request, resource=resource is not None)
                if mismatch is not None:
                    applies, why = False, mismatch
                elif resource is not None:
                    applies, why = _label_note(chain, facts)
                else:
                    applies, why = True, "the viewer, purpose and date fall under it"
            provisions.append(ProvisionFinding(node.path, node.type, applies, why, covers))
        note = "" if consent.is_active else f"status {consent.status}: this consent has no effect"
        findings.append(ConsentFinding(consent.id, consent.status, consent.is_active, note, tuple(provisions)))

    by_class: list[tuple[str, Decision]] = []
    decision = None
    if resource is None:
        for data_class in ALL_CLASSES:
            if data_class == ADMINISTRATIVE:
                continue
            probe = replace(request, resource=ResourceFacts(patient=patient, custodian="", data_class=data_class,
                                                            clinical_date=now))
            by_class.append((data_class, decide(probe, mine, policy)))
    else:
        decision = decide(request, mine, policy)
    return Explanation(patient=patient, viewer_org=viewer_org, viewer_practitioner=viewer_practitioner,
                       purpose=purpose, now=now, consents=tuple(findings), by_class=tuple(by_class),
                       decision=decision)
