"""What a reviewer needs beside a label: how doubtful it is, and why it was given.

- `doubt` (0–1, higher = check it first): one minus the margin between the calibrated top two
  scores; a paragraph whose own label disagrees with its section's label (the heading rules and
  the section's predictions together) is pulled halfway to 1, since one of the two is wrong.
- `section_reason`: what decided a section's label, in words (the heading rule and the keyword it
  matched, the part of the report, or the model's vote).
- `explain`: occlusion for one paragraph: each sentence, and each heading of its path, left out in
  turn; the one whose removal moves the label's score most is the reason shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.predictor import Prediction, Predictor
from renda.labels import load_rules
from renda.parsing import match_form

_SENTENCE = re.compile(r"[^。！？!?；;]+[。！？!?；;]?[”’」』）)]*")


def doubt(scores: dict[str, float], label: str | None = None, section_label: str | None = None) -> float:
    """1 − (top − second) of the calibrated scores, pulled halfway to 1 when the paragraph's own
    label (the top one, unless given) differs from its section label."""
    top, second = (sorted(scores.values(), reverse=True) + [0.0, 0.0])[:2]
    value = 1.0 - (top - second)
    own = label or max(scores, key=scores.get)
    if section_label and own != section_label:
        value = 0.5 + value / 2
    return round(min(1.0, max(0.0, value)), 4)


def prediction_doubt(prediction: Prediction, section_label: str | None = None) -> float:
    return doubt(prediction.scores, prediction.label, section_label)


_PART_WORDS = {"plans": "the plans part of the report", "other": "the review part's summary or the closing"}


def section_reason(heading: str, rule: str | None, rule_kind: str | None, label: str, source: str, members: int) -> str:
    """What decided a section's label, in words (English; the page shows it beside the label)."""
    if source == "heading":
        if rule_kind == "heading":
            words = matched_keywords(heading, label)
            said = f" (keyword {'、'.join(f'「{w}」' for w in words)})" if words else ""
            return f"heading rule: 「{heading}」 names {label}{said}"
        if rule_kind == "part":
            return f"heading rule: the section lies in {_PART_WORDS.get(label, label)}" + (f" (「{heading}」)" if heading else "")
        if rule_kind == "preamble":
            return "heading rule: the preamble before the first section"
        if rule_kind == "keywords":
            return f"keyword rule: its paragraphs' keywords point to {label}"
    if source == "vote":
        overruled = f", overruling the rules' {rule}" if rule and rule != label else ", where the rules had no label"
        return f"the model's vote: its {members} paragraphs' predictions together{overruled}"
    if rule and rule != label:
        return f"the model: its one paragraph reads as {label}, overruling the rules' {rule}"
    return "the model: its one paragraph's prediction (the rules had no label)"


def matched_keywords(heading: str, label: str) -> list[str]:
    """The keywords of `label` in renda/labels.toml that the heading contains."""
    folded = match_form(heading).replace("人民代表大会", "人大")
    rule = next((entry for entry in load_rules().labels if entry.id == label), None)
    return [word for word in (rule.keywords if rule else ()) if word in folded]


def sentences(text: str) -> list[str]:
    """A paragraph's sentences, as written (joined, they give the paragraph back)."""
    found = [s for s in _SENTENCE.findall(text) if s.strip()]
    return found if "".join(found) == text else [text]


@dataclass(frozen=True)
class Part:
    kind: str  # "sentence" or "heading"
    index: int  # its place among the sentences, or in the heading path
    text: str
    start: int | None  # where a sentence starts in the paragraph (None for a heading)
    effect: float  # the label's score with the part, less without it (> 0: the part supports the label)


def occlusion_variants(text: str, heading_path: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """(text, heading path) the explanation reads: the paragraph as given, then without each of its
    sentences (when it has more than one), then without each heading of its path."""
    path = list(heading_path or [])
    parts = sentences(text)
    variants: list[tuple[str, list[str]]] = [(text, path)]
    variants += [("".join(parts[:i] + parts[i + 1:]), path) for i in range(len(parts))] if len(parts) > 1 else []
    return variants + [(text, path[:i] + path[i + 1:]) for i in range(len(path))]


def occlusion_size(text: str, heading_path: list[str] | None = None) -> tuple[int, int]:
    """(readings, characters) of `occlusion_variants`, counted without building them: a check must not
    itself cost what it guards against (the variants of a long paragraph of short sentences take
    hundreds of MB)."""
    parts = sentences(text)
    left_out = parts if len(parts) > 1 else []
    path = list(heading_path or [])
    readings = 1 + len(left_out) + len(path)
    return readings, len(text) * readings - sum(map(len, left_out))


def explain(predictor: Predictor, text: str, heading_path: list[str] | None = None, label: str | None = None) -> dict:
    """Occlusion over the paragraph's sentences and its heading path: one batch holds the paragraph
    as given and each variant with one part left out; each part's effect on the label's score (the
    predicted label, unless one is given) is the score with it less the score without it."""
    path = list(heading_path or [])
    parts = sentences(text)
    variants = occlusion_variants(text, path)
    predictions = predictor.predict([t for t, _ in variants], [p for _, p in variants])
    base = predictions[0]
    label = label or base.label
    score = base.scores[label]
    found: list[Part] = []
    at, rest = 0, iter(predictions[1:])
    if len(parts) > 1:
        for i, sentence in enumerate(parts):
            found.append(Part("sentence", i, sentence, at, round(score - next(rest).scores[label], 4)))
            at += len(sentence)
    for i, heading in enumerate(path):
        found.append(Part("heading", i, heading, None, round(score - next(rest).scores[label], 4)))
    strongest = max(found, key=lambda part: abs(part.effect), default=None)
    return {"label": label, "score": round(score, 4), "predicted": base.label, "parts": [part.__dict__ for part in found],
            "reason": strongest.__dict__ if strongest else None}
