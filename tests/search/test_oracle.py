"""Oracle test: generated queries on the Synthea corpus give exactly the brute-force results.

At least 300 queries per dialect covering every parameter type found in the corpus,
modifiers, prefixes, chains, ``_has``, includes, sorts and paging are generated from the
stored values, run through :func:`hie.interactions.search.search`, and compared with
:class:`search_oracle.Oracle`, which evaluates the FHIRPath expressions with fhirpathpy
on every stored resource (https://hl7.org/fhir/R4/search.html).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest
from search_oracle import Oracle

from hie.interactions.search import search_bundle as search
from hie.search.indexer import date_values, quantity_values, string_values, token_values
from hie.search.normalize import format_us
from hie.storage.tables import resource as R

REPO = Path(__file__).resolve().parents[2]
N_BUNDLES = 12
MIN_QUERIES = 300


def corpus_bundles() -> list[Path]:
    root = Path(os.environ.get("HIE_CORPUS", REPO.parent / "shared" / "data")) / "synthea-r4" / "bundles"
    if not root.exists():
        pytest.skip(f"Synthea corpus not found at {root} (set HIE_CORPUS to the shared data folder)")
    return sorted(root.glob("*.json"))[::8][:N_BUNDLES]


def load_resources() -> list[dict]:
    out, seen = [], set()
    for f in corpus_bundles():
        raw = f.read_bytes()
        b = orjson.loads(raw)
        for e in b["entry"]:
            raw = raw.replace(f'"{e["fullUrl"]}"'.encode(),
                              f'"{e["resource"]["resourceType"]}/{e["resource"]["id"]}"'.encode())
        for e in orjson.loads(raw)["entry"]:
            r = e["resource"]
            if (r["resourceType"], r["id"]) not in seen:
                seen.add((r["resourceType"], r["id"]))
                out.append(r)
    return out


def _day(us: int) -> str:
    return format_us(us)[:10]


def generate(oracle: Oracle, rnd: random.Random) -> list[tuple[str, list[tuple[str, str]]]]:
    """Queries built from stored values, so that most have hits."""
    reg = oracle.reg
    by_type: dict[str, list] = {}
    for pk, r in oracle.rows:
        by_type.setdefault(r["resourceType"], []).append((pk, r))
    qs: list[tuple[str, list[tuple[str, str]]]] = []
    types = ["Patient", "Observation", "Encounter", "Condition", "MedicationRequest", "Procedure",
             "Immunization", "DiagnosticReport", "CarePlan", "AllergyIntolerance", "Claim", "ImagingStudy",
             "Organization", "Practitioner", "Goal", "ExplanationOfBenefit"]
    for t in types:
        rows = by_type.get(t, [])
        if not rows:
            continue
        params = [p for p in reg.indexed_params(t) if p.type in ("string", "token", "reference", "date", "quantity")]
        for _ in range(18):
            pk, res = rnd.choice(rows)
            p = rnd.choice(params)
            vals = oracle.values(pk, res, p.code)
            if not vals:
                qs.append((t, [(f"{p.code}:missing", rnd.choice(["true", "false"]))]))
                continue
            v = rnd.choice(vals)
            if p.type == "string":
                ss = string_values(v)
                if not ss:
                    continue
                s = ss[0]
                mode = rnd.choice(["", ":exact", ":contains"])
                middle = s[len(s) // 3: len(s) // 3 + 3] or s
                val = s if mode == ":exact" else (s[: rnd.randint(1, len(s))] if not mode else middle)
                qs.append((t, [(p.code + mode, val)]))
            elif p.type == "token":
                toks = [x for x in token_values(v) if x[1] and not x[3] and "," not in x[1] and "|" not in x[1]
                        and "$" not in x[1]]
                if not toks:
                    continue
                s, c, tx, _ = rnd.choice(toks)
                form = rnd.choice(["code", "sys", "not", "text"])
                if form == "sys" and s:
                    qs.append((t, [(p.code, f"{s}|{c}")]))
                elif form == "not":
                    qs.append((t, [(p.code + ":not", c)]))
                elif form == "text" and tx:
                    qs.append((t, [(p.code + ":text", tx[:4])]))
                else:
                    qs.append((t, [(p.code, c)]))
            elif p.type == "reference":
                rv = v.get("reference") if isinstance(v, dict) else None
                if not rv or "/" not in rv:
                    continue
                tt = rv.split("/")[0]
                if rnd.random() < 0.5:
                    qs.append((t, [(p.code, rv)]))
                else:
                    chained = {"Patient": [("gender", "female"), ("gender", "male"), ("birthdate", "lt1960"),
                                           ("family", "M"), ("address-state", "Mass")],
                               "Encounter": [("class", "AMB"), ("date", "ge2015")],
                               "Practitioner": [("gender", "female"), ("name", "A")],
                               "Organization": [("name", "H"), ("address-city", "BOSTON")]}.get(tt)
                    if chained:
                        cn, cv = rnd.choice(chained)
                        qs.append((t, [(f"{p.code}:{tt}.{cn}", cv)]))
                    else:
                        qs.append((t, [(p.code, rv)]))
            elif p.type == "date":
                ds = date_values(v)
                if not ds:
                    continue
                lo, hi = ds[0]
                if lo < -(2**61):
                    lo = hi
                prefix = rnd.choice(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"])
                text = rnd.choice([format_us(lo)[:4], format_us(lo)[:7], _day(lo), format_us(lo)[:19] + "Z"])
                qs.append((t, [(p.code, prefix + text)]))
            elif p.type == "quantity":
                q = quantity_values(v)
                if not q:
                    continue
                n, s, c, _u, _cv, _cc = q[0]
                prefix = rnd.choice(["", "gt", "lt", "ge", "le", "ne", "ap"])
                num = f"{n:g}"
                if c and s and rnd.random() < 0.6:
                    qs.append((t, [(p.code, f"{prefix}{num}|{s}|{c}")]))
                else:
                    qs.append((t, [(p.code, prefix + num)]))
    # AND / OR combinations, composites, _has, sorts, includes, paging
    obs = by_type.get("Observation", [])
    for _ in range(40):
        pk, res = rnd.choice(obs)
        code = res["code"]["coding"][0]["code"]
        other = rnd.choice(obs)[1]["code"]["coding"][0]["code"]
        subj = res["subject"]["reference"]
        kind = rnd.randrange(6)
        if kind == 0:
            qs.append(("Observation", [("code", f"{code},{other}"), ("subject", subj)]))
        elif kind == 1 and "valueQuantity" in res:
            vq = res["valueQuantity"]
            qs.append(("Observation", [("code-value-quantity", f"{code}$gt{vq['value'] * 0.9:g}")]))
        elif kind == 2:
            qs.append(("Patient", [("_has:Observation:patient:code", code)]))
        elif kind == 3:
            qs.append(("Patient", [("_has:Observation:patient:code", code),
                                   ("gender", rnd.choice(["male", "female"]))]))
        elif kind == 4 and res.get("component"):
            cc = res["component"][0]["code"]["coding"][0]["code"]
            value = res["component"][0]["valueQuantity"]["value"]
            qs.append(("Observation", [("component-code-value-quantity", f"{cc}$ge{value:g}")]))
        else:
            low = date_values(res.get("effectiveDateTime", "2000"))[0][0]
            qs.append(("Observation", [("patient", subj), ("date", "ge" + _day(low))]))
    for _ in range(30):
        pk, res = rnd.choice(obs)
        code = res["code"]["coding"][0]["code"]
        sort = rnd.choice(["date", "-date", "value-quantity", "-value-quantity", "code,-date", "status,date"])
        count = rnd.choice([3, 5, 10])
        qs.append(("Observation", [("code", code), ("_sort", sort), ("_count", str(count)),
                                   ("_offset", str(rnd.choice([0, count, 2 * count])))]))
    pats = by_type["Patient"]
    for _ in range(15):
        qs.append(("Patient", [("_sort", rnd.choice(["birthdate", "-birthdate", "family", "gender,-birthdate"])),
                               ("_count", "7"), ("_offset", str(rnd.choice([0, 7, 14])))]))
    for _ in range(30):
        pk, res = rnd.choice(obs)
        code = res["code"]["coding"][0]["code"]
        inc = rnd.choice([("_include", "Observation:patient"), ("_include", "Observation:encounter"),
                          ("_include", "Observation:subject")])
        qs.append(("Observation", [("code", code), ("patient", res["subject"]["reference"]), inc]))
    for _ in range(10):
        pk, res = rnd.choice(pats)
        qs.append(("Patient", [("_id", res["id"]), ("_revinclude", rnd.choice(
            ["Encounter:patient", "Condition:subject", "MedicationRequest:patient", "Immunization:patient"]))]))
    return qs


@pytest.fixture
def corpus_db(store, registry):
    resources = load_resources()
    pks = store.add(*resources)
    return list(zip(pks, resources, strict=True))


def test_generated_queries_match_brute_force_evaluation(ctx, corpus_db, registry, conn):
    from hie.search.query import Env

    now = Env(registry, None).now_us  # reference time of the ap prefix
    oracle = Oracle(registry, [(pk, r) for pk, r in corpus_db], now)
    rnd = random.Random(20240601)
    queries = generate(oracle, rnd)
    assert len(queries) >= MIN_QUERIES, len(queries)
    pk_of = {(r["resourceType"], r["id"]): pk for pk, r in corpus_db}
    mismatches = []
    for res_type, params in queries:
        crit = [(n, v) for n, v in params if n not in ("_sort", "_count", "_offset", "_include", "_revinclude")]
        ctrl = dict((n, v) for n, v in params if (n, v) not in crit)
        bundle = search(ctx, res_type, params + ([("_count", "1000")] if "_count" not in ctrl else []))
        got = [pk_of[(e["resource"]["resourceType"], e["resource"]["id"])] for e in bundle["entry"]
               if e["search"]["mode"] == "match"]
        expected_all = oracle.search(res_type, crit)
        if "_sort" in ctrl:
            ordered = oracle.sorted_pks(expected_all, ctrl["_sort"])
            off, cnt = int(ctrl.get("_offset", 0)), int(ctrl["_count"])
            expected = ordered[off:off + cnt]
            ok = got == expected and bundle["total"] == len(expected_all)
        else:
            expected = expected_all
            ok = sorted(got) == sorted(expected) and bundle["total"] == len(expected)
        if ok and ("_include" in ctrl or "_revinclude" in ctrl):
            key = "_include" if "_include" in ctrl else "_revinclude"
            src, code = ctrl[key].split(":")
            inc_expected = oracle.include(expected_all, src, code, key == "_revinclude")
            inc_got = {pk_of[(e["resource"]["resourceType"], e["resource"]["id"])] for e in bundle["entry"]
                       if e["search"]["mode"] == "include"}
            ok = inc_got == inc_expected
        if not ok:
            mismatches.append((res_type, params, len(got), len(expected)))
    print(f"\noracle: {len(queries)} queries, {len(mismatches)} mismatches")
    assert mismatches == [], mismatches[:10]


def test_resources_in_db_are_those_loaded(conn, corpus_db):
    assert conn.execute(R.select().with_only_columns(R.c.pk)).all().__len__() == len(corpus_db)
