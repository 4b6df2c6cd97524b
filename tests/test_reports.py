"""Whole-report mode: heading paths from the parser, and the combiner of heading rules and model,
on reports written for these tests (a plans sub-section that names another function, a fragment
that starts mid-report) with a scripted model, so every decision is known in advance."""

from model.predictor import Prediction
from model.reports import Combiner, Unit, combine, fit_combiner, label_report, record_units
from renda.corpus import with_heading_paths
from renda.labels import LABELS
from renda.labelling import heading_paths
from renda.parsing import parse_report
from renda.records import Record

REPORT = """青石县人民代表大会常务委员会工作报告
各位代表：
过去一年的主要工作
一年来，常委会共召开会议九次，依法履职取得新成效。
一、坚持党的领导
常委会党组坚决落实县委决策部署，坚持重大事项请示报告。
二、依法开展监督
听取审议县政府专项工作报告六个，开展执法检查两次。
今后工作建议
一、紧扣依法履职，增强监督实效
加强对预算执行和国有资产管理的监督，开展专题询问。
二、支持代表依法履职
完善代表联络站运行机制，提高代表建议办理质量。
各位代表！让我们团结一心，再接再厉。
"""

# A page that starts mid-report: body text before the first heading it shows, no part heading.
FRAGMENT = """听取审议县政府关于生态环境保护工作的报告，跟踪督办整改问题十二个。
对食品安全法实施情况开展执法检查，推动监管责任落实。
（二）密切联系人大代表
组织代表走进联络站接待群众，交办代表建议三十件。
"""


def scores(label: str, p: float) -> dict[str, float]:
    return {l: (1 - p) / (len(LABELS) - 1) for l in LABELS} | {label: p}


class Scripted:
    """A model that labels by a keyword of the paragraph and records the contexts it was given."""
    labels, info, model_id = LABELS, {}, "scripted"

    def __init__(self):
        self.contexts = None

    def predict(self, texts, contexts=None):
        self.contexts = contexts
        out = []
        for text, path in zip(texts, contexts or [[]] * len(texts)):
            label = ("supervision" if ("监督" in text or "执法检查" in text or "审议" in text) else
                     "deputy" if "代表" in text and "各位代表" not in text else
                     "leadership" if "党组" in text or "党的领导" in text else "other")
            out.append(Prediction(label, 0.9, scores(label, 0.9), context=bool(path)))
        return out


def test_heading_paths_carry_the_part_heading_and_end_at_the_closing():
    paragraphs = parse_report(REPORT)
    paths = dict(zip((p.text for p in paragraphs), heading_paths(paragraphs)))
    assert paths["青石县人民代表大会常务委员会工作报告"] == []  # the preamble sits under no heading
    assert paths["听取审议县政府专项工作报告六个，开展执法检查两次。"] == ["过去一年的主要工作", "二、依法开展监督"]
    assert paths["加强对预算执行和国有资产管理的监督，开展专题询问。"] == ["今后工作建议", "一、紧扣依法履职，增强监督实效"]
    assert paths["各位代表！让我们团结一心，再接再厉。"] == []


def test_a_plans_subsection_that_names_supervision_stays_plans_and_says_why():
    model = Scripted()
    result = label_report(model, REPORT)
    rows = {row["text"]: row for row in result.rows()}
    plans_row = rows["加强对预算执行和国有资产管理的监督，开展专题询问。"]
    assert plans_row["label"] == "supervision"  # the paragraph alone reads as supervision…
    assert plans_row["section_label"] == "plans" and plans_row["source"] == "heading"  # …its part says plans
    assert plans_row["heading_path"] == ["今后工作建议", "一、紧扣依法履职，增强监督实效"] and plans_row["context"]
    assert rows["完善代表联络站运行机制，提高代表建议办理质量。"]["section_label"] == "plans"
    assert rows["听取审议县政府专项工作报告六个，开展执法检查两次。"]["section_label"] == "supervision"
    assert rows["各位代表！让我们团结一心，再接再厉。"]["section_label"] == "other"
    # every paragraph was predicted with its own heading path as context
    assert model.contexts == [row["heading_path"] for row in result.rows()]


def test_a_fragment_without_its_part_heading_is_labelled_by_the_model_where_the_rules_only_guess():
    result = label_report(Scripted(), FRAGMENT)
    rows = result.rows()
    # the rules call text before the first heading a preamble (`other`); a confident model overrules them
    assert [r["section_label"] for r in rows[:2]] == ["supervision", "supervision"]
    assert {r["source"] for r in rows[:2]} == {"vote"}
    assert [r["section_label"] for r in rows[2:]] == ["deputy", "deputy"]
    assert rows[3]["heading_path"] == ["（二）密切联系人大代表"]
    # with all weight on the preamble rule, the rules would have won
    strict = label_report(Scripted(), FRAGMENT, Combiner(preamble=100.0))
    assert strict.rows()[0]["section_label"] == "other" and strict.rows()[0]["source"] == "heading"


RUN_IN = """过去一年的主要工作
一年来，常委会依法履职，各项工作取得新成效。
一是坚持党的领导。常委会党组坚持重大事项请示报告。
二是依法开展监督。听取审议县政府专项工作报告六个。
三是支持代表依法履职。组织代表进站接待群众。
今后工作建议
一是加强监督。开展执法检查两次。
"""


def test_a_report_in_run_in_sections_is_labelled_section_by_section():
    # the review container's run-in sections (一是…二是…) are units: the whole report is not one summary
    model = Scripted()
    rows = label_report(model, RUN_IN).rows()
    assert [r["section_label"] for r in rows] == ["other", "other", "leadership", "supervision", "deputy", "plans", "plans"]
    assert rows[3]["heading_path"] == ["过去一年的主要工作", "二是依法开展监督。"]
    assert model.contexts == [r["heading_path"] for r in rows]  # each run-in section's paragraphs read with its heading


class RunnerUp(Scripted):
    """Scripted, with `plans` the runner-up of every paragraph: what a judge of plans-or-not does alone."""

    def predict(self, texts, contexts=None):
        out = []
        for p in super().predict(texts, contexts):
            scores = {label: 0.01 for label in LABELS} | {"plans": 0.35, p.label: 0.6}
            scores = {label: value / sum(scores.values()) for label, value in scores.items()}
            out.append(Prediction(p.label, scores[p.label], scores, context=p.context))
        return out


def test_a_text_with_no_structure_is_labelled_paragraph_by_paragraph():
    # no heading and no numbered section: one preamble unit would take the label its paragraphs'
    # mean favours (here plans, the runner-up of each), which none of them has
    text = "常委会党组坚持重大事项请示报告。\n听取审议县政府专项工作报告六个。\n组织代表进站接待群众。\n"
    rows = label_report(RunnerUp(), text).rows()
    assert [r["section_label"] for r in rows] == ["leadership", "supervision", "deputy"]
    assert {r["source"] for r in rows} == {"model"}


def test_a_text_that_numbers_its_sections_as_items_gets_a_unit_for_each():
    text = "1.坚持党的领导\n常委会党组坚持重大事项请示报告。\n2.依法开展监督\n听取审议县政府专项工作报告六个。\n"
    rows = label_report(RunnerUp(), text).rows()
    assert [r["section_label"] for r in rows] == ["leadership", "leadership", "supervision", "supervision"]
    assert rows[3]["heading_path"] == ["2.依法开展监督"]


def test_a_one_paragraph_unit_decided_by_the_model_says_model():
    unit = Unit("", None, None, (0,))
    [label], [source] = combine([unit], [Prediction("deputy", 0.8, scores("deputy", 0.8))], LABELS, Combiner())
    assert (label, source) == ("deputy", "model")


def test_fit_combiner_learns_how_far_to_trust_each_kind_of_rule():
    # Parts are always right and the model always wrong there; preambles are fragments, where the
    # model is right and the preamble rule wrong. The fit must trust the part, not the preamble.
    units, predictions, gold = [], [], []
    for n in range(6):
        at = len(predictions)
        units.append(Unit("今后工作", "plans", "part", (at, at + 1)))
        predictions += [Prediction("supervision", 0.6, scores("supervision", 0.6))] * 2
        gold += ["plans", "plans"]
        at = len(predictions)
        units.append(Unit("", "other", "preamble", (at,)))
        predictions.append(Prediction("deputy", 0.5, scores("deputy", 0.5)))  # too unsure to beat the default weight
        gold.append("deputy")
    fitted = fit_combiner(units, predictions, gold, LABELS, fitted_on="test-data")
    assert fitted.part > 1 and fitted.preamble < 2 and fitted.fitted_on == "test-data"
    section, _ = combine(units, predictions, LABELS, fitted)
    assert section == gold
    assert Combiner.from_meta({"combiner": fitted.to_dict()}) == fitted and Combiner.from_meta({}) == Combiner()


def test_jsonl_rows_get_their_paths_and_units_from_the_rows_of_their_report():
    rows = [Record(report_id="r", text=t, label=l, heading=h) for t, l, h in [
        ("今后工作建议", "plans", "今后工作建议"),
        ("（一）紧扣依法履职，增强监督实效", "plans", "（一）紧扣依法履职，增强监督实效"),
        ("加强对预算执行的监督。", "plans", "（一）紧扣依法履职，增强监督实效"),
        ("另一份报告的开头。", "other", ""),
    ]]
    rows[3] = rows[3].model_copy(update={"report_id": "s"})
    filled = with_heading_paths(rows)
    assert filled[2].heading_path == ["今后工作建议", "（一）紧扣依法履职，增强监督实效"]
    assert filled[3].heading_path == []
    given = rows[2].model_copy(update={"heading_path": ["自己给的"]})
    assert with_heading_paths([given])[0].heading_path == ["自己给的"]  # a given path is kept
    units = record_units(filled)
    assert [(u.rule, u.rule_kind, u.members) for u in units] == [("plans", "part", (0, 1, 2)), ("other", "preamble", (3,))]


def test_context_dropout_and_the_path_the_models_read():
    import random

    from model.context import drop_context, heading_path_of, path_text

    paths = ["今后工作建议"] * 1000
    assert drop_context(paths, 0.0, random.Random(1)) == paths
    assert set(drop_context(paths, 1.0, random.Random(1))) == {""}
    dropped = drop_context(paths, 0.3, random.Random(1))
    assert 250 < dropped.count("") < 350 and dropped == drop_context(paths, 0.3, random.Random(1))  # seeded
    assert path_text(["一、过去一年", "（一）强化监督", "1.预算", "——细目"]) == "一、过去一年 › 1.预算 › ——细目"  # part + innermost
    assert path_text(["很长" * 40]) == "很长" * 16  # each heading cut
    assert heading_path_of("（二）加强监督", ["今后工作"]) == ["今后工作", "（二）加强监督"]
    assert heading_path_of("今后工作", ["今后工作"]) == ["今后工作"] and heading_path_of(None, None) == []
