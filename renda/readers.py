"""A report file as published → its text, one paragraph a line, for the project's parser.

Reports come as plain text in any common encoding of Chinese (UTF-8, GB18030/GBK/GB2312, Big5,
UTF-16), as web pages, as PDF with a text layer and as Word `.docx`. Every entry point (CLI,
archive engines, service, page) reads through `read_report`, so they all see the same paragraphs.

Files are untrusted: the size is checked before anything is parsed, HTML / PDF / .docx are parsed
in a separate worker process that is killed past the time limit (a parser stuck on a hostile file
cannot hang the service), a .docx is checked as a zip (entries, unpacked size) before it is opened,
HTML is parsed without fetching anything, and every failure is a `DataError` with the reason.
"""

from __future__ import annotations

import codecs
import io
import re
import unicodedata
import zipfile
import pickle
import select
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from threading import Lock

from renda.parsing import has_chinese, is_furniture, starts_new
from renda.records import DataError
from renda.report_meta import year_of

TEXT_SUFFIXES = (".txt", ".text")
FORMATS = {".txt": "text", ".text": "text", ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf", ".docx": "docx"}
READ_NAMES = "plain text (.txt, any common encoding of Chinese), web pages (.html, .htm), PDF with a text layer (.pdf), Word (.docx)"
# Files an archive is likely to hold beside its reports: refused by name, with what is read instead.
REFUSED = {".doc": "a Word 97-2003 .doc file", ".wps": "a WPS file", ".rtf": "an RTF file", ".odt": "an OpenDocument file",
           ".xls": "a spreadsheet", ".xlsx": "a spreadsheet", ".ppt": "a slide deck", ".pptx": "a slide deck",
           ".jpg": "an image", ".jpeg": "an image", ".png": "an image", ".gif": "an image", ".tif": "an image",
           ".tiff": "an image", ".bmp": "an image", ".webp": "an image", ".zip": "an archive", ".rar": "an archive",
           ".7z": "an archive", ".gz": "an archive", ".tar": "an archive"}
# Chinese codecs the detector may pick; GB2312 and GBK are subsets of GB18030, so GB18030 reads them all.
_GB_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "cp936"}
_CANDIDATES = ["utf_8", "gb18030", "gbk", "gb2312", "big5", "big5hkscs", "cp950", "utf_16", "utf_32"]
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-]+)""", re.IGNORECASE)


class UnsupportedFormat(DataError):
    """A kind of file that is not read (415 in the service)."""


class FileTooLarge(DataError):
    """A file over the size limit (413 in the service)."""


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int = 20_000_000
    timeout_s: float = 30.0
    max_unpacked_bytes: int = 100_000_000  # a .docx's entries, unpacked (zip bombs)
    max_zip_entries: int = 2_000
    max_pages: int = 1_000

    @classmethod
    def from_settings(cls, settings=None) -> "ReadLimits":
        """The limits of `settings` (default: the environment's): MAX_FILE_BYTES, READ_TIMEOUT_S."""
        from renda.settings import get_settings

        settings = settings or get_settings()
        return cls(max_bytes=settings.max_file_bytes, timeout_s=settings.read_timeout_s)


@dataclass(frozen=True)
class ReadReport:
    text: str  # one paragraph a line, in order
    format: str  # text, html, pdf, docx
    encoding: str | None  # the text encoding found (text and HTML); None for PDF and .docx


def format_of(name: str, raw: bytes) -> str:
    """The format by the file's suffix, else by its first bytes; a refused kind raises with the reason."""
    suffix = Path(name).suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    if suffix in REFUSED:
        hint = " (save it as .docx)" if suffix in (".doc", ".wps", ".rtf", ".odt") else ""
        raise UnsupportedFormat(name, f"{REFUSED[suffix]} is not read{hint}; read are {READ_NAMES}")
    head = raw[:1024].lstrip()
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "docx"
    if re.match(rb"(?i)(<\?xml[^>]*>\s*)?<(!doctype\s+html|html)", head):
        return "html"
    if head.startswith(b"\xd0\xcf\x11\xe0"):  # OLE2: .doc, .xls, .ppt
        raise UnsupportedFormat(name, f"an old Office (OLE2) file is not read (save it as .docx); read are {READ_NAMES}")
    return "text"


_MARKUP = re.compile(r"(?i)</(?:p|div|h[1-6]|li|td|span|section|article)\s*>")


def looks_like_html(text: str) -> bool:
    """Text that is a web page's source, not its text: a document's opening, or text that opens with a
    tag and closes block elements (a report's own text never does either)."""
    head = text.lstrip()[:1024].encode("utf-8")
    return format_of("", head) == "html" or (head.startswith(b"<") and len(_MARKUP.findall(text)) >= 2)


def read_report(name: str, raw: bytes | None = None, limits: ReadLimits | None = None) -> ReadReport:
    """The report in file `name` (its bytes in `raw`, else read from disk): text one paragraph a line.
    Limits: the settings' (MAX_FILE_BYTES, READ_TIMEOUT_S) unless given."""
    limits = limits or ReadLimits.from_settings()

    def check_size(size: int) -> None:  # before anything is read or parsed
        if size > limits.max_bytes:
            raise FileTooLarge(name, f"the file is {size:,} bytes; the limit is {limits.max_bytes:,}")

    if raw is None:
        try:
            check_size(Path(name).stat().st_size)
            raw = Path(name).read_bytes()
        except OSError as error:
            raise DataError(name, f"cannot read: {error.strerror or error}") from error
    check_size(len(raw))
    if not raw.strip():
        raise DataError(name, "the file is empty")
    kind = format_of(name, raw)
    if kind == "text":
        text, encoding = decode_text(name, raw)
        report = ReadReport(text, "text", encoding)
    else:
        report = _in_worker(kind, name, raw, limits)
    if not has_chinese(report.text):
        raise DataError(name, f"no Chinese text found in this {report.format} file")
    return report


# --- Plain text ----------------------------------------------------------------------------------

# GBK text written on Windows holds A3A0 as a full-width space; GB18030 maps it to the private-use
# U+E5E5, which no model reads and the service refuses: read as the space it was meant for.
_GB_SPACE, _GBK_SPACE = "\ue5e5", b"\xa3\xa0"


def decode_text(name: str, raw: bytes, declared: str | None = None) -> tuple[str, str]:
    """(text, encoding): a BOM first, then strict UTF-8, then the encoding a page declares, then the
    detector; GB18030 whenever the detector's pick is of the GB family (it reads GB2312 and GBK too)."""
    text, codec = _decode_text(name, raw, declared)
    return (text.replace(_GB_SPACE, "\u3000") if codec == "gb18030" else text), codec


def _decode_text(name: str, raw: bytes, declared: str | None) -> tuple[str, str]:
    for bom, codec in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            return _decode(name, raw, codec), codec
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    if declared:
        codec = _codec_name(declared)
        if codec:
            try:
                return raw.decode(codec), codec
            except (UnicodeDecodeError, LookupError):  # LookupError: a codec of bytes, not text (hex, base64)
                pass  # a page that lies about its encoding: the detector decides
    from charset_normalizer import from_bytes

    matches = from_bytes(raw, cp_isolation=_CANDIDATES)
    best = matches.best()
    if best is None and _GBK_SPACE in raw:  # the detector takes GBK's A3A0 spaces for noise: read them as A1A1
        raw = raw.replace(_GBK_SPACE, "\u3000".encode("gb18030"))
        matches = from_bytes(raw, cp_isolation=_CANDIDATES)
        best = matches.best()
    if best is None:
        raise DataError(name, "not text in a known encoding of Chinese (UTF-8, GB18030/GBK/GB2312, Big5, UTF-16)")
    codec = _codec_name(best.encoding) or best.encoding
    if codec == "big5" and any(_codec_name(m.encoding) == "gb18030" and m.chaos <= best.chaos + 0.02 for m in matches):
        codec = "gb18030"  # unsure between Chinese codecs: GB18030, the mainland's
    return _decode(name, raw, codec), codec


def _codec_name(label: str) -> str | None:
    """A codec label as written (GB2312, gbk, cp936, big5…) → the codec to decode with."""
    try:
        name = codecs.lookup(label.strip().lower()).name
    except LookupError:
        return None
    if name in _GB_FAMILY or name.replace("_", "") in _GB_FAMILY:
        return "gb18030"
    if name in ("big5", "big5hkscs", "cp950"):
        return "big5"
    return name


def _decode(name: str, raw: bytes, codec: str) -> str:
    try:
        return raw.decode(codec)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(name, f"not valid {codec} text", line) from error


# --- The worker process: HTML, PDF, .docx --------------------------------------------------------

class _Worker:
    """One long-lived `python -m renda.read_worker` process, a file at a time: a subprocess rather
    than multiprocessing, so no caller's main module is imported again and no torch threads are forked.
    Past the time limit it is killed, and the next file starts a fresh one."""

    def __init__(self):
        self.lock = Lock()
        self.process: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, "-m", "renda.read_worker"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self.process

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def run(self, request: tuple, timeout: float):
        with self.lock:
            process = self._start()
            try:
                send_message(process.stdin, request)
                ready, _, _ = select.select([process.stdout], [], [], timeout)
                if not ready:
                    self.kill()
                    raise _Stopped
                return receive_message(process.stdout)
            except (BrokenPipeError, EOFError, OSError, pickle.UnpicklingError):
                self.kill()
                raise EOFError from None


class _Stopped(Exception):
    """The worker ran past the time limit and was killed."""


def send_message(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack(">Q", len(data)) + data)
    stream.flush()


def receive_message(stream):
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    (size,) = struct.unpack(">Q", header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # only ever from our own worker process


_worker = _Worker()


def _in_worker(kind: str, name: str, raw: bytes, limits: ReadLimits) -> ReadReport:
    try:
        ok, result = _worker.run((kind, name, raw, limits), limits.timeout_s)
    except _Stopped:
        raise DataError(name, f"reading this {kind} file took longer than {limits.timeout_s:g} s; it was stopped") from None
    except EOFError:
        raise DataError(name, f"the reader stopped on this {kind} file (out of memory or crashed)") from None
    if not ok:
        raise DataError(name, result)
    return result


def extract(kind: str, name: str, raw: bytes, limits: ReadLimits) -> ReadReport:
    """Run in the worker: one file's text. Any parser error becomes a DataError with the reason."""
    try:
        return {"html": read_html, "pdf": read_pdf, "docx": read_docx}[kind](name, raw, limits)
    except DataError:
        raise
    except Exception as error:  # a malformed or truncated file: its reason, never a traceback
        raise DataError(name, f"not a readable {kind} file ({type(error).__name__}: {error})"[:300]) from None


# --- HTML ------------------------------------------------------------------------------------------

def read_html(name: str, raw: bytes, limits: ReadLimits) -> ReadReport:
    """The page's main text (navigation, footers, share buttons and link lists left out by
    trafilatura), headings and paragraphs a line each; the page's title and date first, where a
    report's text has them, when the main text does not already."""
    import trafilatura
    from trafilatura.settings import use_config

    config = use_config()
    # Its size thresholds are counted in characters for alphabetic text: a short Chinese report is
    # far denser, and under them trafilatura falls back to one line with the page's menus in it.
    for option in ("MIN_EXTRACTED_SIZE", "MIN_OUTPUT_SIZE", "MIN_EXTRACTED_COMM_SIZE", "MIN_OUTPUT_COMM_SIZE"):
        config.set("DEFAULT", option, "10")
    config.set("DEFAULT", "EXTRACTION_TIMEOUT", "0")  # the worker's own time limit applies
    declared = _META_CHARSET.search(raw[:4096])
    html, encoding = decode_text(name, raw, declared.group(1).decode("ascii") if declared else None)
    document = trafilatura.bare_extraction(html, output_format="python", with_metadata=True, include_comments=False,
                                           include_tables=False, include_images=False, include_links=False,
                                           favor_recall=True, deduplicate=False, config=config)
    body = (getattr(document, "text", None) or "") if document is not None else ""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    if not lines:
        raise DataError(name, "no main text found in this web page")
    title = (getattr(document, "title", None) or "").strip()
    date = (getattr(document, "date", None) or "").strip()
    if title and has_chinese(title) and not any(_same(title, line) for line in lines[:3]):
        lines.insert(0, _page_title(title))
    if date and year_of(lines, "") is None:
        # the page's date where the report's own opening has none: under the title, as pages show it
        lines.insert(1, f"发布时间：{date}")
    return ReadReport("\n".join(lines), "html", encoding)


def _page_title(title: str) -> str:
    """「白石县人大常委会工作报告_白石县人民政府网」 → the title less the site's name (its last part)."""
    parts = re.split(r"\s*(?:[_|｜]|\s-\s)\s*", title.strip())
    return "｜".join(parts[:-1]) if len(parts) > 1 else title.strip()


def _same(title: str, line: str) -> bool:
    """Whether a line of the text is the page's title, whole or less the site's name."""
    fold = lambda s: unicodedata.normalize("NFKC", s).replace(" ", "")  # noqa: E731
    return fold(line) in (fold(title), fold(_page_title(title)))


# --- PDF -------------------------------------------------------------------------------------------

_PAGE_NUMBER = re.compile(r"^[-—–\s]*(第\s*)?\d{1,4}(\s*页)?(\s*[/／]\s*\d{1,4})?(\s*共\s*\d+\s*页)?[-—–\s]*$")


def read_pdf(name: str, raw: bytes, limits: ReadLimits) -> ReadReport:
    """Paragraphs rebuilt from the text layer's lines: a line that starts indented, or follows a
    line that stops well short of the right margin, opens a paragraph (across page breaks too); page
    numbers and running heads/feet (the same line at the top or bottom of most pages) are dropped."""
    import pdfplumber

    pages: list[tuple[float, list[dict]]] = []
    width = 0.0
    with pdfplumber.open(io.BytesIO(raw)) as pdf:
        if len(pdf.pages) > limits.max_pages:
            raise DataError(name, f"the PDF has {len(pdf.pages)} pages; the limit is {limits.max_pages}")
        for page in pdf.pages:
            pages.append((float(page.height), page.extract_text_lines(strip=True, return_chars=True)))
            width = max(width, float(page.width))
    if not any(line["text"].strip() for _, lines in pages for line in lines):
        raise DataError(name, "the PDF has no text layer (a scanned document): it needs OCR, which this project does not do")
    body = _drop_running_lines(pages)
    return ReadReport("\n".join(_join_lines(body, width)), "pdf", None)


def _drop_running_lines(pages: list[tuple[float, list[dict]]]) -> list[list[dict]]:
    """Each page's lines less page numbers and running heads and feet: the top or bottom line of a
    page, within its outer tenth, repeated at the same height on at least half the pages, or
    repeating a line of the body (a running head that is the title, which stands lower, stays)."""
    def key(line: dict) -> tuple[str, int]:
        return re.sub(r"\d+", "#", unicodedata.normalize("NFKC", line["text"]).replace(" ", "")), round(line["top"] / 4)

    def edges(height: float, lines: list[dict]) -> list[int]:
        kept = [i for i, line in enumerate(lines) if line["text"].strip()]
        if not kept:
            return []
        top = min(kept, key=lambda i: lines[i]["top"])
        bottom = max(kept, key=lambda i: lines[i]["bottom"])
        return sorted({i for i in (top,) if lines[i]["top"] < 0.1 * height}
                      | {i for i in (bottom,) if lines[i]["bottom"] > 0.9 * height})

    marked = [edges(height, lines) for height, lines in pages]
    counts: dict[tuple[str, int], int] = {}
    for (_, lines), edge in zip(pages, marked):
        for k in {key(lines[i]) for i in edge}:
            counts[k] = counts.get(k, 0) + 1
    repeated = {k for k, n in counts.items() if len(pages) >= 2 and n >= max(2, len(pages) // 2)}
    body_texts = {key(line)[0] for (_, lines), edge in zip(pages, marked) for i, line in enumerate(lines) if i not in edge}
    return [[line for i, line in enumerate(lines) if line["text"].strip() and not (
                i in edge and (_PAGE_NUMBER.match(line["text"]) or key(line) in repeated or key(line)[0] in body_texts))]
            for (_, lines), edge in zip(pages, marked)]


def _join_lines(pages: list[list[dict]], width: float) -> list[str]:
    lines = [line for page in pages for line in page]
    if not lines:
        return []
    sizes = [c.get("size", 0) or (c["x1"] - c["x0"]) for line in lines for c in line.get("chars", [])[:3]]
    char = median(sizes) if sizes else 10.0
    left = median(sorted(line["x0"] for line in lines)[: max(1, len(lines) // 4)])  # the left margin
    # The right margin: where the longest line ends, or the left margin mirrored, whichever is
    # further right (in a document of one-line paragraphs no line reaches the margin).
    right = max(max(line["x1"] for line in lines), width - min(line["x0"] for line in lines))
    paragraphs: list[str] = []
    previous = None
    for line in lines:
        text = line["text"].strip()
        # a wrapped line may stop a character or two short (a comma cannot open a line): only a line
        # that stops 3 characters short ends its paragraph; a heading or a meta line (the subtitle)
        # stands alone even where nothing is indented (one-line paragraphs show no margin)
        opens = (previous is None or line["x0"] > left + 0.8 * char or previous["x1"] < right - 3 * char
                 or starts_new(text) or is_furniture(previous["text"]))
        if opens:
            paragraphs.append(text)
        else:
            gap = " " if paragraphs[-1][-1:].isascii() and paragraphs[-1][-1:].isalnum() and text[:1].isascii() and text[:1].isalnum() else ""
            paragraphs[-1] += gap + text
        previous = line
    return paragraphs


# --- .docx -----------------------------------------------------------------------------------------

def read_docx(name: str, raw: bytes, limits: ReadLimits) -> ReadReport:
    """The document's paragraphs as written (empty ones dropped), in body order; checked as a zip first."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as error:
        raise DataError(name, f"not a .docx file (not a zip archive: {error})") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_zip_entries:
            raise DataError(name, f"the .docx holds {len(entries):,} entries; the limit is {limits.max_zip_entries:,}")
        unpacked = sum(entry.file_size for entry in entries)
        if unpacked > limits.max_unpacked_bytes:
            raise DataError(name, f"the .docx unpacks to {unpacked:,} bytes; the limit is {limits.max_unpacked_bytes:,}")
        if "word/document.xml" not in archive.namelist():
            raise DataError(name, "not a .docx file (no word/document.xml inside)")
        bad = archive.testzip()
        if bad is not None:
            raise DataError(name, f"the .docx is damaged (entry {bad} fails its check)")
    import docx

    document = docx.Document(io.BytesIO(raw))
    lines = [p.text.strip() for p in document.paragraphs if p.text.strip()]
    return ReadReport("\n".join(lines), "docx", None)
