"""Canonical URLs and code systems that belong to this node.

The node's canonical base is configurable per deployment in principle, but the code
systems it defines (data classes, error codes, custodian tags) need fixed URIs that
every component agrees on; they live here.
"""

NODE_CANONICAL = "http://hie.example.jp/fhir"
CUSTODIAN_TAG_SYSTEM = f"{NODE_CANONICAL}/CodeSystem/custodian"
"""``meta.tag`` system naming the disclosing facility (10-digit institution code or Organization id)."""

MEDICAL_INSTITUTION_SYSTEM = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID"
FACILITY_PATIENT_ID_PREFIX = "urn:oid:1.2.392.100495.20.3.51.1"
