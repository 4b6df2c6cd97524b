"""Whole-report mode: split a report with the project's parser and label every paragraph."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from model.predictor import Prediction, Predictor
from renda.labelling import segment_report
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

    def section_of(self) -> list[Section]:
        """For each paragraph, the section it sits in."""
        return [section for section in self.sections for _ in range(section.first, section.last + 1)]

    def rows(self) -> list[dict]:
        """One record per paragraph: what the service and the CLI return for it."""
        return [
            {"index": i, "text": p.text, "is_heading": p.is_heading, "heading": section.heading, "label": pred.label,
             "score": pred.score, "scores": pred.scores, "windows": pred.windows, "section_label": section.label}
            for i, (p, pred, section) in enumerate(zip(self.paragraphs, self.predictions, self.section_of()))
        ]


def section_label(predictions: list[Prediction], labels: list[str]) -> str:
    """The label the section's paragraphs agree on most: the sum of their log-probabilities."""
    logp = np.log(np.clip([[p.scores[label] for label in labels] for p in predictions], 1e-9, 1.0)).sum(axis=0)
    return labels[int(logp.argmax())]


def label_report(predictor: Predictor, text: str) -> ReportLabels:
    """Split with the parser, cut into the labeller's segments (sections, the plans part, the
    preamble, the closing), predict every paragraph, and let each segment's paragraphs agree."""
    paragraphs = parse_report(text)
    predictions = predictor.predict([p.text for p in paragraphs])
    sections = [
        Section(segment.heading, section_label([predictions[i] for i in segment.members], predictor.labels),
                segment.members[0], segment.members[-1])
        for segment in segment_report(paragraphs)
    ]
    counts = Counter(p.label for p in predictions)
    return ReportLabels(paragraphs, predictions, sections, {label: counts.get(label, 0) for label in predictor.labels})
