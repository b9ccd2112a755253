// Phone mode: the microphone becomes a phone call over /ws/<provider>, in that provider's own
// protocol (as runner/smoke/callers/telephony.py speaks it), and the bot is heard as a caller
// hears it: the provider's 8 kHz audio, decoded and played at 8 kHz.

export const RATE = 8000;

// ------------------------------------------------------------------ G.711 and L16

// As CPython's audioop (and so the server) does it: Sun's reference G.711.
export function muLaw(sample) {  // Int16 -> byte
  let value = sample >> 2;
  let mask = 0xff;
  if (value < 0) { mask = 0x7f; value = -value; }
  value = Math.min(value, 8159) + 33;
  let segment = 0;
  while (segment < 8 && value >= (0x40 << segment)) segment++;
  if (segment >= 8) return 0x7f ^ mask;
  return ((segment << 4) | ((value >> (segment + 1)) & 0x0f)) ^ mask;
}

export function fromMuLaw(byte) {
  const u = ~byte & 0xff;
  const magnitude = ((((u & 0x0f) << 3) + 0x84) << ((u >> 4) & 7)) - 0x84;
  return u & 0x80 ? -magnitude : magnitude;
}

export function aLaw(sample) {
  let value = sample >> 3;
  let mask = 0xd5;
  if (value < 0) { mask = 0x55; value = -value - 1; }
  let segment = 0;
  while (segment < 8 && value >= (0x20 << segment)) segment++;
  if (segment >= 8) return 0x7f ^ mask;
  return ((segment << 4) | ((value >> (segment < 2 ? 1 : segment)) & 0x0f)) ^ mask;
}

export function fromALaw(byte) {
  const a = byte ^ 0x55;
  const segment = (a >> 4) & 7;
  let value = ((a & 0x0f) << 4) + (segment ? 0x108 : 8);
  if (segment > 1) value <<= segment - 1;
  return a & 0x80 ? value : -value;
}

const CODECS = {
  mulaw: { bytes: 1, encode: muLaw, decode: fromMuLaw },
  alaw: { bytes: 1, encode: aLaw, decode: fromALaw },
  l16: { bytes: 2 },
};

export function encode(encoding, samples) {  // Int16Array -> Uint8Array
  const codec = CODECS[encoding];
  if (codec.bytes === 2) return new Uint8Array(new Int16Array(samples).buffer);
  return Uint8Array.from(samples, codec.encode);
}

export function decode(encoding, bytes) {  // Uint8Array -> Int16Array
  const codec = CODECS[encoding];
  if (codec.bytes === 2) return new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length >> 1);
  return Int16Array.from(bytes, codec.decode);
}

const b64 = (bytes) => btoa(String.fromCharCode(...bytes));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const hex = (n) => [...crypto.getRandomValues(new Uint8Array(n))]
  .map((b) => b.toString(16).padStart(2, "0")).join("");
const uuid = () => crypto.randomUUID();

// ------------------------------------------------------------------ each provider's words

// Twilio, Telnyx and Exotel share a shape: every message names the event, a sequence number
// and the stream, each in that provider's spelling.
function framed(sequence, stream) {
  return (call, event, fields) => ({ event, [sequence]: String(call.next()), [stream]: call.streamId, ...fields });
}

const twilio = framed("sequenceNumber", "streamSid");
const telnyx = framed("sequence_number", "stream_id");
const exotel = framed("sequence_number", "stream_sid");
const chunk = (call, payload) => ({ chunk: String(call.chunk()), timestamp: String(call.sentMs()), payload: b64(payload) });

export const PROVIDERS = {
  twilio: {
    label: "Twilio (μ-law)", encoding: "mulaw", confirmsCleared: true,
    ids: () => [`CA${hex(16)}`, `MZ${hex(16)}`, `AC${hex(16)}`],
    open: (c) => [{ event: "connected", protocol: "Call", version: "1.0.0" }, twilio(c, "start", { start: {
      accountSid: c.accountId, streamSid: c.streamId, callSid: c.callId, tracks: ["inbound"],
      customParameters: {}, mediaFormat: { encoding: "audio/x-mulaw", sampleRate: RATE, channels: 1 },
    } })],
    media: (c, payload) => twilio(c, "media", { media: { track: "inbound", ...chunk(c, payload) } }),
    dtmf: (c, digit) => twilio(c, "dtmf", { dtmf: { track: "inbound_track", digit } }),
    stop: (c) => twilio(c, "stop", { stop: { accountSid: c.accountId, callSid: c.callId } }),
    confirm: (c, name) => twilio(c, "mark", { mark: { name } }),
  },
  telnyx: {
    label: "Telnyx (PCMU, μ-law)", encoding: "mulaw", confirmsCleared: true,
    ids: () => [`v3:${hex(18)}`, uuid(), uuid()],
    open: (c) => [{ event: "connected", version: "1.0.0" }, telnyx(c, "start", { start: {
      user_id: c.accountId, call_control_id: c.callId, call_session_id: uuid(), from: c.from,
      to: c.to, tags: [], client_state: null, custom_parameters: {},
      media_format: { encoding: c.encoding === "alaw" ? "PCMA" : "PCMU", sample_rate: RATE, channels: 1 },
    } })],
    media: (c, payload) => telnyx(c, "media", { media: { track: "inbound", ...chunk(c, payload) } }),
    dtmf: (c, digit) => telnyx(c, "dtmf", { occurred_at: new Date().toISOString(), dtmf: { digit } }),
    stop: (c) => telnyx(c, "stop", { stop: { user_id: c.accountId, call_control_id: c.callId } }),
    confirm: (c, name) => telnyx(c, "mark", { mark: { name } }),
  },
  plivo: {
    label: "Plivo (μ-law)", encoding: "mulaw",
    ids: () => [uuid(), uuid(), `MA${hex(9).toUpperCase()}`],
    events: { playAudio: "media", checkpoint: "mark", clearAudio: "clear" },
    markName: (m) => m.name,
    open: (c) => [{ event: "start", sequenceNumber: c.next(), start: {
      callId: c.callId, streamId: c.streamId, accountId: c.accountId, tracks: ["inbound"],
      mediaFormat: { encoding: "audio/x-mulaw", sampleRate: RATE },
    }, extra_headers: "" }],
    media: (c, payload) => ({ event: "media", sequenceNumber: c.next(), streamId: c.streamId, media: {
      track: "inbound", timestamp: String(Date.now()), chunk: c.chunk(), payload: b64(payload),
    }, extra_headers: "" }),
    dtmf: (c, digit) => ({ event: "dtmf", sequenceNumber: c.next(), streamId: c.streamId,
      dtmf: { track: "inbound", digit, timestamp: String(Date.now()) } }),
    confirm: (c, name) => ({ event: "playedStream", sequenceNumber: c.next(), streamId: c.streamId, name }),
    clearAck: (c) => ({ event: "clearedAudio", sequenceNumber: c.next(), streamId: c.streamId }),
  },
  exotel: {
    label: "Exotel (L16)", encoding: "l16", frameMs: 100,  // Exotel sends about every 100 ms
    ids: () => [hex(16), hex(16), `exotel${hex(4)}`],
    open: (c) => [{ event: "connected" }, exotel(c, "start", { start: {
      stream_sid: c.streamId, call_sid: c.callId, account_sid: c.accountId, from: c.from, to: c.to,
      custom_parameters: {}, media_format: { encoding: "audio/x-raw", sample_rate: String(RATE), bit_rate: "16" },
    } })],
    media: (c, payload) => exotel(c, "media", { media: chunk(c, payload) }),
    dtmf: (c, digit) => exotel(c, "dtmf", { dtmf: { digit, duration: "100" } }),
    stop: (c) => exotel(c, "stop", { stop: { call_sid: c.callId, account_sid: c.accountId, reason: "callended" } }),
    confirm: (c, name) => exotel(c, "mark", { mark: { name } }),
  },
  vonage: {
    label: "Vonage (L16)", encoding: "l16",
    ids: () => [uuid(), "", ""],
    open: (c) => [{ event: "websocket:connected", "content-type": `audio/l16;rate=${RATE}`,
      uuid: c.callId, from: c.from, to: c.to }],
    media: (c, payload) => payload,  // binary frames, no JSON
    dtmf: (c, digit) => ({ event: "websocket:dtmf", digit, duration: 100 }),
    confirm: (c, name) => ({ event: "websocket:notify", payload: { name } }),
    clearAck: () => ({ event: "websocket:cleared" }),
    read: (data) => {
      if (typeof data !== "string") return ["media", new Uint8Array(data)];
      const message = JSON.parse(data);
      if (message.action === "notify") return ["mark", message.payload?.name];
      return [message.action, null];
    },
  },
};

// What the server sent, as [kind, value]: ["media", bytes], ["mark", name], ["clear", null].
function read(provider, data) {
  if (provider.read) return provider.read(data);
  const message = JSON.parse(data);
  const kind = (provider.events || { media: "media", mark: "mark", clear: "clear" })[message.event];
  if (kind === "media") return [kind, unb64(message.media.payload)];
  if (kind === "mark") return [kind, provider.markName ? provider.markName(message) : message.mark?.name];
  return [kind || message.event, null];
}

// ------------------------------------------------------------------ one call

export class PhoneCall {
  // `name` is a provider; `encoding` overrides its audio (Telnyx: "alaw" for PCMA).
  constructor(name, { encoding, onEnded, onEvent }) {
    this.name = name;
    this.provider = PROVIDERS[name];
    this.encoding = encoding || this.provider.encoding;
    [this.callId, this.streamId, this.accountId] = this.provider.ids();
    this.from = "+15550100";
    this.to = "+15550199";
    this.onEnded = onEnded;
    this.onEvent = onEvent;
    this.counter = 0;
    this.chunks = 0;
    this.sentSamples = 0;
    this.heardSamples = 0;
    this.bytesReceived = 0;
    this.pending = [];  // captured samples not yet sent
    this.playing = new Set();
    this.marks = new Map();  // timer -> name
    this.playEnd = 0;
    this.ended = false;
  }

  next() { return ++this.counter; }
  chunk() { return ++this.chunks; }
  sentMs() { return Math.round(this.sentSamples / RATE * 1000); }

  async start(microphone, url) {
    const context = this.context = new AudioContext({ sampleRate: RATE });
    await context.audioWorklet.addModule("/page/phone-capture.js");
    this.output = context.createGain();
    this.output.connect(context.destination);
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 256;
    this.output.connect(this.analyser);

    const ws = this.ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(`could not open ${url}`));
    });
    ws.onmessage = ({ data }) => this.receive(data);
    ws.onclose = ({ code, reason }) => this.end(reason || `the call ended (${code})`);
    this.provider.open(this).forEach((message) => this.send(message));

    this.capture = new AudioWorkletNode(context, "phone-capture");
    this.capture.port.onmessage = ({ data }) => this.captured(data);
    this.capture.connect(context.destination);  // outputs silence; keeps the node running
    this.listen(microphone);
    await context.resume();
  }

  listen(microphone) {  // (another) microphone stream to send
    this.source?.disconnect();
    this.source = this.context.createMediaStreamSource(microphone);
    this.source.connect(this.capture);
  }

  send(message) {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(message instanceof Uint8Array ? message : JSON.stringify(message));
  }

  captured(samples) {
    const frame = RATE * (this.provider.frameMs || 20) / 1000;
    for (const sample of samples) this.pending.push(Math.max(-32768, Math.min(32767, Math.round(sample * 32767))));
    while (this.pending.length >= frame) {
      const pcm = Int16Array.from(this.pending.splice(0, frame));
      this.send(this.provider.media(this, encode(this.encoding, pcm)));
      this.sentSamples += frame;
    }
  }

  receive(data) {
    let kind, value;
    try {
      [kind, value] = read(this.provider, data);
    } catch (error) {
      this.onEvent(`unreadable message from the server: ${error.message}`);
      return;
    }
    if (kind === "media") this.play(value);
    else if (kind === "mark") this.mark(value);
    else if (kind === "clear") this.clear();
    else this.onEvent(`the server sent ${kind}, which ${this.name} does not accept`);
  }

  play(bytes) {
    this.bytesReceived += bytes.length;
    const pcm = decode(this.encoding, bytes);
    this.heardSamples += pcm.length;
    const buffer = this.context.createBuffer(1, pcm.length, RATE);
    buffer.getChannelData(0).set(Float32Array.from(pcm, (s) => s / 32768));
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    const at = Math.max(this.playEnd, this.context.currentTime + 0.05);
    source.start(at);
    this.playEnd = at + buffer.duration;
    this.playing.add(source);
    source.onended = () => this.playing.delete(source);
  }

  // Confirmed once the audio before it has played, as the provider does.
  mark(name) {
    const wait = Math.max(0, this.playEnd - this.context.currentTime) * 1000;
    const timer = setTimeout(() => {
      this.marks.delete(timer);
      this.send(this.provider.confirm(this, name));
    }, wait);
    this.marks.set(timer, name);
  }

  clear() {
    this.playing.forEach((source) => source.stop());
    this.playing.clear();
    this.playEnd = 0;
    for (const [timer, name] of this.marks) {
      clearTimeout(timer);
      if (this.provider.confirmsCleared) this.send(this.provider.confirm(this, name));
    }
    this.marks.clear();
    if (this.provider.clearAck) this.send(this.provider.clearAck(this));
    this.onEvent("the bot cleared its audio (barge-in)");
  }

  dtmf(digit) {
    this.send(this.provider.dtmf(this, digit));
  }

  hangUp() {
    if (this.provider.stop) this.send(this.provider.stop(this));
    this.end("you hung up", true);
  }

  end(reason, byUs = false) {
    if (this.ended) return;
    this.ended = true;
    this.marks.forEach((_, timer) => clearTimeout(timer));
    this.ws?.close(1000);
    this.context?.close();
    this.onEnded(reason, byUs);
  }
}
