// funduslab web page: pick a model, drop fundus photographs, read probabilities and CAMs.
// Plain browser JavaScript, no libraries; it talks only to this server's /api routes.
"use strict";

const state = { models: [], limits: null, accepted: [] };
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function fmt(x, digits = 3) {
  return typeof x === "number" && isFinite(x) ? x.toFixed(digits) : "–";
}

async function apiError(response) {
  // The server answers every refusal as {"error": "..."}; anything else gets a plain line.
  try {
    const body = await response.json();
    if (body && body.error) return body.error;
  } catch (_) { /* not JSON */ }
  return `the server answered ${response.status} ${response.statusText}`;
}

function currentModel() {
  return state.models[Number($("model-select").value)] || state.models[0];
}

function setStatus(text) { $("status").textContent = text || ""; }

function renderCard(model) {
  const box = $("model-card");
  box.replaceChildren();
  box.classList.add("model-card");
  if (!model) { box.append(el("p", "error", "No model is served.")); return; }
  box.append(el("h2", null, `${model.name}`));
  const grid = el("div", "model-grid");
  const facts = el("dl");
  const add = (k, v) => { facts.append(el("dt", null, k), el("dd", null, v)); };
  add("task", model.task);
  add("kind", model.kind);
  add("backbone", model.backbone);
  add("labels", model.labels.join(", "));
  add("input", `${model.image_size} px, preprocessing '${model.preprocess}'` +
      (model.tta ? ", flip TTA" : ""));
  if (model.thresholds.length) {
    add("thresholds", model.thresholds.map((t) => fmt(t, 2)).join(" / "));
  }
  add("CAM", model.cam ? "available" : (model.cam_note || "unavailable"));
  const metrics = model.metrics;
  if (metrics && metrics.figures.length) {
    const text = metrics.figures.map((f) => {
      const ci = (f.ci_low !== undefined) ? ` [${fmt(f.ci_low)}, ${fmt(f.ci_high)}]` : "";
      return `${f.label} ${fmt(f.value)}${ci}`;
    }).join("; ");
    add(`${metrics.split}` + (metrics.n ? ` (n=${metrics.n})` : ""),
        `${text} — thresholds ${metrics.thresholds}`);
  } else {
    add("metrics", "not recorded (no metrics.json)");
  }
  const card = el("div");
  card.append(el("h3", null, "Training data"), el("p", null, model.card.training_data));
  card.append(el("h3", null, "Intended use"), el("p", null, model.card.intended_use));
  card.append(el("h3", null, "Limits"));
  const ul = el("ul");
  for (const line of model.card.limits) ul.append(el("li", null, line));
  card.append(ul, el("p", "warning-inline", model.card.not_a_medical_device));
  grid.append(facts, card);
  box.append(grid);
}

async function loadModels() {
  const response = await fetch("/api/models");
  if (!response.ok) {
    $("model-card").replaceChildren(el("p", "error", await apiError(response)));
    return;
  }
  const body = await response.json();
  state.models = body.models;
  state.limits = body.limits;
  const select = $("model-select");
  select.replaceChildren();
  for (const m of state.models) {
    select.append(new Option(`${m.name} — ${m.task}, ${m.backbone}`, String(m.index)));
  }
  $("limits-text").textContent = `At most ${body.limits.max_file_mb} MB per file; type is ` +
    "checked by content. Images stay on this computer.";
  renderCard(currentModel());
}

function barRow(name, p, threshold, decision) {
  const row = el("div", "bar-row");
  row.dataset.label = name;
  const track = el("div", "bar-track");
  const fill = el("div", "bar-fill" + (decision ? " positive" : ""));
  fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
  track.append(fill);
  if (threshold !== null && threshold !== undefined) {
    const mark = el("div", "bar-threshold");
    mark.style.left = `calc(${threshold * 100}% - 1px)`;
    mark.title = `threshold ${fmt(threshold, 2)}`;
    track.append(mark);
  }
  const badge = decision === null ? el("span") :
    el("span", "badge" + (decision ? " positive" : ""), decision ? "positive" : "negative");
  if (decision !== null) badge.title = `decision at threshold ${fmt(threshold, 2)}`;
  row.append(el("span", "bar-label", name), track, el("span", "bar-value", fmt(p)), badge);
  return row;
}

function renderBars(box, result) {
  box.replaceChildren();
  if (result.task === "grading") {
    box.append(el("p", "grade-line", `grade ${result.grade} (score ${fmt(result.score, 2)})`));
    const probs = result.grade_probabilities || {};
    for (const [g, p] of Object.entries(probs)) box.append(barRow(`grade ${g}`, p, null, null));
    return;
  }
  for (const name of result.labels) {
    box.append(barRow(name, result.probabilities[name], result.thresholds[name],
                      result.decisions[name]));
  }
}

function renderCams(node, result) {
  const cams = node.querySelector(".cams");
  cams.replaceChildren();
  const base = `data:image/png;base64,${result.image}`;
  const small = Number(currentModel().image_size) < 96;
  const modelImage = node.querySelector(".model-image");
  modelImage.src = base;
  modelImage.classList.toggle("pixelated", small);
  if (!result.cams) {
    const note = node.querySelector(".cam-note");
    note.textContent = result.cam_note || "No CAMs for this model.";
    note.hidden = false;
    node.querySelector(".opacity").hidden = true;
    return;
  }
  for (const [name, maps] of Object.entries(result.cams)) {
    const fig = el("figure", "view cam-view");
    fig.dataset.label = name;
    const stack = el("div", "stack");
    const under = el("img", small ? "pixelated" : null);
    under.src = base;
    under.alt = `${name}: image`;
    const heat = el("img", "heat" + (small ? " pixelated" : ""));
    heat.src = `data:image/png;base64,${maps.heatmap}`;
    heat.alt = `${name}: Grad-CAM heat map`;
    stack.append(under, heat);
    const p = result.probabilities ? ` p=${fmt(result.probabilities[name], 2)}` : "";
    fig.append(stack, el("figcaption", null, `${name}${p}`));
    cams.append(fig);
  }
  const slider = node.querySelector(".opacity-slider");
  const apply = () => {
    const value = Number(slider.value);
    node.querySelector(".opacity-value").textContent = value.toFixed(2);
    for (const img of node.querySelectorAll("img.heat")) img.style.opacity = String(value);
  };
  slider.addEventListener("input", apply);
  apply();
}

function newResultCard(file) {
  const node = $("result-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".result-name").textContent = file.name;
  node.querySelector(".result-meta").textContent = "waiting…";
  $("results").prepend(node);
  return node;
}

function showError(node, message) {
  node.classList.add("rejected");
  node.querySelector(".result-meta").textContent = "rejected";
  const box = node.querySelector(".result-error");
  box.textContent = message;
  box.hidden = false;
}

async function predictOne(file, model) {
  const node = newResultCard(file);
  const form = new FormData();
  form.append("file", file, file.name);
  node.querySelector(".result-meta").textContent = "predicting…";
  let response;
  try {
    response = await fetch(`/api/predict?model=${encodeURIComponent(model.index)}&cam=true`,
                           { method: "POST", body: form });
  } catch (err) {
    showError(node, `could not reach the server: ${err.message}`);
    return;
  }
  if (!response.ok) { showError(node, await apiError(response)); return; }
  const result = await response.json();
  node.classList.add("done");
  node.querySelector(".result-meta").textContent =
    `${result.model} · ${(result.seconds * 1000).toFixed(0)} ms`;
  node.querySelector(".result-body").hidden = false;
  renderBars(node.querySelector(".bars"), result);
  renderCams(node, result);
  state.accepted.push(file);
  $("csv-button").disabled = state.accepted.length === 0;
}

async function handleFiles(fileList) {
  const files = Array.from(fileList || []);
  if (!files.length) return;
  const model = currentModel();
  if (!model) return;
  for (let i = 0; i < files.length; i++) {
    setStatus(`predicting ${i + 1} of ${files.length}…`);
    await predictOne(files[i], model);  // one at a time: the server queues anyway
  }
  setStatus(`${files.length} file(s) done`);
}

async function downloadCsv() {
  const model = currentModel();
  if (!state.accepted.length || !model) return;
  const form = new FormData();
  for (const file of state.accepted) form.append("files", file, file.name);
  setStatus("preparing the CSV…");
  const response = await fetch(`/api/predict_csv?model=${encodeURIComponent(model.index)}`,
                               { method: "POST", body: form });
  if (!response.ok) { setStatus(`CSV refused: ${await apiError(response)}`); return; }
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const link = el("a");
  link.href = url;
  link.download = `predictions_${model.name}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  setStatus(`CSV of ${state.accepted.length} image(s) downloaded`);
}

function clearResults() {
  $("results").replaceChildren();
  state.accepted = [];
  $("csv-button").disabled = true;
  setStatus("");
}

function wireDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  input.addEventListener("change", () => { handleFiles(input.files); input.value = ""; });
  for (const kind of ["dragenter", "dragover"]) {
    zone.addEventListener(kind, (e) => { e.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const kind of ["dragleave", "drop"]) {
    zone.addEventListener(kind, (e) => { e.preventDefault(); zone.classList.remove("dragging"); });
  }
  zone.addEventListener("drop", (e) => handleFiles(e.dataTransfer.files));
}

document.addEventListener("DOMContentLoaded", () => {
  wireDropZone();
  $("model-select").addEventListener("change", () => {
    renderCard(currentModel());
    clearResults();  // results and the CSV belong to one model
  });
  $("csv-button").addEventListener("click", downloadCsv);
  $("clear-button").addEventListener("click", clearResults);
  loadModels();
});
