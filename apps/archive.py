"""Label a whole archive of reports into Parquet tables, resumably (`renda label-archive`).

Every `.txt` report under a folder (and every report in its `.jsonl` paragraph files) is parsed,
labelled in whole-report mode and written to three tables under OUT:

- `paragraphs/`: one row per paragraph (report path and id, body, level, year, position, heading
  path, text, label, section label, score, source);
- `reports/`: one row per report (paragraphs and characters per section label, and their shares);
- `failed/`: one row per file that could not be read or parsed, with the reason.

Files are labelled in batches. Each batch is one Parquet part in each table, written under a
temporary name and renamed, the `reports` part last: a batch is committed when its `reports` part
exists. A killed run leaves at most one uncommitted batch (parts without a `reports` part), which
the next run removes and redoes; reports already committed, or files already in `failed`, are
skipped. The Ray engine (apps/archive_ray.py) runs the same functions, spread over a cluster.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from model.reports import Combiner, Unit, combine, prepare_report, record_units
from model.review import prediction_doubt
from renda.corpus import with_heading_paths
from renda.labels import LABELS
from renda.parsing import has_chinese
from renda.readers import FORMATS, REFUSED, read_report
from renda.records import DataError, atomic_write, atomic_write_text, read_jsonl
from renda.report_meta import OPENING_LINES, report_meta

TABLES = ("paragraphs", "reports", "failed")
LISTED = {*FORMATS, *REFUSED, ".jsonl"}
MANIFEST = "archive.json"
_META = [("body", pa.string()), ("level", pa.string()), ("year", pa.int32())]
_KEY = [("report_path", pa.string()), ("report_id", pa.string())]
SCHEMAS = {
    "paragraphs": pa.schema(_KEY + _META + [
        ("position", pa.int32()), ("is_heading", pa.bool_()), ("heading_path", pa.list_(pa.string())),
        ("text", pa.string()), ("label", pa.string()), ("section_label", pa.string()), ("score", pa.float64()),
        ("source", pa.string()), ("doubt", pa.float64())]),
    # Counted by section label: the report's structure and the model together, usually the more accurate.
    "reports": pa.schema(_KEY + _META + [("format", pa.string()), ("encoding", pa.string()),
                                         ("paragraphs", pa.int32()), ("characters", pa.int64())] + [
        field for label in LABELS for field in (
            (f"paragraphs_{label}", pa.int32()), (f"characters_{label}", pa.int64()),
            (f"share_paragraphs_{label}", pa.float64()), (f"share_characters_{label}", pa.float64()))]),
    "failed": pa.schema(_KEY + [("reason", pa.string())]),  # report_id null: the whole file failed
}
SORT_KEYS = {"paragraphs": ["report_path", "report_id", "position"], "reports": ["report_path", "report_id"],
             "failed": ["report_path", "report_id"]}


@dataclass
class Report:
    """One report parsed and cut into units, ready to label (parsing and labelling are apart so
    that a batch of reports is predicted in one call, and so Ray can run them on different workers)."""
    report_path: str
    report_id: str
    meta: dict
    texts: list[str]
    paths: list[list[str]]
    headings: list[bool]
    positions: list[int]
    units: list[Unit]
    format: str = "text"  # as read (renda/readers.py): text, html, pdf, docx, jsonl
    encoding: str | None = None


@dataclass
class Failure:
    report_path: str
    report_id: str | None
    reason: str


# --- Reading and parsing -------------------------------------------------------------------------

def archive_files(root: Path) -> list[str]:
    """The report files under `root` (or `root` itself), as sorted paths relative to it: the formats
    read (renda/readers.py) and `.jsonl`, and the kinds refused by name (.doc, images, archives…),
    which go to `failed` with the reason; hidden files and folders and README.txt are left out."""
    root = Path(root)
    if root.is_file():
        return [root.name]
    if not root.is_dir():
        raise DataError(root, "no such folder")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if (path.suffix.lower() in LISTED and path.is_file() and path.name.lower() != "readme.txt"
                and not any(part.startswith(".") for part in rel.parts)):
            found.append(rel.as_posix())
    return sorted(found)


def _reason(error: DataError) -> str:
    """The message without the file name (the row names the file), with the line when known."""
    where = f"{error.path}:{error.line}" if error.line is not None else error.path
    message = str(error).removeprefix(f"{where}: ")
    return f"line {error.line}: {message}" if error.line is not None else message


def _report_from_file(rel: str, path: Path) -> Report:
    read = read_report(str(path))
    return _report_from_text(rel, read.text, read.format, read.encoding)


def _report_from_text(rel: str, text: str, kind: str = "text", encoding: str | None = None) -> Report:
    paragraphs, units, paths = prepare_report(text)
    if not any(has_chinese(p.text) for p in paragraphs):
        raise DataError(rel, "no Chinese text")
    opening = [line for line in text.splitlines() if line.strip()][:OPENING_LINES]
    return Report(rel, Path(rel).stem, report_meta(opening, rel), [p.text for p in paragraphs], paths,
                  [p.is_heading for p in paragraphs], [p.position for p in paragraphs], units, kind, encoding)


def _reports_from_jsonl(rel: str, path: Path, skip: set[str]) -> list[Report]:
    """Each report of a paragraph file (rows grouped by `report_id`, in file order), read with the
    heading paths its rows give or imply, as `make eval`'s whole-report mode reads them."""
    groups: dict[str, list] = {}
    for record in read_jsonl(path, require_label=False):
        groups.setdefault(record.report_id, []).append(record)
    reports = []
    for report_id, rows in groups.items():
        if report_id in skip:
            continue
        rows = with_heading_paths(rows)
        texts = [r.text for r in rows]
        reports.append(Report(rel, report_id, report_meta(texts[:OPENING_LINES], f"{rel}/{report_id}"), texts,
                              [r.heading_path or [] for r in rows], [r.is_heading for r in rows],
                              [r.position if r.position is not None else i for i, r in enumerate(rows)],
                              record_units(rows), "jsonl", "utf-8"))
    return reports


def parse_file(root: Path, rel: str, skip: set[str] = frozenset()) -> list[Report | Failure]:
    """The reports of one file (less those in `skip`), or its failure: a bad file never stops a run."""
    path = Path(root) / rel if Path(root).is_dir() else Path(root)  # ROOT may be a single file
    try:
        if rel.endswith(".jsonl"):
            return _reports_from_jsonl(rel, path, set(skip))
        return [_report_from_file(rel, path)]
    except DataError as error:
        return [Failure(rel, None, _reason(error))]
    except Exception as error:  # a parser bug on one odd file: recorded, the run goes on
        return [Failure(rel, None, f"cannot parse: {type(error).__name__}: {error}")]


# --- Labelling -----------------------------------------------------------------------------------

def label_batch(predictor, items: list[Report | Failure]) -> dict[str, list[dict]]:
    """The rows of every table for a batch: all its reports' paragraphs predicted in one call
    (sorted by length across reports, so less padding), then each report's units decided."""
    reports = [item for item in items if isinstance(item, Report)]
    texts = [t for r in reports for t in r.texts]
    contexts = [p for r in reports for p in r.paths]
    predictions = predictor.predict(texts, contexts) if texts else []
    combiner = Combiner.from_meta(getattr(predictor, "info", None))
    tables: dict[str, list[dict]] = {name: [] for name in TABLES}
    start = 0
    for report in reports:
        mine = predictions[start: start + len(report.texts)]
        start += len(report.texts)
        section, source = combine(report.units, mine, predictor.labels, combiner)
        key = {"report_path": report.report_path, "report_id": report.report_id, **report.meta}
        rows = [{**key, "position": position, "is_heading": heading, "heading_path": path, "text": text,
                 "label": p.label, "section_label": s or p.label, "score": p.score, "source": why or "model",
                 "doubt": prediction_doubt(p, s or p.label)}
                for text, path, heading, position, p, s, why in zip(
                    report.texts, report.paths, report.headings, report.positions, mine, section, source)]
        tables["paragraphs"] += rows
        tables["reports"].append(report_row(key | {"format": report.format, "encoding": report.encoding}, rows))
    tables["failed"] = [{"report_path": f.report_path, "report_id": f.report_id, "reason": f.reason}
                        for f in items if isinstance(f, Failure)]
    return tables


def report_row(key: dict, rows: list[dict]) -> dict:
    """Paragraphs and characters per section label, and each label's share of the report."""
    total_paragraphs, total_chars = len(rows), sum(len(r["text"]) for r in rows)
    row = {**key, "paragraphs": total_paragraphs, "characters": total_chars}
    for label in LABELS:
        mine = [r for r in rows if r["section_label"] == label]
        chars = sum(len(r["text"]) for r in mine)
        row |= {f"paragraphs_{label}": len(mine), f"characters_{label}": chars,
                f"share_paragraphs_{label}": len(mine) / total_paragraphs if total_paragraphs else 0.0,
                f"share_characters_{label}": chars / total_chars if total_chars else 0.0}
    return row


# --- Tables on disk ------------------------------------------------------------------------------

def part_name(tables: dict[str, list[dict]]) -> str:
    """Named after the reports and files the batch holds: a batch done twice (Ray retrying the
    task of an actor that died after writing) replaces its own part instead of doubling its rows."""
    keys = sorted({f"{row['report_path']}\0{row['report_id'] or ''}" for name in ("reports", "failed") for row in tables[name]})
    return f"part-{hashlib.sha1(chr(1).join(keys).encode('utf-8')).hexdigest()[:20]}.parquet"


def _write_part(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def commit_batch(out: Path, tables: dict[str, list[dict]]) -> str | None:
    """Write one batch as a part of each table; the `reports` part, written last, commits it.
    A batch with nothing in it (a paragraph file whose reports were all done) writes nothing."""
    if not (tables["reports"] or tables["failed"]):
        return None
    part = part_name(tables)
    for name in ("failed", "paragraphs", "reports"):
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        _write_part(folder / part, pa.Table.from_pylist(tables[name], schema=SCHEMAS[name]))
    return part


def committed_parts(out: Path) -> set[str]:
    folder = Path(out) / "reports"
    return {p.name for p in folder.glob("part-*.parquet")} if folder.is_dir() else set()


def read_table(out: Path | str, name: str, columns: list[str] | None = None) -> pa.Table:
    """One table of committed batches, sorted (parts of a batch in flight are never read)."""
    committed = committed_parts(Path(out))
    files = sorted(p for p in (Path(out) / name).glob("part-*.parquet") if p.name in committed)
    schema = SCHEMAS[name] if columns is None else pa.schema([SCHEMAS[name].field(c) for c in columns])
    # promote: parts written before a column was added read it as null
    table = (pa.concat_tables([pq.read_table(f, columns=columns) for f in files], promote_options="default")
             if files else schema.empty_table())
    keys = [k for k in SORT_KEYS[name] if k in table.column_names]
    return table.sort_by([(k, "ascending") for k in keys]) if keys else table


REVIEW_COLUMNS = ["report_path", "report_id", "position", "text", "label", "section_label", "score", "doubt"]


def review_queue(out: Path | str, top: int) -> list[dict]:
    """The `top` most doubtful paragraphs of an archive's tables, most doubtful first (ties in
    report order). Tables written before `doubt` was stored score it as 1 − score."""
    rows = read_table(out, "paragraphs", [c for c in REVIEW_COLUMNS if c != "doubt"]).to_pylist()
    stored = read_table(out, "paragraphs").column("doubt").to_pylist() if rows else []
    for row, value in zip(rows, stored):
        row["doubt"] = round(1.0 - row["score"], 4) if value is None else value
    rows.sort(key=lambda row: -row["doubt"])  # stable: equal doubts stay in report order
    return rows[:top]


def _remove_uncommitted(out: Path) -> int:
    """Parts of a batch a killed run left unfinished, and temporary files: removed before resuming."""
    committed, removed = committed_parts(out), 0
    for name in TABLES:
        for path in (out / name).glob("*") if (out / name).is_dir() else []:
            if ".tmp" in path.name or (path.name.startswith("part-") and path.name not in committed):
                path.unlink()
                removed += 1
    return removed


@contextmanager
def open_archive(out: Path, model_id: str, model_dir: str = "") -> Iterator[Path]:
    """OUT, locked for this run, checked to hold labels of this same model, and cleared of any
    batch a killed run left half-written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(out, "another label-archive run is writing here") from None
        manifest = out / MANIFEST
        if manifest.is_file():
            earlier = json.loads(manifest.read_text(encoding="utf-8")).get("model_id")
            if earlier != model_id:  # one table, one model: never mix two models' labels
                raise DataError(out, f"labelled by model {earlier}, not {model_id}: use a new OUT or the same model")
        else:
            atomic_write_text(manifest, json.dumps({"model_id": model_id, "model_dir": str(model_dir),
                                                    "labels": LABELS}, ensure_ascii=False, indent=2) + "\n")
        _remove_uncommitted(out)
        yield out


def pending_files(root: Path, out: Path) -> list[tuple[str, set[str]]]:
    """(file, report ids to skip in it) for each file with work left: a .txt already labelled, or
    any file already in `failed`, is skipped whole; a .jsonl skips the reports already labelled."""
    done: dict[str, set[str]] = {}
    for row in read_table(out, "reports", ["report_path", "report_id"]).to_pylist():
        done.setdefault(row["report_path"], set()).add(row["report_id"])
    failed = set(read_table(out, "failed", ["report_path"]).column("report_path").to_pylist())
    todo = []
    for rel in archive_files(root):
        skip = done.get(rel, set())
        if rel in failed or (rel.endswith(".txt") and Path(rel).stem in skip):
            continue
        todo.append((rel, skip))
    return todo


# --- The local engine ----------------------------------------------------------------------------

class Progress:
    """A progress bar over files, with reports/s and paragraphs/s (both engines)."""

    def __init__(self, total: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="file", desc="labelling", disable=not enabled)
        self.start, self.reports, self.paragraphs, self.failed = time.perf_counter(), 0, 0, 0

    def update(self, files: int, reports: int, paragraphs: int, failed: int) -> None:
        self.reports += reports
        self.paragraphs += paragraphs
        self.failed += failed
        seconds = max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{self.reports / seconds:.2f} reports/s, {self.paragraphs / seconds:.1f} paragraphs/s, "
                                 f"{self.failed} failed", refresh=False)
        self.bar.update(files)

    def close(self, skipped: int) -> dict:
        self.bar.close()
        seconds = time.perf_counter() - self.start
        return {"reports": self.reports, "paragraphs": self.paragraphs, "failed": self.failed, "skipped_files": skipped,
                "seconds": round(seconds, 2), "paragraphs_per_second": round(self.paragraphs / seconds, 1) if seconds else 0.0}


def batch_counts(tables: dict[str, list[dict]]) -> tuple[int, int, int]:
    return len(tables["reports"]), len(tables["paragraphs"]), len(tables["failed"])


def label_archive(root: Path | str, out: Path | str, predictor, batch_files: int = 16,
                  progress: bool = True, model_dir: str = "") -> dict:
    """Label every report under `root` into the tables under `out`, skipping what is already there."""
    root, out = Path(root), Path(out)
    total = len(archive_files(root))  # a missing DIR stops here, before OUT is made
    with open_archive(out, predictor.model_id, model_dir):
        todo = pending_files(root, out)
        skipped = total - len(todo)
        bar = Progress(len(todo), progress)
        for start in range(0, len(todo), batch_files):
            batch = todo[start: start + batch_files]
            items = [item for rel, skip in batch for item in parse_file(root, rel, skip)]
            tables = label_batch(predictor, items)
            commit_batch(out, tables)
            bar.update(len(batch), *batch_counts(tables))
        return bar.close(skipped)
