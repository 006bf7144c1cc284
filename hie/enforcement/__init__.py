"""Consent enforcement inside the storage layer: grants kept in step with Consent writes,
the SQL access predicate every statement carries, break-the-glass and disaster mode.

The decisions themselves are specified by the pure :mod:`consent` package; this package
turns them into rows and SQL (``consent.grants`` documents the exact semantics, and the
tests prove the SQL equal to :func:`consent.grants.grants_permit`).
"""
