"""Instance-level interactions: read, vread, create, update, patch, delete and their
conditional forms.

Spec: https://hl7.org/fhir/R4/http.html#read (and #vread, #create, #update, #patch,
#delete, #ccreate, #cond-update, #cdelete), versioning https://hl7.org/fhir/R4/http.html#concurrency
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from hie.errors import (
    InvalidRequest,
    MultipleMatches,
    NotFound,
    PreconditionFailed,
    information_outcome,
)
from hie.fhir.patch import apply_patch
from hie.fhir.validate import check_id_matches, validate_resource
from hie.interactions.context import Context
from hie.interactions.paging import ascii_int
from hie.interactions.result import Result, stored_result
from hie.storage.repository import Stored, WriteResult

MAX_VERSION = 2**31 - 1
"""Largest version id (``version_id`` is an INTEGER column)."""


def parse_etag(value: str | None) -> int | None:
    """``W/"3"`` or ``"3"`` or ``3`` -> 3."""
    if value is None or value.strip() == "":
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    version = ascii_int(v.strip('"'))
    if version is None:
        raise InvalidRequest(f"Malformed ETag {value!r}: expected W/\"<versionId>\"")
    return version


def parse_query(query: str) -> list[tuple[str, str]]:
    q = query[1:] if query.startswith("?") else query
    return parse_qsl(q, keep_blank_values=True)


def _written(ctx: Context, wr: WriteResult, created_status: int = 201) -> Result:
    st = wr.stored
    assert st is not None
    status = created_status if wr.outcome == "created" else 200
    res = stored_result(st, status, with_body=ctx.prefer_return == "representation")
    if wr.outcome == "noop":
        res.unchanged = True
    if ctx.prefer_return == "OperationOutcome":
        res.body = information_outcome(
            {"created": "Created", "updated": "Updated", "noop": "No change: content identical to the current version"}
            .get(wr.outcome, wr.outcome)
            + f" {st.res_type}/{st.res_id} version {st.version_id}"
        )
    return res


# -- read -----------------------------------------------------------------------------


def read(ctx: Context, res_type: str, res_id: str, *, if_none_match: str | None = None,
         if_modified_since: int | None = None) -> Result:
    st = ctx.repo.read(res_type, res_id)
    if if_none_match is not None and parse_etag(if_none_match) == st.version_id:
        return Result(304, None, etag=st.etag, last_modified=st.last_updated)
    if if_modified_since is not None and st.last_updated // 1_000_000 <= if_modified_since // 1_000_000:
        return Result(304, None, etag=st.etag, last_modified=st.last_updated)
    res = stored_result(st)
    res.location = None
    res.headers["Content-Location"] = f"{ctx.base_url}/{res_type}/{res_id}/_history/{st.version_id}"
    return res


def vread(ctx: Context, res_type: str, res_id: str, version: str) -> Result:
    number = ascii_int(version, MAX_VERSION)
    if number is None:  # no such version can exist (the column holds 32-bit integers)
        raise NotFound(f"Version {version!r} of {res_type}/{res_id} is not known")
    st = ctx.repo.vread(res_type, res_id, number)
    res = stored_result(st)
    res.location = None
    return res


# -- create ---------------------------------------------------------------------------


def create(ctx: Context, res_type: str, body: Any, *, if_none_exist: str | None = None) -> Result:
    resource = validate_resource(body, expected_type=res_type)
    if if_none_exist:
        found = match_one(ctx, res_type, if_none_exist, what="If-None-Exist")
        if found is not None:
            res = stored_result(found, 200, with_body=ctx.prefer_return == "representation")
            if ctx.prefer_return == "OperationOutcome":
                res.body = information_outcome(f"Matched existing {res_type}/{found.res_id}; nothing created")
            return res
    st = ctx.repo.create(resource)
    return _written(ctx, WriteResult("created", st))


def match_one(ctx: Context, res_type: str, query: str, *, what: str) -> Stored | None:
    """The one visible resource ``query`` matches (conditional interactions and references);
    None when none matches; 412 when several do."""
    params = parse_query(query)
    if not params:
        raise InvalidRequest(f"{what} has no search parameters")
    pks = ctx.repo.find_pks(res_type, params)
    if len(pks) > 1:
        raise MultipleMatches(f"{what} '{query}' matches {len(pks)} {res_type} resources; it must match one")
    if not pks:
        return None
    return ctx.repo.load_pks(pks)[0]


# -- update ---------------------------------------------------------------------------


def update(ctx: Context, res_type: str, res_id: str, body: Any, *, if_match: str | None = None) -> Result:
    resource = validate_resource(body, expected_type=res_type)
    check_id_matches(resource, res_id)
    wr = ctx.repo.update(res_type, res_id, resource, if_match=parse_etag(if_match))
    return _written(ctx, wr)


def conditional_update(ctx: Context, res_type: str, query: str, body: Any, *, if_match: str | None = None) -> Result:
    resource = validate_resource(body, expected_type=res_type)
    found = match_one(ctx, res_type, query, what="Conditional update")
    if found is None:
        body_id = resource.get("id")
        if body_id:
            wr = ctx.repo.update(res_type, body_id, resource, if_match=parse_etag(if_match))
            return _written(ctx, wr)
        st = ctx.repo.create(resource)
        return _written(ctx, WriteResult("created", st))
    if resource.get("id") not in (None, found.res_id):
        check_id_matches(resource, found.res_id)
    resource = {**resource, "id": found.res_id}
    wr = ctx.repo.update(res_type, found.res_id, resource, if_match=parse_etag(if_match))
    return _written(ctx, wr)


# -- patch ----------------------------------------------------------------------------


def patch(ctx: Context, res_type: str, res_id: str, operations: Any, *, if_match: str | None = None) -> Result:
    st = ctx.repo.read(res_type, res_id)
    check_if_match(st, if_match)
    patched = apply_patch(st.resource(), operations)
    patched = validate_resource(patched, expected_type=res_type)
    check_id_matches(patched, res_id)
    wr = ctx.repo.write_batch([_update_write(res_type, res_id, patched, st.version_id, "PATCH")])[0]
    return _written(ctx, wr)


def check_if_match(st: Stored, if_match: str | None) -> None:
    """412 unless ``if_match`` (an ETag, or none) names ``st``'s version."""
    expected = parse_etag(if_match)
    if expected is not None and expected != st.version_id:
        raise PreconditionFailed(
            f"If-Match version {expected} does not match the current version {st.version_id} "
            f"of {st.res_type}/{st.res_id}"
        )


def conditional_patch(
    ctx: Context, res_type: str, query: str, operations: Any, *, if_match: str | None = None,
) -> Result:
    found = match_one(ctx, res_type, query, what="Conditional patch")
    if found is None:
        raise NotFound(f"Conditional patch '{query}' matches no {res_type}")
    return patch(ctx, res_type, found.res_id, operations, if_match=if_match)


def _update_write(res_type: str, res_id: str, resource: dict[str, Any], version: int, method: str):
    from hie.storage.repository import Write

    return Write("update", res_type, res_id, resource, if_match=version, method=method)


# -- delete ---------------------------------------------------------------------------


def delete(ctx: Context, res_type: str, res_id: str, *, if_match: str | None = None) -> Result:
    wr = ctx.repo.delete(res_type, res_id, if_match=parse_etag(if_match))
    if wr.outcome == "absent":
        return Result(200, information_outcome(
            f"{res_type}/{res_id} does not exist or is already deleted; nothing to do"))
    st = wr.stored
    assert st is not None
    return Result(
        200,
        information_outcome(f"Deleted {res_type}/{res_id} (version {st.version_id})"),
        etag=st.etag,
    )


def conditional_delete(ctx: Context, res_type: str, query: str) -> Result:
    found = match_one(ctx, res_type, query, what="Conditional delete")
    if found is None:
        return Result(200, information_outcome(f"Conditional delete '{query}' matched no {res_type}; nothing to do"))
    return delete(ctx, res_type, found.res_id)
