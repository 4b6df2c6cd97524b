"""Reviewed labels sent back from the page (POST /v1/corrections), kept as a training corpus.

Each row is checked as a training row would be (`renda.records.Record`, as `read_jsonl` checks
every line of a labelled file) and as request text is (limits, characters). Every row of a
request is checked before anything is written, so a bad row leaves every file as it was. Rows are
appended to `<corrections_dir>/<report_id>.jsonl`, one file per report; existing lines are never
rewritten. A file is replaced by rename (old bytes + new lines), so a reader such as `make train`
never sees half a line. `make train CORPUS="data/starter data/corrections"` reads the folder;
within a file a later row of the same text wins (renda.corpus.load_corpus), so the latest
correction is the one learnt.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from renda.records import Record, atomic_write_text, dumps_jsonl
from serving.validation import InputProblem, check_characters, check_text

# A report id becomes a file name: letters, digits, CJK, `.`, `_` and `-`, not starting with a dot,
# so no separators, no `..`, no hidden files. File names are limited in bytes (255 on Linux), and the
# atomic write's temporary name adds about 20 to the id's: so at most 200 bytes in UTF-8, where a
# Chinese character takes 3.
REPORT_ID = re.compile(r"[A-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff][A-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff._-]{0,99}")
REPORT_ID_BYTES = 200
REPORT_ID_RULE = ("1 to 100 letters, digits, Chinese characters, '.', '_' or '-', not starting with '.', "
                  f"at most {REPORT_ID_BYTES} bytes in UTF-8 ({REPORT_ID_BYTES // 3} Chinese characters)")

_write_lock = threading.Lock()  # one writer at a time: the read-append-rename of a file is not atomic between threads


def check_report_id(field: str, report_id: str) -> None:
    if not REPORT_ID.fullmatch(report_id) or len(report_id.encode("utf-8")) > REPORT_ID_BYTES:
        raise InputProblem(field, f"{report_id[:120]!r} is not a usable report id: use {REPORT_ID_RULE}")


def check_rows(rows: list[dict], max_chars: int) -> list[Record]:
    """Every row as a training record, or an InputProblem naming the first bad field (records[i].…)."""
    records = []
    for i, row in enumerate(rows):
        field = f"records[{i}]"
        check_report_id(f"{field}.report_id", row["report_id"])
        check_text(f"{field}.text", row["text"], max_chars)
        for j, heading in enumerate([row.get("heading") or ""] + list(row.get("heading_path") or [])):
            check_characters(f"{field}.heading" if j == 0 else f"{field}.heading_path[{j - 1}]", heading)
        try:
            records.append(Record.model_validate(row))
        except ValidationError as error:  # the reader's own checks (a known label, a non-blank text)
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise InputProblem(f"{field}.{where}" if where else field, first["msg"].removeprefix("Value error, ")) from error
        if records[-1].label is None:
            raise InputProblem(f"{field}.label", "a correction needs a label")
    return records


def correction_file(folder: Path, report_id: str) -> Path:
    """`<folder>/<report_id>.jsonl`, refusing anything that would land outside the folder."""
    check_report_id("report_id", report_id)
    path = (Path(folder) / f"{report_id}.jsonl").resolve()
    if path.parent != Path(folder).resolve():
        raise InputProblem("report_id", f"{report_id!r} does not name a file in the corrections folder")
    return path


def append_corrections(folder: Path, records: list[Record]) -> dict[str, int]:
    """Append the (already checked) records to their reports' files; returns rows written per report."""
    by_report: dict[str, list[dict]] = defaultdict(list)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for record in records:
        by_report[record.report_id].append({**record.model_dump(), "corrected_at": stamp})
    paths = {report_id: correction_file(folder, report_id) for report_id in by_report}  # all checked before any write
    with _write_lock:
        for report_id, rows in by_report.items():
            path = paths[report_id]
            old = path.read_text(encoding="utf-8") if path.is_file() else ""
            if old and not old.endswith("\n"):
                old += "\n"
            atomic_write_text(path, old + dumps_jsonl(rows))
    return {report_id: len(rows) for report_id, rows in by_report.items()}
