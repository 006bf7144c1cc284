"""FHIR interactions, one small function each, named after the spec (read, vread,
search_type, history_instance, transaction, ...). They know nothing of HTTP: each takes a
:class:`~hie.interactions.context.Context` and returns a :class:`~hie.interactions.result.Result`
that the REST layer or a Bundle entry response renders.

Spec: https://hl7.org/fhir/R4/http.html
"""
