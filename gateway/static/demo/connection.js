// The browser WebSocket to /ws: JSON commands out, server messages in, automatic
// reconnect with exponential backoff, and a ping that notices a dead connection.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const PING_EVERY_MS = 20000;
const PONG_WAIT_MS = 8000;

export function wsUrl(apiKey) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = apiKey ? `?api_key=${encodeURIComponent(apiKey)}` : "";
  return `${scheme}//${location.host}/ws${query}`;
}

export class Connection {
  // onMessage(msg) for every server message; onState(state, detail) with state
  // "connecting" | "open" | "closed" and detail {retryInMs} while waiting to retry.
  constructor(url, { onMessage, onState }) {
    this.url = url;
    this.onMessage = onMessage;
    this.onState = onState;
    this.ws = null;
    this.attempt = 0;
    this.pingTimer = null;
    this.pongTimer = null;
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    this.onState("connecting", {});
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => this.#opened();
    ws.onmessage = (event) => this.#received(event);
    ws.onclose = () => this.#closed(ws);
    this.ws = ws;
  }

  send(message) {
    if (!this.isOpen) throw new Error("Not connected to the server");
    this.ws.send(JSON.stringify(message));
  }

  // A Blob or ArrayBuffer: the next bytes of a recording, or a whole file.
  sendBinary(data) {
    if (this.isOpen) this.ws.send(data);
  }

  #opened() {
    this.attempt = 0;
    this.pingTimer = setInterval(() => this.#ping(), PING_EVERY_MS);
    this.onState("open", {});
  }

  #received(event) {
    clearTimeout(this.pongTimer);
    if (typeof event.data !== "string") return;
    const message = JSON.parse(event.data);
    if (message.type !== "pong") this.onMessage(message);
  }

  #ping() {
    if (!this.isOpen) return;
    this.ws.send(JSON.stringify({ command: "ping" }));
    this.pongTimer = setTimeout(() => this.ws.close(), PONG_WAIT_MS);
  }

  #closed(ws) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
    const retryInMs = this.#backoff();
    this.onState("closed", { retryInMs });
    setTimeout(() => this.connect(), retryInMs);
  }

  #backoff() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
}
