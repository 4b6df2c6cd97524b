from renda.parsing import heading_shape, is_furniture, parse_report, split_lines


def test_sample_report_structure(sample_report):
    paragraphs = parse_report(sample_report)
    texts = [p.text for p in paragraphs]
    # full-width indentation is stripped, blank lines separate nothing
    assert texts[0] == "白沙县人民代表大会常务委员会工作报告"
    assert all(t and t == t.strip() and not t.startswith("\u3000") for t in texts)
    # the line cut by a page break is joined back into one paragraph
    joined = [t for t in texts if "全县" in t and "普及率" in t]
    assert len(joined) == 1 and joined[0].endswith("百分之九十六。")
    assert not any(t.startswith("农村自来水普及率") for t in texts)
    by_text = {p.text: p for p in paragraphs}
    top = by_text["一、坚持党的领导，把牢人大工作正确政治方向"]
    assert top.is_heading and top.level == 1 and top.section == top.text
    bare = by_text["过去一年的主要工作"]
    assert bare.is_heading and bare.level == 1
    plans = by_text["2024年主要任务"]
    assert plans.is_heading and plans.level == 1
    # a sub-heading fused with its paragraph: level 2, not a heading line, heading = its topic
    fused = next(p for p in paragraphs if p.text.startswith("（一）强化理论武装。"))
    assert fused.level == 2 and not fused.is_heading and fused.heading == "（一）强化理论武装。"
    assert fused.section == top.text
    half_width = next(p for p in paragraphs if p.text.startswith("(一) 提升能力水平"))
    assert half_width.level == 2 and half_width.section == "四、加强自身建设"
    dash = next(p for p in paragraphs if p.text.startswith("——紧扣民生实事"))
    assert dash.level == 3 and dash.section == "2024年主要任务"
    assert by_text["返回顶部"].furniture and by_text["来源：白沙人大网"].furniture
    assert [p.position for p in paragraphs] == list(range(len(paragraphs)))


def test_heading_shapes():
    assert heading_shape("三、服务代表履职") == (1, "三、服务代表履职", False)
    assert heading_shape("（二）依法监督") == (2, "（二）依法监督", False)
    assert heading_shape("(二) 依法监督")[0] == 2
    assert heading_shape("1.加强立法")[0] == 3
    assert heading_shape("2024年是开局之年。")[0] == 0  # a year is not an item number
    level, heading, fused = heading_shape("一、五年来，常委会始终坚持依法监督。聚焦重点，持续发力，取得实效。")
    assert (level, fused) == (1, True) and heading.endswith("。")
    long_line = "一、" + "常委会坚持围绕中心服务大局" * 8
    assert heading_shape(long_line)[2]  # too long to be a heading: prose opening a section


def test_newline_styles_and_furniture():
    text = "一、立法工作\r\n制定条例三件，修改条例两件。\n\n\n二、监督工作\n听取审议报告九个。\n扫一扫在手机上查看当前页面\n"
    lines = split_lines(text)
    assert lines == ["一、立法工作", "制定条例三件，修改条例两件。", "二、监督工作", "听取审议报告九个。", "扫一扫在手机上查看当前页面"]
    assert is_furniture("日期:2022-01-04 09:40") and is_furniture("2023年2月10日")
    assert not is_furniture("来年将继续加强监督。")
    # Unicode's line and paragraph separators (pasted from some editors and web pages) end lines too
    assert split_lines("一、立法工作\u2028制定条例三件。\u2029二、监督工作") == ["一、立法工作", "制定条例三件。", "二、监督工作"]


def test_short_title_lines_are_not_joined():
    text = "某县人大常委会工作报告\n\n2024年1月5日在某县人民代表大会上\n\n各位代表：\n"
    assert split_lines(text) == ["某县人大常委会工作报告", "2024年1月5日在某县人民代表大会上", "各位代表："]


def test_ideographs_newer_than_pythons_unicode_tables_are_chinese_not_unassigned():
    """Extension H (U+31350…) and I (U+2EBF0…) came after Unicode 14, which Python 3.11's tables hold:
    a rare character of a name or place there is Chinese text, not an unassigned code point. Code points
    past them, and private use, are still refused."""
    from renda.parsing import bad_character, has_chinese

    for ch in (chr(0x31350), chr(0x323AF), chr(0x2EBF0), chr(0x30000)):  # H, H's last, I, G
        assert bad_character(f"人大{ch}工作") is None and has_chinese(ch)
    assert "U+323B0" in bad_character("人大" + chr(0x323B0))
    assert "U+0378" in bad_character("人大" + chr(0x0378))


def test_form_feeds_and_other_line_breaking_controls_end_lines():
    # pdftotext ends each page with a form feed; a vertical tab or NEL also breaks a line
    from renda.parsing import bad_character, parse_report

    text = "一、立法工作\x0c制定条例三件。\x0b二、监督工作\x85听取报告两个。\r\n"
    assert [p.text for p in parse_report(text)] == ["一、立法工作", "制定条例三件。", "二、监督工作", "听取报告两个。"]
    assert bad_character(text) is None
    assert bad_character("第一行\n第二行\x00") == "holds a control character (U+0000) at character 7 (line 2)"


def test_match_form_reads_traditional_characters_as_simplified_and_leaves_simplified_text_be():
    from renda.parsing import match_form

    assert match_form("依法開展監督，人民代表大會") == "依法开展监督,人民代表大会"
    simplified = "常委会坚持党的领导，著力推动高质量发展，显著提升履职能力。"  # 著 is simplified too: kept
    assert match_form(simplified) == simplified.replace("，", ",").replace("。", "。")
