"""Audit of every access: IHE BALP AuditEvents in an append-only, hash-chained,
checkpoint-signed trail (:mod:`hie.audit.chain`), written by a crash-safe background
recorder (:mod:`hie.audit.recorder`).

Spec: https://profiles.ihe.net/ITI/BALP/
"""
