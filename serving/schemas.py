"""Request and response bodies (pydantic v2): the contract clients are written against."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"example": {"paragraphs": ["加强代表联络站建设。…"], "top_k": 3}})

    paragraphs: list[str] = Field(..., min_length=1, description="paragraphs to label, in order")
    top_k: int = Field(3, ge=1, le=7, description="how many labels to list in `top`")


class ParagraphResult(BaseModel):
    label: str
    score: float
    scores: dict[str, float]
    top: list[tuple[str, float]]
    windows: int = Field(description="how many model windows covered the paragraph")


class ClassifyResponse(BaseModel):
    model: str
    results: list[ParagraphResult]


class ReportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, description="a whole report as plain text")


class ReportParagraph(BaseModel):
    index: int
    text: str
    is_heading: bool
    heading: str = Field(description="the heading of the section the paragraph sits in (\"\" for the preamble and the closing)")
    label: str = Field(description="the paragraph's own label")
    score: float
    scores: dict[str, float]
    windows: int
    section_label: str = Field(description="the label its section's paragraphs agree on (usually the more accurate one)")


class ReportSection(BaseModel):
    heading: str
    label: str = Field(description="the label the section's paragraphs agree on")
    first: int
    last: int


class ReportResponse(BaseModel):
    model: str
    paragraphs: list[ReportParagraph]
    sections: list[ReportSection]
    counts: dict[str, int]


class LabelInfo(BaseModel):
    id: str
    zh: str
    description: str


class LabelsResponse(BaseModel):
    labels: list[LabelInfo]


class Limits(BaseModel):
    max_paragraphs: int
    max_paragraph_chars: int
    max_report_chars: int
    max_body_bytes: int


class ModelResponse(BaseModel):
    model: str
    kind: str
    base_model: str | None
    trained_at: str | None
    held_out_metrics: dict
    label2id: dict[str, int]
    limits: Limits


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
