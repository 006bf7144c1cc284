"""Identity service core: patient matching for the regional master patient index.

Pure code (no database, no HTTP): normalization of Japanese demographics
(:mod:`hie.identity.normalize`), comparable features extracted from a FHIR R4
Patient (:mod:`hie.identity.features`), Fellegi-Sunter scoring with FHIR match
grades (:mod:`hie.identity.score`) and an in-memory blocking index that answers
``Patient/$match`` (:mod:`hie.identity.index`).

Specs: https://hl7.org/fhir/R4/patient-operation-match.html (Patient/$match),
IHE PDQm ITI-119 (Patient Demographics Match).
"""
