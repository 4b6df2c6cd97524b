from collections import Counter

from renda.labelling import label_paragraphs
from renda.parsing import parse_lines, parse_report


def labels_of(lines):
    return [item.label for item in label_paragraphs(parse_lines(lines))]


def test_sample_report_labels(sample_report):
    labelled = {item.paragraph.text: item.label for item in label_paragraphs(parse_report(sample_report))}
    assert labelled["各位代表："] == "other"
    assert labelled["过去一年的主要工作"] == "other"  # the review container and its summary
    assert labelled["一、坚持党的领导，把牢人大工作正确政治方向"] == "leadership"
    # appointments inside the leadership section follow the section
    assert labelled[next(t for t in labelled if t.startswith("（二）依法做好任免工作"))] == "leadership"
    # no keyword in the heading: the paragraphs vote (预算, 审计, 执法检查 → supervision)
    assert labelled["二、聚焦发展大局，推动县委部署落地见效"] == "supervision"
    assert labelled["三、服务代表履职，发挥代表主体作用"] == "deputy"
    assert labelled["四、加强自身建设"] == "self_building"
    # the forward-looking part is plans whatever the topic (supervision, deputies)
    assert labelled["2024年主要任务"] == "plans"
    assert labelled[next(t for t in labelled if t.startswith("——紧扣民生实事"))] == "plans"
    assert labelled[next(t for t in labelled if t.startswith("——支持代表"))] == "plans"
    # the closing appeal and page furniture
    assert labelled[next(t for t in labelled if t.startswith("各位代表！"))] == "other"
    assert labelled["返回顶部"] == "other"


def test_subsections_carry_labels_under_a_review_container():
    lines = [
        "一、过去一年主要工作",
        "一年来，常委会依法履职，各项工作取得新成效。",
        "（一）坚持政治引领",
        "认真落实请示报告制度，确保正确政治方向。",
        "（二）依法开展监督",
        "听取审议专项工作报告十个。",
        "（三）依法决定重大事项和人事任免",
        "作出决议决定三项。",
        "二、2025年工作安排",
        "（一）加强立法",
        "计划制定条例两件。",
    ]
    assert labels_of(lines) == ["other", "other", "leadership", "leadership", "supervision", "supervision",
                                "other", "other", "plans", "plans", "plans"]


def test_a_long_heading_with_a_plans_word_is_not_the_plans_part():
    lines = ["一、始终把市委的各项工作安排落到人大工作的每一个环节之中，确保方向不偏", "常委会坚持党的领导。"]
    assert labels_of(lines) == ["leadership", "leadership"]


def test_unmappable_section_is_left_unlabelled():
    lines = ["一、其他事项", "本段没有任何可以判断类别的词。", "二、加强代表工作", "走访代表二十人。"]
    assert labels_of(lines) == [None, None, "deputy", "deputy"]


def test_congress_name_does_not_count_as_deputy():
    lines = ["一、加强人民代表大会制度理论研究和新闻宣传", "组织理论研讨会两次，刊发宣传稿件三百篇。"]
    assert labels_of(lines)[0] == "self_building"


def test_furniture_at_top_does_not_end_the_report():
    lines = ["某区人大常委会工作回顾", "日期:2022-01-04 09:40", "一、五年来，常委会推进依法监督、有效监督。聚焦重点持续发力。", "跟踪监督预算执行。"]
    assert Counter(labels_of(lines)) == Counter({"other": 2, "supervision": 2})
