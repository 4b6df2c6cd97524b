"""Reports rendered as they are published, and read back: the check of `renda/readers.py`.

Each report of a corpus (the starter corpus by default) is rendered into GB18030 text, a web page
with navigation, share buttons, related links and a footer around it, a PDF (reportlab's built-in
CID font STSong-Light, so no font file is needed; running head and page numbers on every page) and
a .docx. Each is read back by `read_report` and compared with the UTF-8 `.txt`: the paragraphs'
texts (in order) and their section labels in whole-report mode. `renda check-formats` writes the
figures to reports/formats/.
"""

from __future__ import annotations

import difflib
import html
import io
import json
import time
from pathlib import Path

from renda.parsing import parse_report
from renda.readers import read_report
from renda.records import DataError, atomic_write_text, read_text_file

RENDERERS = ("gb18030", "html", "pdf", "docx")
SUFFIX = {"gb18030": ".txt", "html": ".html", "pdf": ".pdf", "docx": ".docx"}
# Boilerplate a reader must leave out: none of these lines may come back as a paragraph.
BOILERPLATE = ["首页", "新闻中心", "人大要闻", "代表工作", "当前位置：首页 > 人大要闻 > 正文", "分享到：微信 微博 QQ空间",
               "相关文章", "常委会召开党组会议传达学习有关精神", "市人大代表视察城市建设项目", "版权所有：某市人大常委会办公室",
               "网站标识码 0000000000", "联系我们 | 网站地图 | 隐私声明"]


def lines_of(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def render_gb18030(text: str) -> bytes:
    return text.encode("gb18030")


def render_html(text: str, title: str, date: str | None = None) -> bytes:
    """A report page as a news site publishes it: menus, breadcrumbs, share buttons, related links, footer
    (and its date, when given, in the head and the byline)."""
    nav = "".join(f'<li><a href="/{i}">{html.escape(word)}</a></li>' for i, word in enumerate(BOILERPLATE[:3]))
    body = "\n".join(f"<p>{html.escape(line)}</p>" for line in lines_of(text)[1:])
    related = "".join(f'<li><a href="/news/{i}.html">{html.escape(t)}</a></li>' for i, t in enumerate(BOILERPLATE[6:8]))
    page = f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(title)}_某市人大网</title>
<meta name="description" content="{html.escape(title)}">{f'<meta property="article:published_time" content="{date}">' if date else ""}</head>
<body><header><div class="logo">某市人大网</div><nav><ul>{nav}</ul></nav></header>
<div class="breadcrumb">{html.escape(BOILERPLATE[3])}</div>
<main><article><h1>{html.escape(title)}</h1><div class="info">{date or ""} 来源：某市人大常委会办公室</div>
<div class="content">{body}</div>
<div class="share">{html.escape(BOILERPLATE[4])}</div></article>
<aside><h3>{html.escape(BOILERPLATE[5])}</h3><ul>{related}</ul></aside></main>
<footer><p>{html.escape(BOILERPLATE[8])}</p><p>{html.escape(BOILERPLATE[9])}</p><p>{html.escape(BOILERPLATE[10])}</p></footer>
</body></html>"""
    return page.encode("utf-8")


def render_pdf(text: str, title: str) -> bytes:
    """A4, 12-point STSong-Light, paragraphs wrapped with a two-character first-line indent; a running
    head and a page number on every page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph, SimpleDocTemplate

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    style = ParagraphStyle("body", fontName="STSong-Light", fontSize=12, leading=20, firstLineIndent=24, wordWrap="CJK")
    title_style = ParagraphStyle("title", parent=style, firstLineIndent=0, alignment=1, fontSize=16, leading=26)

    def furniture(canvas, doc) -> None:
        canvas.saveState()
        canvas.setFont("STSong-Light", 9)
        canvas.drawCentredString(A4[0] / 2, A4[1] - 36, title)
        canvas.drawCentredString(A4[0] / 2, 30, f"- {doc.page} -")
        canvas.restoreState()

    out = io.BytesIO()
    lines = lines_of(text)
    story = [Paragraph(html.escape(lines[0]), title_style)] + [Paragraph(html.escape(line), style) for line in lines[1:]]
    SimpleDocTemplate(out, pagesize=A4, title=title, topMargin=72, bottomMargin=64).build(
        story, onFirstPage=furniture, onLaterPages=furniture)
    return out.getvalue()


def render_docx(text: str) -> bytes:
    import docx

    document = docx.Document()
    lines = lines_of(text)
    document.add_heading(lines[0], level=0)
    for line in lines[1:]:
        document.add_paragraph(line)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def render(kind: str, text: str, title: str) -> bytes:
    return {"gb18030": lambda: render_gb18030(text), "html": lambda: render_html(text, title),
            "pdf": lambda: render_pdf(text, title), "docx": lambda: render_docx(text)}[kind]()


def paragraph_texts(text: str) -> list[str]:
    """The paragraphs the parser makes of a text, page furniture left out (as the labels count them)."""
    return [p.text for p in parse_report(text) if not p.furniture]


def compare(original: str, read: str) -> dict:
    """How many of the original's paragraphs came back with the same text, and what came back extra."""
    want, got = paragraph_texts(original), paragraph_texts(read)
    matcher = difflib.SequenceMatcher(a=want, b=got, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    wanted = set(want)
    extra = [t for t in got if t not in wanted]
    return {"paragraphs": len(want), "same": same, "extra": extra, "boilerplate": [t for t in extra if t in BOILERPLATE]}


def check_formats(corpus: Path, out: Path, predictor=None, kinds: tuple[str, ...] = RENDERERS, keep: Path | None = None) -> dict:
    """Render every report of `corpus` in each format, read it back and compare; with a predictor,
    also the section labels in whole-report mode, and the time reading takes beside labelling.
    Writes formats.json and formats.md under `out`."""
    from model.reports import label_report

    results: dict[str, dict] = {kind: {"reports": 0, "paragraphs": 0, "same": 0, "extra": 0, "boilerplate": 0,
                                       "labelled": 0, "same_label": 0, "failed": [], "encodings": {},
                                       "read_seconds": 0.0, "label_seconds": 0.0} for kind in kinds}
    reports = [path for path in sorted(Path(corpus).glob("*.txt")) if path.name.lower() != "readme.txt"]
    if not reports:
        raise DataError(corpus, "no .txt reports here to render and read back")
    read_report("warm-up.docx", render_docx("人大\n工作"))  # the reader's worker process starts once, not in a figure
    for path in reports:
        original = read_text_file(path)
        title = lines_of(original)[0]
        want_labels = _section_labels(label_report, predictor, original) if predictor is not None else None
        for kind in kinds:
            data = render(kind, original, title)
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                (keep / f"{path.stem}-{kind}{SUFFIX[kind]}").write_bytes(data)
            row = results[kind]
            started = time.perf_counter()
            try:
                read = read_report(f"{path.stem}{SUFFIX[kind]}", data)
            except Exception as error:  # a failure is a figure here, not a stop
                row["failed"].append(f"{path.name}: {error}")
                continue
            row["read_seconds"] += time.perf_counter() - started
            found = compare(original, read.text)
            row["reports"] += 1
            row["paragraphs"] += found["paragraphs"]
            row["same"] += found["same"]
            row["extra"] += len(found["extra"])
            row["boilerplate"] += len(found["boilerplate"])
            row["encodings"][str(read.encoding)] = row["encodings"].get(str(read.encoding), 0) + 1
            if want_labels is not None:
                started = time.perf_counter()
                got_labels = _section_labels(label_report, predictor, read.text)
                row["label_seconds"] += time.perf_counter() - started
                row["labelled"] += len(want_labels)
                row["same_label"] += sum(1 for text, label in want_labels.items() if got_labels.get(text) == label)
    for row in results.values():
        row["same_text"] = round(row["same"] / row["paragraphs"], 4) if row["paragraphs"] else None
        row["same_section_label"] = round(row["same_label"] / row["labelled"], 4) if row["labelled"] else None
        # what reading adds to labelling a report (the predictor's cache is off: see the CLI)
        row["read_share"] = round(row["read_seconds"] / row["label_seconds"], 4) if row["label_seconds"] else None
        row["read_seconds"], row["label_seconds"] = round(row["read_seconds"], 3), round(row["label_seconds"], 3)
    report = {"corpus": str(corpus), "model": getattr(predictor, "model_id", None), "formats": results}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "formats.json", json.dumps(report, ensure_ascii=False, indent=2))
    atomic_write_text(out / "formats.md", formats_table(report))
    return report


def _section_labels(label_report, predictor, text: str) -> dict[str, str]:
    """paragraph text → its section label in whole-report mode (headings and furniture left out)."""
    return {row["text"]: row["section_label"] for row in label_report(predictor, text).rows() if not row["is_heading"]}


def formats_table(report: dict) -> str:
    rows = ["| format | reports read | paragraphs | same text | same section label | extra lines | boilerplate lines | failed "
            "| reading (s) | labelling (s) | reading / labelling |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind, row in report["formats"].items():
        label = "-" if row["same_section_label"] is None else f"{row['same_section_label']:.4f}"
        text = "-" if row["same_text"] is None else f"{row['same_text']:.4f}"
        share = "-" if row["read_share"] is None else f"{row['read_share']:.1%}"
        rows.append(f"| {kind} | {row['reports']} | {row['paragraphs']} | {text} | {label} | {row['extra']} | "
                    f"{row['boilerplate']} | {len(row['failed'])} | {row['read_seconds']:.2f} | {row['label_seconds']:.2f} | {share} |")
    return f"Corpus `{report['corpus']}`, model `{report['model']}`.\n\n" + "\n".join(rows) + "\n"
