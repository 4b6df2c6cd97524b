// The review page: label a report (POST /v1/reports) or pasted paragraphs (POST /v1/classify),
// show it coloured by section, let the reviewer correct labels, export the corrections as JSONL in
// the project's record format, or store them (POST /v1/corrections). Plain DOM code, no libraries.
"use strict";

// One colour per label, fixed so a label looks the same on every report.
const COLOURS = {
  leadership: "#c0392b", legislation: "#2874a6", supervision: "#d68910", deputy: "#1e8449",
  self_building: "#7d3c98", plans: "#138d90", other: "#7f8c8d",
};
const SOURCES = {
  heading: "标题规则 the heading rules (data/labels.toml), weighed against the model",
  vote: "段落投票 the model's predictions for the section's paragraphs",
  model: "模型 the model (a one-paragraph section)",
};
// A report id becomes a file name on the server: the same rule as serving/corrections.py.
const REPORT_ID = /^[A-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff][A-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff._-]{0,99}$/;

const state = {
  labels: [],          // [{id, zh, description}] from /v1/labels
  report: null,        // the /v1/reports response
  reportId: "",
  corrections: new Map(),  // paragraph index → the label the reviewer chose
  saved: new Map(),        // paragraph index → the label last stored on the server
  minScore: 0.5,
  doubtOrder: [],          // paragraph indices, most doubtful first
  doubtAt: -1,             // where "next doubtful" stands in doubtOrder
  maxParagraphs: undefined,  // paragraphs a request may carry (GET /v1/model's limits)
  explained: new Map(),    // paragraph index → the /v1/explain answer (asked on hover, once)
};
// Marked as doubtful at or above this doubt (model/review.py: 1 − margin, pulled up on disagreement).
const DOUBTFUL = 0.5;

const $ = (id) => document.getElementById(id);
const labelInfo = (id) => state.labels.find((l) => l.id === id) || { id, zh: id, description: "" };
const labelName = (id) => `${labelInfo(id).zh} ${id}`;
const colour = (id) => COLOURS[id] || "#555";
const tint = (id, alpha) => colour(id) + Math.round(alpha * 255).toString(16).padStart(2, "0");

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// --- talking to the API: errors become readable messages -------------------------------------

class ApiError extends Error {}

async function api(path, body, { admin = false, method } = {}) {
  let response;
  const headers = {};
  const token = admin && $("admin-token").value.trim();
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    // a FormData (a report file) goes as multipart/form-data, with the boundary the browser sets
    response = await fetch(path, body === undefined ? { method: method || "GET", headers } : body instanceof FormData ? { method: "POST", body, headers } : {
      method: "POST", headers: { ...headers, "content-type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(`无法连接服务 Cannot reach the service (${error.message})`);
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(explain(response.status, data));
  return data;
}

function explain(status, data) {
  const detail = (data && data.detail) || `HTTP ${status}`;
  const what = {
    400: "请求格式有误 Malformed request", 401: "需要管理口令 The admin token is needed", 409: "正在训练 Busy",
    413: "内容超出限制 Over the limit", 415: "请求类型有误 Wrong content type",
    422: "输入有误 The input was refused", 503: "模型尚未就绪 The model is not ready", 500: "服务内部错误 Internal error",
  }[status] || `请求失败 Request failed (${status})`;
  return `${what}: ${detail}`;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

// --- labels, model, tabs, threshold ---------------------------------------------------------

async function start() {
  try {
    state.labels = (await api("/v1/labels")).labels;
  } catch (error) {
    showError(error.message);
  }
  renderLegend();
  try {
    const model = await api("/v1/model");
    $("model-status").textContent = `模型 Model: ${model.model} (${model.kind})`;
    $("model-status").dataset.ready = "true";
    state.maxParagraphs = model.limits.max_paragraphs;
    countParagraphs();
    // Scores mean what they say only for a model calibrated at training time (model/calibration.py).
    const calibration = (model.held_out_metrics || {}).calibration;
    $("calibration").textContent = calibration
      ? `分数已校准 calibrated scores (T = ${calibration.temperature.toFixed(2)}, held-out ECE ${calibration.ece_before.toFixed(3)} → ${calibration.ece_after.toFixed(3)})`
      : "分数未校准 this model's scores are not calibrated";
  } catch (error) {
    $("model-status").textContent = error.message;
  }
  followRetrain();  // a retrain started earlier (or elsewhere) shows where it stands
}

function renderLegend() {
  $("legend").replaceChildren(...state.labels.map((l) =>
    el("li", { title: l.description }, el("span", { class: "chip", style: { background: colour(l.id) } }), labelName(l.id))));
}

for (const button of document.querySelectorAll(".tabs button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".tabs button")) {
      other.setAttribute("aria-selected", String(other === button));
      $(other.dataset.tab).hidden = other !== button;
    }
    showError("");
  });
}

$("min-score").addEventListener("input", (event) => {
  state.minScore = Number(event.target.value);
  $("min-score-value").textContent = state.minScore.toFixed(2);
  markUncertain();
});

// The same rule as the API's `uncertain` (model/calibration.py: is_uncertain): score below the threshold.
const isUncertain = (score) => score < state.minScore;

function markUncertain() {
  if (state.report) {
    for (const node of document.querySelectorAll("#report-view .para")) {
      node.classList.toggle("uncertain", isUncertain(state.report.paragraphs[Number(node.dataset.index)].score));
    }
  }
  for (const row of document.querySelectorAll("#paragraphs-result tbody tr")) {
    row.classList.toggle("uncertain", isUncertain(Number(row.dataset.score)));
  }
}

// --- the whole report -----------------------------------------------------------------------

function defaultReportId(text, fileName) {
  if (fileName) {
    const stem = fileName.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9\u3400-\u4dbf\u4e00-\u9fff._-]+/g, "-").replace(/^[.\-_]+/, "");
    if (REPORT_ID.test(stem)) return stem;
  }
  let hash = 0x811c9dc5;  // FNV-1a: the same text gets the same id, so its corrections share one file
  for (const ch of text) hash = Math.imul(hash ^ ch.codePointAt(0), 0x01000193) >>> 0;
  return `report-${hash.toString(16).padStart(8, "0")}`;
}

// The file goes to the service as it is: the service reads any encoding of Chinese text, web
// pages, PDF and .docx (renda/readers.py), and says what it read.
$("report-file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("min_score", String(state.minScore));
  const textOf = (report) => report.paragraphs.map((p) => p.text).join("\n");
  const report = await runReport(form, (answer) => defaultReportId(textOf(answer), file.name));
  if (!report) return;
  $("report-text").value = textOf(report);  // what was read: labelling it again gives the same paragraphs
  $("report-id").value = state.reportId;
  const read = report.read;
  $("report-status").textContent += ` · ${read.name}: ${read.format}${read.encoding ? ` (${read.encoding})` : ""}`;
  $("report-status").dataset.read = read.format;
  event.target.value = "";  // the same file may be opened again
});

$("report-form").addEventListener("submit", (event) => {
  event.preventDefault();
  labelReport();
});

async function labelReport() {
  const text = $("report-text").value;
  showError("");
  if (!text.trim()) {
    showError("请先粘贴报告或打开文件 Paste a report or open a file first");
    return;
  }
  const reportId = $("report-id").value.trim() || defaultReportId(text);
  if (!REPORT_ID.test(reportId)) {
    showError(`报告编号不可用 Report id "${reportId}": use 1 to 100 letters, digits, Chinese characters, '.', '_' or '-', not starting with '.'`);
    return;
  }
  $("report-id").value = reportId;
  await runReport({ text, min_score: state.minScore }, () => reportId);
}

// POST /v1/reports (JSON text or a file) and show the answer under the report id `idOf(answer)`;
// null when it failed (the error is shown).
async function runReport(body, idOf) {
  showError("");
  $("report-status").textContent = "标注中… Labelling…";
  delete $("report-status").dataset.read;
  $("report-submit").disabled = true;
  try {
    const report = await api("/v1/reports", body);
    state.report = report;
    state.reportId = idOf(report);
    loadCorrections();
    renderReport();
    $("report-text").rows = 4;  // the report itself is below now: the box only needs to stay reachable
    $("report-status").textContent = `${report.paragraphs.length} 段 paragraphs · ${report.sections.length} 部分 sections · ${report.model}`;
    return report;
  } catch (error) {
    showError(error.message);
    $("report-status").textContent = "";
    return null;
  } finally {
    $("report-submit").disabled = false;
  }
}

const shownLabel = (i) => state.corrections.get(i) || state.report.paragraphs[i].section_label;

function renderReport() {
  const view = $("report-view");
  state.explained = new Map();
  view.replaceChildren(...state.report.paragraphs.map((p, i) => paragraphNode(p, i)));
  $("report-result").hidden = false;
  state.doubtOrder = state.report.paragraphs.map((p, i) => i).filter((i) => !state.report.paragraphs[i].is_heading)
    .sort((a, b) => state.report.paragraphs[b].doubt - state.report.paragraphs[a].doubt || a - b);
  state.doubtAt = -1;
  $("next-doubtful").disabled = !state.doubtOrder.length;
  $("doubt-position").textContent = `${state.doubtOrder.filter((i) => state.report.paragraphs[i].doubt >= DOUBTFUL).length} 段存疑 doubtful`;
  renderSummary();
}

// Smooth scrolling, unless the reader's system asks for less motion.
const scrolling = () => (window.matchMedia("(prefers-reduced-motion: reduce)").matches ? "auto" : "smooth");

// "Next doubtful" (button or key n): the paragraphs in order of doubt, most doubtful first.
function nextDoubtful() {
  if (!state.doubtOrder.length) return;
  state.doubtAt = (state.doubtAt + 1) % state.doubtOrder.length;
  const i = state.doubtOrder[state.doubtAt];
  for (const node of document.querySelectorAll("#report-view .para.current")) node.classList.remove("current");
  const node = document.querySelector(`#report-view .para[data-index="${i}"]`);
  node.classList.add("current");
  node.scrollIntoView({ behavior: scrolling(), block: "center" });
  node.focus({ preventScroll: true });
  $("doubt-position").textContent = `${state.doubtAt + 1} / ${state.doubtOrder.length} · 存疑度 doubt ${state.report.paragraphs[i].doubt.toFixed(2)}`;
}

$("next-doubtful").addEventListener("click", nextDoubtful);
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement && document.activeElement.tagName);
  if (event.key === "n" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey && state.report) nextDoubtful();
});

function paragraphNode(p, i) {
  // Headings as headings: h2 for a part or section heading, deeper ones smaller.
  const tag = p.is_heading ? `h${Math.min(1 + Math.max(p.heading_path.length, 1), 5)}` : "p";
  const label = shownLabel(i);
  const node = el(tag, {
    class: "para", tabindex: "0", dataset: { index: String(i), label },
    style: { borderLeftColor: colour(label), background: tint(label, 0.1) },
  }, el("span", { class: "tag", style: { background: colour(label) } }, labelName(label)), p.text);
  node.classList.toggle("corrected", state.corrections.has(i));
  node.classList.toggle("uncertain", isUncertain(p.score));
  node.classList.toggle("doubtful", !p.is_heading && p.doubt >= DOUBTFUL);
  node.dataset.doubt = p.doubt.toFixed(4);
  node.addEventListener("mouseenter", (event) => {
    showTooltip(event, reportTooltip(i));
    if (!p.is_heading) explainParagraph(i, node);
  });
  node.addEventListener("mousemove", moveTooltip);
  node.addEventListener("mouseleave", hideTooltip);
  node.addEventListener("click", () => openPicker(node, i));
  if (state.explained.has(i)) state.explained.get(i).then((a) => a && a.reason && a.reason.kind === "sentence" && showReason(i, node, a.reason));
  node.addEventListener("keydown", (event) => { if (event.key === "Enter") openPicker(node, i); });
  return node;
}

// The reason for a paragraph's label (POST /v1/explain, asked once per paragraph, on hover): the
// sentence or heading whose removal moves its score most, highlighted and named in the tooltip.
async function explainParagraph(i, node) {
  if (!state.explained.has(i)) {
    const p = state.report.paragraphs[i];
    state.explained.set(i, api("/v1/explain", { text: p.text, heading_path: p.heading_path, label: p.label }).catch(() => null));
  }
  const answer = await state.explained.get(i);
  if (!answer) return;
  showReason(i, node, answer.reason);
}

function showReason(i, node, reason) {
  const p = state.report.paragraphs[i];
  const tip = $("tooltip");
  if (!reason) {  // one sentence and no heading: nothing to leave out, the paragraph is its own reason
    if (!tip.hidden && Number(tip.dataset.index) === i && !tip.querySelector(".reason-line")) {
      tip.append(el("div", { class: "reason-line" }, "理由 Reason: 整段 the paragraph as a whole (one sentence, no heading)"));
    }
    return;
  }
  if (reason.kind === "sentence" && !node.querySelector("mark.reason")) {
    const text = p.text;
    const at = reason.start, end = reason.start + reason.text.length;
    node.lastChild.replaceWith(text.slice(0, at), el("mark", { class: "reason" }, text.slice(at, end)), text.slice(end));
  }
  if (!tip.hidden && Number(tip.dataset.index) === i && !tip.querySelector(".reason-line")) {
    const where = reason.kind === "sentence" ? "句 sentence" : "标题 heading";
    tip.append(el("div", { class: "reason-line" }, `理由 Reason (${where}, ${reason.effect >= 0 ? "+" : ""}${reason.effect.toFixed(2)}): `,
      el("mark", {}, reason.text)));
  }
}

function refreshParagraph(i) {
  const old = document.querySelector(`#report-view .para[data-index="${i}"]`);
  old.replaceWith(paragraphNode(state.report.paragraphs[i], i));
}

function renderSummary() {
  renderOutline();
  renderChart();
  renderCorrections();
}

function renderOutline() {
  $("outline").replaceChildren(...state.report.sections.map((s, n) => {
    const heading = s.heading || (n === 0 ? "（开头 preamble）" : "（结尾 closing）");
    const corrected = [...state.corrections.keys()].filter((i) => i >= s.first && i <= s.last).length;
    return el("li", {
      style: { borderLeftColor: colour(s.label), background: tint(s.label, 0.08) }, title: s.reason || SOURCES[s.source] || s.source,
      class: s.doubt >= DOUBTFUL ? "doubtful" : "", dataset: { doubt: s.doubt.toFixed(4) },
      onclick: () => document.querySelector(`#report-view .para[data-index="${s.first}"]`).scrollIntoView({ behavior: scrolling(), block: "start" }),
    }, heading, el("br"), el("span", { class: "meta" },
      `${labelName(s.label)} · ${s.last - s.first + 1} 段 · ${s.source} · 存疑 ${s.doubt.toFixed(2)}${corrected ? ` · ✎ ${corrected}` : ""}`));
  }));
}

// Paragraphs and characters per label (as shown: the section labels, with corrections), as inline SVG.
function renderChart() {
  const counts = {}, chars = {};
  for (const l of state.labels) { counts[l.id] = 0; chars[l.id] = 0; }
  state.report.paragraphs.forEach((p, i) => {
    const label = shownLabel(i);
    counts[label] = (counts[label] || 0) + 1;
    chars[label] = (chars[label] || 0) + [...p.text].length;
  });
  const ids = state.labels.map((l) => l.id);
  const maxCount = Math.max(1, ...Object.values(counts)), maxChars = Math.max(1, ...Object.values(chars));
  const NS = "http://www.w3.org/2000/svg", row = 30, left = 96, width = 200, height = ids.length * row + 24;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 340 ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "paragraphs and characters per label");
  const add = (tag, attrs, text) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    svg.append(node);
    return node;
  };
  ids.forEach((id, n) => {
    const y = n * row + 4;
    add("text", { x: 0, y: y + 15 }, labelInfo(id).zh);
    add("rect", { x: left, y, width: Math.max(1, (counts[id] / maxCount) * width), height: 11, fill: colour(id),
                  class: "bar-paragraphs", "data-label": id, "data-value": counts[id] });
    add("text", { x: left + (counts[id] / maxCount) * width + 4, y: y + 10 }, `${counts[id]} 段`);
    add("rect", { x: left, y: y + 13, width: Math.max(1, (chars[id] / maxChars) * width), height: 7, fill: tint(id, 0.45),
                  class: "bar-characters", "data-label": id, "data-value": chars[id] });
    add("text", { x: left + (chars[id] / maxChars) * width + 4, y: y + 20, "font-size": 9 }, `${chars[id]} 字`);
  });
  add("text", { x: left, y: height - 4, "font-size": 9, fill: "#667085" }, "深色：段落数 paragraphs · 浅色：字数 characters");
  $("chart").replaceChildren(svg);
}

// --- hover: scores and what decided ----------------------------------------------------------

function scoreTable(scores) {
  const rows = Object.entries(scores).sort((a, b) => b[1] - a[1]);
  return el("table", {}, rows.map(([id, value]) => el("tr", {},
    el("td", {}, labelName(id)),
    el("td", {}, el("span", { class: "bar", style: { width: `${Math.round(value * 90)}px`, background: colour(id) } })),
    el("td", {}, value.toFixed(3)))));
}

function sectionOf(i) {
  return state.report.sections.find((s) => i >= s.first && i <= s.last);
}

function reportTooltip(i) {
  const p = state.report.paragraphs[i];
  const section = sectionOf(i);
  $("tooltip").dataset.index = String(i);
  const parts = [
    el("div", {}, "所在部分 Section label: ", el("b", {}, labelName(p.section_label))),
    el("div", {}, el("small", {}, `由 decided by: ${section ? section.reason : (SOURCES[p.source] || p.source)} (source: ${p.source})`)),
    el("div", {}, `存疑度 Doubt: ${p.doubt.toFixed(2)}${p.doubt >= DOUBTFUL ? " — 请核对 check it" : ""}`),
    el("div", {}, "本段 Paragraph alone: ", el("b", {}, labelName(p.label)), ` ${p.score.toFixed(3)}`,
       isUncertain(p.score) ? " — 低置信 uncertain" : ""),
    scoreTable(p.scores),
    el("div", {}, el("small", {}, `标题路径 heading path: ${p.heading_path.join(" › ") || "—"} · windows ${p.windows}`)),
  ];
  if (state.corrections.has(i)) parts.unshift(el("div", {}, "✎ 已更正为 corrected to: ", el("b", {}, labelName(state.corrections.get(i)))));
  return parts;
}

function showTooltip(event, content) {
  const tip = $("tooltip");
  tip.replaceChildren(...content);
  tip.hidden = false;
  moveTooltip(event);
}

function moveTooltip(event) {
  const tip = $("tooltip");
  const x = Math.min(event.clientX + 16, window.innerWidth - tip.offsetWidth - 8);
  const y = event.clientY + 16 + tip.offsetHeight > window.innerHeight ? event.clientY - tip.offsetHeight - 12 : event.clientY + 16;
  tip.style.left = `${Math.max(8, x)}px`;
  tip.style.top = `${Math.max(8, y)}px`;
}

function hideTooltip() { $("tooltip").hidden = true; }

// --- corrections: pick a label, keep, export, store ------------------------------------------

function openPicker(node, i) {
  hideTooltip();
  const picker = $("picker");
  const current = shownLabel(i);
  const choose = (label) => {
    if (label === null) state.corrections.delete(i);
    else state.corrections.set(i, label);
    closePicker();
    keepCorrections();
    refreshParagraph(i);
    renderSummary();
  };
  picker.replaceChildren(
    el("div", { class: "title" }, `第 ${i + 1} 段 paragraph ${i + 1}: 选择标签 choose its label`),
    ...state.labels.map((l) => el("button", {
      type: "button", role: "menuitem", class: l.id === current ? "current" : "", dataset: { label: l.id },
      onclick: () => choose(l.id),
    }, el("span", { class: "chip", style: { background: colour(l.id) } }), labelName(l.id))),
    ...(state.corrections.has(i) ? [el("button", { type: "button", role: "menuitem", dataset: { label: "" }, onclick: () => choose(null) },
      "↺ 撤销更正 undo the correction")] : []),
  );
  const box = node.getBoundingClientRect();
  picker.style.left = `${window.scrollX + Math.min(box.left + 40, window.innerWidth - 260)}px`;
  picker.style.top = `${window.scrollY + box.bottom + 4}px`;
  picker.hidden = false;
  picker.querySelector("button").focus();
}

function closePicker() { $("picker").hidden = true; }

document.addEventListener("click", (event) => {
  if (!$("picker").hidden && !event.target.closest("#picker") && !event.target.closest(".para")) closePicker();
});
document.addEventListener("keydown", (event) => { if (event.key === "Escape") closePicker(); });

// Corrections live in the page and in localStorage (per report id), so a reload keeps them.
const storageKey = () => `renda-corrections:${state.reportId}`;

function loadCorrections() {
  state.corrections = new Map();
  state.saved = new Map();
  try {
    const kept = JSON.parse(localStorage.getItem(storageKey()) || "null");
    // Only when the stored corrections were made on this very text (same paragraphs, same order).
    if (kept && kept.paragraphs === state.report.paragraphs.length) {
      for (const [i, label, text] of kept.rows) {
        if (state.report.paragraphs[i] && state.report.paragraphs[i].text === text) state.corrections.set(i, label);
      }
      for (const [i, label] of kept.saved || []) state.saved.set(i, label);
    }
  } catch (error) { /* storage unavailable: corrections live in the page only */ }
}

function keepCorrections() {
  try {
    localStorage.setItem(storageKey(), JSON.stringify({
      paragraphs: state.report.paragraphs.length,
      rows: [...state.corrections].map(([i, label]) => [i, label, state.report.paragraphs[i].text]),
      saved: [...state.saved],
    }));
  } catch (error) { /* as above */ }
}

// A correction as a training row: the project's record format (renda/records.py).
function record(i) {
  const p = state.report.paragraphs[i];
  return {
    report_id: state.reportId, text: p.text, label: state.corrections.get(i),
    heading: p.heading_path.length ? p.heading_path[p.heading_path.length - 1] : "",  // the nearest heading above
    heading_path: p.heading_path, is_heading: p.is_heading, position: p.index,
  };
}

const correctionIndices = () => [...state.corrections.keys()].sort((a, b) => a - b);

function renderCorrections() {
  const indices = correctionIndices();
  $("correction-count").textContent = String(indices.length);
  $("correction-list").replaceChildren(...indices.map((i) => {
    const p = state.report.paragraphs[i], label = state.corrections.get(i);
    const same = label === p.section_label ? " (确认 confirmed)" : ` (原 was ${labelInfo(p.section_label).zh})`;
    const stored = state.saved.get(i) === label ? " ✓" : "";
    return el("li", { dataset: { index: String(i) } }, `#${i + 1} ${[...p.text].slice(0, 14).join("")}… → ${labelName(label)}${same}${stored}`);
  }));
  for (const id of ["export", "save", "clear"]) $(id).disabled = indices.length === 0;
}

$("export").addEventListener("click", () => {
  const lines = correctionIndices().map((i) => JSON.stringify(record(i))).join("\n") + "\n";
  const link = el("a", { href: URL.createObjectURL(new Blob([lines], { type: "application/jsonl" })), download: `${state.reportId}.jsonl` });
  document.body.append(link);
  link.click();
  link.remove();
  $("save-status").textContent = `已导出 exported ${state.corrections.size} rows → ${state.reportId}.jsonl`;
});

$("save").addEventListener("click", async () => {
  // Only what changed since the last save: the server's file is append-only (the latest row wins in training).
  const pending = correctionIndices().filter((i) => state.saved.get(i) !== state.corrections.get(i));
  if (!pending.length) {
    $("save-status").textContent = "没有新的更正 Nothing new to save";
    return;
  }
  $("save").disabled = true;
  try {
    const result = await api("/v1/corrections", { records: pending.map(record) }, { admin: true });
    for (const i of pending) state.saved.set(i, state.corrections.get(i));
    keepCorrections();
    renderCorrections();
    $("save-status").textContent = `已保存 saved ${result.stored} rows → ${state.reportId}.jsonl`;
    $("save-status").dataset.saved = String(result.stored);
  } catch (error) {
    showError(error.message);
  } finally {
    $("save").disabled = state.corrections.size === 0;
  }
});

// --- retrain on corrections: start, follow, and show the new model beside the old -------------

function heldOut(summary) {
  const m = summary && summary.held_out_metrics;
  const f1 = m && (m.macro_f1 ?? (m.report && m.report.macro_f1));
  return typeof f1 === "number" ? `held-out macro-F1 ${f1.toFixed(3)}` : "no held-out figure";
}

function showRetrain(state_) {
  const box = $("retrain-status");
  box.dataset.status = state_.status;
  if (state_.status === "running") {
    const epoch = state_.epoch ? `epoch ${state_.epoch}${state_.epochs ? ` / ${state_.epochs}` : ""}` : "starting";
    const dev = typeof state_.dev_macro_f1 === "number" ? ` · dev macro-F1 ${state_.dev_macro_f1.toFixed(3)}` : "";
    box.textContent = `训练中 Training (${state_.phase || "training"}): ${epoch}${dev} · ${(state_.minutes || 0).toFixed(1)} min`;
  } else if (state_.status === "done") {
    box.replaceChildren(`已切换 Now serving ${state_.new.model} (${heldOut(state_.new)}); before: ${state_.old.model} (${heldOut(state_.old)}) · ${state_.minutes.toFixed(1)} min`);
    box.dataset.model = state_.new.model;
    $("model-status").textContent = `模型 Model: ${state_.new.model}`;
  } else if (state_.status === "failed") {
    box.textContent = `训练失败 Retrain failed: ${state_.message}`;
  } else {
    box.textContent = "";
  }
  $("retrain").disabled = state_.status === "running";
}

async function followRetrain() {
  for (;;) {
    let current;
    try {
      current = await api("/v1/retrain");
    } catch (error) {
      showError(error.message);
      return;
    }
    showRetrain(current);
    if (current.status !== "running") return;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

$("retrain").addEventListener("click", async () => {
  showError("");
  try {
    showRetrain(await api("/v1/retrain", undefined, { admin: true, method: "POST" }));
    followRetrain();
  } catch (error) {
    showError(error.message);
  }
});

$("clear").addEventListener("click", () => {
  const changed = correctionIndices();
  state.corrections.clear();
  keepCorrections();
  for (const i of changed) refreshParagraph(i);
  renderSummary();
  $("save-status").textContent = "";
});

// --- pasted paragraphs, one per line ---------------------------------------------------------

const pastedLines = () => $("paragraphs-text").value.split(/\r?\n/).map((line) => line.trim()).filter(Boolean);

// The count as it is typed, against the service's limit (GET /v1/model): a paste too long for one
// request is caught here, before it is sent and refused.
function countParagraphs() {
  const count = pastedLines().length, max = state.maxParagraphs;
  const over = max !== undefined && count > max;
  $("paragraphs-count").textContent = String(count);
  $("paragraphs-limit").textContent = max === undefined ? "" : over
    ? ` · 超过上限 ${max}，请分批 over the limit of ${max} a request: split it`
    : ` · 上限 ${max} up to ${max} a request`;
  $("paragraphs-limit").classList.toggle("over", over);
  $("paragraphs-submit").disabled = over;
}

$("paragraphs-text").addEventListener("input", countParagraphs);

$("paragraphs-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  showError("");
  const lines = pastedLines();
  if (!lines.length) {
    showError("请每行粘贴一段 Paste one paragraph per line first");
    return;
  }
  $("paragraphs-status").textContent = "标注中… Labelling…";
  try {
    const result = await api("/v1/classify", { paragraphs: lines, top_k: 3, min_score: state.minScore });
    renderParagraphs(lines, result.results);
    $("paragraphs-status").textContent = `${lines.length} 段 paragraphs · ${result.model}`;
  } catch (error) {
    showError(error.message);
    $("paragraphs-status").textContent = "";
  }
});

function renderParagraphs(lines, results) {
  const body = $("paragraphs-result").querySelector("tbody");
  body.replaceChildren(...results.map((r, n) => {
    const row = el("tr", { dataset: { label: r.label, score: String(r.score) } },
      el("td", {}, String(n + 1)),
      el("td", { class: "text", style: { borderLeftColor: colour(r.label), background: tint(r.label, 0.08) } }, lines[n]),
      el("td", {}, el("span", { class: "label-pill", style: { background: colour(r.label) } }, labelName(r.label))),
      el("td", { class: "score" }, r.score.toFixed(3)),
      el("td", { class: "muted" }, r.top.slice(1).map(([id, value]) => `${labelInfo(id).zh} ${value.toFixed(2)}`).join(" · ")));
    row.classList.toggle("uncertain", isUncertain(r.score));
    row.addEventListener("mouseenter", (event) => showTooltip(event, [
      el("div", {}, el("b", {}, labelName(r.label)), ` ${r.score.toFixed(3)}`, isUncertain(r.score) ? " — 低置信 uncertain" : ""),
      scoreTable(r.scores)]));
    row.addEventListener("mousemove", moveTooltip);
    row.addEventListener("mouseleave", hideTooltip);
    return row;
  }));
  $("paragraphs-result").hidden = false;
}

start();
