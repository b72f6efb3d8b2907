// The /demo page: wires the connection, audio capture and transcript to the controls.
//
// Phases (also on <body data-state>): idle → starting → recording → stopping → idle for a
// recording or the sample; idle → processing → idle for a file.

import {
  LevelMeter,
  audioContext,
  createRecorder,
  listMicrophones,
  openMicrophone,
  openSample,
  record,
} from "./capture.js";
import { Connection, wsUrl } from "./connection.js";
import { languagesFor } from "./languages.js";
import { ResumableStream } from "./resume.js";
import { Transcript, clock, formatLatency } from "./transcript.js";

const SAMPLE = { url: "/static/samples/jfk.webm", title: "Sample · John F. Kennedy, 1961" };
const START_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 120000;
const FILE_TIMEOUT_MS = 600000;
const DEFAULT_MAX_BYTES = 10 * 1024 * 1024;

const $ = (id) => document.getElementById(id);
const ui = {
  record: $("record"),
  recordLabel: document.querySelector(".record-label"),
  clock: $("clock"),
  mic: $("mic"),
  model: $("model"),
  language: $("language"),
  progress: $("model-progress"),
  sample: $("sample"),
  drop: $("drop"),
  file: $("file"),
  maxSize: $("max-size"),
  activity: $("activity"),
  stats: $("stats"),
  connection: $("connection"),
  toast: $("toast"),
  exports: ["copy", "download-txt", "download-srt", "clear"].map($),
};

const apiKey = new URLSearchParams(location.search).get("api_key") ?? "";

const state = {
  phase: "idle",
  connected: false,
  models: [],
  sessionModel: null, // what the server applies to a bare binary frame on this connection
  sessionLanguage: "auto",
  modelChosen: false,
  loadingModel: null,
  maxBytes: DEFAULT_MAX_BYTES,
  capture: null, // {source, stopRecorder, startedAt, kind, stream}
  resuming: false, // the connection dropped mid-recording: audio is kept until it is resumed
  waiter: null, // the reply a step waits for: {match, resolve, reject}
  fileName: "",
};

const meter = new LevelMeter($("level"));
const transcript = new Transcript($("transcript"), showStats);
const connection = new Connection(wsUrl(apiKey), { onMessage, onState: onConnectionState });

// --- server messages ---------------------------------------------------------------------

function onMessage(message) {
  state.capture?.stream.received(message);
  if (settleWaiter(message)) return;
  switch (message.type) {
    case "transcript":
      transcript.show(message);
      break;
    case "status":
      onStatus(message);
      break;
    case "model_loaded":
      onModelLoaded(message);
      break;
    case "error":
      onError(message);
      break;
  }
}

function onStatus(message) {
  if (message.loading !== undefined) showModelProgress(message);
  if (message.workers !== undefined) onSessionStatus(message);
}

// The get_status answer: the model this connection's session uses.
function onSessionStatus(message) {
  state.sessionModel = message.model;
  if (!state.modelChosen && state.models.some((m) => m.name === message.model)) {
    ui.model.value = message.model;
    refreshLanguages();
  }
  if (!message.workers) toast("No transcription workers are running on the server yet.", "error");
}

function onModelLoaded(message) {
  state.loadingModel = null;
  state.sessionModel = message.model;
  ui.progress.hidden = true;
  toast(`Model ${message.model} is ready (${message.load_time.toFixed(1)} s).`);
  updateControls();
}

function onError(message) {
  if (message.utterance_id) {
    transcript.fail(message.utterance_id, message.message);
  } else if (state.loadingModel) {
    state.loadingModel = null;
    ui.progress.hidden = true;
    ui.model.value = state.sessionModel;
    refreshLanguages();
    toast(message.message, "error");
    updateControls();
  } else {
    toast(message.message, "error");
  }
}

// --- waiting for one reply -----------------------------------------------------------------

// Send `message` (an object, or a Blob for a binary frame) and resolve with the first
// message `match` accepts; reject on a request-level error, a lost connection or timeout.
function request(message, match, timeoutMs) {
  return new Promise((resolve, reject) => {
    const settle = (fn) => (value) => {
      clearTimeout(timer);
      state.waiter = null;
      fn(value);
    };
    const timer = setTimeout(() => fail(new Error("The server did not answer in time")), timeoutMs);
    const fail = settle(reject);
    state.waiter = { match, resolve: settle(resolve), reject: fail };
    if (!connection.isOpen) fail(new Error("Not connected to the server"));
    else if (message instanceof Blob) connection.sendBinary(message);
    else connection.send(message);
  });
}

// Returns true when the message was consumed by the waiter.
function settleWaiter(message) {
  const waiter = state.waiter;
  if (!waiter) return false;
  if (message.type === "error" && !message.utterance_id && !state.loadingModel) {
    waiter.reject(new Error(message.message));
    return true;
  }
  if (waiter.match(message)) waiter.resolve(message);
  return false;
}

const isRecordingStatus = (recording) => (m) => m.type === "status" && m.recording === recording;
const isProcessingComplete = (m) => m.type === "status" && m.message === "Processing complete";

// --- recording: microphone or sample ---------------------------------------------------------

async function startCapture(kind) {
  if (state.phase !== "idle") return;
  setPhase("starting");
  let source = null;
  let stopRecorder = null;
  try {
    audioContext(); // created inside the click, as browsers require
    source = kind === "sample" ? await openSample(SAMPLE.url, stopCapture) : await openMicrophone(ui.mic.value);
    if (kind === "microphone") refreshMicrophones(); // labels are readable now
    const { recorder, format } = createRecorder(source.stream);
    const stream = new ResumableStream();
    const gate = chunkGate((chunk) => {
      stream.sent(chunk);
      if (!state.resuming) connection.sendBinary(chunk);
    });
    stopRecorder = record(recorder, gate.push);
    source.begin();
    meter.attach(source.stream);
    state.capture = { source, stopRecorder, startedAt: performance.now(), kind, stream };
    stream.started(await request(startCommand(format), isRecordingStatus(true), START_TIMEOUT_MS));
    gate.open();
    state.sessionLanguage = ui.language.value;
    transcript.begin(kind === "sample" ? SAMPLE.title : `${source.label} · ${timeOfDay()}`);
    setPhase("recording");
    tick();
  } catch (error) {
    stopRecorder?.();
    source?.close();
    releaseCapture();
    setPhase("idle");
    toast(describe(error), "error");
  }
}

// Recording starts at once; chunks recorded before the server confirmed the recording
// wait here, so the first words are not lost to that round trip.
function chunkGate(send) {
  let held = [];
  return {
    push: (chunk) => (held ? held.push(chunk) : send(chunk)),
    open() {
      held.forEach(send);
      held = null;
    },
  };
}

function startCommand(format) {
  return {
    command: "start_real_recording",
    mode: "real_microphone",
    device_id: ui.mic.value || undefined,
    language: ui.language.value,
    model: ui.model.value || undefined,
    format,
  };
}

// Send the last chunk, then stop_recording, and wait until every final has arrived.
async function stopCapture() {
  const capture = state.capture;
  if (!capture || state.phase !== "recording") return;
  setPhase("stopping");
  await capture.stopRecorder();
  releaseCapture();
  try {
    await request({ command: "stop_recording" }, isRecordingStatus(false), STOP_TIMEOUT_MS);
  } catch (error) {
    toast(describe(error), "error");
  }
  setPhase("idle");
}

function releaseCapture() {
  state.capture?.source.close();
  state.capture = null;
  meter.detach();
}

function tick() {
  if (state.phase !== "recording") return;
  ui.clock.textContent = clock((performance.now() - state.capture.startedAt) / 1000);
  setTimeout(tick, 250);
}

// --- files -------------------------------------------------------------------------------

// A bare binary frame when the session's model and language are the ones selected;
// otherwise process_audio, which carries them (as a data: URL, which the server accepts).
async function transcribeFile(file) {
  if (!canTakeFile() || !file) return;
  if (file.size > state.maxBytes) {
    toast(`${file.name} is ${megabytes(file.size)}; the limit is ${megabytes(state.maxBytes)}.`, "error");
    return;
  }
  state.fileName = file.name;
  setPhase("processing");
  transcript.begin(file.name);
  try {
    const message = usesSessionSettings() ? file : await processAudioCommand(file);
    await request(message, isProcessingComplete, FILE_TIMEOUT_MS);
  } catch (error) {
    toast(describe(error), "error");
  }
  setPhase("idle");
}

function usesSessionSettings() {
  return ui.model.value === state.sessionModel && ui.language.value === state.sessionLanguage;
}

async function processAudioCommand(file) {
  const dataUrl = await new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  return {
    command: "process_audio",
    audio_data: dataUrl,
    language: ui.language.value,
    model: ui.model.value,
    format: extensionOf(file.name),
    request_id: crypto.randomUUID?.() ?? String(Date.now()),
  };
}

// --- models, languages, microphones ---------------------------------------------------------

async function fetchJson(path) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const response = await fetch(path, { headers });
  if (!response.ok) throw Object.assign(new Error(`${path}: HTTP ${response.status}`), { status: response.status });
  return response.json();
}

async function loadModels() {
  try {
    state.models = (await fetchJson("/api/models")).models;
  } catch {
    state.models = [{ name: "tiny.en", multilingual: false }];
  }
  ui.model.replaceChildren(
    ...state.models.map((m) => option(m.name, `${m.name} · ${m.multilingual ? "multilingual" : "English only"}`)),
  );
  if (state.sessionModel) ui.model.value = state.sessionModel;
  await refreshLanguages();
}

async function loadLimits() {
  try {
    state.maxBytes = (await fetchJson("/api/status")).limits.max_audio_bytes ?? DEFAULT_MAX_BYTES;
  } catch (error) {
    state.maxBytes = DEFAULT_MAX_BYTES;
    if (error.status === 401 || error.status === 403) {
      toast("This server needs an API key: open this page as /demo?api_key=YOUR_KEY.", "error");
    }
  }
  ui.maxSize.textContent = megabytes(state.maxBytes);
}

async function refreshLanguages() {
  const model = state.models.find((m) => m.name === ui.model.value);
  if (!model) return;
  const chosen = ui.language.value;
  const languages = await languagesFor(model, fetchJson);
  ui.language.replaceChildren(option("auto", "Auto-detect"), ...languages.map((l) => option(l.code, l.name)));
  ui.language.value = languages.some((l) => l.code === chosen) ? chosen : "auto";
}

function chooseModel() {
  const name = ui.model.value;
  state.modelChosen = true;
  state.loadingModel = name;
  showModelProgress({ progress: 0, message: `Loading ${name}…` });
  refreshLanguages();
  try {
    connection.send({ command: "load_model", model_name: name });
  } catch (error) {
    onError({ message: describe(error) });
  }
  updateControls();
}

function showModelProgress(message) {
  ui.progress.hidden = false;
  const fraction = Math.max(0.06, Math.min(1, message.progress ?? 0));
  ui.progress.querySelector(".progress-fill").style.width = `${fraction * 100}%`;
  ui.progress.querySelector(".progress-label").textContent = message.message;
}

async function refreshMicrophones() {
  const chosen = ui.mic.value;
  const mics = await listMicrophones();
  const options = mics.map((d, i) => option(d.deviceId, d.label || `Microphone ${i + 1}`));
  ui.mic.replaceChildren(...(options.length ? options : [option("", "Default microphone")]));
  if (mics.some((d) => d.deviceId === chosen)) ui.mic.value = chosen;
}

// --- connection ----------------------------------------------------------------------------

function onConnectionState(connectionState, { retryInMs }) {
  state.connected = connectionState === "open";
  ui.connection.dataset.state = connectionState;
  const label = ui.connection.querySelector(".label");
  clearInterval(retryCountdown);
  if (connectionState === "open") {
    label.textContent = "Connected";
    state.sessionLanguage = "auto";
    connection.send({ command: "get_status" });
    if (state.resuming) resumeRecording();
  } else if (connectionState === "connecting") {
    label.textContent = "Connecting…";
  } else {
    showRetryCountdown(label, Date.now() + retryInMs);
    if (state.phase === "recording" && state.capture?.stream.resumable) {
      state.waiter?.reject(new Error("The connection to the server was lost"));
      state.resuming = true; // keep recording: the server keeps the session for a while
    } else {
      abandonWork();
    }
  }
  updateControls();
}

// Back online mid-recording: continue the same recording, send what was recorded meanwhile.
async function resumeRecording() {
  const stream = state.capture?.stream;
  if (!stream) return;
  try {
    const isResumed = (m) => m.type === "status" && m.message === "Recording resumed";
    const resumed = await request(stream.resumeCommand(), isResumed, START_TIMEOUT_MS);
    connection.sendBinary(stream.rest(resumed.audio_offset));
    state.resuming = false;
    toast("Reconnected: the recording goes on.");
  } catch (error) {
    state.resuming = false;
    abandonWork();
    toast(describe(error), "error");
  }
}

let retryCountdown = 0;
function showRetryCountdown(label, retryAt) {
  const update = () => {
    label.textContent = `Offline · retrying in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s`;
  };
  update();
  retryCountdown = setInterval(update, 1000);
}

// The connection dropped: whatever was running on it is gone on the server too.
function abandonWork() {
  state.waiter?.reject(new Error("The connection to the server was lost"));
  if (state.loadingModel) onError({ message: "The connection was lost while loading the model" });
  if (state.capture) {
    state.capture.stopRecorder();
    releaseCapture();
    setPhase("idle");
  }
}

// --- view ----------------------------------------------------------------------------------

function setPhase(phase) {
  state.phase = phase;
  document.body.dataset.state = phase;
  if (phase === "starting") ui.clock.textContent = "0:00";
  updateControls();
}

function updateControls() {
  const { phase, connected, loadingModel } = state;
  const idle = phase === "idle";
  ui.record.disabled = !connected || Boolean(loadingModel) || !(idle || phase === "recording");
  ui.recordLabel.textContent = RECORD_LABELS[phase] ?? "Start recording";
  ui.sample.disabled = !connected || Boolean(loadingModel) || !idle;
  ui.drop.classList.toggle("disabled", !canTakeFile());
  for (const select of [ui.mic, ui.model, ui.language]) select.disabled = !idle || Boolean(loadingModel);
  ui.activity.textContent = activityText();
}

function canTakeFile() {
  return state.connected && state.phase === "idle" && !state.loadingModel;
}

const RECORD_LABELS = { starting: "Starting…", recording: "Stop", stopping: "Finishing…" };

function activityText() {
  if (state.phase === "recording") return state.capture?.kind === "sample" ? "Playing sample" : "Listening";
  if (state.phase === "stopping") return "Finishing the last words…";
  if (state.phase === "processing") return `Transcribing ${state.fileName}…`;
  return "";
}

function showStats() {
  const finals = transcript.finals();
  for (const button of ui.exports) button.disabled = !finals.length;
  ui.stats.replaceChildren();
  if (!finals.length) return;
  const latencies = transcript.latencies().sort((a, b) => a - b);
  const words = finals.reduce((n, u) => n + u.text.split(/\s+/).filter(Boolean).length, 0);
  addStat(`${finals.length}`, finals.length === 1 ? "utterance" : "utterances");
  addStat(`${words}`, "words");
  if (latencies.length) {
    addStat(formatLatency(latencies[Math.floor(latencies.length / 2)]), "median latency");
  }
}

function addStat(value, label) {
  const item = document.createElement("span");
  const strong = document.createElement("b");
  strong.textContent = value;
  item.append(strong, ` ${label}`);
  ui.stats.append(item);
}

let toastTimer = 0;
function toast(text, kind = "info") {
  ui.toast.textContent = text;
  ui.toast.className = `toast ${kind}`;
  ui.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (ui.toast.hidden = true), kind === "error" ? 6000 : 3000);
}

// --- export --------------------------------------------------------------------------------

async function copyTranscript() {
  const text = transcript.text();
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = Object.assign(document.createElement("textarea"), { value: text });
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  toast("Transcript copied.");
}

function download(extension, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
  const link = Object.assign(document.createElement("a"), { href: url, download: `transcript.${extension}` });
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- helpers -------------------------------------------------------------------------------

function option(value, text) {
  const node = document.createElement("option");
  node.value = value;
  node.textContent = text;
  return node;
}

function describe(error) {
  if (error?.name === "NotAllowedError") return "Microphone access was refused. Allow it in the address bar.";
  if (error?.name === "NotFoundError") return "No microphone was found.";
  return error?.message || String(error);
}

// A hint only ("mp3", "flac"…); the audio service reads any format ffmpeg knows.
function extensionOf(name) {
  const match = /\.([a-z0-9]{1,8})$/i.exec(name);
  return match ? match[1].toLowerCase() : undefined;
}

function megabytes(bytes) {
  return `${Math.round(bytes / 1e6)} MB`;
}

function timeOfDay() {
  return new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// --- wiring --------------------------------------------------------------------------------

function bindDropZone() {
  const zone = ui.drop;
  const dragging = (on) => (event) => {
    event.preventDefault();
    zone.classList.toggle("dragging", on);
  };
  zone.addEventListener("dragover", dragging(true));
  zone.addEventListener("dragleave", dragging(false));
  zone.addEventListener("drop", (event) => {
    dragging(false)(event);
    transcribeFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => event.preventDefault());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      ui.file.click();
    }
  });
  ui.file.addEventListener("change", () => {
    transcribeFile(ui.file.files[0]);
    ui.file.value = "";
  });
}

function bind() {
  ui.record.addEventListener("click", () => (state.phase === "recording" ? stopCapture() : startCapture("microphone")));
  ui.sample.addEventListener("click", () => startCapture("sample"));
  ui.model.addEventListener("change", chooseModel);
  $("copy").addEventListener("click", copyTranscript);
  $("download-txt").addEventListener("click", () => download("txt", `${transcript.text()}\n`));
  $("download-srt").addEventListener("click", () => download("srt", transcript.srt()));
  $("clear").addEventListener("click", () => transcript.clear());
  navigator.mediaDevices?.addEventListener?.("devicechange", refreshMicrophones);
  bindDropZone();
}

bind();
updateControls();
refreshMicrophones();
loadModels();
loadLimits();
connection.connect();
