"""Consent decisions as values, with an explicit deny-overrides combining rule.

Implements the node's access rules for FHIR R4 Consent (https://hl7.org/fhir/R4/consent.html)
in the order DOMAIN.md ("Consent") fixes them:

1. **Custodian**: the facility that disclosed a resource sees it, if its network role lets it
   disclose (``AccessRequest.viewer_may_disclose``). A facility whose role does not let it view
   (``viewer_may_view``: unregistered, inactive or disclosing-only) gets nothing beyond rule 1.
2. **Patient**: a patient sees their own record, except resources tagged ``UNINFORMED``
   (JP-CLINS: a diagnosis not yet told to the patient).
3. **Consents** (opt-in): only ``active`` consents of the resource's patient count. Every
   provision whose chain (itself and all its ancestors) matches the request votes; the
   votes combine by :func:`combine` (deny overrides permit; with no vote the result is
   NOT_APPLICABLE, which callers treat as deny). Consent and audit rows are never shared by a
   consent (:data:`consent.grants.NEVER_GRANTED`). Ordinary data needs a permit from a provision
   without security labels; a resource with sensitive labels needs, for *each* of its labels,
   a permit from a provision that names that label.
4. **Break-the-glass** and **disaster mode** (:mod:`consent.policy`): when consents do not
   permit, emergency access may open the emergency dataset; the decision records it.

A provision chain matches a request when, at every level: ``period`` contains ``now``; one of
the ``actor`` entries is the viewer (no actor = any participating facility; a patient or an
anonymous viewer is never a participating facility); ``purpose`` covers the request's purpose
(:func:`consent.vocab.purpose_closure`); ``class``/``code`` contain the resource's data class;
``dataPeriod`` contains the resource's clinical date (an undated resource is outside every
permit's dataPeriod and inside every deny's, so uncertainty never widens access).

This module walks the provision trees directly; :mod:`consent.grants` compiles the same rules to
flat rows and the tests prove both agree. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from consent.grants import NEVER_GRANTED
from consent.model import Consent, Provision
from consent.policy import DEFAULT_POLICY, Policy
from consent.request import UNINFORMED, AccessRequest
from consent.vocab import purpose_closure


class Effect(str, Enum):
    PERMIT = "permit"
    DENY = "deny"
    NOT_APPLICABLE = "not-applicable"


def combine(effects: Iterable[Effect]) -> Effect:
    """Deny overrides: any DENY wins, else any PERMIT, else NOT_APPLICABLE."""
    seen = set(effects)
    if Effect.DENY in seen:
        return Effect.DENY
    if Effect.PERMIT in seen:
        return Effect.PERMIT
    return Effect.NOT_APPLICABLE


@dataclass(frozen=True)
class Reason:
    """Why one rule voted as it did; ``basis`` is a stable keyword, ``text`` is for people."""

    effect: Effect
    basis: str
    text: str
    consent_id: str | None = None
    provision_path: str | None = None


@dataclass(frozen=True)
class Decision:
    effect: Effect
    reasons: tuple[Reason, ...] = ()
    break_glass: bool = False
    """Access rests on a break-the-glass declaration: the caller must audit it as such."""
    disaster_mode: bool = False
    """Access rests on the region's disaster mode: the caller must audit it as such."""
    notes: tuple[str, ...] = field(default=())

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.PERMIT

    def render(self) -> str:
        head = {Effect.PERMIT: "PERMIT", Effect.DENY: "DENY",
                Effect.NOT_APPLICABLE: "NOT APPLICABLE (deny)"}[self.effect]
        if self.break_glass:
            head += " [break-the-glass]"
        if self.disaster_mode:
            head += " [disaster mode]"
        lines = [head]
        lines += [f"  {r.effect.value}: {r.text}" for r in self.reasons]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# --------------------------------------------------------------------------- provision matching

def chain_mismatch(chain: Sequence[Provision], request: AccessRequest, *, resource: bool = True) -> str | None:
    """Why the rule at the end of ``chain`` does not apply to ``request``, or ``None`` if it does.

    With ``resource=False`` only the viewer, purpose and time are checked (used to explain what a
    facility may see in general); security labels are checked separately, per label.
    """
    leaf = chain[-1]
    facts = request.resource
    if request.viewer_org is None:
        return "the viewer is not a participating facility"
    purposes = purpose_closure(request.purpose)
    for node in chain:
        where = f"{node.path}: "
        if node.period is not None and not node.period.contains(request.now):
            return where + f"not in force at {request.now.isoformat()} (period {node.period.describe()})"
        if node.actors and not any(a.matches(request.viewer_org, request.viewer_practitioner) for a in node.actors):
            viewer = f"Organization/{request.viewer_org}"
            if request.viewer_practitioner:
                viewer += f" (Practitioner/{request.viewer_practitioner})"
            return where + f"{viewer} is not among its actors"
        if node.purposes and not purposes & node.purposes:
            return where + f"purpose {request.purpose} is not among {', '.join(sorted(node.purposes))}"
        if not resource:
            continue
        if node.classes and facts.data_class not in node.classes:
            return where + f"data class {facts.data_class} is not among {', '.join(sorted(node.classes))}"
        if node.data_period is not None:
            if facts.clinical_date is None:
                if leaf.type == "permit":
                    return where + "the resource has no clinical date to check against dataPeriod"
            elif not node.data_period.contains(facts.clinical_date):
                return where + (f"clinical date {facts.clinical_date.isoformat()} is outside dataPeriod "
                                f"{node.data_period.describe()}")
    return None


def label_scope(chain: Sequence[Provision]) -> frozenset[str] | None:
    """The sensitive labels a rule speaks about: the intersection of the labels named along its
    chain, or ``None`` when no level names any (then a permit covers ordinary data only and a
    deny covers everything)."""
    scope: frozenset[str] | None = None
    for node in chain:
        if node.security_labels:
            scope = node.security_labels if scope is None else scope & node.security_labels
    return scope


def _describe(consent: Consent, node: Provision) -> str:
    return f"{consent.label} {node.path} ({node.describe()})"


def evaluate_consents(request: AccessRequest, consents: Iterable[Consent]) -> tuple[Effect, tuple[Reason, ...]]:
    """The combined vote of the patient's consents on ``request`` (rule 3 only)."""
    facts = request.resource
    labels = facts.sensitive_labels
    tokens = sorted(labels) if labels else [""]
    denies: list[Reason] = []
    permits: dict[str, list[Reason]] = {t: [] for t in tokens}
    ordinary: list[Reason] = []
    notes: list[Reason] = []
    for consent in consents:
        if consent.patient != facts.patient:
            continue
        if not consent.is_active:
            notes.append(Reason(Effect.NOT_APPLICABLE, "consent-status",
                                f"{consent.label} is {consent.status}: it has no effect", consent.id))
            continue
        for chain in consent.provision.walk():
            node = chain[-1]
            if chain_mismatch(chain, request) is not None:
                continue
            scope = label_scope(chain)
            if node.type == "deny":
                if scope is None or scope & labels:
                    what = "all data" if scope is None else "labels " + ", ".join(sorted(scope & labels))
                    denies.append(Reason(Effect.DENY, "consent",
                                         f"{_describe(consent, node)} denies ({what})", consent.id, node.path))
                continue
            reason = Reason(Effect.PERMIT, "consent", f"{_describe(consent, node)} permits", consent.id, node.path)
            if scope is None:
                if "" in permits:
                    permits[""].append(reason)
                else:
                    ordinary.append(reason)
            else:
                for token in tokens:
                    if token in scope:
                        permits[token].append(reason)
    votes = [Effect.DENY] * bool(denies) + [Effect.PERMIT] * all(permits.values())
    effect = combine(votes)
    if effect is Effect.DENY:
        return effect, tuple(denies + notes)
    if effect is Effect.PERMIT:
        return effect, tuple(r for t in tokens for r in permits[t]) + tuple(notes)
    missing = [t for t in tokens if not permits[t]]
    granted = [r for t in tokens for r in permits[t]]
    if labels and (granted or ordinary):
        text = ("sensitive label(s) " + ", ".join(missing) +
                " not permitted by any consent provision (sensitive data needs an explicit permit per label)")
        return Effect.DENY, (Reason(Effect.DENY, "sensitive-label", text),) + tuple(notes)
    return Effect.NOT_APPLICABLE, (Reason(Effect.NOT_APPLICABLE, "no-consent",
                                          "no active consent permits this viewer to see this data "
                                          "(opt-in: denied by default)"),) + tuple(notes)


# --------------------------------------------------------------------------- emergency access

def _emergency(request: AccessRequest, policy: Policy) -> list[str]:
    """Why the resource may not be shown under emergency access (empty: it may)."""
    failures = []
    admitted, why = policy.emergency_dataset.admits(request.resource, request.now)
    if not admitted:
        failures.append(f"outside the emergency dataset: {why}")
    if request.resource.sensitive_labels and not policy.emergency_includes_sensitive:
        failures.append("sensitive label(s) " + ", ".join(sorted(request.resource.sensitive_labels)) +
                        " are never shown under emergency access")
    return failures


def break_glass_failures(request: AccessRequest, policy: Policy) -> list[str]:
    """Why break-the-glass does not open this resource to this request (empty: it does)."""
    declaration = request.break_glass
    if declaration is None:
        return ["no break-the-glass declaration"]
    rule = policy.break_glass
    failures = []
    if request.viewer_org is None:
        failures.append("only facility users can break the glass")
    failures += rule.refusals(request.roles, request.purpose)
    if not declaration.reason.strip():
        failures.append("no reason given")
    if request.now < declaration.declared_at:
        failures.append("the declaration is dated in the future")
    elif request.now > declaration.declared_at + rule.duration:
        failures.append(f"the declaration expired (valid {rule.duration} from "
                        f"{declaration.declared_at.isoformat()})")
    return failures + _emergency(request, policy)


def disaster_failures(request: AccessRequest, policy: Policy) -> list[str]:
    """Why disaster mode does not open this resource to this request (empty: it does)."""
    if not policy.disaster_mode:
        return ["disaster mode is off"]
    failures = []
    if request.viewer_org is None:
        failures.append("only facility users act under disaster mode")
    if not request.roles & policy.disaster_roles:
        failures.append("the user lacks a disaster-response role (" + ", ".join(sorted(policy.disaster_roles)) + ")")
    return failures + _emergency(request, policy)


# --------------------------------------------------------------------------- decide

def decide(request: AccessRequest, consents: Iterable[Consent], policy: Policy = DEFAULT_POLICY) -> Decision:
    """May ``request``'s viewer see ``request.resource``? See the module docstring for the rules."""
    facts = request.resource
    if request.viewer_patient is not None:
        if request.viewer_patient != facts.patient:
            return Decision(Effect.DENY, (Reason(Effect.DENY, "patient", "a patient sees only their own record"),))
        if UNINFORMED in facts.tags:
            return Decision(Effect.DENY, (Reason(
                Effect.DENY, "uninformed",
                "tagged UNINFORMED: not yet told to the patient, never shown in the portal"),))
        return Decision(Effect.PERMIT, (Reason(Effect.PERMIT, "patient", "the patient sees their own record"),))

    if request.viewer_org is not None and request.viewer_org == facts.custodian and request.viewer_may_disclose:
        return Decision(Effect.PERMIT, (Reason(Effect.PERMIT, "custodian",
                                               f"Organization/{facts.custodian} disclosed this resource (custodian)"),))
    if request.viewer_org is not None and not request.viewer_may_view:
        return Decision(Effect.NOT_APPLICABLE, (Reason(
            Effect.NOT_APPLICABLE, "network-role",
            f"Organization/{request.viewer_org} is not a registered, active facility whose network role "
            "lets it view other facilities' data"),))

    reasons: tuple[Reason, ...]
    if facts.data_class in NEVER_GRANTED:
        effect, reasons = Effect.NOT_APPLICABLE, (Reason(
            Effect.NOT_APPLICABLE, "never-granted",
            f"{facts.data_class} data is never shared with other facilities by a consent"),)
    else:
        effect, reasons = evaluate_consents(request, consents)
    if effect is Effect.PERMIT:
        return Decision(effect, reasons)

    notes = []
    if request.break_glass is not None:
        failures = break_glass_failures(request, policy)
        if not failures and effect is Effect.DENY and not policy.emergency_overrides_deny:
            failures = ["a consent denies this viewer and the policy does not let emergency access override it"]
        if not failures:
            reason = Reason(Effect.PERMIT, "break-the-glass",
                            f"break-the-glass by Organization/{request.viewer_org}: "
                            f"{request.break_glass.reason.strip()}")
            return Decision(Effect.PERMIT, reasons + (reason,), break_glass=True)
        notes.append("break-the-glass refused: " + "; ".join(failures))

    if policy.disaster_mode:
        failures = disaster_failures(request, policy)
        if not failures and effect is Effect.DENY and not policy.emergency_overrides_deny:
            failures = ["a consent denies this viewer and the policy does not let emergency access override it"]
        if not failures:
            reason = Reason(Effect.PERMIT, "disaster-mode", "disaster mode opens the emergency dataset to this role")
            return Decision(Effect.PERMIT, reasons + (reason,), disaster_mode=True, notes=tuple(notes))
        notes.append("disaster mode does not apply: " + "; ".join(failures))

    return Decision(effect, reasons, notes=tuple(notes))
