"""Whole-report mode: the report's structure and a model, together.

The report is parsed and cut once into the labeller's units (sections, the plans part, the
preamble, the closing). Every paragraph is predicted with its heading path as context. Each unit
then takes one label: the mean log-probability its paragraphs give each label, plus a weight for
the label the heading rules (`renda/labels.toml`) give it. The weight depends on what the rules
read (the part, the preamble, a clear heading keyword, or the paragraphs' keywords); the weights
are fitted on dev data (`fit_combiner`), never on test, and saved with the model. Every
paragraph says what decided its section label: `heading` (the rules' label won), `vote` (the
unit's paragraphs overruled or filled in for the rules) or `model` (a one-paragraph unit).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from model.metrics import macro_f1
from model.predictor import Prediction, Predictor, is_real
from renda.labelling import Segment, heading_paths, segment_report
from renda.labels import load_rules
from renda.parsing import Paragraph, parse_report

RULE_KINDS = ("part", "preamble", "heading", "keywords")


@dataclass(frozen=True)
class Unit:
    """A stretch that takes one label, with what the rules say of it. `members` index the
    predictions (a JSONL heading row put back for parsing has none, so it is not a member)."""
    heading: str
    rule: str | None
    rule_kind: str | None
    members: tuple[int, ...]


@dataclass(frozen=True)
class Combiner:
    """How much each kind of rule weighs against the paragraphs' mean log-probability."""
    part: float = 8.0
    preamble: float = 2.0
    heading: float = 2.0
    keywords: float = 0.5
    fitted_on: str = "defaults"

    def weight(self, kind: str | None) -> float:
        return getattr(self, kind) if kind in RULE_KINDS else 0.0

    def scores(self, unit: Unit, mean_logp: np.ndarray, labels: list[str]) -> np.ndarray:
        """mean_logp: the mean of the members' log-probabilities (one per label)."""
        total = mean_logp.copy()
        if unit.rule is not None:
            total[labels.index(unit.rule)] += self.weight(unit.rule_kind)
        return total

    def decide(self, unit: Unit, logp: np.ndarray, labels: list[str]) -> tuple[str, str]:
        """(label, source) of one unit; logp: its members' log-probabilities (members × labels)."""
        label = labels[int(self.scores(unit, logp.mean(axis=0), labels).argmax())]
        if label == unit.rule:
            return label, "heading"
        return label, "vote" if len(unit.members) > 1 else "model"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> "Combiner":
        """The stored weights, checked (a model folder is loaded once, then serves every report):
        a ValueError naming what is wrong, never a failure later inside a request."""
        stored = (meta or {}).get("combiner")
        if not stored:
            return cls()
        names = {f.name for f in fields(cls)}
        if not isinstance(stored, dict) or not set(stored) <= names:
            raise ValueError(f"combiner must be an object with some of {', '.join(sorted(names))}, got {stored!r}")
        for key, value in stored.items():
            if key == "fitted_on":
                if not isinstance(value, str):
                    raise ValueError(f"combiner fitted_on must be text, got {value!r}")
            elif not is_real(value):
                raise ValueError(f"combiner {key} must be a finite number, got {value!r}")
        return cls(**stored)


def log_probabilities(predictions: list[Prediction], labels: list[str]) -> np.ndarray:
    return np.log(np.clip([[p.scores[label] for label in labels] for p in predictions], 1e-9, 1.0))


def paragraph_units(paragraphs: list[Paragraph], member_of: list[int | None] | None = None,
                    segments: list[Segment] | None = None) -> list[Unit]:
    """The labeller's units of one report's paragraphs, with the rules' label and its kind.
    `member_of[i]` maps paragraph i to a prediction index (None: no prediction for it)."""
    rules = load_rules()
    member_of = member_of if member_of is not None else list(range(len(paragraphs)))
    units = []
    for segment in segments or segment_report(paragraphs, rules):
        members = tuple(member_of[i] for i in segment.members if member_of[i] is not None)
        if members:
            units.append(Unit(segment.heading, segment.rule, segment.rule_kind, members))
    return units


def record_units(records) -> list[Unit]:
    """Units over JSONL-style records (consecutive rows of a report, in order): each report's
    rows are read back as the report they came from (headings put back where rows lack them)."""
    from renda.corpus import report_runs, rows_as_paragraphs

    units: list[Unit] = []
    for run in report_runs(records):
        paragraphs, row_at = rows_as_paragraphs([records[i] for i in run])
        member_of: list[int | None] = [None] * len(paragraphs)
        for i, at in zip(run, row_at):
            member_of[at] = i
        units += paragraph_units(paragraphs, member_of)
    return units


def combine(units: list[Unit], predictions: list[Prediction], labels: list[str],
            combiner: Combiner) -> tuple[list[str], list[str]]:
    """(section label, source) for every prediction index covered by the units."""
    logp = log_probabilities(predictions, labels)
    section, source = [""] * len(predictions), [""] * len(predictions)
    for unit in units:
        label, why = combiner.decide(unit, logp[list(unit.members)], labels)
        for i in unit.members:
            section[i], source[i] = label, why
    return section, source


def fit_combiner(units: list[Unit], predictions: list[Prediction], gold: list[str], labels: list[str],
                 grid: tuple[float, ...] = (0.0, 0.5, 2.0, 8.0), fitted_on: str = "dev") -> Combiner:
    """The weights (one per rule kind, from `grid`) with the best macro-F1 of the section labels
    against `gold`; ties go to the weights nearest the defaults. Fit on dev or other folds only."""
    logp = log_probabilities(predictions, labels)
    means = [logp[list(u.members)].mean(axis=0) for u in units]  # once: the grid only moves the weights
    flat_gold = [gold[i] for u in units for i in u.members]
    default = Combiner()
    best, best_key = default, None
    for weights in itertools.product(grid, repeat=len(RULE_KINDS)):
        candidate = Combiner(**dict(zip(RULE_KINDS, weights)), fitted_on=fitted_on)
        pred = [labels[int(candidate.scores(unit, mean, labels).argmax())]
                for mean, unit in zip(means, units) for _ in unit.members]
        f1 = macro_f1(flat_gold, pred)
        distance = sum(abs(np.log1p(candidate.weight(k)) - np.log1p(default.weight(k))) for k in RULE_KINDS)
        key = (round(f1, 6), -distance)
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    return best


@dataclass
class Section:
    heading: str
    label: str
    first: int
    last: int
    source: str
    reason: str = ""  # what decided the label, in words (model/review.py)
    doubt: float = 0.0  # its most doubtful paragraph's


@dataclass
class ReportLabels:
    labels: list[str]
    paragraphs: list[Paragraph]
    paths: list[list[str]]
    predictions: list[Prediction]
    section_labels: list[str]
    sources: list[str]
    sections: list[Section] = field(default_factory=list)
    doubts: list[float] = field(default_factory=list)  # each paragraph's doubt against its section label

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(p.label for p in self.predictions)
        return {label: counts.get(label, 0) for label in self.labels}

    def rows(self) -> list[dict]:
        """One record per paragraph: what the service and the CLI return for it."""
        heading_of = {i: s.heading for s in self.sections for i in range(s.first, s.last + 1)}
        return [
            {"index": i, "text": p.text, "is_heading": p.is_heading, "heading": heading_of.get(i, ""),
             "heading_path": path, "label": pred.label, "score": pred.score, "scores": pred.scores,
             "windows": pred.windows, "context": pred.context, "section_label": section, "source": source,
             "doubt": doubt}
            for i, (p, path, pred, section, source, doubt) in enumerate(
                zip(self.paragraphs, self.paths, self.predictions, self.section_labels, self.sources, self.doubts))
        ]


def prepare_report(text: str) -> tuple[list[Paragraph], list[Unit], list[list[str]]]:
    """Parse a report and find its parts and units once: (paragraphs, units, heading paths).
    Apart from prediction, so a batch job can predict many reports' paragraphs in one call."""
    paragraphs = parse_report(text)
    segments = segment_report(paragraphs)
    return paragraphs, paragraph_units(paragraphs, segments=segments), heading_paths(paragraphs, segments)


def label_report(predictor: Predictor, text: str, combiner: Combiner | None = None,
                 prepared: tuple[list[Paragraph], list[Unit], list[list[str]]] | None = None) -> ReportLabels:
    """Parse, find the report's parts and units once, predict every paragraph with its heading
    path, and give each unit the label its rules and its paragraphs together point to.
    `prepared`: `prepare_report(text)` when the caller has it already (the service checks it first)."""
    paragraphs, units, paths = prepared or prepare_report(text)
    predictions = predictor.predict([p.text for p in paragraphs], paths)
    combiner = combiner or Combiner.from_meta(getattr(predictor, "info", None))
    section_labels, sources = combine(units, predictions, predictor.labels, combiner)
    from model.review import prediction_doubt, section_reason

    doubts = [prediction_doubt(p, s) for p, s in zip(predictions, section_labels)]  # once: rows and sections share them
    sections = []
    for u in units:
        label, source = section_labels[u.members[0]], sources[u.members[0]]
        sections.append(Section(u.heading, label, u.members[0], u.members[-1], source,
                                section_reason(u.heading, u.rule, u.rule_kind, label, source, len(u.members)),
                                max(doubts[i] for i in u.members)))
    return ReportLabels(predictor.labels, paragraphs, paths, predictions, section_labels, sources, sections, doubts)
