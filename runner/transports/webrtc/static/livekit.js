// The page's LiveKit mode: join the room of a session that runner's /start made, as any LiveKit
// client would.
//
// POST /start {"transport": "livekit", "body"?} -> {url, token, sessionId}; Room.connect(url,
// token) with livekit-client (the npm package, copied into vendor/ by `make livekit-client`);
// the microphone is published, the bot's audio plays, app messages are data packets (reliable,
// JSON, on the topic runner uses). /livekit/page says whether the client is built, that topic,
// and whether webrtc is served too.

const START_TIMEOUT_MS = 15000;

// What the server says about LiveKit; null when it does not serve LiveKit.
export async function livekitConfig(headers) {
  const response = await fetch("/livekit/page", { cache: "no-store", headers });
  return response.ok ? response.json() : null;
}

export class RoomCall {
  // onEnded(reason, byUs) once the call is over; onMessage(data) for each app message;
  // onAudio(stream) when the bot's audio arrives.
  constructor(config, { onEnded, onMessage, onAudio, onEvent }) {
    this.config = config;
    this.handlers = { onEnded, onMessage, onAudio, onEvent };
    this.room = null;
    this.ended = false;
    this.sessionId = null;
  }

  async start(microphone, headers, body) {
    if (!this.config.client) throw new Error(this.config.build);
    const { DisconnectReason, Room, RoomEvent, Track } = await import(this.config.client);
    const response = await fetch("/start", {
      method: "POST", headers: { ...headers, "Content-Type": "application/json" },
      body: JSON.stringify({ transport: "livekit", ...(body === undefined ? {} : { body }) }),
      signal: AbortSignal.timeout(START_TIMEOUT_MS),
    });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.detail || `/start answered ${response.status}`);
    this.sessionId = answer.sessionId;
    this.handlers.onEvent(`session ${answer.sessionId}: joining ${answer.url}`);

    const room = this.room = new Room();
    room.on(RoomEvent.TrackSubscribed, (track) => {
      if (track.kind === Track.Kind.Audio) this.handlers.onAudio(new MediaStream([track.mediaStreamTrack]));
    });
    room.on(RoomEvent.DataReceived, (payload, participant, kind, topic) => this.receive(payload, topic));
    room.on(RoomEvent.ParticipantConnected, (participant) => this.handlers.onEvent(`${participant.identity} joined`));
    room.on(RoomEvent.ParticipantDisconnected, (participant) => {
      if (participant.isAgent) this.end("the bot left the room");
      else this.handlers.onEvent(`${participant.identity} left`);
    });
    await room.connect(answer.url, answer.token);  // a failure throws: no Disconnected handler yet
    if (this.ended) throw new Error("hung up while joining");
    room.on(RoomEvent.Disconnected, (reason) => this.end(`left the room (${DisconnectReason[reason] ?? "disconnected"})`));
    this.microphone = await room.localParticipant.publishTrack(
      microphone.getAudioTracks()[0], { source: Track.Source.Microphone });
  }

  // Another microphone: its track replaces the published one.
  async listen(microphone) {
    await this.microphone?.track?.replaceTrack(microphone.getAudioTracks()[0]);
  }

  receive(payload, topic) {
    if (topic !== this.config.topic) return;
    const text = new TextDecoder().decode(payload);
    try {
      this.handlers.onMessage(JSON.parse(text));
    } catch {
      this.handlers.onMessage(text);
    }
  }

  async send(data) {
    if (!this.room || this.ended) throw new Error("not in the room");
    await this.room.localParticipant.publishData(new TextEncoder().encode(JSON.stringify(data)),
      { reliable: true, topic: this.config.topic });
  }

  hangUp() { this.end("hung up", true); }

  end(reason, byUs = false) {
    if (this.ended) return;
    this.ended = true;
    this.room?.disconnect().catch(() => {});  // leaving a room that never opened may refuse
    this.handlers.onEnded(reason, byUs);
  }
}
