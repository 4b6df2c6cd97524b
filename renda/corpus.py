"""Corpora → labelled records: report folders (`*.txt`, labelled by their headings) and JSONL files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from renda.labelling import label_paragraphs
from renda.parsing import heading_shape, match_form, parse_lines, parse_report
from renda.records import DataError, Record, read_jsonl, read_text_file


@dataclass
class Corpus:
    records: list[Record] = field(default_factory=list)
    unlabelled: list[Record] = field(default_factory=list)  # sections the labeller could not map
    sources: list[str] = field(default_factory=list)


def label_report_text(text: str, report_id: str) -> tuple[list[Record], list[Record]]:
    """(labelled, unlabelled) records of one report's text."""
    labelled, unlabelled = [], []
    for item in label_paragraphs(parse_report(text)):
        p = item.paragraph
        record = Record(
            report_id=report_id,
            text=p.text,
            label=item.label,
            heading=p.subsection or p.section,
            is_heading=p.is_heading,
            position=p.position,
        )
        (labelled if item.label else unlabelled).append(record)
    return labelled, unlabelled


def corpus_files(paths: list[Path | str]) -> list[Path]:
    """The `.txt` and `.jsonl` files under the given files and folders, JSONL first.

    JSONL comes first so that hand-checked labels win when the same paragraph is also in a report.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".txt", ".jsonl") and p.is_file())
        elif path.is_file() and path.suffix in (".txt", ".jsonl"):
            found.append(path)
        elif path.exists():
            raise DataError(path, "expected a folder, a .txt report or a .jsonl file")
        else:
            raise DataError(path, "no such file or folder")
    found = [p for p in found if p.name.lower() != "readme.txt"]
    return sorted(dict.fromkeys(found), key=lambda p: (p.suffix != ".jsonl", str(p)))


def dedupe_key(text: str) -> str:
    return match_form(text)


def load_corpus(paths: list[Path | str]) -> Corpus:
    """All labelled paragraphs of the given corpora, deduplicated by text (first one wins)."""
    corpus = Corpus()
    seen: set[str] = set()
    for path in corpus_files(paths):
        corpus.sources.append(str(path))
        if path.suffix == ".jsonl":
            labelled, unlabelled = read_jsonl(path), []
        else:
            labelled, unlabelled = label_report_text(read_text_file(path), path.stem)
        corpus.unlabelled += unlabelled
        for record in labelled:
            key = dedupe_key(record.text)
            if key not in seen:
                seen.add(key)
                corpus.records.append(record)
    if not corpus.records:
        raise DataError(", ".join(map(str, paths)), "no labelled paragraphs found")
    return corpus


def label_records(rows: list[Record]) -> list[str | None]:
    """The labeller's labels for one report's JSONL rows, in order.

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
    labelled = label_paragraphs(parse_lines(lines))
    return [labelled[i].label for i in row_at]
