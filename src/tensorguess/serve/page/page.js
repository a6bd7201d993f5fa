// serve's page: photos dropped or chosen are each sent to POST /predict and shown with
// their scores as bars; the camera mode sends frames of the webcam, one at a time,
// and draws the top label over the video. Nothing is loaded from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const CAMERA_FRAME_SIDE = 320; // frames are sent at most this wide: the model wants 224 or 299
const CAMERA_MIN_INTERVAL_MS = 50; // at most 20 frames a second, one request at a time

async function predict(body) {
  const response = await fetch("/predict", { method: "POST", body,
    headers: { "Content-Type": body.type || "application/octet-stream" } });
  let answer;
  try { answer = await response.json(); } catch { answer = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text only: a label or a name never becomes HTML
  return node;
}

function drawScores(card, answer) {
  card.dataset.label = answer.label;
  card.dataset.score = answer.score.toFixed(5);
  for (const [label, score] of Object.entries(answer.scores)) { // best first, as the API gives them
    const row = element("div", label === answer.label ? "row best" : "row");
    row.dataset.label = label;
    row.dataset.score = score.toFixed(5);
    row.append(element("span", "label", label));
    const track = element("span", "track");
    const fill = element("span", "fill");
    fill.style.display = "block";
    fill.style.width = `${(score * 100).toFixed(1)}%`;
    track.append(fill);
    row.append(track, element("span", "value", score.toFixed(5)));
    card.append(row);
  }
}

async function scoreFile(file) {
  const card = element("div", "result");
  card.dataset.name = file.name;
  card.dataset.state = "scoring";
  const image = element("img");
  image.alt = file.name;
  image.src = URL.createObjectURL(file);
  card.append(image, element("div", "name", file.name));
  $("results").prepend(card);
  try {
    drawScores(card, await predict(file));
    card.dataset.state = "done";
  } catch (error) {
    card.append(element("div", "error", error.message));
    card.dataset.state = "error";
  }
}

async function scoreFiles(files) {
  for (const file of files) await scoreFile(file); // in turn: the server batches concurrent clients
}

function setUpPhotos() {
  const drop = $("drop");
  $("files").addEventListener("change", (event) => scoreFiles([...event.target.files]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    scoreFiles([...event.dataTransfer.files]);
  });
}

const camera = { stream: null, running: false, times: [] };

async function startCamera() {
  const status = $("camera-status");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status.textContent = "This browser gives no camera here: a page gets the camera only when " +
      "opened at 127.0.0.1 or localhost, or over HTTPS.";
    return;
  }
  try {
    camera.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    status.textContent = `No camera: ${error.message || error.name}`;
    return;
  }
  const video = $("video");
  video.srcObject = camera.stream;
  await video.play();
  status.textContent = "Scoring the camera's frames.";
  camera.running = true;
  cameraLoop();
}

function stopCamera() {
  camera.running = false;
  if (camera.stream) for (const track of camera.stream.getTracks()) track.stop();
  camera.stream = null;
}

function frameBlob(video, canvas) {
  const scale = Math.min(1, CAMERA_FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight));
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function cameraLoop() {
  const video = $("video");
  const canvas = document.createElement("canvas");
  while (camera.running) {
    const started = performance.now();
    if (video.videoWidth > 0) {
      try {
        const answer = await predict(await frameBlob(video, canvas));
        $("camera-label").textContent = answer.label;
        $("camera-score").textContent = answer.score.toFixed(3);
        $("overlay").dataset.label = answer.label;
        const now = performance.now();
        camera.times.push(now);
        camera.times = camera.times.filter((t) => now - t < 2000);
        const fps = camera.times.length > 1 ? (camera.times.length - 1) * 1000 / (now - camera.times[0]) : 0;
        $("camera-fps").textContent = `${fps.toFixed(1)} frames/s`;
        $("camera-fps").dataset.fps = fps.toFixed(2);
      } catch (error) {
        $("camera-status").textContent = `Scoring failed: ${error.message}`;
      }
    }
    const left = CAMERA_MIN_INTERVAL_MS - (performance.now() - started);
    if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
  }
}

function setMode(mode) {
  $("photos").hidden = mode !== "photos";
  $("camera").hidden = mode !== "camera";
  $("mode-photos").classList.toggle("active", mode === "photos");
  $("mode-camera").classList.toggle("active", mode === "camera");
  if (mode === "camera" && !camera.running) startCamera();
  if (mode !== "camera") stopCamera();
}

async function showLabels() {
  try {
    const { labels } = await (await fetch("/labels")).json();
    $("model").textContent = `${labels.length} labels: ${labels.join(", ")}`;
  } catch (error) {
    $("model").textContent = `The labels cannot be read: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpPhotos();
  $("mode-photos").addEventListener("click", () => setMode("photos"));
  $("mode-camera").addEventListener("click", () => setMode("camera"));
  // /#camera opens the camera mode directly (a bookmark for a kiosk).
  const fromHash = () => setMode(location.hash === "#camera" ? "camera" : "photos");
  window.addEventListener("hashchange", fromHash);
  if (location.hash === "#camera") fromHash();
  showLabels();
});
