"""Request and response bodies (pydantic v2): the contract clients are written against."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

from model.context import MAX_HEADING_CHARS, MAX_PATH_ITEMS

Heading = Annotated[str, Field(max_length=MAX_HEADING_CHARS)]
MAX_CORRECTIONS = 2_000  # rows per POST /v1/corrections (the body limit applies too)


class ParagraphInput(BaseModel):
    """A paragraph with its context: the headings above it in its report."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "example": {"text": "围绕优化营商环境开展执法检查。", "heading": "（二）依法履行监督职责",
                    "heading_path": ["二、2025年主要任务"]}})

    text: str = Field(..., description="the paragraph")
    heading: Heading | None = Field(
        None, description=f"the heading of the section the paragraph sits in (at most {MAX_HEADING_CHARS} characters)")
    heading_path: Annotated[list[Heading], Field(max_length=MAX_PATH_ITEMS)] | None = Field(
        None, description="the headings above the paragraph, outermost first: part heading › section heading › "
                          f"sub-heading (at most {MAX_PATH_ITEMS} items of {MAX_HEADING_CHARS} characters). "
                          "`heading`, when given too, is read as the innermost one")


def _paragraph(value: Any) -> str | ParagraphInput:
    """A string, or an object validated as ParagraphInput: its errors keep their place
    (`paragraphs[2].heading`), where a plain union would report one error per member."""
    if isinstance(value, (str, ParagraphInput)):
        return value
    if isinstance(value, dict):
        return ParagraphInput.model_validate(value)
    raise PydanticCustomError("paragraph_type", "Input should be a valid string, or an object with a string `text` "
                                                "and optional `heading` and `heading_path`")


Paragraph = Annotated[str | ParagraphInput, PlainValidator(_paragraph, json_schema_input_type=str | ParagraphInput)]

PARAGRAPH_TEXTS = ["常委会党组坚持把党的领导贯穿人大工作全过程。", "审议通过地方性法规两件，批准单行条例一件。"]
CLASSIFY_EXAMPLES = {
    "strings": {
        "summary": "paragraphs alone",
        "description": "Each paragraph as a plain string: the model reads the paragraph without context.",
        "value": {"paragraphs": PARAGRAPH_TEXTS, "top_k": 3},
    },
    "objects": {
        "summary": "paragraphs with their headings",
        "description": "Each paragraph with the headings above it, outermost first. A sub-section under the plans "
                       "part is read as `plans` even when its own heading names another function.",
        "value": {"paragraphs": [
            {"text": "加强代表联络站建设，完善代表联系群众制度。", "heading_path": ["二、2025年主要任务", "（三）支持和保障代表依法履职"]},
            {"text": "围绕优化营商环境开展执法检查。", "heading": "（二）依法履行监督职责", "heading_path": ["二、2025年主要任务"]},
            {"text": "审议通过地方性法规两件。", "heading": "二、坚持立法为民"},
        ], "top_k": 3},
    },
    "mixed": {
        "summary": "strings and objects mixed",
        "description": "A request may mix both forms; `context` in each result says whether headings were read.",
        "value": {"paragraphs": [PARAGRAPH_TEXTS[0], {"text": PARAGRAPH_TEXTS[1], "heading": "二、坚持立法为民"}]},
    },
}


DOUBT_DOC = ("how much the label needs a reviewer's eye, 0 to 1 (higher: check first): one minus the margin between "
             "the two highest calibrated scores")
MIN_SCORE_DOC = ("abstention threshold (0 to 1): each result then carries `uncertain`, true when its (calibrated) "
                 "`score` is below it; the label is given either way")
UNCERTAIN_DOC = "only when the request set `min_score`: true when `score` is below it (the label is still given)"


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [example["value"] for example in CLASSIFY_EXAMPLES.values()]})

    paragraphs: list[Paragraph] = Field(
        ..., min_length=1,
        description="paragraphs to label, in order: each a string, or an object `{text, heading, heading_path}` "
                    "giving the headings above it (read as context); a request may mix both")
    top_k: int = Field(3, ge=1, le=7, strict=True, description="how many labels to list in `top`")  # a JSON integer, not "3" or true
    min_score: float | None = Field(None, ge=0, le=1, strict=True, allow_inf_nan=False, description=MIN_SCORE_DOC)  # strict: a JSON number, not true or "0.5"


class ParagraphResult(BaseModel):
    label: str
    score: float
    scores: dict[str, float]
    top: list[tuple[str, float]]
    windows: int = Field(description="how many model windows covered the paragraph")
    context: bool = Field(description="whether the model read a heading path with the paragraph "
                                      "(false for a plain string, or an object without headings)")
    doubt: float = Field(description=DOUBT_DOC)
    uncertain: bool | None = Field(None, description=UNCERTAIN_DOC)


class ClassifyResponse(BaseModel):
    model: str
    results: list[ParagraphResult]


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, description="a whole report as plain text")
    min_score: float | None = Field(None, ge=0, le=1, strict=True, allow_inf_nan=False, description=MIN_SCORE_DOC.replace("`score`", "own `score`"))


Source = Literal["heading", "model", "vote"]
SOURCE_DOC = ("what decided `section_label`: `heading` (the heading rules of renda/labels.toml won, weighed against "
              "the model), `vote` (the model's predictions for the section's paragraphs overruled the rules or "
              "filled in where they had nothing), or `model` (the same for a section of one paragraph)")


class ReportParagraph(BaseModel):
    index: int
    text: str
    is_heading: bool
    heading: str = Field(description="the heading of the section the paragraph sits in (\"\" for the preamble and the closing)")
    heading_path: list[str] = Field(description="the headings above the paragraph, outermost first (part heading › "
                                                "section heading › sub-heading; [] when there are none)")
    label: str = Field(description="the paragraph's own label")
    score: float
    scores: dict[str, float]
    windows: int
    context: bool = Field(description="whether the model read the heading path with the paragraph")
    section_label: str = Field(description="the label of the paragraph's section (usually the more accurate one)")
    source: Source = Field(description=SOURCE_DOC)
    doubt: float = Field(description=DOUBT_DOC + "; pulled halfway to 1 when the paragraph's own label differs from its "
                                                 "section label")
    uncertain: bool | None = Field(None, description=UNCERTAIN_DOC.replace("`score`", "the paragraph's own `score`"))


class ReportSection(BaseModel):
    heading: str
    label: str = Field(description="the section's label: the heading rules and the model's predictions together")
    first: int
    last: int
    source: Source = Field(description=SOURCE_DOC.replace("`section_label`", "`label`"))
    reason: str = Field(description="what decided `label`, in words: the heading rule and the keyword it matched, the part "
                                    "of the report it lies in, or the model's vote")
    doubt: float = Field(description="the highest `doubt` of its paragraphs")


class FileRead(BaseModel):
    """How an uploaded report file was read (renda/readers.py)."""

    name: str = Field(description="the file's name as uploaded (`text`: a JSON body's text read as a web page's source)")
    format: Literal["text", "html", "pdf", "docx"] = Field(description="the format read: by the name's suffix, else by the first bytes")
    encoding: str | None = Field(None, description="the text encoding found (text and web pages): utf-8, gb18030, big5, utf-16…")


class ReportResponse(BaseModel):
    model: str
    read: FileRead | None = Field(None, description="for an uploaded file, or a JSON text that was a web page's source: how it was read")
    paragraphs: list[ReportParagraph]
    sections: list[ReportSection]
    counts: dict[str, int]


class CorrectionRecord(BaseModel):
    """A reviewed paragraph in the project's labelled-paragraph format (renda/records.py)."""

    # strict: a training row takes JSON types as they are ("true" is not a bool, "5" not a position)
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"example": {
        "report_id": "baisha-county-2024", "text": "围绕优化营商环境开展执法检查。", "label": "supervision",
        "heading": "二、聚焦发展大局", "heading_path": ["过去一年的主要工作", "二、聚焦发展大局"], "is_heading": False,
        "position": 10}})

    report_id: str = Field(..., max_length=100, description="the report's id, also its file name: letters, digits, "
                                                            "Chinese characters, `.`, `_`, `-`, not starting with `.`; "
                                                            "at most 200 bytes in UTF-8 (66 Chinese characters)")
    text: str = Field(..., description="the paragraph, as the report has it")
    label: str = Field(..., description="the label the reviewer gave it")
    heading: Heading = Field("", description="the nearest heading above the paragraph")
    heading_path: Annotated[list[Heading], Field(max_length=MAX_PATH_ITEMS)] = Field(
        default_factory=list, description="every heading above the paragraph, outermost first")
    is_heading: bool = False
    position: int | None = Field(None, ge=0, description="the paragraph's index in its report")


class CorrectionsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    records: list[CorrectionRecord] = Field(..., min_length=1, max_length=MAX_CORRECTIONS,
                                            description=f"reviewed paragraphs (at most {MAX_CORRECTIONS:,}); "
                                                        "all are checked before any is stored")


class CorrectionsResponse(BaseModel):
    stored: int = Field(description="rows appended")
    reports: dict[str, int] = Field(description="rows appended per report id (each report's file: `<report_id>.jsonl`)")


class LabelInfo(BaseModel):
    id: str
    zh: str
    description: str


class LabelsResponse(BaseModel):
    labels: list[LabelInfo]


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {
        "text": "常委会听取审议县政府关于耕地保护工作的报告。下一步将继续跟踪督办。", "heading_path": ["二、依法开展监督"]}})

    text: str = Field(..., description="the paragraph")
    heading_path: Annotated[list[Heading], Field(max_length=MAX_PATH_ITEMS)] | None = Field(
        None, description="the headings above it, outermost first (each is left out in turn too)")
    label: str | None = Field(None, description="the label to explain (default: the predicted one)")


class ExplainPart(BaseModel):
    kind: Literal["sentence", "heading"]
    index: int = Field(description="its place among the paragraph's sentences, or in the heading path")
    text: str
    start: int | None = Field(description="where the sentence starts in the paragraph (characters); null for a heading")
    effect: float = Field(description="the label's score with this part less its score without it (> 0: it supports the label)")


class ExplainResponse(BaseModel):
    model: str
    label: str = Field(description="the label explained")
    score: float = Field(description="its calibrated score for the whole paragraph")
    predicted: str = Field(description="the label the model gives the paragraph")
    parts: list[ExplainPart] = Field(description="every sentence (when there are two or more) and every heading, left out in turn")
    reason: ExplainPart | None = Field(description="the part whose removal moves the score most: the reason shown")


class ModelSummary(BaseModel):
    model: str
    held_out_metrics: dict[str, Any] = Field(default_factory=dict)
    dev_macro_f1: float | None = None
    trained_at: str | None = None


class RetrainStatus(BaseModel):
    status: Literal["idle", "running", "done", "failed"]
    phase: str | None = Field(None, description="while running: training, exporting or loading")
    epoch: int | None = Field(None, description="the last epoch finished")
    epochs: int | None = Field(None, description="the epochs the recipe runs at most (it may stop early)")
    dev_macro_f1: float | None = Field(None, description="the dev split's macro-F1 after the last epoch")
    minutes: float | None = Field(None, description="since the retrain started (until it ended)")
    corrections_files: int | None = Field(None, description="report files of corrections it trains on")
    old: ModelSummary | None = Field(None, description="the model serving when it started")
    new: ModelSummary | None = Field(None, description="the model serving since it finished")
    message: str | None = Field(None, description="what happened, in words")


class Limits(BaseModel):
    max_paragraphs: int
    max_paragraph_chars: int
    max_report_chars: int
    max_body_bytes: int
    max_queue_paragraphs: int = Field(description="paragraphs that may wait for the model; beyond, 503 with Retry-After")
    max_explain_chars: int = Field(description="characters POST /v1/explain reads in all: the paragraph whole, and without each part")


class ModelResponse(BaseModel):
    model: str
    kind: str
    base_model: str | None
    trained_at: str | None
    held_out_metrics: dict
    label2id: dict[str, int]
    limits: Limits
    backend: str | None = Field(None, description="what runs the model: torch, onnx, onnx-fused or onnx-int8 (BACKEND setting; "
                                                  "null for the n-gram baseline)")
    backend_reason: str | None = Field(None, description="why that backend: the setting, the parity check at export, "
                                                         "or what made it fall back to torch")
    temperatures: dict[str, float] | None = Field(None, description="temperature scaling of the scores, per mode: `path` for a paragraph "
                                                                 "read with its heading path, `alone` without (null: raw scores)")
    fusion: dict | None = Field(None, description="when the encoder is averaged with an n-gram model: the encoder's share with "
                                                  "the heading path (`weight`) and alone (`weight_alone`), fitted on dev")
    plans_judge: dict | None = Field(None, description="when a paragraph read alone takes P(plans) from an n-gram model of that one "
                                                       "question, unless the encoder reads it as `other` (the other labels share the rest as the encoder gave "
                                                       "them): its folder, its n-grams' "
                                                       "`units` (the encoder tokenizer's `words`, or `chars`) and its temperature")


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    model: str | None = None
    detail: str | None = None


class ErrorItem(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []
