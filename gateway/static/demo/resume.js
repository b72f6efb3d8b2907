// A live recording that survives a dropped connection: every byte sent is kept (the
// server says from which byte to go on), finals received are counted (the server sends
// the ones missed), and the session id and token come from "Recording started".
// See README, "Resuming a recording".

export class ResumableStream {
  constructor() {
    this.sessionId = null;
    this.token = null;
    this.finals = 0;
    this.chunks = [];
  }

  get resumable() {
    return Boolean(this.sessionId && this.token);
  }

  started(message) {
    this.sessionId = message.session_id ?? null;
    this.token = message.resume_token ?? null;
  }

  sent(chunk) {
    this.chunks.push(chunk);
  }

  // Final transcripts and utterance errors of this recording, as the server counts them.
  counts(message) {
    return (message.type === "transcript" && message.final) || (message.type === "error" && message.utterance_id);
  }

  received(message) {
    if (this.counts(message)) this.finals += 1;
  }

  resumeCommand() {
    return { command: "resume", session_id: this.sessionId, resume_token: this.token, finals_received: this.finals };
  }

  // Everything from `offset` on: what the server has not decoded yet.
  rest(offset) {
    return new Blob(this.chunks).slice(offset);
  }
}
