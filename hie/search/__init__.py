"""FHIR R4 search (https://hl7.org/fhir/R4/search.html): registry, indexer and query builder."""
