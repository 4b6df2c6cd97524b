"""How two corpora differ, label by label: the style shortcuts a model could learn from one of them.

`renda stats --compare A B` (e.g. the starter corpus against real reports). For each label it sets
A beside B: how paragraphs open (first two characters; imperative, time, subject or news-style
openings), future and past markers, numbers per paragraph, length and heading formats. Then a
classifier (character n-gram TF-IDF + logistic regression, cross-validated by report) tries to
tell a paragraph of A from one of B: the closer to chance, the better A imitates B.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from renda.corpus import load_corpus
from renda.labels import LABELS
from renda.parsing import heading_shape, is_bare_heading, is_furniture, match_form
from renda.records import Record, atomic_write_text

# Numbering in front of a paragraph, stripped before its opening words are read.
_MARKER = re.compile(r"^(?:[一二三四五六七八九十]+[、.．是]|[（(][一二三四五六七八九十\d]+[）)]|\d{1,2}[.．、](?!\d)|——|--|—|第[一二三四五六七八九十]+[,，、])\s*")
IMPERATIVE = ("加强", "强化", "坚持", "推动", "推进", "深化", "持续", "聚焦", "围绕", "健全", "完善", "提高", "提升",
              "增强", "做好", "抓好", "落实", "紧扣", "突出", "着力", "巩固", "扎实", "全面", "积极", "注重", "促进",
              "发挥", "优化", "规范", "创新", "坚定", "统筹", "紧盯", "把握", "贯彻", "依法", "认真", "切实", "不断",
              "大力", "深入", "支持", "服务", "保障", "助力", "密切", "筑牢", "夯实", "拓展", "用好", "建好", "办好",
              "守牢", "压实", "擦亮", "锚定", "践行", "厚植", "激发", "畅通")
_OPENINGS = {  # checked in this order; the first that matches names the opening
    "news": re.compile(r"^(?:报告|记者|.{0,12}?(?:表示|指出|介绍|强调|说)[,:])"),
    "time": re.compile(r"^(?:(?:19|20)\d\d|一年来|五年来|过去|去年|今年|明年|新的一年|当前|今后|本届|换届|近年|\d+月)"),
    "subject": re.compile(r"^(?:常委会|我们|[^,。]{0,8}?人大)"),
}
OPENING_KINDS = ("imperative", "time", "subject", "news", "other")
# Future / plan markers and past / result markers (要 and 共 without the words that merely contain them).
FUTURE = re.compile(r"将|(?<![重主需纲提摘紧首只])要(?![求点素闻件])|进一步|持续|着力|计划|拟|力争|继续")
PAST = re.compile(r"了(?!解)|(?<![公总])共(?![同产享建识治富商])|累计|先后|完成|已经|已")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
FORMATS = ("一、", "（一）", "1./——", "bare", "fused", "一是", "run-in", "plain")
TOPIC_CHARS = 24  # a run-in heading: the first sentence is this short and the paragraph goes on


@dataclass(frozen=True)
class Features:
    label: str
    opening: str  # first two characters after any numbering
    kind: str  # one of OPENING_KINDS
    future: bool
    past: bool
    numbers: int
    length: int
    fmt: str  # one of FORMATS


def strip_marker(folded: str) -> str:
    return _MARKER.sub("", folded, count=1)


def opening_kind(body: str) -> str:
    for kind, pattern in _OPENINGS.items():
        if pattern.match(body):
            return kind
    return "imperative" if body.startswith(IMPERATIVE) else "other"


def heading_format(record: Record) -> str:
    if is_furniture(record.text):  # page furniture and the dated subtitle: no heading, whatever their dashes
        return "plain"
    folded = match_form(record.text)
    level, _, fused = heading_shape(record.text)
    if fused:
        return "fused"
    if level:
        return {1: "一、", 2: "（一）", 3: "1./——"}[level]
    if record.is_heading or is_bare_heading(record.text):
        return "bare"
    if re.match(r"^[一二三四五六七八九十]+是", folded):
        return "一是"
    stop = folded.find("。")
    if 0 < stop < TOPIC_CHARS and stop < len(folded) - 1:
        return "run-in"
    return "plain"


def features(record: Record) -> Features:
    folded = match_form(record.text)
    body = strip_marker(folded)
    return Features(
        label=record.label or "other",
        opening=body[:2],
        kind=opening_kind(body),
        future=bool(FUTURE.search(folded)),
        past=bool(PAST.search(folded)),
        numbers=len(NUMBER.findall(folded)),
        length=len(folded),
        fmt=heading_format(record),
    )


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "–"


def _pair(a: str, b: str) -> str:
    return f"{a} / {b}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"] + ["| " + " | ".join(r) + " |" for r in rows]


def _labels(a: list[Features], b: list[Features]) -> list[str]:
    present = {f.label for f in a} | {f.label for f in b}
    return [label for label in LABELS if label in present]


def _of(feats: list[Features], label: str) -> list[Features]:
    return [f for f in feats if f.label == label]


def opening_tables(a: list[Features], b: list[Features], labels: list[str], top: int = 4) -> list[str]:
    kinds, words = [], []
    for label in labels:
        fa, fb = _of(a, label), _of(b, label)
        ka, kb = Counter(f.kind for f in fa), Counter(f.kind for f in fb)
        kinds.append([label, str(len(fa)), str(len(fb))] + [_pair(_pct(ka[k], len(fa)), _pct(kb[k], len(fb))) for k in OPENING_KINDS])
        wa, wb = Counter(f.opening for f in fa), Counter(f.opening for f in fb)
        # the openings whose share differs most between the corpora: the shortcuts, if any
        gaps = sorted(set(wa) | set(wb), key=lambda w: -abs(wa[w] / max(len(fa), 1) - wb[w] / max(len(fb), 1)))[:top]
        words.append([
            label,
            ", ".join(f"{w} {_pct(n, len(fa))}" for w, n in wa.most_common(top)) or "–",
            ", ".join(f"{w} {_pct(n, len(fb))}" for w, n in wb.most_common(top)) or "–",
            ", ".join(f"{w} {_pct(wa[w], len(fa))}/{_pct(wb[w], len(fb))}" for w in gaps) or "–",
        ])
    return (
        ["## How paragraphs open", "", "Share of each label's paragraphs (A / B), read after any numbering "
         "(一、 （一） 一是 ——). *imperative*: opens with a verb such as 加强 强化 坚持 推动 深化 聚焦 围绕; "
         "*time*: 2023年 一年来 今年…; *subject*: 常委会 我们 …人大…; *news*: 报告指出 …表示.", ""]
        + _table(["label", "paragraphs A", "paragraphs B", *OPENING_KINDS], kinds)
        + ["", "First two characters: the most frequent in A, in B, and those whose share differs most (A/B).", ""]
        + _table(["label", "top in A", "top in B", "largest gaps A/B"], words)
    )


def marker_table(a: list[Features], b: list[Features], labels: list[str]) -> list[str]:
    rows = []
    for label in labels:
        fa, fb = _of(a, label), _of(b, label)
        rows.append([
            label,
            _pair(_pct(sum(f.future for f in fa), len(fa)), _pct(sum(f.future for f in fb), len(fb))),
            _pair(_pct(sum(f.past for f in fa), len(fa)), _pct(sum(f.past for f in fb), len(fb))),
            _pair(*(f"{statistics.fmean(f.numbers for f in x):.1f}" if x else "–" for x in (fa, fb))),
            _pair(*(f"{statistics.fmean(f.length for f in x):.0f}" if x else "–" for x in (fa, fb))),
            _pair(*(f"{statistics.median(f.length for f in x):.0f}" if x else "–" for x in (fa, fb))),
        ])
    return (
        ["## Tense, numbers and length", "", "Share of paragraphs with a future or plan marker "
         "(将 要 进一步 持续 着力 计划 拟 力争 继续) and with a past or result marker (了 共 累计 先后 完成 已); "
         "Arabic numbers per paragraph; length in characters. A / B.", ""]
        + _table(["label", "future", "past", "numbers", "mean length", "median length"], rows)
    )


def format_table(a: list[Features], b: list[Features], labels: list[str]) -> list[str]:
    rows = []
    for label in labels:
        fa, fb = _of(a, label), _of(b, label)
        ca, cb = Counter(f.fmt for f in fa), Counter(f.fmt for f in fb)
        rows.append([label] + [_pair(_pct(ca[k], len(fa)), _pct(cb[k], len(fb))) for k in FORMATS])
    return (
        ["## Heading formats", "", "Share of paragraphs (A / B) that are a heading line 一、 / （一） / 1. or —— / "
         "a bare part heading / a numbered heading fused with its paragraph / a 一是… paragraph / a run-in "
         f"heading (a first sentence under {TOPIC_CHARS} characters, then more) / plain text.", ""]
        + _table(["label", *FORMATS], rows)
    )


def _markers(f: Features) -> str:
    return {(True, True): "future+past", (True, False): "future only", (False, True): "past only"}.get((f.future, f.past), "neither")


STYLES = (("opening", lambda f: f.kind, OPENING_KINDS), ("format", lambda f: f.fmt, FORMATS),
          ("markers", _markers, ("future only", "past only", "future+past", "neither")))


def _lift(labels: Counter, label: str, prior: Counter) -> float:
    """How much more often `label` goes with a style than with any paragraph of the corpus."""
    n, total = sum(labels.values()), sum(prior.values())
    return (labels[label] / n) / (prior[label] / total) if n and prior[label] else 0.0


def pointer_table(a: list[Features], b: list[Features], min_count: int = 5) -> list[str]:
    """For each style, the label it points to most in A (highest lift), and the same in B: a style
    that points to a label far more in A than in B is a shortcut a model would learn from A."""
    prior_a, prior_b = Counter(f.label for f in a), Counter(f.label for f in b)
    rows = []
    for group, key, values in STYLES:
        for value in values:
            la, lb = Counter(f.label for f in a if key(f) == value), Counter(f.label for f in b if key(f) == value)
            na, nb = sum(la.values()), sum(lb.values())
            if na < min_count:
                continue
            # lift of labels with a few paragraphs at least, so one stray paragraph is no pointer
            label = max((l for l in la if la[l] >= 3) or la, key=lambda l: _lift(la, l, prior_a))
            rows.append([f"{group}: {value}", _pair(str(na), str(nb)), label, _pair(_pct(la[label], na), _pct(lb[label], nb)),
                         _pair(f"{_lift(la, label, prior_a):.1f}", f"{_lift(lb, label, prior_b):.1f}" if nb else "–")])
    return (
        ["## Where a style points to a label", "", "For each opening, heading format and tense pattern (at least "
         f"{min_count} paragraphs in A): its paragraphs in A / B, the label it points to most in A, that label's share "
         "of the style's paragraphs in A / B, and its lift in A / B (that share divided by the label's share of all the "
         "corpus's paragraphs; 1.0 = no pointer). A lift far higher in A than in B is a shortcut.", ""]
        + _table(["style", "paragraphs", "points to", "share A / B", "lift A / B"], rows)
    )


@dataclass
class Distinguisher:
    accuracy: float
    chance: float  # majority-corpus share
    balanced: float  # mean of the recall on A and on B (chance 0.5)
    folds: int
    per_label: dict[str, tuple[int, float, float]]  # label -> (paragraphs, accuracy, balanced)


def _balanced(y: np.ndarray, pred: np.ndarray) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in (0, 1) if (y == c).any()]
    return sum(recalls) / len(recalls)


def distinguish(a: list[Record], b: list[Record], folds: int = 5, seed: int = 13) -> Distinguisher:
    """Out-of-fold accuracy of telling A's paragraphs (0) from B's (1), folds grouped by report."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline

    records = a + b
    # NFKC-folded, as a model's tokenizer sees it: full- vs half-width punctuation is no style worth measuring
    texts = [match_form(r.text) for r in records]
    y = np.array([0] * len(a) + [1] * len(b))
    groups = [f"{side}:{r.report_id}" for side, part in (("A", a), ("B", b)) for r in part]
    k = min(folds, len(set(groups)))
    pred = np.zeros_like(y)
    for train, test in GroupKFold(n_splits=k).split(texts, y, groups):
        model = make_pipeline(
            TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True),
            LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000, random_state=seed),
        )
        model.fit([texts[i] for i in train], y[train])
        pred[test] = model.predict([texts[i] for i in test])
    labels = np.array([r.label or "other" for r in records])
    per_label = {}
    for label in LABELS:
        mask = labels == label
        if mask.any():
            per_label[label] = (int(mask.sum()), float((pred[mask] == y[mask]).mean()), _balanced(y[mask], pred[mask]))
    return Distinguisher(
        accuracy=float((pred == y).mean()),
        chance=max(len(a), len(b)) / len(records),
        balanced=_balanced(y, pred),
        folds=k,
        per_label=per_label,
    )


def distinguisher_table(result: Distinguisher) -> list[str]:
    rows = [[label, str(n), f"{acc:.3f}", f"{bal:.3f}"] for label, (n, acc, bal) in result.per_label.items()]
    rows.append(["**all**", str(sum(n for n, _, _ in result.per_label.values())), f"**{result.accuracy:.3f}**",
                 f"**{result.balanced:.3f}**"])
    return (
        ["## Telling A from B", "",
         f"Character 1–3-gram TF-IDF + logistic regression, {result.folds}-fold cross-validation grouped by "
         f"report: every paragraph is judged by a classifier that never saw its report. Lower is better (A "
         f"imitates B). Chance: accuracy {result.chance:.3f} (always the larger corpus), balanced accuracy 0.500.",
         ""]
        + _table(["label", "paragraphs A+B", "accuracy", "balanced accuracy"], rows)
    )


def _reports(records: list[Record]) -> int:
    return len({r.report_id for r in records})


def compare_corpora(path_a: str, path_b: str, folds: int = 5, seed: int = 13) -> str:
    """The markdown report of how corpus A differs from corpus B."""
    a, b = load_corpus([path_a]).records, load_corpus([path_b]).records
    fa, fb = [features(r) for r in a], [features(r) for r in b]
    labels = _labels(fa, fb)
    lines = [
        f"# Corpus comparison: A = `{path_a}`, B = `{path_b}`",
        "",
        f"A: {len(a)} paragraphs from {_reports(a)} reports. B: {len(b)} paragraphs from {_reports(b)} reports. "
        "Cells are A / B.",
        "",
    ]
    lines += distinguisher_table(distinguish(a, b, folds, seed)) + [""]
    lines += opening_tables(fa, fb, labels) + [""]
    lines += marker_table(fa, fb, labels) + [""]
    lines += format_table(fa, fb, labels) + [""]
    lines += pointer_table(fa, fb)
    return "\n".join(lines) + "\n"


def run_compare(path_a: str, path_b: str, out: Path | None = None, folds: int = 5, seed: int = 13) -> str:
    report = compare_corpora(path_a, path_b, folds, seed)
    if out:
        atomic_write_text(out, report)
    return report
