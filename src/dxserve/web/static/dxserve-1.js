// dxserve web app: the upload with progress, the cine player, the charts, the copy button.
// Loaded as a file (the pages' CSP allows no inline script); data comes from
// <script type="application/json"> blocks.
"use strict";

function csrfToken() {
  try { return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || ""; }
  catch (e) { return ""; }
}

function jsonBlock(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function setUpUpload() {
  const form = document.getElementById("upload");
  if (!form) return;
  const input = document.getElementById("file");
  const drop = document.getElementById("drop");
  const progress = document.getElementById("progress");
  const status = document.getElementById("upload-status");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    input.files = e.dataTransfer.files;
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const data = new FormData();
    for (const file of input.files) data.append("file", file, file.name);
    const model = document.getElementById("model").value;
    if (model) data.append("model", model);
    const explain = document.getElementById("explain").checked;
    const request = new XMLHttpRequest();
    request.open("POST", "/studies" + (explain ? "?explain=true" : ""));
    request.setRequestHeader("X-CSRF-Token", csrfToken());
    request.upload.addEventListener("progress", (p) => {
      if (p.lengthComputable) progress.value = Math.round((100 * p.loaded) / p.total);
    });
    request.upload.addEventListener("load", () => { status.textContent = "Uploaded; diagnosing…"; });
    request.addEventListener("load", () => {
      let answer = {};
      try { answer = JSON.parse(request.responseText); } catch (err) { answer = {}; }
      if (request.status === 201 && answer.location) {
        window.location.assign(answer.location);
      } else {
        status.textContent = "Not diagnosed: " + (answer.detail || "error " + request.status);
        status.classList.add("error");
      }
    });
    request.addEventListener("error", () => { status.textContent = "The upload failed: check the connection."; });
    status.classList.remove("error");
    status.textContent = "Uploading…";
    request.send(data);
  });
}

function setUpPlayer() {
  const player = document.getElementById("player");
  if (!player) return;
  const canvas = document.getElementById("frame");
  const context = canvas.getContext("2d");
  const slider = document.getElementById("frame-slider");
  const number = document.getElementById("frame-number");
  const play = document.getElementById("play");
  const overlay = document.getElementById("overlay");
  const toggle = document.getElementById("show-overlay");
  const opacity = document.getElementById("opacity");
  const count = Number(player.dataset.frames) || 1;
  const explained = Number(player.dataset.explainedFrame);
  const strip = new Image();
  let current = 0;
  let timer = null;

  function draw(index) {
    current = index;
    const height = strip.naturalHeight / count;
    context.drawImage(strip, 0, index * height, strip.naturalWidth, height, 0, 0, canvas.width, canvas.height);
    slider.value = String(index);
    number.textContent = String(index + 1) + " / " + String(count);
    canvas.setAttribute("aria-label", "Study frame " + (index + 1) + " of " + count);
    if (overlay) overlay.hidden = !(toggle.checked && index === explained);
  }
  function stop() {
    if (timer) clearInterval(timer);
    timer = null;
    play.textContent = "Play";
    play.setAttribute("aria-pressed", "false");
  }
  strip.addEventListener("load", () => {
    canvas.width = strip.naturalWidth;
    canvas.height = strip.naturalHeight / count;
    draw(0);
  });
  strip.src = player.dataset.cine;
  slider.addEventListener("input", () => { stop(); draw(Number(slider.value)); });
  play.addEventListener("click", () => {
    if (timer) { stop(); return; }
    play.textContent = "Pause";
    play.setAttribute("aria-pressed", "true");
    timer = setInterval(() => draw((current + 1) % count), 50);
  });
  if (overlay) {
    overlay.src = player.dataset.explanation;
    overlay.style.opacity = String(Number(opacity.value) / 100);
    opacity.addEventListener("input", () => { overlay.style.opacity = String(Number(opacity.value) / 100); });
    toggle.addEventListener("change", () => {
      if (toggle.checked) { stop(); draw(explained); } else { overlay.hidden = true; }
    });
  }
}

function chartWidth(node) {
  return Math.max(280, Math.min(900, node.clientWidth || 600));
}

function setUpFrameChart() {
  const node = document.getElementById("chart");
  const data = jsonBlock("chart-data");
  if (!node || !data || typeof uPlot === "undefined") return;
  const threshold = data.frames.map(() => data.threshold);
  const refused = data.probabilities.map((p, i) => (data.refused[i] ? p : null));
  const frames = data.frames.map((i) => i + 1);  // numbered from 1, as the player counts
  const options = {
    width: chartWidth(node), height: 240,
    scales: { x: { time: false }, y: { range: [0, 1] } },
    axes: [{ label: "frame", incrs: [1, 2, 5, 10, 20, 50] }, { label: "probability" }],
    series: [
      { label: "frame" },
      { label: "probability", stroke: "#0b5cad", width: 2 },
      { label: "threshold", stroke: "#8a3b00", dash: [6, 4] },
      { label: "refused by the guard", stroke: "#a40000", width: 0, points: { show: true, size: 9 } },
    ],
  };
  new uPlot(options, [frames, data.probabilities, threshold, refused], node);
}

function setUpUsageChart() {
  const node = document.getElementById("usage-chart");
  const data = jsonBlock("usage-data");
  if (!node || !data || typeof uPlot === "undefined") return;
  const xs = data.days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
  const colours = ["#0b5cad", "#1d6b2a", "#8a3b00", "#6b2a8a", "#a40000"];
  const names = Object.keys(data.series);
  const series = [{ label: "day" }].concat(names.map((name, i) => ({ label: name, stroke: colours[i % colours.length], width: 2 })));
  const options = { width: chartWidth(node), height: 240, scales: { y: { range: [0, null] } }, axes: [{}, { label: data.metric }], series: series };
  new uPlot(options, [xs].concat(names.map((n) => data.series[n])), node);
}

function setUpCopy() {
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      field.select();
      try { await navigator.clipboard.writeText(field.value); button.textContent = "Copied"; }
      catch (e) { button.textContent = "Select and copy (Ctrl+C)"; }
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpUpload();
  setUpPlayer();
  setUpFrameChart();
  setUpUsageChart();
  setUpCopy();
});
