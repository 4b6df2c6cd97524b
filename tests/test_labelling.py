import pytest
from collections import Counter

from renda.labelling import heading_paths, label_paragraphs
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


RUN_IN_REVIEW = [
    "一、过去一年的主要工作",
    "一年来，常委会在市委领导下依法履职。",
    "一是坚持党的全面领导，把准政治方向。常委会党组向市委请示报告十二次。",
    "深入学习党的创新理论，举办读书班三期。",
    "二是坚持立法为民。制定地方性法规三件，审查规范性文件四十件。",
    "三是增强监督实效。听取审议专项工作报告八个，开展执法检查三次。",
    "四是密切联系代表。新建代表联络站六个。",
]
RUN_IN_PLANS = ["二、今后一年的主要任务", "一是坚持党的全面领导。", "二是提高立法质量，计划制定条例四件。"]


def test_run_in_sections_of_a_review_container_carry_their_labels():
    # a review container written in 「一是…」「二是…」 paragraphs: each opens a section of its own,
    # its opening sentence its heading; the summary before them stays `other`, the plans part `plans`
    lines = RUN_IN_REVIEW + RUN_IN_PLANS + ["各位代表，让我们团结奋斗！"]
    assert labels_of(lines) == ["other", "other", "leadership", "leadership", "legislation", "supervision", "deputy",
                                "plans", "plans", "plans", "other"]
    paths = heading_paths(parse_lines(lines))
    assert paths[3] == ["一、过去一年的主要工作", "一是坚持党的全面领导，把准政治方向。"]  # the run-in heading stands as a section's
    assert paths[8] == ["二、今后一年的主要任务"]  # a run-in item of the plans part is no section


def test_a_run_in_list_before_numbered_sections_is_the_summary():
    # numbered sections follow inside the container: the 一是/二是 list is the summary's (other)
    lines = RUN_IN_REVIEW[:3] + ["二是立法工作有新进展。"] + ["（一）坚持政治引领", "认真落实请示报告制度。"]
    assert labels_of(lines) == ["other", "other", "other", "other", "leadership", "leadership"]


def test_one_run_in_paragraph_or_a_list_out_of_order_is_no_section():
    assert labels_of(RUN_IN_REVIEW[:3]) == ["other"] * 3  # 一是 alone
    out_of_order = [RUN_IN_REVIEW[0], RUN_IN_REVIEW[4], RUN_IN_REVIEW[2]]  # 二是 before 一是
    assert labels_of(out_of_order) == ["other"] * 3


def test_a_review_container_that_numbers_its_sections_as_items_or_ordinals():
    # no 一、 or （一） inside the container: its 「1.」 / 「（1）」 items or 「第一，」 paragraphs are its sections
    plans = ["二、今后一年的主要任务", "加强监督。"]
    items = ["一、过去一年的主要工作", "一年来，常委会依法履职。", "1.坚持党的全面领导", "常委会党组请示报告十二次。",
             "2.依法开展监督", "听取审议专项工作报告八个。"]
    expected = ["other", "other", "leadership", "leadership", "supervision", "supervision", "plans", "plans"]
    assert labels_of(items + plans) == expected
    assert labels_of([line.replace("1.", "（1）").replace("2.", "（2）") for line in items] + plans) == expected
    assert heading_paths(parse_lines(items + plans))[3] == ["一、过去一年的主要工作", "1.坚持党的全面领导"]
    ordinals = ["过去一年的主要工作", "一年来，常委会依法履职。", "第一，坚持党的全面领导。常委会党组请示报告十二次。",
                "第二，依法开展监督。听取审议专项工作报告八个。"]
    assert labels_of(ordinals) == ["other", "other", "leadership", "supervision"]
    # items under a numbered sub-section are that sub-section's
    nested = items[:2] + ["（一）坚持党的全面领导"] + items[2:]
    assert labels_of(nested) == ["other", "other"] + ["leadership"] * 5


def test_a_report_in_traditional_characters_is_read_by_the_same_rules():
    # a Big5 report: 監督, 代表聯絡站, 今後 match the rules' 监督, 代表, 今后
    lines = ["過去一年的主要工作", "一年來，常委會依法履職。", "一、依法開展監督", "聽取審議縣政府專項工作報告八個。",
             "二、加強代表工作", "新建代表聯絡站六個。", "今後工作建議", "加強監督。"]
    assert labels_of(lines) == ["other", "other", "supervision", "supervision", "deputy", "deputy", "plans", "plans"]


def test_a_review_container_its_heading_words_do_not_name_is_found_by_its_sub_sections():
    # 「工作总结」 is no review word: a heading that names no label over sub-sections that name two is a container
    lines = ["一、2023年工作总结", "一年来，常委会依法履职。", "（一）坚持党的全面领导", "常委会党组请示报告十二次。",
             "（二）依法开展监督", "听取审议专项工作报告八个。", "二、2024年主要任务", "加强监督。"]
    assert labels_of(lines) == ["other", "other", "leadership", "leadership", "supervision", "supervision", "plans", "plans"]
    # a section whose heading names its label keeps its sub-sections, whatever they name
    section = ["一、坚持党的全面领导", "（一）加强思想政治建设", "学习十二次。", "（二）依法做好任免工作", "任免干部二十人。"]
    assert labels_of(section) == ["leadership"] * 5


@pytest.mark.parametrize("heading, plans", [
    ("二、2024年重点工作", True), ("二、2024年工作要点", True), ("二、2024年工作计划", True), ("二、今年工作", True),
    ("二、今年主要工作", True), ("二、下步工作打算", True), ("2024年重点工作", True),  # a bare line too
    ("二、2023年工作回顾", False), ("二、今年以来的工作", False), ("二、围绕全区重点工作开展监督", False),
])
def test_plans_part_headings_that_look_forward(heading, plans):
    lines = ["一、过去一年主要工作", "（一）坚持党的全面领导", "常委会党组请示报告十二次。", heading, "（一）加强立法", "计划制定条例四件。"]
    got = labels_of(lines)[3:]
    assert (got == ["plans"] * 3) == plans, got
