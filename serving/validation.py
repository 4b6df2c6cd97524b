"""Checks on request text beyond the schema: limits from settings and what the model can read.

Every failure names the field and the limit, and becomes a 4xx; nothing reaches the model.
"""

from __future__ import annotations


from model.context import heading_path_problem
from model.review import occlusion_size
from renda.parsing import Paragraph, bad_character, has_chinese
from renda.settings import Settings
from serving.schemas import ParagraphInput



class InputProblem(ValueError):
    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


def check_text(field: str, text: str, max_chars: int) -> None:
    if not text.strip():
        raise InputProblem(field, "is empty or whitespace only")
    if len(text) > max_chars:
        raise InputProblem(field, f"has {len(text):,} characters; the limit is {max_chars:,}", 413)
    check_characters(field, text)
    if not has_chinese(text):
        raise InputProblem(field, "contains no Chinese characters; the model labels Chinese report text")


def check_characters(field: str, text: str) -> None:
    """No control characters (but newline and tab), unpaired surrogates, private-use or unassigned code points."""
    problem = bad_character(text)
    if problem:
        raise InputProblem(field, problem)


def check_paragraphs(paragraphs: list[str | ParagraphInput], settings: Settings) -> None:
    """Texts as ever; headings (the schema has checked their type, count and length) need no Chinese,
    but no bad characters either. Empty headings are allowed: they mean none."""
    if len(paragraphs) > settings.max_paragraphs:
        raise InputProblem("paragraphs", f"has {len(paragraphs)} items; the limit is {settings.max_paragraphs} per request", 413)
    for i, paragraph in enumerate(paragraphs):
        if isinstance(paragraph, str):
            check_text(f"paragraphs[{i}]", paragraph, settings.max_paragraph_chars)
            continue
        check_text(f"paragraphs[{i}].text", paragraph.text, settings.max_paragraph_chars)
        check_heading_path(f"paragraphs[{i}]", paragraph.heading, paragraph.heading_path)


def check_heading_path(where: str, heading: str | None, heading_path: list[str] | None) -> None:
    """A paragraph's context, by the one check the CLI uses too (model/context.py)."""
    if problem := heading_path_problem(heading, heading_path):
        field, message = problem
        raise InputProblem(f"{where}.{field}" if where else field, message)


def check_report(text: str, settings: Settings, field: str = "text") -> None:
    check_text(field, text, settings.max_report_chars)


def check_report_paragraphs(paragraphs: list[Paragraph], settings: Settings, field: str = "text") -> None:
    """Each paragraph as the parser cut the report is held to the limit a paragraph sent alone has
    (one that long is mostly a report whose line breaks were lost)."""
    for i, paragraph in enumerate(paragraphs):
        if len(paragraph.text) > settings.max_paragraph_chars:
            raise InputProblem(field, f"paragraph {i + 1} has {len(paragraph.text):,} characters; a paragraph may have "
                                       f"{settings.max_paragraph_chars:,} at most (did the report lose its line breaks?)", 413)


def check_explain(text: str, heading_path: list[str], settings: Settings) -> None:
    """What the explanation would read in all (model/review.py: the paragraph once per part left out)."""
    readings, total = occlusion_size(text, heading_path)
    if total > settings.max_explain_chars:
        raise InputProblem("text", f"explaining it reads the paragraph {readings:,} times (whole, and without each "
                                   f"sentence and heading in turn): {total:,} characters; the limit is "
                                   f"{settings.max_explain_chars:,}; explain a shorter paragraph", 413)
