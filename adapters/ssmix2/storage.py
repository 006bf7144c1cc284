"""SS-MIX2 standardized storage tree: file-name parsing, consistency checks, ordering.

Implements the storage layout of the SS-MIX2 specification (標準化ストレージ仕様書
Ver. 1.2h, 3.2 "フォルダ構成" and 3.3 "ファイル名"):
https://www.jami.jp/jamistd/docs/SS-MIX2/

``<root>/<PID[0:3]>/<PID[3:6]>/<PID>/<YYYYMMDD or ->/<data kind>/<file>``, file name
``PID_date_kind_orderNo_timestamp(17)_dept_flag``; condition flag 1 = valid,
2 = superseded by a newer file for the same order, 0 = deleted (withdrawn).
A file whose name disagrees with the folders it sits in is rejected: which of the
two is right cannot be known, and guessing would file data under the wrong patient.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

_NAME = re.compile(
    r"^(?P<pid>[0-9A-Za-z]{1,64})_(?P<date>\d{8}|-)_(?P<kind>[A-Z]{3}(?:-\d{2})?)_"
    r"(?P<order>[0-9A-Za-z\-]{1,15})_(?P<ts>\d{17})_(?P<dept>[0-9A-Za-z\-]{1,10})_(?P<flag>[012])$")
FLAG_VALID, FLAG_SUPERSEDED, FLAG_DELETED = "1", "2", "0"
# Placeholder order number SS-MIX2 uses for kinds without an order (ADT, PPR).
NO_ORDER = "9" * 15


class StorageNameError(ValueError):
    """A file whose path does not follow the SS-MIX2 naming rules."""


@dataclass(frozen=True)
class StorageFile:
    path: Path
    rel: str
    patient_id: str
    date: str  # YYYYMMDD or "-"
    kind: str
    order: str
    timestamp: str
    dept: str
    flag: str

    @property
    def order_key(self) -> tuple[str, str, str, str]:
        """Files with the same key are versions of one order / record."""
        return (self.patient_id, self.date, self.kind, self.order)

    @property
    def sort_key(self) -> tuple:
        # Date order; undated records ("-": demographics, allergies, diseases) first,
        # with demographics (ADT-00) ahead of everything on the same date.
        return ("" if self.date == "-" else self.date, 0 if self.kind == "ADT-00" else 1,
                self.timestamp, self.rel)


def parse_path(root: Path, path: Path) -> StorageFile:
    """Parse and check one file path against the SS-MIX2 rules (StorageNameError)."""
    rel = path.relative_to(root)
    parts = rel.parts
    if len(parts) != 6:
        raise StorageNameError(f"not at depth 6 of the storage tree (PID3/PID3/PID/date/kind/file): {rel}")
    d1, d2, pid_dir, date_dir, kind_dir, name = parts
    m = _NAME.match(name)
    if not m:
        raise StorageNameError(f"file name {name!r} does not follow PID_date_kind_order_timestamp_dept_flag")
    f = m.groupdict()
    problems = []
    if f["pid"] != pid_dir:
        problems.append(f"patient id {f['pid']} in the name, {pid_dir} in the folder")
    if pid_dir[:3] != d1 or pid_dir[3:6] != d2:
        problems.append(f"patient folder {pid_dir} is not under {pid_dir[:3]}/{pid_dir[3:6]}")
    if f["date"] != date_dir:
        problems.append(f"date {f['date']} in the name, {date_dir} in the folder")
    if f["kind"] != kind_dir:
        problems.append(f"data kind {f['kind']} in the name, {kind_dir} in the folder")
    if problems:
        raise StorageNameError("file name does not match its folders: " + "; ".join(problems))
    return StorageFile(path=path, rel=str(rel), patient_id=f["pid"], date=f["date"], kind=f["kind"],
                       order=f["order"], timestamp=f["ts"], dept=f["dept"], flag=f["flag"])


def walk(root: Path) -> Iterator[Path]:
    """All regular files under the storage root (hidden files and folders skipped)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name
