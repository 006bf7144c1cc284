"""Per-message-kind mappers: HL7 v2.5 / SS-MIX2 messages -> FHIR R4 (JP Core) resources.

Each mapper follows the JAMI SS-MIX2-to-FHIR ConceptMaps where they exist
(https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir, fsh-generated/resources) and
adds resources to a :class:`~adapters.hl7v2.bundle.BundleBuilder`.
"""
