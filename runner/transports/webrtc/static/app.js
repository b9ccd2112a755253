// The runner page: talk to the bot over WebRTC, as the SmallWebRTC clients do.
//
// Protocol: POST /api/offer {sdp, type, pc_id, restart_pc, requestData} -> {sdp, type, pc_id};
// our ICE candidates trickle by PATCH /api/offer every 200 ms; a data channel labelled "chat"
// carries "ping: <ms>" every second, app messages (JSON) and the signalling envelope
// {"type": "signalling", "message": {...}} (renegotiate, peerLeft, trackStatus).
//
// Reconnecting: when the connection is lost the page offers again with restart_pc (the server
// keeps the session if it still has it). When the server says peerLeft, the page asks
// /page/config for the server's instance id: a new id means the server restarted (runner dev
// reloads on every save), so it reconnects; the same id means the bot ended the session.
//
// Phone mode (shown when /page/config lists phone providers, i.e. the server mounts /ws): the
// microphone becomes a call in that provider's protocol (phone.js), with a keypad for DTMF.
//
// LiveKit mode (shown when the server serves LiveKit's /start): the page joins the session's
// room with livekit-client (livekit.js); the only mode when webrtc is not served.

import { livekitConfig, RoomCall } from "./livekit.js";
import { PhoneCall, PROVIDERS } from "./phone.js";

const PING_MS = 1000;
const TRICKLE_MS = 200;
const INTERRUPTED_MS = 4000;
const CONNECT_TIMEOUT_MS = 15000;
const CONFIG_TIMEOUT_MS = 3000;
const RETRY_MAX_MS = 4000;
const LOG_LIMIT = 500;
const METER_MS = 100;
const PEAK_HOLD_MS = 1000;  // a meter's peak marker shows the loudest moment this recent
const PEAK_FALL = 0.1;      // and falls at most this much of the scale per METER_MS
const MICROPHONE = 0;
const CAMERA = 1;

const $ = (id) => document.getElementById(id);
const ui = {
  state: $("state"), connect: $("connect"), mute: $("mute"), mic: $("mic"),
  levelIn: $("level-in"), levelOut: $("level-out"), cameraControls: $("camera-controls"),
  peakIn: $("peak-in"), peakOut: $("peak-out"),
  camera: $("camera"), videoPanel: $("video-panel"), botVideo: $("bot-video"),
  selfVideo: $("self-video"), botAudio: $("bot-audio"), log: $("log"), clearLog: $("clear-log"),
  form: $("send-form"), message: $("message"), send: $("send"), requestData: $("request-data"),
  apiKey: $("api-key"),
  mode: $("mode"), modeWebrtc: $("mode-webrtc"), modeLivekit: $("mode-livekit"),
  modePhone: $("mode-phone"), livekitNote: $("livekit-note"),
  phoneControls: $("phone-controls"), provider: $("provider"), keypad: $("keypad"),
  factPc: $("fact-pc"), factRtt: $("fact-rtt"), factBytes: $("fact-bytes"),
};

const page = {
  state: "idle",
  wanted: false,        // the person wants to be connected (reconnect while true)
  instance: null,       // the server process we talk to (/page/config)
  iceServers: [],
  conn: null,           // the current Connection
  call: null,           // the current PhoneCall, in phone mode
  room: null,           // the current RoomCall, in LiveKit mode
  livekit: null,        // what /livekit/page said, when the server serves LiveKit
  lastPcId: null,       // for restart_pc after a lost connection
  micStream: null,
  cameraTrack: null,
  muted: false,
  audio: null,          // {context, input, output} analysers for the meters
  levels: { input: 0, output: 0 },
  peaks: { input: { level: 0, recent: [] }, output: { level: 0, recent: [] } },  // the markers
  stats: { bytesReceived: 0, rtt: null },
};
window.runnerPage = page;  // for the console and for tests

// ------------------------------------------------------------------ log and state

function log(kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  const time = document.createElement("time");
  const now = new Date();
  time.dateTime = now.toISOString();
  time.textContent = now.toLocaleTimeString();
  const label = document.createElement("span");
  label.className = "kind";
  label.textContent = { info: "info", in: "bot →", out: "→ bot", error: "error" }[kind];
  item.append(time, label, document.createTextNode(text));
  const atBottom = ui.log.scrollTop + ui.log.clientHeight >= ui.log.scrollHeight - 8;
  ui.log.append(item);
  while (ui.log.children.length > LOG_LIMIT) ui.log.firstElementChild.remove();
  if (atBottom) ui.log.scrollTop = ui.log.scrollHeight;
}

const STATE_LABELS = {
  idle: "Disconnected", connecting: "Connecting…", connected: "Connected",
  reconnecting: "Reconnecting…", error: "Not connected",
};

function setState(state, detail = "") {
  page.state = state;
  ui.state.dataset.state = state;
  ui.state.textContent = STATE_LABELS[state] + (detail ? ` — ${detail}` : "");
  const live = state === "connected";
  ui.mute.disabled = !live;
  ui.send.disabled = !live;
  showMode();
  if (!page.wanted) {
    ui.cameraControls.hidden = true;
    ui.videoPanel.hidden = true;
  }
}

// ------------------------------------------------------------------ server and devices

function refusal(response, detail) {
  if (response.status === 401) return new Error("the server needs its API key: enter it under Session options");
  return new Error(detail || `the server answered ${response.status}`);
}

function headers(extra = {}) {
  const key = ui.apiKey.value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function fetchConfig() {
  const response = await fetch("/page/config", {
    cache: "no-store", headers: headers(), signal: AbortSignal.timeout(CONFIG_TIMEOUT_MS),
  });
  if (!response.ok) throw refusal(response);
  return response.json();
}

async function send(method, body) {
  const response = await fetch("/api/offer", {
    method, headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body),
    signal: AbortSignal.timeout(CONNECT_TIMEOUT_MS),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw refusal(response, data.detail);
  return data;
}

async function openMicrophone() {
  if (page.micStream && page.micStream.getAudioTracks().some((t) => t.readyState === "live")) {
    return page.micStream;
  }
  const deviceId = ui.mic.value;
  page.micStream = await navigator.mediaDevices.getUserMedia({
    audio: deviceId ? { deviceId: { exact: deviceId } } : true,
  });
  page.micStream.getAudioTracks()[0].enabled = !page.muted;
  meterInput(page.micStream);
  await listMicrophones();
  return page.micStream;
}

function closeMicrophone() {
  page.micStream?.getTracks().forEach((track) => track.stop());
  page.micStream = null;
}

async function listMicrophones() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const chosen = ui.mic.value;
  const inputs = devices.filter((d) => d.kind === "audioinput" && d.deviceId);
  ui.mic.replaceChildren(new Option("Default microphone", ""),
    ...inputs.map((d, i) => new Option(d.label || `Microphone ${i + 1}`, d.deviceId)));
  ui.mic.value = inputs.some((d) => d.deviceId === chosen) ? chosen : "";
}

// ------------------------------------------------------------------ level meters

function audioGraph() {
  if (!page.audio) page.audio = { context: new AudioContext(), input: null, output: null };
  page.audio.context.resume();
  return page.audio;
}

function analyser(stream) {
  const graph = audioGraph();
  const node = graph.context.createAnalyser();
  node.fftSize = 1024;
  graph.context.createMediaStreamSource(stream).connect(node);
  return node;
}

function meterInput(stream) { audioGraph().input = analyser(stream); }
function meterOutput(stream) { audioGraph().output = analyser(stream); }

function level(node) {
  if (!node) return 0;
  const samples = new Float32Array(node.fftSize);
  node.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const value of samples) sum += value * value;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? Math.min(1, Math.max(0, (20 * Math.log10(rms) + 60) / 60)) : 0;
}

// A meter's peak: the loudest level of the last PEAK_HOLD_MS, falling gently once that is over.
function hold(peak, value) {
  peak.recent = [...peak.recent.slice(1 - PEAK_HOLD_MS / METER_MS), value];
  peak.level = Math.max(...peak.recent, peak.level - PEAK_FALL);
  return peak.level;
}

function show(meter, marker, value, peak) {
  meter.value = value;
  marker.hidden = peak <= 0;
  marker.style.setProperty("--peak", peak);
}

setInterval(() => {
  page.levels.input = page.micStream && !page.muted ? level(page.audio?.input) : 0;
  page.levels.output = page.conn || page.call || page.room ? level(page.audio?.output) : 0;
  show(ui.levelIn, ui.peakIn, page.levels.input, hold(page.peaks.input, page.levels.input));
  show(ui.levelOut, ui.peakOut, page.levels.output, hold(page.peaks.output, page.levels.output));
}, METER_MS);

setInterval(async () => {
  if (page.call) page.stats.bytesReceived = page.call.bytesReceived;
  const pc = page.conn?.pc;
  if (!pc) {
    if (page.call) ui.factBytes.textContent = `${(page.stats.bytesReceived / 1024).toFixed(1)} kB`;
    return;
  }
  const report = await pc.getStats();
  report.forEach((stat) => {
    if (stat.type === "inbound-rtp" && stat.kind === "audio") page.stats.bytesReceived = stat.bytesReceived;
    if (stat.type === "candidate-pair" && stat.nominated && stat.currentRoundTripTime !== undefined) {
      page.stats.rtt = stat.currentRoundTripTime;
    }
  });
  ui.factBytes.textContent = `${(page.stats.bytesReceived / 1024).toFixed(1)} kB`;
  ui.factRtt.textContent = page.stats.rtt === null ? "–" : `${Math.round(page.stats.rtt * 1000)} ms`;
}, 1000);

// ------------------------------------------------------------------ one peer connection

class Connection {
  constructor({ onLost }) {
    this.onLost = onLost;
    this.pcId = null;
    this.outbox = [];
    this.timers = [];
    this.closed = false;
    this.live = false;
  }

  async start(restartPcId) {
    const pc = this.pc = new RTCPeerConnection({ iceServers: page.iceServers });
    const mic = page.micStream.getAudioTracks()[0];
    pc.addTransceiver(mic, { direction: "sendrecv", streams: [page.micStream] });
    this.camera = pc.addTransceiver(page.cameraTrack || "video", { direction: "sendrecv" });
    this.channel = pc.createDataChannel("chat", { ordered: true });

    const connected = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    connected.catch(() => {});  // awaited below; this only keeps an early failure from being "unhandled"
    this.timers.push(setTimeout(() => this.lost("no connection within 15 s"), CONNECT_TIMEOUT_MS));
    pc.onicecandidate = ({ candidate }) => this.queueCandidate(candidate);
    pc.ontrack = ({ track }) => this.showTrack(track);
    pc.onconnectionstatechange = () => this.stateChanged();
    this.channel.onopen = () => this.channelOpen();
    this.channel.onclose = () => this.lost("the data channel closed");
    this.channel.onmessage = ({ data }) => this.receive(data);

    await this.negotiate(restartPcId);
    await connected;
  }

  async negotiate(restartPcId = null) {
    await this.pc.setLocalDescription(await this.pc.createOffer());
    const body = { sdp: this.pc.localDescription.sdp, type: "offer" };
    if (this.pcId) {
      body.pc_id = this.pcId;
    } else {
      body.pc_id = restartPcId;
      body.restart_pc = Boolean(restartPcId);
      body.requestData = requestData();
    }
    const answer = await send("POST", body);
    if (this.closed) return;
    this.pcId = page.lastPcId = answer.pc_id;
    ui.factPc.textContent = answer.pc_id;
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    this.flushCandidates();
    const video = this.camera.currentDirection && this.camera.currentDirection !== "inactive";
    ui.cameraControls.hidden = !video;
    ui.videoPanel.hidden = !video;
  }

  queueCandidate(candidate) {
    if (candidate && !candidate.candidate) return;  // per-section end; the null below ends all
    this.outbox.push(candidate
      ? { candidate: candidate.candidate, sdp_mid: candidate.sdpMid, sdp_mline_index: candidate.sdpMLineIndex }
      : { candidate: "", sdp_mid: "0", sdp_mline_index: 0 });
    if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flushCandidates(), TRICKLE_MS);
  }

  flushCandidates() {
    clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (!this.pcId || !this.outbox.length || this.closed) return;
    const candidates = this.outbox.splice(0);
    send("PATCH", { pc_id: this.pcId, candidates })
      .catch((error) => log("error", `sending ICE candidates failed: ${error.message}`));
  }

  showTrack(track) {
    const stream = new MediaStream([track]);
    if (track.kind === "audio") {
      ui.botAudio.srcObject = stream;
      ui.botAudio.play().catch(() => log("info", "click the page to hear the bot"));
      meterOutput(stream);
    } else {
      ui.botVideo.srcObject = stream;
    }
  }

  stateChanged() {
    const state = this.pc.connectionState;
    if (state === "connected") {
      clearTimeout(this.interrupted);
      if (!this.live) {
        this.live = true;
        this.settle.resolve();
      }
    } else if (state === "failed") {
      this.lost("the connection failed");
    } else if (state === "disconnected") {
      this.interrupted = setTimeout(() => this.lost("the connection was interrupted"), INTERRUPTED_MS);
    }
  }

  channelOpen() {
    this.timers.push(setInterval(() => {
      if (this.channel.readyState === "open") this.channel.send(`ping: ${Date.now()}`);
    }, PING_MS));
    if (page.muted) this.signal({ type: "trackStatus", receiver_index: MICROPHONE, enabled: false });
    if (page.cameraTrack) this.signal({ type: "trackStatus", receiver_index: CAMERA, enabled: true });
  }

  receive(text) {
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      log("in", text);
      return;
    }
    if (data && data.type === "signalling") {
      const kind = data.message?.type;
      if (kind === "renegotiate") {
        log("info", "the bot asked to renegotiate (video)");
        this.negotiate().catch((error) => log("error", `renegotiation failed: ${error.message}`));
      } else if (kind === "peerLeft") {
        this.lost("the server ended the session", true);
      }
      return;
    }
    log("in", JSON.stringify(data));
  }

  send(data) {
    if (this.channel?.readyState !== "open") throw new Error("the data channel is not open");
    this.channel.send(JSON.stringify(data));
  }

  signal(message) {
    if (this.channel?.readyState === "open") {
      this.channel.send(JSON.stringify({ type: "signalling", message }));
    }
  }

  lost(reason, peerLeft = false) {
    if (this.closed) return;
    const wasLive = this.live;
    this.close(false, reason);
    if (wasLive) this.onLost(reason, peerLeft);
  }

  close(sayGoodbye, reason = "disconnected") {
    if (this.closed) return;
    this.closed = true;
    if (!this.live) this.settle?.reject(new Error(reason));
    if (sayGoodbye) this.signal({ type: "peerLeft" });
    this.timers.forEach((timer) => { clearTimeout(timer); clearInterval(timer); });
    clearTimeout(this.interrupted);
    clearTimeout(this.flushTimer);
    // Give peerLeft a moment on the wire before the connection goes.
    setTimeout(() => this.pc?.close(), sayGoodbye ? 100 : 0);
  }
}

function requestData() {
  const text = ui.requestData.value.trim();
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    log("error", "request data is not valid JSON; sent as text");
    return text;
  }
}

// ------------------------------------------------------------------ connecting

async function openConnection(restartPcId) {
  const config = await fetchConfig();
  page.instance = config.instance;
  page.iceServers = config.iceServers;
  await openMicrophone();
  const conn = new Connection({ onLost });
  page.conn = conn;
  try {
    await conn.start(restartPcId);
  } catch (error) {
    conn.close(false);
    if (page.conn === conn) page.conn = null;
    throw error;
  }
  setState("connected");
  log("info", restartPcId ? "reconnected" : "connected");
}

async function onLost(reason, peerLeft) {
  page.conn = null;
  ui.botAudio.srcObject = null;
  if (page.audio) page.audio.output = null;
  log("info", reason);
  if (!page.wanted) return;
  if (peerLeft) {
    const config = await fetchConfig().catch(() => null);
    if (config && config.instance === page.instance) {
      page.wanted = false;
      closeMicrophone();
      setState("idle", "the bot ended the session");
      return;
    }
    log("info", "the server restarted; reconnecting");
  }
  await reconnect(peerLeft ? null : page.lastPcId);
}

async function reconnect(restartPcId) {
  setState("reconnecting");
  let delay = 500;
  while (page.wanted && !page.conn) {
    try {
      await openConnection(restartPcId);
      return;
    } catch (error) {
      setState("reconnecting", error.message);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, RETRY_MAX_MS);
  }
}

async function connect() {
  page.wanted = true;
  audioGraph();  // created inside the click, so the browser lets it play
  setState("connecting");
  try {
    const starts = { phone: startCall, livekit: joinRoom, webrtc: () => openConnection(null) };
    await starts[mode()]();
  } catch (error) {
    if (!page.wanted) return;  // cancelled with Disconnect
    page.wanted = false;
    closeMicrophone();
    setState("error", error.message);
    log("error", `could not connect: ${error.message}`);
  }
}

function disconnect() {
  page.wanted = false;
  page.call?.hangUp();
  page.room?.hangUp();
  page.conn?.close(true);
  page.conn = null;
  ui.botAudio.srcObject = null;
  stopCamera();
  closeMicrophone();
  setState("idle");
  log("info", "disconnected");
}

// ------------------------------------------------------------------ modes, and phone mode

function mode() {
  return ui.mode.hidden ? "webrtc" : ui.mode.querySelector("input:checked").value;
}

const CONNECT_LABELS = {
  webrtc: ["Connect", "Disconnect"], phone: ["Call", "Hang up"], livekit: ["Join room", "Hang up"],
};

function showMode() {
  const chosen = mode();
  const phone = chosen === "phone";
  ui.connect.textContent = CONNECT_LABELS[chosen][page.wanted ? 1 : 0];
  ui.connect.classList.toggle("primary", !page.wanted);
  ui.connect.classList.toggle("danger", chosen !== "webrtc" && page.wanted);
  ui.form.hidden = phone;  // a phone call carries no app messages
  ui.phoneControls.hidden = !phone;
  ui.keypad.hidden = !phone;
  ui.keypad.querySelectorAll("button").forEach((button) => { button.disabled = page.state !== "connected"; });
  ui.mode.querySelectorAll("input").forEach((input) => { input.disabled = page.wanted; });
  ui.provider.disabled = page.wanted;
}

async function showModes() {
  const config = await fetchConfig().catch(() => null);
  if (!config || config.livekit) await showLivekitMode();  // no config: LiveKit serves the page
  const served = Object.keys(PROVIDERS).filter((name) => config?.phone?.includes(name));
  if (!served.length) return;
  ui.provider.replaceChildren(...served.flatMap((name) => [
    new Option(PROVIDERS[name].label, name),
    ...(name === "telnyx" ? [new Option("Telnyx (PCMA, A-law)", "telnyx:alaw")] : []),
  ]));
  ui.modePhone.hidden = false;
  ui.mode.hidden = false;
}

async function startCall() {
  const [name, encoding] = ui.provider.value.split(":");
  await openMicrophone();
  const call = new PhoneCall(name, { encoding, onEnded: callEnded, onEvent: (text) => log("info", text) });
  page.call = call;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/${name}`;
  try {
    await call.start(page.micStream, url);
  } catch (error) {
    call.end(error.message, true);
    throw error;
  }
  audioGraph().output = call.analyser;
  setState("connected", `a ${name} call`);
  log("info", `calling as ${name} would, on /ws/${name} (${call.encoding}, 8 kHz)`);
}

// ------------------------------------------------------------------ LiveKit mode

async function showLivekitMode() {
  const config = page.livekit = await livekitConfig(headers()).catch(() => null);
  if (!config) return;
  ui.modeLivekit.hidden = false;
  ui.mode.hidden = false;
  if (config.build) {
    ui.livekitNote.textContent = `LiveKit: ${config.build}.`;
    ui.livekitNote.hidden = false;
  }
  if (!config.webrtc) {  // LiveKit is all this server offers the page
    ui.modeWebrtc.hidden = true;
    ui.modeLivekit.querySelector("input").checked = true;
  }
}

async function joinRoom() {
  await openMicrophone();
  const room = new RoomCall(page.livekit, {
    onEnded: roomEnded,
    onMessage: (data) => log("in", JSON.stringify(data)),
    onEvent: (text) => log("info", text),
    onAudio: (stream) => {
      ui.botAudio.srcObject = stream;
      ui.botAudio.play().catch(() => log("info", "click the page to hear the bot"));
      meterOutput(stream);
    },
  });
  page.room = room;
  try {
    await room.start(page.micStream, headers(), requestData());
  } catch (error) {
    room.end(error.message, true);
    throw error;
  }
  setState("connected", "in a LiveKit room");
  log("info", "joined the LiveKit room; the microphone is published");
}

function roomEnded(reason, byUs) {
  page.room = null;
  ui.botAudio.srcObject = null;
  ended(reason, byUs);
}

function callEnded(reason, byUs) {
  page.call = null;
  ended(reason, byUs);
}

// A call or a room is over: back to idle, unless the person ended it (disconnect() does that).
function ended(reason, byUs) {
  if (page.audio) page.audio.output = null;
  log("info", reason);
  if (byUs || !page.wanted) return;
  page.wanted = false;
  closeMicrophone();
  setState("idle", reason);
}

function pressKey(event) {
  const digit = event.target.closest("button")?.textContent;
  if (!digit || !page.call) return;
  page.call.dtmf(digit);
  log("out", `DTMF ${digit}`);
}

// ------------------------------------------------------------------ controls

async function switchMicrophone() {
  if (!page.micStream) return;
  closeMicrophone();
  try {
    const stream = await openMicrophone();
    page.call?.listen(stream);
    await page.room?.listen(stream);
    const sender = page.conn?.pc.getTransceivers()[MICROPHONE]?.sender;
    await sender?.replaceTrack(stream.getAudioTracks()[0]);
    log("info", `microphone: ${ui.mic.selectedOptions[0].textContent}`);
  } catch (error) {
    log("error", `could not open that microphone: ${error.message}`);
  }
}

function toggleMute() {
  page.muted = !page.muted;
  page.micStream?.getAudioTracks().forEach((track) => { track.enabled = !page.muted; });
  ui.mute.setAttribute("aria-pressed", String(page.muted));
  ui.mute.textContent = page.muted ? "Unmute microphone" : "Mute microphone";
  page.conn?.signal({ type: "trackStatus", receiver_index: MICROPHONE, enabled: !page.muted });
}

async function toggleCamera() {
  if (page.cameraTrack) {
    stopCamera();
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    page.cameraTrack = stream.getVideoTracks()[0];
    ui.selfVideo.srcObject = stream;
    await page.conn?.pc.getTransceivers()[CAMERA]?.sender.replaceTrack(page.cameraTrack);
    page.conn?.signal({ type: "trackStatus", receiver_index: CAMERA, enabled: true });
    ui.camera.setAttribute("aria-pressed", "true");
    ui.camera.textContent = "Turn camera off";
  } catch (error) {
    log("error", `could not open the camera: ${error.message}`);
  }
}

function stopCamera() {
  if (!page.cameraTrack) return;
  page.cameraTrack.stop();
  page.cameraTrack = null;
  ui.selfVideo.srcObject = null;
  page.conn?.pc.getTransceivers()[CAMERA]?.sender.replaceTrack(null);
  page.conn?.signal({ type: "trackStatus", receiver_index: CAMERA, enabled: false });
  ui.camera.setAttribute("aria-pressed", "false");
  ui.camera.textContent = "Turn camera on";
}

function sendMessage(event) {
  event.preventDefault();
  const text = ui.message.value.trim();
  if (!text || !(page.conn || page.room)) return;
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    data = text;
  }
  const sent = page.room ? page.room.send(data) : (async () => page.conn.send(data))();
  sent.then(() => {
    log("out", JSON.stringify(data));
    ui.message.value = "";
  }).catch((error) => log("error", error.message));
}

ui.connect.addEventListener("click", () => (page.wanted ? disconnect() : connect()));
ui.mute.addEventListener("click", toggleMute);
ui.keypad.addEventListener("click", pressKey);
ui.mode.addEventListener("change", showMode);
ui.camera.addEventListener("click", toggleCamera);
ui.mic.addEventListener("change", switchMicrophone);
ui.clearLog.addEventListener("click", () => ui.log.replaceChildren());
ui.apiKey.value = sessionStorage.getItem("runner-api-key") || "";
ui.apiKey.addEventListener("change", () => sessionStorage.setItem("runner-api-key", ui.apiKey.value));
ui.form.addEventListener("submit", sendMessage);
ui.message.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) ui.form.requestSubmit();
});
navigator.mediaDevices?.addEventListener("devicechange", () => listMicrophones().catch(() => {}));
window.addEventListener("pagehide", () => {
  page.conn?.close(true);
  page.call?.hangUp();
  page.room?.hangUp();
});

setState("idle");
showModes().then(showMode);
if (!window.RTCPeerConnection || !navigator.mediaDevices) {
  setState("error", "this browser has no WebRTC (open the page over http://127.0.0.1 or https)");
  ui.connect.disabled = true;
}
