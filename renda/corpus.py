"""Corpora → labelled records: report folders (`*.txt`, labelled by their headings) and JSONL files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from renda.labelling import heading_paths, label_paragraphs
from renda.parsing import Paragraph, heading_shape, match_form, parse_lines, parse_report
from renda.records import DataError, Record, read_jsonl, read_text_file


@dataclass
class Corpus:
    records: list[Record] = field(default_factory=list)
    unlabelled: list[Record] = field(default_factory=list)  # sections the labeller could not map
    sources: list[str] = field(default_factory=list)


def label_report_text(text: str, report_id: str) -> tuple[list[Record], list[Record]]:
    """(labelled, unlabelled) records of one report's text."""
    labelled, unlabelled = [], []
    paragraphs = parse_report(text)
    for item, path in zip(label_paragraphs(paragraphs), heading_paths(paragraphs)):
        p = item.paragraph
        record = Record(
            report_id=report_id,
            text=p.text,
            label=item.label,
            heading=p.subsection or p.section,
            heading_path=path,
            is_heading=p.is_heading,
            position=p.position,
        )
        (labelled if item.label else unlabelled).append(record)
    return labelled, unlabelled


def corpus_files(paths: list[Path | str]) -> list[Path]:
    """The `.txt` and `.jsonl` files under the given files and folders, JSONL first.

    JSONL comes first so that hand-checked labels win when the same paragraph is also in a report;
    JSONL files keep the order their corpora were given in (sorted within a folder), so of two
    labelled corpora the one named first wins (corrections before the corpus they correct).
    """
    found: list[Path] = []
    given: dict[Path, int] = {}  # each file's corpus: its place on the command line
    for number, raw in enumerate(paths):
        start = len(found)
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
        elif path.is_file() and path.suffix in (".txt", ".jsonl"):
            found.append(path)
        elif path.exists():
            raise DataError(path, "expected a folder, a .txt report or a .jsonl file")
        else:
            raise DataError(path, "no such file or folder")
        for p in found[start:]:
            given.setdefault(p, number)
    found = [p for p in found if p.name.lower() != "readme.txt"]
    reports: dict[str, Path] = {}  # a .txt report's id is its file name: two of one name would merge into one report
    for p in dict.fromkeys(found):
        if p.suffix == ".txt" and reports.setdefault(p.stem, p.resolve()) != p.resolve():  # one file named twice is one
            raise DataError(p, f"another report has the same name ({reports[p.stem]}); a report's file name is its id: rename one")
    return sorted(dict.fromkeys(found), key=lambda p: (p.suffix != ".jsonl", given[p] if p.suffix == ".jsonl" else 0, str(p)))


def dedupe_key(text: str) -> str:
    return match_form(text)


def latest_rows(rows: list[Record]) -> list[Record]:
    """A JSONL file read as a log: of rows with the same text, the last one is kept (a corrections
    file is only ever appended to, so its latest label for a paragraph is the one meant)."""
    last = {dedupe_key(r.text): i for i, r in enumerate(rows)}
    return [r for i, r in enumerate(rows) if last[dedupe_key(r.text)] == i]


def report_text(path: Path) -> str:
    """A .txt report in any common encoding of Chinese, as `renda classify` reads one (reports are
    published in GB18030 as often as in UTF-8): UTF-8 as ever, else the encoding detected."""
    try:
        return read_text_file(path)
    except DataError as not_utf8:
        raw = path.read_bytes()
        try:
            raw.decode("utf-8-sig")
            raise  # UTF-8 after all: the file is empty or unreadable, as the error says
        except UnicodeDecodeError:
            pass
        from renda.readers import decode_text

        try:
            text, _ = decode_text(str(path), raw)
        except DataError:
            raise not_utf8 from None  # no one encoding throughout (UTF-8 lines among GBK ones): the line that is not UTF-8
    if not text.strip():
        raise DataError(path, "the file is empty")
    return text


def load_corpus(paths: list[Path | str]) -> Corpus:
    """All labelled paragraphs of the given corpora, deduplicated by text (first one wins)."""
    corpus = Corpus()
    seen: set[str] = set()
    for path in corpus_files(paths):
        corpus.sources.append(str(path))
        if path.suffix == ".jsonl":
            labelled, unlabelled = latest_rows(with_heading_paths(read_jsonl(path))), []
        else:
            labelled, unlabelled = label_report_text(report_text(path), path.stem)
        corpus.unlabelled += unlabelled
        for record in labelled:
            key = dedupe_key(record.text)
            if key not in seen:
                seen.add(key)
                corpus.records.append(record)
    if not corpus.records:
        raise DataError(", ".join(map(str, paths)), "no labelled paragraphs found")
    return corpus


def report_runs(rows: list[Record]) -> list[list[int]]:
    """Indices of each run of consecutive rows from one report."""
    runs: list[list[int]] = []
    for i, row in enumerate(rows):
        if runs and rows[runs[-1][-1]].report_id == row.report_id:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def rows_as_paragraphs(rows: list[Record]) -> tuple[list[Paragraph], list[int]]:
    """One report's JSONL rows as the parser's paragraphs, and the paragraph index of each row.

    Rows may be fragments of a page without their heading line; each row names its heading, so
    a heading line is put back in front of a run of rows whose heading is not among them.
    """
    lines: list[str] = []
    row_at: list[int] = []  # index in `lines` of each row
    current = ""
    for row in rows:
        if row.heading != current:
            current = row.heading
            if row.heading and match_form(row.text) != match_form(row.heading):
                # An unnumbered heading still has to read as a section heading to the parser.
                lines.append(row.heading if heading_shape(row.heading)[0] else f"一、{row.heading}")
        row_at.append(len(lines))
        lines.append(row.text)
    return parse_lines(lines), row_at


def label_records(rows: list[Record]) -> list[str | None]:
    """The labeller's labels for one report's JSONL rows, in order."""
    paragraphs, row_at = rows_as_paragraphs(rows)
    labelled = label_paragraphs(paragraphs)
    return [labelled[i].label for i in row_at]


def with_heading_paths(rows: list[Record]) -> list[Record]:
    """Rows with `heading_path` filled where it was not given: each report's rows are read in
    order as the report they came from, so a row under 「（二）…」 in the plans part gets the part
    heading too when the rows hold it. Rows that give a path keep it."""
    out = list(rows)
    for run in report_runs(rows):
        if all(rows[i].heading_path is not None for i in run):
            continue
        paragraphs, row_at = rows_as_paragraphs([rows[i] for i in run])
        paths = heading_paths(paragraphs)
        for i, at in zip(run, row_at):
            if rows[i].heading_path is None:
                out[i] = rows[i].model_copy(update={"heading_path": paths[at]})
    return out
