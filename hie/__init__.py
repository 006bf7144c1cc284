"""The regional health-information-exchange node: FHIR R4 server, storage, search,
identity, authorization, audit, portal and viewer."""

__version__ = "0.1.0"
