"""Whole-report mode: split a report with the project's parser and label every paragraph."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from model.predictor import Prediction, Predictor
from renda.parsing import Paragraph, parse_report


@dataclass
class Section:
    heading: str
    label: str
    first: int
    last: int


@dataclass
class ReportLabels:
    paragraphs: list[Paragraph]
    predictions: list[Prediction]
    sections: list[Section]
    counts: dict[str, int]


def group_sections(paragraphs: list[Paragraph]) -> list[tuple[str, int, int]]:
    """Runs of paragraphs under the same heading path: (nearest heading, first, last)."""
    runs: list[tuple[str, int, int]] = []
    previous = None
    for i, p in enumerate(paragraphs):
        path = (p.section, p.subsection)
        if path != previous:
            runs.append((p.subsection or p.section, i, i))
            previous = path
        else:
            heading, first, _ = runs[-1]
            runs[-1] = (heading, first, i)
    return runs


def section_label(predictions: list[Prediction], labels: list[str]) -> str:
    """The label the section's paragraphs agree on most: the sum of their log-probabilities."""
    logp = np.log(np.clip([[p.scores[label] for label in labels] for p in predictions], 1e-9, 1.0)).sum(axis=0)
    return labels[int(logp.argmax())]


def label_report(predictor: Predictor, text: str) -> ReportLabels:
    paragraphs = parse_report(text)
    predictions = predictor.predict([p.text for p in paragraphs])
    sections = [
        Section(heading, section_label(predictions[first: last + 1], predictor.labels), first, last)
        for heading, first, last in group_sections(paragraphs)
    ]
    counts = Counter(p.label for p in predictions)
    return ReportLabels(paragraphs, predictions, sections, {label: counts.get(label, 0) for label in predictor.labels})
