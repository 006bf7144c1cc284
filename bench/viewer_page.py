"""The clinician viewer's patient page for a 2,000-resource patient (issue 14, acceptance 5).

The region of ``bench/summary.py`` (the same 2,000-record patient spread over three
facilities, a consent sharing with every facility, background patients) in a throwaway
database; a practitioner of the viewing facility logs in through the node's own login
(password + TOTP, authorization code, server-side session) and the page
``GET /viewer/patient/<id>`` is timed over HTTP in process (Starlette TestClient: routing,
session, token check, the consent predicate in every statement, collection, the page's
blocks, Jinja2 rendering and the audit event; the audit store is off, as in the $summary
bench). Prints p50/p95/p99 (ms) and the page size.

    .venv/bin/python bench/viewer_page.py                 # PostgreSQL (HIE_TEST_PG_URL server)
    .venv/bin/python bench/viewer_page.py --db sqlite --runs 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import database, percentiles  # noqa: E402
from bench.summary import VIEWER, built_region  # noqa: E402


def breakdown(node: object, pid: str, runs: int) -> dict[str, list[float]]:
    """The page's parts in process, as the viewing practitioner: the record's collection
    (hie.summary.record.collect), the page's blocks (hie.web.pages) and the template; wall
    time and this process's CPU time (the latter is what a busy machine does not inflate;
    the database server's own time is not in it)."""
    from hie.principal import Principal
    from hie.summary.record import collect
    from hie.web import fhir, views
    from hie.web import pages as blocks
    from hie.web.i18n import catalogue
    from hie.web.templating import TEMPLATES

    p = Principal(kind="user", name="bench", user_id="bench-viewer", organization_id=VIEWER,
                  scopes=frozenset({"user/*.rs"}))
    out: dict[str, list[float]] = {k: [] for k in ("collect", "blocks", "template", "collect cpu", "blocks cpu",
                                                      "template cpu")}
    today, now = views._today(node), node.clock.now_us()  # type: ignore[attr-defined]
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        record = fhir.with_repo(node, p, views.PAGE_NEEDS, lambda repo: collect(repo, pid))
        t1, c1 = time.perf_counter(), time.process_time()
        view = blocks.patient_view(record, "ja", today, now)
        t2, c2 = time.perf_counter(), time.process_time()
        TEMPLATES.get_template("patient.html").render(
            lang="ja", t=catalogue("ja"), v=view, when=lambda v: views.when(v, "ja"),
            status_text=lambda c: blocks.status_text(c, "ja"), code_label=views.code_label, patient_id=pid,
            facility="", logged_in=True, csrf="", lang_query="", glass=None, per_facility=50, all_events=False)
        t3, c3 = time.perf_counter(), time.process_time()
        for name, a, b in (("collect", t0, t1), ("blocks", t1, t2), ("template", t2, t3), ("collect cpu", c0, c1),
                           ("blocks cpu", c1, c2), ("template cpu", c2, c3)):
            out[name].append((b - a) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--others", type=int, default=20, help="background patients (200 records each)")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from tests.web import viewer_helpers as vh

    pid = "sum-bench"
    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        node = built_region(url, Path(tmp), args.db, pid, args.others)
        with TestClient(create_app(node, audit=False), base_url="http://127.0.0.1") as c:
            vh.login(c, vh.enrol(node, "bench-viewer", org=VIEWER), "bench-viewer")
            for _ in range(args.warmup):
                page = c.get(f"/viewer/patient/{pid}")
                assert page.status_code == 200, page.text[:500]
            samples = []
            for _ in range(args.runs):
                t = time.perf_counter()
                page = c.get(f"/viewer/patient/{pid}")
                samples.append((time.perf_counter() - t) * 1000)
                assert page.status_code == 200
        q = percentiles(samples)
        print(f"viewer patient page: {len(page.content) / 1024:.0f} KiB; p50 {q[50]:.1f} ms, p95 {q[95]:.1f} ms, "
              f"p99 {q[99]:.1f} ms ({len(samples)} runs)")
        for name, part in breakdown(node, pid, max(10, args.runs // 2)).items():
            q = percentiles(part)
            print(f"  {name}: p50 {q[50]:.1f} ms, p95 {q[95]:.1f} ms")
        node.close()


if __name__ == "__main__":
    main()
