// serve's page: photos dropped or chosen are each sent to POST /predict and shown with
// their scores as bars (a points model's: its box and points listed); the camera mode sends
// frames of the webcam, one at a time, and draws the top label, or the box, the points and the
// skeleton, over the video. Nothing is loaded from anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);
const CAMERA_FRAME_SIDE = 320; // a points model's frames are sent at most this wide
// A two-stage points model tracks, as MediaPipe's hand landmarker does: a frame is sent with the
// last answer's next_box (the model's crop rule around its points), so only the points stage runs;
// every LOCATE_EVERY-th frame, and after any failure, the locate stage finds the object again.
const LOCATE_EVERY = 10;

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

function drawPointRows(card, answer) {
  card.dataset.score = answer.score === null ? "" : answer.score.toFixed(5);
  const [x, y, w, h] = answer.box;
  card.append(element("div", "row box", `box ${x.toFixed(0)}, ${y.toFixed(0)}, ${w.toFixed(0)} x ${h.toFixed(0)}`));
  for (const point of answer.keypoints) {
    const row = element("div", "row point");
    row.dataset.name = point.name;
    row.append(element("span", "label", point.name),
      element("span", "where", `${point.x.toFixed(0)}, ${point.y.toFixed(0)}`),
      element("span", "value", point.score === null ? "-" : point.score.toFixed(2)));
    card.append(row);
  }
}

function drawScores(card, answer) {
  if (answer.keypoints) { drawPointRows(card, answer); return; }
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

// The camera: each new video frame is drawn into a canvas at the model's input size (a classes
// model's, squashed as the pipeline squashes a photo; a points model's frame at most
// CAMERA_FRAME_SIDE wide) and its pixels are POSTed as they are to /predict/frame, one frame at a
// time: no JPEG to encode here nor to decode there (docs/benchmarks.md measured why).
// `generation` numbers each start: whatever resolves for an older one (a stream the browser gave
// late, an answer for a frame of a camera since stopped) is stopped or dropped, never shown.
const camera = { stream: null, wanted: false, generation: 0, frames: 0, times: [], failing: false,
  box: null, tracked: 0 };
let model = { kind: "classes", labels: [], frame: null, skeleton: [] };

function stopTracks(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

async function startCamera() {
  if (camera.wanted) return; // on, or being asked for: one stream at most
  camera.wanted = true;
  const generation = ++camera.generation;
  const status = $("camera-status");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    status.textContent = "This browser gives no camera here: a page gets the camera only when " +
      "opened at 127.0.0.1 or localhost, or over HTTPS.";
    camera.wanted = false;
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    if (generation === camera.generation) {
      status.textContent = `No camera: ${error.message || error.name}`;
      camera.wanted = false;
    }
    return;
  }
  if (generation !== camera.generation) { stopTracks(stream); return; } // left camera mode meanwhile
  camera.stream = stream;
  const video = $("video");
  video.srcObject = stream;
  try { await video.play(); } catch { /* stopped meanwhile: the check below ends it */ }
  if (generation !== camera.generation) return;
  status.textContent = "Scoring the camera's frames.";
  camera.frames = 0;
  camera.times = [];
  cameraLoop(generation);
}

function clearAnswer() {
  $("camera-label").textContent = "\u00a0";
  $("camera-score").textContent = "";
  delete $("overlay").dataset.label;
  const canvas = $("points");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  $("points-list").replaceChildren();
}

function stopCamera() {
  camera.wanted = false;
  camera.generation++;
  stopTracks(camera.stream);
  camera.stream = null;
  camera.box = null; // a new start finds the object again
  $("video").srcObject = null;
  clearAnswer();
}

function watchFrames(video, generation) {
  // Counts the frames the video has shown, so that the loop scores a frame that came while the
  // last one was being scored at once, and otherwise waits for the next (never one frame twice).
  if (!video.requestVideoFrameCallback) return;
  const tick = (now, meta) => {
    camera.shown = meta.presentedFrames;
    const waiting = camera.waiting;
    camera.waiting = null;
    if (waiting) waiting();
    if (generation === camera.generation) video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}

function nextVideoFrame(video) {
  if (!video.requestVideoFrameCallback) { // browsers without it: at most 30 a second
    return new Promise((resolve) => setTimeout(resolve, 33));
  }
  if (camera.shown > camera.taken) return Promise.resolve();
  return new Promise((resolve) => { camera.waiting = resolve; });
}

function frameSize(video) {
  if (model.frame) return [model.frame.width, model.frame.height];
  const scale = Math.min(1, CAMERA_FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight));
  return [Math.round(video.videoWidth * scale), Math.round(video.videoHeight * scale)];
}

async function scoreFrame(video, canvas) {
  const [width, height] = frameSize(video);
  if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.imageSmoothingQuality = "high";
  context.drawImage(video, 0, 0, width, height);
  if (model.kind === "classes" && !model.frame) { // an old graph, fed JPEG bytes: the photo's path
    return { answer: await predict(await jpegOf(canvas)), width, height };
  }
  const pixels = context.getImageData(0, 0, width, height).data;
  const track = camera.box && camera.box.size === `${width}x${height}` && camera.tracked < LOCATE_EVERY - 1;
  const box = track ? `&box=${camera.box.corners.join(",")}` : "";
  camera.box = null; // until this frame's answer gives the next one
  const response = await fetch(`/predict/frame?width=${width}&height=${height}${box}`, { method: "POST",
    body: pixels, headers: { "Content-Type": "application/octet-stream" } });
  let answer;
  try { answer = await response.json(); } catch { answer = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  if (answer.next_box) {
    camera.tracked = track ? camera.tracked + 1 : 0;
    camera.box = { corners: answer.next_box, size: `${width}x${height}` };
  }
  return { answer, width, height };
}

function jpegOf(canvas) {
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

function drawPoints(answer, frameWidth, video) {
  // The points canvas has the video's own size and sits over it (object-fit as the video's).
  const canvas = $("points");
  if (canvas.width !== video.videoWidth || canvas.height !== video.videoHeight) {
    [canvas.width, canvas.height] = [video.videoWidth, video.videoHeight];
  }
  const scale = video.videoWidth / frameWidth;
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const [x, y, w, h] = answer.box.map((value) => value * scale);
  context.lineWidth = 2;
  context.strokeStyle = "#ffd400";
  context.strokeRect(x, y, w, h);
  const points = answer.keypoints.map((point) => [point.x * scale, point.y * scale]);
  context.strokeStyle = "#00e0ff";
  context.beginPath();
  for (const [a, b] of model.skeleton || []) {
    if (points[a] && points[b]) { context.moveTo(...points[a]); context.lineTo(...points[b]); }
  }
  context.stroke();
  for (const [index, [px, py]] of points.entries()) {
    const score = answer.keypoints[index].score;
    context.fillStyle = score === null || score >= 0.5 ? "#ff3b6b" : "#ff9db4";
    context.beginPath();
    context.arc(px, py, 4, 0, 2 * Math.PI);
    context.fill();
  }
  canvas.dataset.points = JSON.stringify(points.map(([px, py]) => [Math.round(px), Math.round(py)]));
  const list = $("points-list");
  const rows = answer.keypoints.map((point) => {
    const row = element("li", "", `${point.name} ${point.x.toFixed(0)}, ${point.y.toFixed(0)}` +
      (point.score === null ? "" : ` (${point.score.toFixed(2)})`));
    row.dataset.name = point.name;
    return row;
  });
  list.replaceChildren(...rows);
}

function nameUnderPointer(event) {
  // The points' names on hover: the nearest point within 12 screen pixels names itself (title).
  const canvas = $("points");
  const points = JSON.parse(canvas.dataset.points || "[]");
  const box = canvas.getBoundingClientRect();
  const scale = Math.min(box.width / canvas.width, box.height / canvas.height); // object-fit: contain
  const left = box.left + (box.width - canvas.width * scale) / 2;
  const top = box.top + (box.height - canvas.height * scale) / 2;
  let best = null;
  let bestDistance = 12;
  for (const [index, [x, y]] of points.entries()) {
    const distance = Math.hypot(left + x * scale - event.clientX, top + y * scale - event.clientY);
    if (distance <= bestDistance) [best, bestDistance] = [index, distance];
  }
  const names = model.labels;
  canvas.title = best === null ? "" : names[best];
  canvas.dataset.hovered = best === null ? "" : names[best];
}

function showAnswer(answer, width, video) {
  if (model.kind === "points") {
    drawPoints(answer, width, video);
    $("camera-label").textContent = `${answer.keypoints.length} points`;
    $("overlay").dataset.label = "points";
  } else {
    $("camera-label").textContent = answer.label;
    $("overlay").dataset.label = answer.label;
  }
  $("camera-score").textContent = answer.score === null ? "" : answer.score.toFixed(3);
}

function showSpeed(capturedAt) {
  const now = performance.now();
  const latency = now - capturedAt;
  camera.frames += 1;
  camera.times.push(now);
  camera.times = camera.times.filter((t) => now - t < 2000);
  const fps = camera.times.length > 1 ? (camera.times.length - 1) * 1000 / (now - camera.times[0]) : 0;
  const label = $("camera-label");
  label.dataset.frames = String(camera.frames);
  label.dataset.latencyMs = latency.toFixed(1);
  $("camera-fps").textContent = `${fps.toFixed(1)} frames/s, ${latency.toFixed(0)} ms`;
  $("camera-fps").dataset.fps = fps.toFixed(2);
}

async function cameraLoop(generation) {
  const video = $("video");
  const canvas = document.createElement("canvas");
  [camera.shown, camera.taken, camera.waiting] = [0, 0, null];
  watchFrames(video, generation);
  while (generation === camera.generation) {
    await nextVideoFrame(video);
    if (generation !== camera.generation) break;
    if (video.videoWidth === 0) continue;
    camera.taken = camera.shown;
    const capturedAt = performance.now(); // the frame is taken from the video now
    try {
      const { answer, width } = await scoreFrame(video, canvas);
      if (generation !== camera.generation) break; // an answer for a camera since stopped
      showAnswer(answer, width, video);
      showSpeed(capturedAt);
      if (camera.failing) $("camera-status").textContent = "Scoring the camera's frames.";
      camera.failing = false;
    } catch (error) {
      if (generation !== camera.generation) break;
      clearAnswer(); // a label no longer scored is not left standing over the video
      camera.failing = true;
      $("camera-status").textContent = `Scoring failed: ${error.message}`;
      await new Promise((resolve) => setTimeout(resolve, 250)); // a stopped server is not hammered
    }
  }
}

function setMode(mode) {
  $("photos").hidden = mode !== "photos";
  $("camera").hidden = mode !== "camera";
  $("mode-photos").classList.toggle("active", mode === "photos");
  $("mode-camera").classList.toggle("active", mode === "camera");
  if (mode === "camera") startCamera(); // once: it does nothing while the camera is on or asked for
  if (mode !== "camera") stopCamera();
}

async function showLabels() {
  try {
    model = await (await fetch("/model")).json();
    const what = model.kind === "points" ? "points" : "labels";
    $("model").textContent = `${model.labels.length} ${what}: ${model.labels.join(", ")}`;
    document.body.dataset.kind = model.kind;
  } catch (error) {
    $("model").textContent = `The labels cannot be read: ${error.message}`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpPhotos();
  $("mode-photos").addEventListener("click", () => setMode("photos"));
  $("mode-camera").addEventListener("click", () => setMode("camera"));
  $("points").addEventListener("mousemove", nameUnderPointer);
  // /#camera opens the camera mode directly (a bookmark for a kiosk).
  const fromHash = () => setMode(location.hash === "#camera" ? "camera" : "photos");
  window.addEventListener("hashchange", fromHash);
  if (location.hash === "#camera") fromHash();
  showLabels();
});
