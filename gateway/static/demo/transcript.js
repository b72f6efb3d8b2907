// The transcript: "takes" (one recording, sample or file each) of utterances. A partial
// (final: false) is shown in grey and replaced by later partials and by the final with the
// same utterance_id. Exports as plain text and SubRip (.srt) from the finals' start/end.

const TAKE_GAP_S = 1;

export class Transcript {
  constructor(container, onChange) {
    this.container = container;
    this.onChange = onChange;
    this.placeholder = container.innerHTML;
    this.takes = [];
  }

  get current() {
    return this.takes.at(-1) ?? null;
  }

  // Start a new take; its times continue after the previous take's in the exports.
  begin(title) {
    if (!this.takes.length) this.container.replaceChildren();
    const previous = this.current;
    const offset = previous ? Math.ceil(previous.lastEnd() + previous.offset) + TAKE_GAP_S : 0;
    const take = new Take(title, offset);
    this.container.append(take.head);
    this.takes.push(take);
    return take;
  }

  // A transcript message: update or add its row in the current take.
  show(message) {
    const take = this.current ?? this.begin("Transcript");
    take.show(message, this.container);
    this.#scrollToEnd();
    this.onChange();
  }

  fail(utteranceId, text) {
    this.current?.fail(utteranceId, text);
    this.onChange();
  }

  clear() {
    this.takes = [];
    this.container.innerHTML = this.placeholder;
    this.onChange();
  }

  finals() {
    return this.takes.flatMap((take) => take.finals());
  }

  latencies() {
    return this.finals()
      .map((u) => u.latencyMs)
      .filter((ms) => Number.isFinite(ms));
  }

  text() {
    return this.takes
      .map((take) => take.finals().map((u) => u.text).join(" "))
      .filter(Boolean)
      .join("\n\n");
  }

  srt() {
    return this.finals()
      .map((u, i) => `${i + 1}\n${srtTime(u.start)} --> ${srtTime(u.end)}\n${u.text}\n`)
      .join("\n");
  }

  #scrollToEnd() {
    this.container.scrollTop = this.container.scrollHeight;
  }
}

class Take {
  constructor(title, offset) {
    this.offset = offset;
    this.rows = new Map(); // utterance_id -> {row, utterance}
    this.head = element("div", "take-head", title);
  }

  show(message, container) {
    const id = message.utterance_id;
    const entry = this.rows.get(id) ?? this.#add(id, message.start, container);
    if (message.final && !message.transcript.trim()) {
      this.#remove(id); // no speech in it after all
      return;
    }
    entry.utterance = {
      text: message.transcript.trim(),
      start: this.offset + message.start,
      end: this.offset + message.end,
      final: message.final,
      latencyMs: message.latency_ms,
      source: message.source,
    };
    render(entry.row, entry.utterance, message.start);
  }

  fail(id, text) {
    const entry = this.rows.get(id);
    if (!entry) return;
    entry.row.className = "utt failed";
    entry.row.querySelector(".text").textContent = text;
    entry.utterance = null;
  }

  finals() {
    return [...this.rows.values()]
      .map((entry) => entry.utterance)
      .filter((u) => u?.final)
      .sort((a, b) => a.start - b.start);
  }

  lastEnd() {
    const ends = this.finals().map((u) => u.end - this.offset);
    return ends.length ? Math.max(...ends) : 0;
  }

  // Rows stay in stream order: a partial of the next utterance can arrive before the
  // final of this one.
  #add(id, start, container) {
    const row = element("div", "utt");
    row.dataset.start = start;
    row.append(element("span", "time"), element("span", "text"), element("span", "latency"));
    const later = [...this.rows.values()].find((e) => Number(e.row.dataset.start) > start);
    if (later) later.row.before(row);
    else container.append(row);
    const entry = { row, utterance: null };
    this.rows.set(id, entry);
    return entry;
  }

  #remove(id) {
    this.rows.get(id)?.row.remove();
    this.rows.delete(id);
  }
}

function render(row, utterance, streamStart) {
  row.className = `utt ${utterance.final ? "final" : "partial"}`;
  row.querySelector(".time").textContent = clock(streamStart);
  row.querySelector(".text").textContent = utterance.text;
  const latency = row.querySelector(".latency");
  const ms = utterance.final ? utterance.latencyMs : undefined;
  latency.textContent = Number.isFinite(ms) ? formatLatency(ms) : "";
  latency.hidden = !Number.isFinite(ms);
  latency.classList.toggle("fast", ms < 1000);
  latency.title =
    utterance.source === "upload" ? "Time to transcribe this piece" : "Time from the end of speech to this text";
}

export function formatLatency(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function srtTime(seconds) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  const h = Math.floor(ms / 3600000);
  const m = Math.floor(ms / 60000) % 60;
  const s = Math.floor(ms / 1000) % 60;
  return `${pad(h)}:${pad(m)}:${pad(s)},${pad(ms % 1000, 3)}`;
}

function element(tag, className, text = "") {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}
