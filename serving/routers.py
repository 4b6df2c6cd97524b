"""HTTP routes. Model calls block, so the routes are plain `def`: FastAPI runs them in its thread
pool and the event loop stays free."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated

import anyio
from fastapi import APIRouter, Body, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from model.calibration import is_uncertain, stored_temperatures
from model.context import heading_path_of
from model.reports import label_report, prepare_report
from model.review import explain, prediction_doubt
from renda.labels import LABELS
from renda.labels import load_rules
from renda.readers import FileTooLarge, ReadLimits, UnsupportedFormat, looks_like_html, read_report
from renda.records import DataError
from serving.corrections import append_corrections, check_rows
from serving.schemas import (
    CLASSIFY_EXAMPLES, ClassifyRequest, ExplainRequest, ExplainResponse, RetrainStatus, ClassifyResponse, CorrectionsRequest, CorrectionsResponse, ErrorResponse, Health, LabelInfo, LabelsResponse, Limits,
    MIN_SCORE_DOC, FileRead, ModelResponse, ParagraphInput, ParagraphResult, Ready, ReportParagraph, ReportRequest, ReportResponse,
    ReportSection,
)
from serving.service import ModelNotReady, ModelService
from serving.validation import (
    InputProblem, check_explain, check_heading_path, check_paragraphs, check_report, check_report_paragraphs, check_text,
)

router = APIRouter()
ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 415, 422, 503)}


def _service(request: Request) -> ModelService:
    return request.app.state.service


def client_gone(request: Request) -> Callable[[], bool]:
    """Asked from the route's worker thread while it waits for the model: whether the client has
    hung up, so that the batcher drops what its request has left (nobody would read the answer)."""
    def gone() -> bool:
        try:
            return anyio.from_thread.run(request.is_disconnected)
        except RuntimeError:  # not called from the event loop's thread pool (a direct call): keep going
            return False
    return gone


class _Batched:
    """The service seen as a predictor, so whole-report mode shares the batcher. After a call,
    `model_id` and `info` (the fitted combiner) are those of the model that answered it."""

    def __init__(self, service: ModelService, gone: Callable[[], bool] | None = None):
        predictor = service.require()
        self.service, self.gone = service, gone
        self.labels, self.model_id, self.info = predictor.labels, predictor.model_id, predictor.info

    def predict(self, texts: list[str], contexts=None):
        predictor, predictions = self.service.classify_with(texts, contexts, self.gone)
        self.labels, self.model_id, self.info = predictor.labels, predictor.model_id, predictor.info
        return predictions


def texts_and_contexts(paragraphs: list[str | ParagraphInput]) -> tuple[list[str], list[list[str]] | None]:
    """The texts, and each one's heading path ([] for a plain string); None when no paragraph has one."""
    texts = [p if isinstance(p, str) else p.text for p in paragraphs]
    contexts = [[] if isinstance(p, str) else heading_path_of(p.heading, p.heading_path) for p in paragraphs]
    return texts, contexts if any(contexts) else None


# `uncertain` is left out unless the request set `min_score` (hence exclude_none).
@router.post("/v1/classify", response_model=ClassifyResponse, response_model_exclude_none=True, responses=ERRORS, tags=["labels"])
def classify(body: Annotated[ClassifyRequest, Body(openapi_examples=CLASSIFY_EXAMPLES)], request: Request) -> ClassifyResponse:
    """Label each paragraph; one result per paragraph, in order.

    A paragraph is a string, or an object with the headings above it in its report
    (`{"text": …, "heading": …, "heading_path": […]}`), which the model reads as context;
    each result's `context` says whether it did."""
    check_paragraphs(body.paragraphs, request.app.state.settings)
    predictor, predictions = _service(request).classify_with(*texts_and_contexts(body.paragraphs), client_gone(request))
    results = [ParagraphResult(label=p.label, score=p.score, scores=p.scores, top=p.top(body.top_k), windows=p.windows,
                               context=p.context, doubt=prediction_doubt(p), uncertain=is_uncertain(p.score, body.min_score))
               for p in predictions]
    return ClassifyResponse(model=predictor.model_id, results=results)


UPLOAD_PATH = "/v1/reports/file"  # POST /v1/reports with multipart/form-data lands here (serving/main.py: BodyLimit)
UPLOAD_DOC = {"requestBody": {"content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "a report file: plain text in any common encoding of "
                 "Chinese (UTF-8, GB18030/GBK, Big5, UTF-16), a web page (.html), a PDF with a text layer, or a .docx"},
        "min_score": {"type": "number", "minimum": 0, "maximum": 1, "description": MIN_SCORE_DOC}}}}}}}


@router.post("/v1/reports", response_model=ReportResponse, response_model_exclude_none=True, responses=ERRORS, tags=["labels"],
             openapi_extra=UPLOAD_DOC)
def classify_report(body: ReportRequest, request: Request) -> ReportResponse:
    """Split a whole report with the project's parser and label every paragraph.

    The report is a JSON body (`text`), or a file uploaded as multipart/form-data (`file`, and
    optionally `min_score`): plain text in any common encoding of Chinese, a web page (its main text
    only), a PDF with a text layer or a .docx; `read` in the answer says which format and encoding were read.
    A JSON `text` that is a web page's source (HTML) is read as a web page, and `read` says so."""
    if not looks_like_html(body.text):
        return _label_report(request, body.text, body.min_score)
    check_report(body.text, request.app.state.settings)  # a report text's limits, before the reader
    return _label_file(request, "text", "text.html", body.text.encode("utf-8"), body.min_score)


UPLOAD_PARTS = ("file", "min_score")


async def only_upload_parts(request: Request) -> None:
    """An upload's parts are `file` and `min_score`: another is refused, as an unknown JSON field is,
    not ignored (its form is parsed already, for the route: this reads it back)."""
    parts = list(dict.fromkeys((await request.form()).keys()))
    if "file" not in parts:
        raise InputProblem("file", "an upload needs a `file` part (the report file)"
                                   + (f"; this one has {', '.join(f'`{p}`' for p in parts)}" if parts else ", and this one has no part at all (was the body cut short?)"))
    if unknown := [part for part in parts if part not in UPLOAD_PARTS]:
        raise InputProblem(unknown[0], f"is not a part of an upload: send `file` (the report) and optionally `min_score`; "
                                       f"unknown: {', '.join(unknown)}")


@router.post(UPLOAD_PATH, response_model=ReportResponse, response_model_exclude_none=True, responses=ERRORS, include_in_schema=False,
             dependencies=[Depends(only_upload_parts)])
def classify_report_file(request: Request, files: Annotated[list[UploadFile], File(alias="file")],
                         min_score: Annotated[float | None, Form(ge=0, le=1, allow_inf_nan=False)] = None) -> ReportResponse:
    """POST /v1/reports with a file: read by renda/readers.py (size checked first, parsed in a worker
    process with a time limit), then labelled as a JSON body's text is. Taken as a list so that a
    second `file` part is refused, not silently dropped for the last one."""
    if len(files) != 1:
        raise InputProblem("file", f"send one report file per request; this one has {len(files)} `file` parts")
    file = files[0]
    name = file.filename or "upload"
    return _label_file(request, "file", name, file.file.read(request.app.state.settings.max_file_bytes + 1), min_score, name)


def _label_file(request: Request, field: str, name: str, raw: bytes, min_score: float | None, shown: str | None = None) -> ReportResponse:
    """A report's bytes read by renda/readers.py as the file `name` would be, then labelled; errors
    name `field` (`file`, or a JSON `text` that was a web page's source), `read` names it `shown`."""
    try:
        read = read_report(name, raw, ReadLimits.from_settings(request.app.state.settings))
    except DataError as error:
        status = 415 if isinstance(error, UnsupportedFormat) else 413 if isinstance(error, FileTooLarge) else 422
        raise InputProblem(field, error.message, status) from None
    response = _label_report(request, read.text, min_score, field)
    response.read = FileRead(name=shown or field, format=read.format, encoding=read.encoding)
    return response


def _label_report(request: Request, text: str, min_score: float | None, field: str = "text") -> ReportResponse:
    """`field`: what the request called the report (`text`, or an upload's `file`), for its errors."""
    check_report(text, request.app.state.settings, field)
    prepared = prepare_report(text)  # parsed once: checked, then labelled
    check_report_paragraphs(prepared[0], request.app.state.settings, field)
    batched = _Batched(_service(request), client_gone(request))
    result = label_report(batched, text, prepared=prepared)
    paragraphs = [ReportParagraph(**row, uncertain=is_uncertain(row["score"], min_score)) for row in result.rows()]
    sections = [ReportSection(**asdict(s)) for s in result.sections]
    return ReportResponse(model=batched.model_id, paragraphs=paragraphs, sections=sections, counts=result.counts)


def require_admin(request: Request) -> None:
    """Write actions need `Authorization: Bearer <ADMIN_TOKEN>` when the setting is set (compared in
    constant time); labelling stays open."""
    token = request.app.state.settings.admin_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise InputProblem("authorization", "this action needs `Authorization: Bearer <token>` with the service's "
                                            "ADMIN_TOKEN", 401)


WRITE_ERRORS = {**ERRORS, 401: {"model": ErrorResponse}}


@router.post("/v1/explain", response_model=ExplainResponse, responses=ERRORS, tags=["labels"])
def explain_paragraph(body: ExplainRequest, request: Request) -> ExplainResponse:
    """Why a paragraph got its label: each sentence and each heading of its path left out in turn
    (occlusion, one batch); `reason` is the part whose removal moves the label's score most."""
    settings = request.app.state.settings
    check_text("text", body.text, settings.max_paragraph_chars)
    check_heading_path("", None, body.heading_path)
    if body.label is not None and body.label not in LABELS:
        raise InputProblem("label", f"unknown label {body.label!r}; expected one of {', '.join(LABELS)}")
    path = [h for h in body.heading_path or [] if h.strip()]
    check_explain(body.text, path, settings)
    batched = _Batched(_service(request))
    result = explain(batched, body.text, path, body.label)
    return ExplainResponse(model=batched.model_id, **result)


async def takes_no_body(request: Request) -> None:
    """A retrain's recipe is training/config.toml and its data the configured corpus and the
    corrections folder: settings sent in a body would not apply, so they are refused, not ignored."""
    if (await request.body()).strip() not in (b"", b"{}"):
        raise InputProblem("body", "POST /v1/retrain takes no body: it trains with training/config.toml on the "
                                   "configured corpus and the corrections folder")


# the token first, as for every write action; then the body
@router.post("/v1/retrain", response_model=RetrainStatus, status_code=202, tags=["model"],
             responses={**WRITE_ERRORS, 409: {"model": ErrorResponse}}, dependencies=[Depends(require_admin), Depends(takes_no_body)])
def start_retrain(request: Request) -> RetrainStatus:
    """Retrain on the configured corpus plus the corrections folder in a background process (one at
    a time: 409 while one runs); when it has published, the service switches to the new model
    without a restart. Follow it with GET /v1/retrain. It takes no body (422 if one is sent)."""
    return RetrainStatus(**request.app.state.retrainer.start())


@router.get("/v1/retrain", response_model=RetrainStatus, tags=["model"])
def retrain_status(request: Request) -> RetrainStatus:
    """The last retrain: running (epoch, dev figure, minutes), done (the old and new model with their
    held-out figures) or failed (what happened; the served model is unchanged)."""
    return RetrainStatus(**request.app.state.retrainer.status())


# the token as a dependency: checked before the body is validated, so a caller without it learns nothing of the checks
@router.post("/v1/corrections", response_model=CorrectionsResponse, status_code=201, responses=WRITE_ERRORS, tags=["labels"],
             dependencies=[Depends(require_admin)])
def store_corrections(body: CorrectionsRequest, request: Request) -> CorrectionsResponse:
    """Store reviewed labels as training rows: appended to `<report_id>.jsonl` in the corrections folder
    (setting `CORRECTIONS_DIR`), one file per report. Every row is checked first; a bad one stores nothing.
    Needs the admin token when ADMIN_TOKEN is set."""
    settings = request.app.state.settings
    records = check_rows([r.model_dump() for r in body.records], settings.max_paragraph_chars)
    written = append_corrections(settings.corrections_dir, records)
    return CorrectionsResponse(stored=sum(written.values()), reports=written)


@router.get("/v1/labels", response_model=LabelsResponse, tags=["model"])
def labels() -> LabelsResponse:
    return LabelsResponse(labels=[LabelInfo(id=l.id, zh=l.zh, description=l.description) for l in load_rules().labels])


@router.get("/v1/model", response_model=ModelResponse, responses=ERRORS, tags=["model"])
def model_info(request: Request) -> ModelResponse:
    predictor = _service(request).require()
    info, settings = predictor.info, request.app.state.settings
    return ModelResponse(
        model=predictor.model_id,
        kind=info.get("kind", "unknown"),
        base_model=info.get("base_model"),
        trained_at=info.get("trained_at"),
        held_out_metrics=info.get("test_metrics") or {},
        label2id={label: i for i, label in enumerate(predictor.labels)},
        limits=Limits(max_paragraphs=settings.max_paragraphs, max_paragraph_chars=settings.max_paragraph_chars,
                      max_report_chars=settings.max_report_chars, max_body_bytes=settings.max_body_bytes,
                      max_queue_paragraphs=settings.max_queue_paragraphs, max_explain_chars=settings.max_explain_chars),
        backend=getattr(predictor, "backend", None),  # BERT predictors only (model/backends.py)
        backend_reason=getattr(predictor, "backend_reason", None) or None,
        temperatures=dict(zip(("path", "alone"), stored_temperatures(info) or ())) or None,
        fusion=info.get("fusion"),
        plans_judge=info.get("plans_judge"),
    )



@router.get("/healthz", response_model=Health, tags=["ops"])
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses={503: {"model": Ready}}, tags=["ops"])
def readyz(request: Request):
    service = _service(request)
    try:
        predictor = service.require()
    except ModelNotReady as error:
        return JSONResponse(status_code=503, content=Ready(ready=False, detail=str(error)).model_dump())
    return Ready(ready=True, model=predictor.model_id)


# Probes that send HEAD: the same status, no body (apart from GET, so the OpenAPI operations stay unique)
@router.head("/healthz", include_in_schema=False)
def healthz_head() -> Response:
    return Response(status_code=200)


@router.head("/readyz", include_in_schema=False)
def readyz_head(request: Request) -> Response:
    answer = readyz(request)
    return Response(status_code=answer.status_code if isinstance(answer, Response) else 200)
