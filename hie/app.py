"""Composition root: builds the engine, the search registry, the access policy and the
clock once, and hands out per-request contexts. ``hie serve``, the tests, the ingest
adapters and the benchmarks all start here (Blaze wires its modules in one place).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hie.clock import Clock, SystemClock
from hie.config import Settings
from hie.interactions.context import Context
from hie.principal import Principal
from hie.storage.access import AccessPolicy
from hie.storage.db import make_engine, read_tx, write_tx
from hie.storage.repository import Repository


_SERVICES = threading.RLock()  # re-entrant: one service's factory may ask for another


class Node:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        policy: AccessPolicy | None = None,
        registry: Any = None,
    ) -> None:
        from hie.search.registry import SearchRegistry

        self.settings = settings
        self.engine = make_engine(settings.database_url, pool_size=settings.pool_size)
        self.registry = registry or SearchRegistry.load_default()
        #: Called on every registry this node builds (see hie.search.stored).
        self.registry_hooks: list[Any] = []
        from hie.audit.search import configure as configure_audit_search

        configure_audit_search(self.registry)  # AuditEvents: a reduced index (write cost)
        self.registry_hooks.append(configure_audit_search)  # and on registries rebuilt later
        self.clock: Clock = clock or SystemClock()
        from hie.enforcement.grants import on_write as compile_consent_grants
        from hie.enforcement.policy import ConsentPolicy

        #: The access predicate every repository statement carries (consent enforcement).
        self.policy: AccessPolicy = policy or ConsentPolicy(clock=self.clock)
        #: Called inside every write transaction (see hie.storage.repository.WriteListener).
        self.write_listeners: list[Any] = []
        #: Maps a local Patient id to the regional patient key (the identity service sets it).
        self.patient_key_resolver: Any = None
        from hie.identity.service import install as install_identity

        install_identity(self)  # patient-key resolver and identity write listener
        from hie.storage.dependents import install as install_dependents

        install_dependents(self)  # a Binary follows its securityContext (after identity: regional keys)
        # Consent grants follow Consent writes in the same transaction (after identity, so
        # the Consent's patient key is the regional one).
        self.write_listeners.append(compile_consent_grants)
        from hie.enforcement.facilities import install as install_facility_directory

        install_facility_directory(self)  # first listener: consent compilation resolves actors with it
        from hie.search.stored import install as install_stored_search_parameters

        # stored SearchParameters add to the registry
        self.stored_search_parameters = install_stored_search_parameters(self)
        if self.patient_key_resolver is not None and hasattr(self.policy, "set_patient_key_resolver"):
            self.policy.set_patient_key_resolver(self.patient_key_resolver)
        from hie.auth.compartment import install as install_compartment

        install_compartment(self)  # patient-context tokens read and write one compartment

    @classmethod
    def open(cls, database_url: str | None = None, **kwargs: Any) -> Node:
        settings = Settings.from_env()
        if database_url:
            settings = dataclasses.replace(settings, database_url=database_url)
        return cls(settings, **kwargs)

    def close(self) -> None:
        self.stored_search_parameters.stop()  # first: a last reload's system use is journaled
        recorder = self.__dict__.get("_hie_audit")
        if recorder is not None:  # store what this process journaled (system use included)
            recorder.close()
            if recorder.store:  # and what loader worker processes left (they exit without atexit)
                recorder.recover()
        self.engine.dispose()

    def service(self, name: str, factory: Callable[[], Any]) -> Any:
        """The node's one ``name`` service (token service, audit recorder, authorization
        server), made by ``factory`` on first use; kept as ``_hie_<name>``."""
        key = f"_hie_{name}"
        svc = self.__dict__.get(key)
        if svc is None:
            with _SERVICES:
                svc = self.__dict__.get(key)
                if svc is None:
                    svc = self.__dict__[key] = factory()
        return svc

    def upgrade(self) -> None:
        from hie.storage.migrate import upgrade

        upgrade(self.engine)
        from hie.enforcement.facilities import directory, sync_roles

        with write_tx(self.engine) as conn:  # a database whose role rows predate them (ADR 0007)
            sync_roles(conn, directory(conn), by="migration", now=self.clock.now_us())

    def system_use(self, purpose: str, detail: str | None = None) -> None:
        """Record a use of the system principal outside a request (ingest, maintenance): it
        sees every row, so each use is audited (:mod:`hie.audit.system`)."""
        from hie.audit.system import record_system_use

        record_system_use(self, purpose, detail)

    def repository(self, conn: Any, principal: Principal) -> Repository:
        kwargs: dict[str, Any] = {}
        if self.patient_key_resolver is not None:
            kwargs["patient_key"] = self.patient_key_resolver
        return Repository(conn, principal, registry=self.registry, policy=self.policy, clock=self.clock,
                          listeners=self.write_listeners, **kwargs)

    @contextmanager
    def context(
        self,
        principal: Principal,
        *,
        write: bool,
        base_url: str | None = None,
        prefer_return: str = "representation",
        prefer_strict: bool = False,
    ) -> Iterator[Context]:
        stored = self.stored_search_parameters
        stored.ensure_loaded()  # first request only; later changes are watched off the request path
        tx = write_tx if write else read_tx
        with tx(self.engine) as conn:
            yield Context(
                principal=principal,
                registry=self.registry,
                repo=self.repository(conn, principal),
                base_url=base_url or self.settings.base_url or "http://localhost:8080/fhir",
                prefer_return=prefer_return,
                prefer_strict=prefer_strict,
            )
        if write:
            stored.after_commit()  # a SearchParameter this request wrote: used from the next request

    def create_app(self) -> Any:
        from hie.api.app import create_app

        return create_app(self)
