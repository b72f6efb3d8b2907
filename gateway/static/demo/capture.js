// Audio in: the microphone or a bundled sample played as if spoken, a MediaRecorder
// that cuts the stream into 250 ms chunks, and an input level meter.

export const TIMESLICE_MS = 250;
// A speaker starts a moment after pressing the button; so does the sample.
const SAMPLE_LEAD_IN_S = 0.5;

// What the server is told in `format`, by the container MediaRecorder writes.
const RECORDER_TYPES = [
  ["audio/webm;codecs=opus", "webm"],
  ["audio/ogg;codecs=opus", "ogg"],
  ["audio/mp4", "mp4"], // Safari
  ["audio/webm", "webm"],
];

let sharedContext = null;

// One AudioContext for the page, created on a click (browsers require a gesture).
export function audioContext() {
  sharedContext ??= new AudioContext();
  if (sharedContext.state === "suspended") sharedContext.resume();
  return sharedContext;
}

export async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "audioinput");
}

// A source is {stream, label, begin(), close()}: begin() starts the sound (a no-op for
// a microphone), close() releases it.
//
// Echo cancellation and noise suppression stay on (the original design); automatic gain
// control is off: its gain swings inside an utterance blur word onsets and endings (with
// it on, the browser test's word error rate on the jfk clip was 0.18-0.23 instead of 0.05).
export async function openMicrophone(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new Error("Browsers allow the microphone only on https:// or localhost pages. Try the sample or a file.");
  }
  const audio = { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: false };
  if (deviceId) audio.deviceId = { exact: deviceId };
  const stream = await navigator.mediaDevices.getUserMedia({ audio });
  return {
    stream,
    label: stream.getAudioTracks()[0]?.label || "Microphone",
    begin() {},
    close: () => stream.getTracks().forEach((track) => track.stop()),
  };
}

// The sample decoded in the browser and played through a MediaStreamDestination, so the
// server receives exactly what a microphone recording sends. onEnded fires after playback.
export async function openSample(url, onEnded) {
  const context = audioContext();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`The sample could not be loaded (${response.status})`);
  const buffer = await context.decodeAudioData(await response.arrayBuffer());
  const destination = context.createMediaStreamDestination();
  destination.channelCount = 1;
  const player = context.createBufferSource();
  player.buffer = buffer;
  player.connect(destination);
  player.connect(context.destination); // let the visitor hear it too
  player.onended = onEnded;
  return {
    stream: destination.stream,
    label: "Sample",
    duration: buffer.duration,
    begin: () => player.start(context.currentTime + SAMPLE_LEAD_IN_S),
    close() {
      player.onended = null;
      try { player.stop(); } catch { /* never started */ }
      player.disconnect();
    },
  };
}

export function createRecorder(stream) {
  const known = RECORDER_TYPES.find(([type]) => MediaRecorder.isTypeSupported?.(type));
  const recorder = known ? new MediaRecorder(stream, { mimeType: known[0] }) : new MediaRecorder(stream);
  return { recorder, format: known ? known[1] : formatOf(recorder.mimeType) };
}

function formatOf(mimeType) {
  if (mimeType.includes("mp4")) return "mp4";
  if (mimeType.includes("ogg")) return "ogg";
  return "webm";
}

// Start recording, hand every chunk to onChunk as it comes; the promise from the
// returned stop() resolves once the last chunk has been handed over.
export function record(recorder, onChunk) {
  recorder.ondataavailable = (event) => {
    if (event.data.size > 0) onChunk(event.data);
  };
  const stopped = new Promise((resolve) => {
    recorder.onstop = resolve;
  });
  recorder.start(TIMESLICE_MS);
  return () => {
    if (recorder.state !== "inactive") recorder.stop();
    return stopped;
  };
}

// Input level of a stream drawn into `fill` (scaled 0..1 over -60..0 dBFS).
export class LevelMeter {
  constructor(fill) {
    this.fill = fill;
    this.frame = 0;
    this.node = null;
    this.analyser = null;
    this.level = 0;
  }

  attach(stream) {
    this.detach();
    const context = audioContext();
    this.node = context.createMediaStreamSource(stream);
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.node.connect(this.analyser);
    const samples = new Float32Array(this.analyser.fftSize);
    const draw = () => {
      this.analyser.getFloatTimeDomainData(samples);
      this.#show(rmsLevel(samples));
      this.frame = requestAnimationFrame(draw);
    };
    draw();
  }

  detach() {
    cancelAnimationFrame(this.frame);
    this.node?.disconnect();
    this.node = this.analyser = null;
    this.level = 0;
    this.fill.style.transform = "scaleX(0)";
  }

  #show(level) {
    // Rise at once, fall slowly, like a VU meter.
    this.level = level > this.level ? level : this.level * 0.9 + level * 0.1;
    this.fill.style.transform = `scaleX(${this.level.toFixed(3)})`;
  }
}

function rmsLevel(samples) {
  let sum = 0;
  for (const s of samples) sum += s * s;
  const db = 10 * Math.log10(sum / samples.length + 1e-12);
  return Math.min(1, Math.max(0, (db + 60) / 60));
}
