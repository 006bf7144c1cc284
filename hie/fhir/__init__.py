"""FHIR R4 plumbing that does not touch storage: JSON, validation, references, patch."""
