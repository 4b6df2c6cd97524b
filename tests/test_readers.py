"""renda/readers.py: reports as published (encodings, web pages, PDF, .docx) read into the parser's text,
and files that are refused, damaged, too large or too slow. Every text here is written for the tests."""

from __future__ import annotations

import io
import zipfile

import pytest

from renda.readers import FileTooLarge, ReadLimits, UnsupportedFormat, decode_text, format_of, read_report
from renda.records import DataError
from training.formats import BOILERPLATE, compare, lines_of, paragraph_texts, render

REPORT = """翠屏县人民代表大会常务委员会工作报告
——2025年1月9日在翠屏县第十八届人民代表大会第五次会议上
各位代表：
一、坚持党的领导
常委会党组认真落实请示报告制度，全年向县委请示报告重要事项21件次。
二、依法履行监督职责
听取审议县政府关于城乡供水一体化工作情况的报告，推动新建改造供水管网86公里。
三、2025年主要任务
持续加强代表联络站建设，完善代表建议办理跟踪督办机制。"""
# Traditional characters, as a Big5 file from an older archive would hold them.
BIG5_REPORT = "翠屏縣人民代表大會常務委員會工作報告\n一、堅持黨的領導\n全年召開常委會會議八次，聽取審議專項工作報告十二個。"


def long_report(paragraphs: int = 60) -> str:
    """A report long enough for a PDF of several pages."""
    body = [f"围绕第{i}项重点工作开展专题调研，形成调研报告{i}篇，推动解决一批群众关心的实际问题，常委会跟踪督办落实情况，"
            f"确保各项整改措施落到实处、见到成效。" for i in range(1, paragraphs + 1)]
    return "\n".join([*REPORT.splitlines()[:6], *body, *REPORT.splitlines()[6:]])


# --- plain text in the encodings of Chinese archives ---------------------------------------------

@pytest.mark.parametrize("codec, expected", [
    ("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("utf-16", "utf-16"),
    ("gb18030", "gb18030"), ("gbk", "gb18030"), ("gb2312", "gb18030"),
])
def test_text_in_every_common_encoding(codec, expected):
    text = REPORT.replace("——", "") if codec == "gb2312" else REPORT  # GB2312 has no U+2014
    read = read_report("report.txt", text.encode(codec))
    assert (read.text, read.format, read.encoding) == (text, "text", expected)


def test_big5_is_told_from_gb18030():
    read = read_report("old.txt", BIG5_REPORT.encode("big5"))
    assert (read.text, read.encoding) == (BIG5_REPORT, "big5")


def test_gb18030_only_characters():
    text = REPORT + "\n𠀾𡈽是扩展区汉字。"  # outside GBK: only GB18030 encodes them
    assert read_report("r.txt", text.encode("gb18030")).text == text


def test_a_gb18030_file_that_opens_in_ascii():
    """A long file whose first lines are ASCII (a header, a URL): the detector looks past them."""
    text = "Source: http://www.example.gov.cn/rd/2025/01/report.html\nSaved 2025-01-12 10:30\n\n" + long_report(80)
    read = read_report("saved.txt", text.encode("gb18030"))
    assert (read.text, read.encoding) == (text, "gb18030")


def test_a_long_big5_file():
    text = "\n".join([BIG5_REPORT] * 40)
    assert decode_text("long.txt", text.encode("big5")) == (text, "big5")


def test_a_declared_codec_of_bytes_not_text_falls_to_the_detector():
    """A page may declare charset=hex or base64: Python's codecs of bytes, which decode() refuses with
    LookupError; the declaration is then ignored, as a false one is."""
    raw = "人大常委会听取审议专项工作报告，开展执法检查。".encode("gbk")
    for declared in ("hex", "base64", "rot13"):
        assert decode_text("p.html", raw, declared) == (raw.decode("gbk"), "gb18030")


def test_a_short_gb_file_reads_as_gb18030():
    assert decode_text("t.txt", "人大常委会工作报告".encode("gbk")) == ("人大常委会工作报告", "gb18030")


def test_a_gbk_full_width_space_reads_as_a_space():
    # A3A0: a full-width space in GBK text written on Windows; GB18030 maps it to private-use U+E5E5
    line = "常委会听取审议市政府关于优化营商环境工作情况的报告，开展专题询问。\n"
    raw = b"".join(b"\xa3\xa0\xa3\xa0" + line.encode("gbk") for _ in range(8))  # indented as such pages are
    text, codec = decode_text("t.txt", raw)
    assert codec == "gb18030" and text == ("\u3000\u3000" + line) * 8
    assert decode_text("p.html", raw, "gbk") == (text, "gb18030")  # declared by a page: the same


def test_text_without_chinese_is_refused():
    with pytest.raises(DataError, match="no Chinese text found in this text file"):
        read_report("notes.txt", b"just some notes\n")


# --- formats: by suffix, else by the first bytes; the refused ones say why -----------------------

@pytest.mark.parametrize("name, head, kind", [
    ("a.pdf", b"", "pdf"), ("a.HTM", b"", "html"), ("a.docx", b"", "docx"), ("a", b"%PDF-1.7", "pdf"),
    ("a", b"PK\x03\x04", "docx"), ("upload", b"<!DOCTYPE html><html>", "html"), ("a.bin", "人大".encode(), "text"),
])
def test_format_of(name, head, kind):
    assert format_of(name, head) == kind


@pytest.mark.parametrize("name, data, message", [
    ("a.doc", b"\xd0\xcf\x11\xe0", "a Word 97-2003 .doc file is not read (save it as .docx)"),
    ("scan.jpg", b"\xff\xd8\xff", "an image is not read"),
    ("all.zip", b"PK\x03\x04", "an archive is not read"),
    ("upload", b"\xd0\xcf\x11\xe0" + bytes(20), "an old Office (OLE2) file is not read"),
])
def test_refused_kinds_name_what_is_read(name, data, message):
    with pytest.raises(UnsupportedFormat, match="read are plain text") as info:
        read_report(name, data)
    assert message in str(info.value)


def test_size_is_checked_before_parsing(tmp_path):
    path = tmp_path / "big.pdf"
    path.write_bytes(b"%PDF-1.4\n" + bytes(5000))
    with pytest.raises(FileTooLarge, match="5,009 bytes; the limit is 4,096"):
        read_report(str(path), limits=ReadLimits(max_bytes=4096))
    with pytest.raises(FileTooLarge):
        read_report("big.txt", "人".encode() * 2000, ReadLimits(max_bytes=4096))


# --- web pages -------------------------------------------------------------------------------------

def test_a_web_page_reads_as_its_main_text():
    read = read_report("page.html", render("html", REPORT, "翠屏县人民代表大会常务委员会工作报告"))
    assert (read.format, read.encoding) == ("html", "utf-8")
    found = compare(REPORT, read.text)
    assert found["same"] == found["paragraphs"] == len(paragraph_texts(REPORT))
    assert not set(lines_of(read.text)) & set(BOILERPLATE), read.text  # no menu, share, related link or footer line


def test_a_gb2312_page_with_its_title_and_date_only_in_the_head():
    body = "".join(f"<p>{line}</p>" for line in REPORT.splitlines()[2:])
    page = ('<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">'
            '<title>翠屏县人大常委会工作报告_翠屏人大网</title><meta name="date" content="2025-01-12"></head>'
            f'<body><div class="nav"><a href="/">首页</a> <a href="/a">人大要闻</a></div><div class="article">{body}</div>'
            '<div class="footer">版权所有：翠屏县人大常委会办公室</div></body></html>')
    read = read_report("page.htm", page.encode("gb2312"))
    lines = lines_of(read.text)
    assert read.encoding == "gb18030"
    assert lines[0] == "翠屏县人大常委会工作报告"  # the title less the site's name
    assert lines[1] == "发布时间：2025-01-12"  # the page's date, where the text has none
    assert lines[2:] == REPORT.splitlines()[2:]


def test_a_page_without_main_text_is_refused():
    with pytest.raises(DataError, match="no main text found|no Chinese text"):
        read_report("empty.html", b"<html><body><nav><a href='/'>home</a></nav></body></html>")


def test_a_page_never_fetches_what_it_links():
    """An external entity or a remote resource is text to the reader, never a request."""
    page = ('<!DOCTYPE html [<!ENTITY x SYSTEM "http://127.0.0.1:9/secret">]><html><body>'
            '<img src="http://127.0.0.1:9/x.png"><p>&x;</p>' + "".join(f"<p>{line}</p>" for line in REPORT.splitlines()) + "</body></html>")
    read = read_report("page.html", page.encode())
    assert "secret" not in read.text and compare(REPORT, read.text)["same"] == len(paragraph_texts(REPORT))


# --- PDF -------------------------------------------------------------------------------------------

def test_a_pdf_of_several_pages_reads_back_paragraph_for_paragraph():
    text = long_report()
    data = render("pdf", text, lines_of(text)[0])
    import pdfplumber

    with pdfplumber.open(io.BytesIO(data)) as pdf:
        assert len(pdf.pages) >= 3  # paragraphs cross page breaks, every page has a running head and a number
    read = read_report("report.pdf", data)
    assert read.format == "pdf" and read.encoding is None
    assert lines_of(read.text) == lines_of(text)  # no running head, no page number, no paragraph cut


def test_a_pdf_without_a_text_layer_is_refused():
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    page = canvas.Canvas(out)
    page.rect(100, 100, 300, 400, fill=1)  # a "scan": a picture, no text
    page.save()
    with pytest.raises(DataError, match="no text layer .* needs OCR"):
        read_report("scan.pdf", out.getvalue())


def test_a_truncated_pdf_gets_its_reason():
    data = render("pdf", REPORT, "翠屏")
    with pytest.raises(DataError, match="not a readable pdf file"):
        read_report("cut.pdf", data[: len(data) // 3])


# --- .docx -----------------------------------------------------------------------------------------

def test_a_docx_reads_its_paragraphs():
    read = read_report("report.docx", render("docx", REPORT, ""))
    assert (read.format, lines_of(read.text)) == ("docx", REPORT.splitlines())


def zipped(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_a_docx_bomb_is_refused_before_it_is_opened():
    data = zipped({"word/document.xml": b"<w/>", "word/media/big.bin": bytes(3_000_000)})  # 3 MB of zeros: a few KB zipped
    assert len(data) < 20_000
    with pytest.raises(DataError, match="unpacks to 3,000,004 bytes; the limit is 1,000,000"):
        read_report("bomb.docx", data, ReadLimits(max_unpacked_bytes=1_000_000))


@pytest.mark.parametrize("data, message", [
    (zipped({"hello.txt": b"hi"}), "no word/document.xml inside"),
    (b"PK\x03\x04 not really a zip", "not a zip archive"),
    (zipped({"word/document.xml": b"<not xml"}), "not a readable docx file"),
])
def test_false_docx_files(data, message):
    with pytest.raises(DataError, match=message):
        read_report("x.docx", data)


# --- the time limit --------------------------------------------------------------------------------

def test_a_slow_file_is_stopped_and_the_next_one_reads():
    data = render("pdf", long_report(400), "翠屏")
    with pytest.raises(DataError, match="took longer than 0.05 s; it was stopped"):
        read_report("slow.pdf", data, ReadLimits(timeout_s=0.05))
    assert lines_of(read_report("next.docx", render("docx", REPORT, "")).text) == REPORT.splitlines()
