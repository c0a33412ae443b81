// Call media shared by the shopper widget and the staff console.
//
// One RTCPeerConnection per call, with the shopcall SFU at the other end:
//   - the client sends its own `media.offer` (camera/microphone, plus receive slots) and
//     applies the SDP answer carried by the ack;
//   - the server pushes `media.offer` events when it has more to send (another participant's
//     streams): they are answered with `media.answer`;
//   - trickle ICE: our offer leaves at once, our candidates follow one by one
//     (`media.candidate`), so a slow or blocked STUN/TURN server delays nothing; the server's
//     SDP carries its own (host) candidates;
//   - a connection that never comes up says so ("could not connect: the network blocks
//     calls") and reports why to the server (`media.connection`), with retry and audio only;
//   - negotiation steps run one at a time (a promise queue): a server offer never interleaves
//     with our own offer/answer.
//
// CallMedia is the logic (no DOM); CallStage draws remote videos, self view, the notice
// banner and the controls into any container, with classes both stylesheets know.

import { language, t } from './i18n.js';
import { ShopcallError } from './protocol.js';
import { h, icon } from './ui.js';

const MAX_RESTARTS = 2;
// A first connection not up after this long has failed (a network that blocks UDP and a
// TURN relay that is unreachable or refuses us); the user gets retry and audio only.
const CONNECT_TIMEOUT_MS = 20000;
const MAX_ICE_ERRORS = 8;
const DISCONNECT_RESTART_MS = 3000;
const VIDEO_CONSTRAINTS = { width: { ideal: 640 }, height: { ideal: 480 },
  frameRate: { ideal: 30, max: 30 } };
// Remote video is "off" when no frame was decoded for this long while the connection is up.
const STALL_MS = 1500;
// With no video at all this long after connecting, the other side has no camera on.
const NO_VIDEO_MS = 4000;
const FLOW_POLL_MS = 500;
// The stream id (a=msid) of the shopper's try-on mirror sent by the media server.
export const MIRROR_STREAM_ID = 'tryon-mirror';

/**
 * The camera after `currentId` in the device list, wrapping around; null when there is no
 * other one.
 * @param {{deviceId: string}[]} cameras
 * @param {string|null} currentId
 * @returns {string|null}
 */
export function nextCameraId(cameras, currentId) {
  const ids = cameras.map((c) => c.deviceId).filter(Boolean);
  if (ids.length < 2) return null;
  const i = ids.indexOf(currentId);
  return ids[(i + 1) % ids.length];
}

/**
 * What to ask getUserMedia for to get "the other camera".
 *
 * Phones say which way their camera faces (`facingMode` "user" or "environment"): ask for
 * the opposite side and let the browser pick that side's main camera, rather than cycling
 * through every lens a phone lists (an iPhone lists ultra-wide, telephoto and more). Without
 * a facing mode (laptops, external webcams) take the next camera in the device list.
 * @param {{facingMode?: string, deviceId?: string}} settings  the current track's settings
 * @param {{deviceId: string}[]} cameras
 * @returns {{facingMode: {exact: string}} | {deviceId: {exact: string}} | null}
 */
export function nextCameraConstraint(settings, cameras) {
  if (cameras.length < 2) return null;
  const facing = settings && settings.facingMode;
  if (facing === 'user' || facing === 'environment') {
    return { facingMode: { exact: facing === 'user' ? 'environment' : 'user' } };
  }
  const next = nextCameraId(cameras, settings ? settings.deviceId || null : null);
  return next ? { deviceId: { exact: next } } : null;
}

/** RTCIceServer list from `join.ice_servers` (tolerates a bare `urls` string). */
function iceServers(list) {
  if (!Array.isArray(list)) return [];
  return list.filter((s) => s && s.urls).map((s) => {
    const server = { urls: s.urls };
    if (s.username) server.username = s.username;
    if (s.credential) server.credential = s.credential;
    return server;
  });
}

/** Message for the user when the camera or microphone cannot be opened. */
export function deviceErrorText(err, wanted) {
  // One sentence per device: "camera" and "microphone" differ in gender in German/French.
  const what = wanted === 'video' ? 'camera' : 'microphone';
  switch (err && err.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return t(`media.device.${what}.refused`);
    case 'NotFoundError':
    case 'OverconstrainedError':
      return t(`media.device.${what}.notFound`);
    case 'NotReadableError':
    case 'AbortError':
      return t(`media.device.${what}.busy`);
    default:
      return t(`media.device.${what}.failed`);
  }
}

/** Our camera's encodings, full resolution first (see CallMedia.start). */
// The lower encodings are kept cheap so a weak store link (300 kbit/s and less) still
// takes one picture at 7.5-15 fps beside its audio. Chromium sends as many of them as the
// camera's resolution allows (two for 640x480, three from 960x540 up).
const SIMULCAST = [
  { rid: 'f', scalabilityMode: 'L1T3', maxBitrate: 1_500_000 },
  { rid: 'h', scaleResolutionDownBy: 2, scalabilityMode: 'L1T3', maxBitrate: 250_000 },
  { rid: 'q', scaleResolutionDownBy: 4, scalabilityMode: 'L1T3', maxBitrate: 100_000 },
];

export class CallMedia {
  /**
   * @param {object} o
   * @param {import('./protocol.js').SignalingClient} o.client
   * @param {object} o.call   the call (call_id, kind)
   * @param {object} o.join   `join` from call.started / call.accept (ice_servers, kind)
   * @param {boolean} [o.camera=true]     send video (video calls only)
   * @param {boolean} [o.microphone=true] send audio
   * @param {boolean} [o.audioOnly=false] a video call joined with sound only (no video either
   *   way): the fallback offered when video could not connect
   */
  constructor({ client, call, join, camera = true, microphone = true, audioOnly = false }) {
    this.client = client;
    this.callId = call.call_id;
    this.audioOnly = !!audioOnly;
    this.kind = this.audioOnly ? 'audio' : (join && join.kind) || call.kind || 'video';
    this.iceServers = iceServers(join && join.ice_servers);
    this.wantCamera = this.kind === 'video' && camera;
    this.wantMicrophone = microphone;
    this.pc = null;
    this.localStream = null;
    this.remote = new Map(); // track id -> {track, mid}
    this.sources = new Map(); // mid -> {participant_id, name, kind}, from media.sources
    // What the server said of each other participant's video: {cameraOff} from media.state,
    // {paused, layer} from media.layer (this device's link). Tiles say why video stopped.
    this.peers = new Map(); // participant id -> {cameraOff, paused, layer}
    this.state = 'new'; // new | starting | connecting | connected | reconnecting | failed | closed
    this.muted = false;
    this.cameraOff = !this.wantCamera;
    this.closed = false;
    this.problems = []; // texts for the user (device refused...)
    this._chain = Promise.resolve();
    this._restarts = 0;
    this._handlers = new Map();
    this._lastStats = null;
    this._videoTransceiver = null;
    this.mirror = null; // the try-on mirror track, when the server offers one
    this.cameraAvailable = false; // a camera was opened for this call at least once
    this.cameraDeviceId = null; // the camera in use (or last used), for "switch camera"
    this.cameras = []; // video inputs of this device (filled once devices are open)
    this._cameraBusy = null; // a camera change in progress (one at a time)
    this._flow = new Map(); // remote video track id -> {frames, at, state}
    this._audioIn = { packets: 0, at: 0 };
    this._connectedAt = 0;
    this._flowTimer = null;
    // Trickle ICE: our candidates of the current ICE generation (resent after each offer,
    // so a connection the server set up anew still gets them), held while an offer is
    // being sent (they must follow it), and the STUN/TURN errors seen, for the report.
    this._candidates = { ufrag: null, sent: [], ended: false };
    this._holdCandidates = false;
    this.iceErrors = [];
    this.failure = null; // 'blocked' (never connected) | 'lost' (gave up reconnecting)
    this.unreachable = new Set(); // participants the server says could not connect
    // What the server says of the others' video, for this call (both pages need it, so it
    // is followed here rather than in each page), and our camera state for them.
    this._clientOffs = client && client.on ? [
      client.on('media.state', (m) => {
        if (m.call_id === this.callId) this.setPeerCamera(m.participant_id, m.camera === 'off');
      }),
      client.on('media.layer', (m) => {
        if (m.call_id === this.callId && m.from) this.setPeerLayer(m.from, m);
      }),
      client.on('media.candidate', (m) => {
        if (m.call_id === this.callId) this.handleServerCandidate(m);
      }),
      // Another participant could not connect (or did, after all): their tile is not
      // coming, and the stage says why instead of "waiting for their camera".
      client.on('media.notice', (m) => {
        if (m.call_id !== this.callId || !m.from) return;
        if (m.code === 'peer_connection_failed') this.unreachable.add(m.from);
        else if (m.code === 'peer_connected') this.unreachable.delete(m.from);
        else return;
        this._emit('unreachable', this.unreachable);
      }),
    ] : [];
    this.on('camera', ({ off }) => {
      if (this.client && this.client.notify) {
        this.client.notify('media.state', { call_id: this.callId, camera: off ? 'off' : 'on' });
      }
    });
  }

  on(type, handler) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(handler);
    return () => this._handlers.get(type)?.delete(handler);
  }

  /** The server's media.sources: which m-section carries whom, so tiles get names. */
  setSources(list) {
    this.sources = new Map((Array.isArray(list) ? list : [])
      .filter((source) => source && source.mid != null)
      .map((source) => [String(source.mid), source]));
    this._emit('sources', this.sources);
  }

  /** `media.state` from the server: another participant turned its camera off or on. */
  setPeerCamera(participantId, off) {
    this._peer(participantId).cameraOff = !!off;
    this._emit('peers', this.peers);
  }

  /** `media.layer` from the server: one source's video for this device, thinned or paused. */
  setPeerLayer(participantId, { layer = null, paused = false } = {}) {
    const peer = this._peer(participantId);
    peer.layer = layer == null ? null : Number(layer);
    peer.paused = !!paused;
    this._emit('peers', this.peers);
  }

  peerState(participantId) {
    return this.peers.get(participantId) || { cameraOff: false, paused: false, layer: null };
  }

  _peer(participantId) {
    let peer = this.peers.get(participantId);
    if (!peer) {
      peer = { cameraOff: false, paused: false, layer: null };
      this.peers.set(participantId, peer);
    }
    return peer;
  }

  /** Decoded frames per second of a remote video track, over the last half second. */
  remoteFps(trackId) {
    return (this._flow.get(trackId) || {}).fps || 0;
  }

  /** Who a remote track comes from ({participant_id, name}), once the server said. */
  sourceOf(trackId) {
    const entry = this.remote.get(trackId);
    return (entry && entry.mid != null && this.sources.get(String(entry.mid))) || null;
  }

  _emit(type, payload) {
    for (const handler of [...(this._handlers.get(type) || [])]) {
      try {
        handler(payload);
      } catch (err) {
        console.error(`shopcall media: ${type} handler failed`, err);
      }
    }
  }

  _setState(state) {
    if (this.state === state || (this.closed && state !== 'closed')) return;
    this.state = state;
    this._emit('state', state);
  }

  /** Open devices, create the connection and negotiate with the SFU. */
  async start() {
    this._setState('starting');
    await this._openDevices();
    if (this.closed) return;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.addEventListener('track', (e) => this._onTrack(e));
    pc.addEventListener('connectionstatechange', () => this._onConnectionState());
    pc.addEventListener('icecandidate', (e) => this._onLocalCandidate(e.candidate));
    pc.addEventListener('icecandidateerror', (e) => this._onCandidateError(e));
    clearTimeout(this._connectTimer);
    this._connectTimer = setTimeout(() => {
      if (this.pc === pc && !this._connectedAt && !this.closed) this._giveUp('blocked');
    }, CONNECT_TIMEOUT_MS);
    const stream = this.localStream;
    const audio = stream && stream.getAudioTracks()[0];
    const video = stream && stream.getVideoTracks()[0];
    // Always one audio and (video calls) one video transceiver: we receive the other side
    // on them even when we do not send.
    pc.addTransceiver(audio || 'audio',
      { direction: audio ? 'sendrecv' : 'recvonly', streams: audio ? [stream] : [] });
    if (this.kind === 'video') {
      const init = { direction: video ? 'sendrecv' : 'recvonly', streams: video ? [stream] : [] };
      // Simulcast (full, half and quarter resolution), each with three temporal layers
      // (VP8 L1T3): the media server then gives a store on a weak link a smaller picture
      // or fewer frames per second while others get everything. Full resolution first: a
      // server that does not take simulcast gets that one. Browsers that cannot do this
      // get one encoding with temporal layers, or a plain one.
      const tries = video ? [SIMULCAST, [{ scalabilityMode: 'L1T3' }], null] : [null];
      for (const encodings of tries) {
        try {
          this._videoTransceiver = pc.addTransceiver(video || 'video',
            encodings ? { ...init, sendEncodings: encodings } : init);
          break;
        } catch (err) {
          /* not supported here: try the next */
        }
      }
    }
    this._setState('connecting');
    // A video call joined without camera (declined, refused or none, or audio only): say
    // so, so the others' tiles read "camera off" rather than guess from missing frames.
    if ((this.kind === 'video' && !video) || this.audioOnly) this._emit('camera', { off: true });
    await this._enqueue(() => this._offer());
  }

  async _openDevices() {
    const wantVideo = this.wantCamera;
    const wantAudio = this.wantMicrophone;
    if (!wantVideo && !wantAudio) return;
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.problems.push(t('media.device.unsupported'));
      this.cameraOff = true;
      return;
    }
    const videoConstraints = VIDEO_CONSTRAINTS;
    try {
      this.localStream = await navigator.mediaDevices.getUserMedia(
        { audio: wantAudio, video: wantVideo ? videoConstraints : false });
    } catch (err) {
      if (wantVideo) {
        this.problems.push(deviceErrorText(err, 'video'));
        this.cameraOff = true;
        if (wantAudio) {
          try {
            this.localStream = await navigator.mediaDevices.getUserMedia({ audio: true });
          } catch (err2) {
            this.problems.push(deviceErrorText(err2, 'audio'));
          }
        }
      } else {
        this.problems.push(deviceErrorText(err, 'audio'));
      }
    }
    if (this.closed && this.localStream) this._stopLocal();
    const camera = this.localStream && this.localStream.getVideoTracks()[0];
    if (camera) {
      this.cameraAvailable = true;
      this.cameraDeviceId = camera.getSettings().deviceId || null;
      await this.refreshCameras();
      // A camera plugged in or out during the call shows or hides "switch camera".
      this._onDeviceChange = () => { this.refreshCameras(); };
      navigator.mediaDevices.addEventListener?.('devicechange', this._onDeviceChange);
    }
    if (this.localStream) this._emit('local', this.localStream);
    for (const text of this.problems) this._emit('problem', text);
  }

  /** The device's video inputs (after permission, so with ids); emits 'cameras'. */
  async refreshCameras() {
    let list = [];
    try {
      list = (await navigator.mediaDevices.enumerateDevices())
        .filter((d) => d.kind === 'videoinput' && d.deviceId);
    } catch {
      list = [];
    }
    this.cameras = list;
    this._emit('cameras', list);
    return list;
  }

  get canSwitchCamera() {
    return this.cameraAvailable && this.cameras.length > 1;
  }

  _videoSender() {
    return this._videoTransceiver ? this._videoTransceiver.sender : null;
  }

  /** Open a camera (a device id, a constraint such as a facing mode, or any camera). */
  async _openCamera(which) {
    const video = { ...VIDEO_CONSTRAINTS };
    if (typeof which === 'string') video.deviceId = { exact: which };
    else if (which) Object.assign(video, which);
    const stream = await navigator.mediaDevices.getUserMedia({ video });
    return stream.getVideoTracks()[0];
  }

  /** Swap the camera track everywhere it is used: the sender (replaceTrack, so no
   * renegotiation) and the local stream the self view shows. `null` sends nothing. */
  async _putCamera(track) {
    const sender = this._videoSender();
    if (sender) await sender.replaceTrack(track);
    const stream = this.localStream || new MediaStream();
    for (const old of stream.getVideoTracks()) {
      stream.removeTrack(old);
      if (old !== track) old.stop();
    }
    if (track) {
      stream.addTrack(track);
      this.cameraDeviceId = track.getSettings().deviceId || this.cameraDeviceId;
    }
    this.localStream = stream;
    this._emit('local', stream);
  }

  /** One camera change at a time (a double tap must not open two cameras). */
  _cameraStep(step) {
    const run = (this._cameraBusy || Promise.resolve()).then(step);
    this._cameraBusy = run.catch(() => {});
    return run;
  }

  /** Run negotiation steps strictly one after the other. */
  _enqueue(step) {
    const run = this._chain.then(() => (this.closed ? null : step()));
    this._chain = run.catch(() => {});
    return run;
  }

  /** The ICE username fragment of our current local description. */
  _localUfrag() {
    const sdp = this.pc && this.pc.localDescription && this.pc.localDescription.sdp;
    const match = sdp && /^a=ice-ufrag:(\S+)/m.exec(sdp);
    return match ? match[1] : null;
  }

  /** Trickle ICE: each candidate as the browser finds it (null / "": no more). */
  _onLocalCandidate(candidate) {
    const done = !candidate || !candidate.candidate;
    const ufrag = (candidate && candidate.usernameFragment) || this._localUfrag();
    const c = this._candidates;
    if (ufrag !== c.ufrag) {
      this._candidates = { ufrag, sent: [], ended: false };
    }
    if (done) {
      if (this._candidates.ended) return;
      this._candidates.ended = true;
      this._sendCandidate({ candidate: '', sdp_mid: null, sdp_mline_index: null, ufrag });
      return;
    }
    if (candidate.sdpMid == null && candidate.sdpMLineIndex == null) return;
    const message = { candidate: candidate.candidate, sdp_mid: candidate.sdpMid,
      sdp_mline_index: candidate.sdpMLineIndex, ufrag };
    this._candidates.sent.push(message);
    this._sendCandidate(message);
  }

  _sendCandidate(message) {
    if (this._holdCandidates || this.closed || !this.client) return; // sent with the offer
    this.client.request('media.candidate', { call_id: this.callId, ...message })
      .catch(() => { /* an earlier generation, or the call ended: nothing to do */ });
  }

  /** After an offer left: every candidate of this generation (again), then the end. */
  _flushCandidates() {
    this._holdCandidates = false;
    const { ufrag, sent, ended } = this._candidates;
    if (ufrag !== this._localUfrag()) return; // the browser has not gathered for it yet
    for (const message of sent) this._sendCandidate(message);
    if (ended) this._sendCandidate({ candidate: '', sdp_mid: null, sdp_mline_index: null, ufrag });
  }

  /** A STUN/TURN server refused or did not answer (401: TURN credentials refused). */
  _onCandidateError(event) {
    const url = String(event.url || '').slice(0, 256);
    const code = Number(event.errorCode) || 0;
    if (this.iceErrors.some((e) => e.url === url && e.code === code)) return;
    if (this.iceErrors.length >= MAX_ICE_ERRORS) return;
    this.iceErrors.push({ url, code, text: String(event.errorText || '').slice(0, 200) });
  }

  /** A `media.candidate` event: one of the server's candidates. */
  handleServerCandidate(m) {
    return this._enqueue(async () => {
      if (!this.pc || !this.pc.remoteDescription) return;
      await this.pc.addIceCandidate(m.candidate
        ? { candidate: m.candidate, sdpMid: m.sdp_mid, sdpMLineIndex: m.sdp_mline_index,
          usernameFragment: m.ufrag || undefined }
        : null);
    }).catch((err) => console.warn('shopcall media: server candidate refused', err));
  }

  /** What the browser chose (getStats), for the server's connection report. */
  async _selectedCandidate() {
    const report = await this.pc.getStats();
    let pairId = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    let pair = pairId ? report.get(pairId) : null;
    if (!pair) {
      report.forEach((s) => {
        if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      });
    }
    const local = pair ? report.get(pair.localCandidateId) : null;
    if (!local) return {};
    const out = { candidate_type: local.candidateType || null,
      protocol: local.protocol || null };
    if (local.candidateType === 'relay' && local.relayProtocol) out.relay_protocol = local.relayProtocol;
    return out;
  }

  /** Tell the server how we connected, or why we could not (for operators). */
  async _report(state) {
    if (!this.client || this.closed) return;
    const fields = { call_id: this.callId, state };
    if (state === 'connected') {
      try {
        Object.assign(fields, await this._selectedCandidate());
      } catch {
        /* no stats: the server's own view remains */
      }
    } else if (this.iceErrors.length) {
      fields.errors = this.iceErrors;
    }
    this.client.request('media.connection', fields).catch(() => {});
  }

  async _offer({ iceRestart = false, retries = 2 } = {}) {
    const pc = this.pc;
    // Candidates found from here on must follow the offer, not overtake it.
    this._holdCandidates = true;
    let result;
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart }));
      const reply = this.client.request('media.offer',
        { call_id: this.callId, sdp: pc.localDescription.sdp }, { timeoutMs: 20000 });
      this._flushCandidates(); // the offer is on the wire: its candidates may follow
      result = await reply;
    } catch (err) {
      this._holdCandidates = false;
      if (this.closed) return;
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      // The server had an offer of its own out (glare): answer it first (it is queued
      // behind this step), then offer again.
      if (err.code === 'negotiation_failed' && retries > 0) {
        this._enqueue(() => this._offer({ iceRestart, retries: retries - 1 }));
        return;
      }
      this._fail(err);
      throw err;
    }
    if (this.closed) return;
    await pc.setRemoteDescription({ type: 'answer', sdp: result.sdp });
    this._pruneRemote();
  }

  /** A `media.offer` event pushed by the server (renegotiation). */
  handleServerOffer(sdp) {
    return this._enqueue(async () => {
      const pc = this.pc;
      if (!pc) return;
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await pc.setLocalDescription(await pc.createAnswer());
      if (this.closed) return;
      await this.client.request('media.answer',
        { call_id: this.callId, sdp: pc.localDescription.sdp }, { timeoutMs: 20000 });
      this._pruneRemote();
    }).catch((err) => {
      if (!this.closed) console.warn('shopcall media: server offer failed', err);
    });
  }

  _onTrack(event) {
    const { track, transceiver } = event;
    if ((event.streams || []).some((stream) => stream.id === MIRROR_STREAM_ID)) {
      // Our own camera with the try-on garment drawn by the server: a self view, not a
      // remote participant (it carries video only while try-on is on).
      this.mirror = track;
      this._emit('mirror', track);
      return;
    }
    if (this.remote.has(track.id)) return;
    this.remote.set(track.id, { track, mid: transceiver && transceiver.mid });
    const gone = () => {
      this._flow.delete(track.id);
      if (this.remote.delete(track.id)) this._emit('remote-removed', track);
    };
    track.addEventListener('ended', gone);
    for (const stream of event.streams || []) {
      stream.addEventListener('removetrack', (e) => { if (e.track === track) gone(); });
    }
    this._emit('remote-added', track);
  }

  /** After a negotiation: drop remote tracks whose transceiver no longer receives. */
  _pruneRemote() {
    if (!this.pc) return;
    for (const t of this.pc.getTransceivers()) {
      const track = t.receiver && t.receiver.track;
      if (!track || !this.remote.has(track.id)) continue;
      const dir = t.currentDirection;
      if (t.stopped || dir === 'inactive' || dir === 'sendonly') {
        this.remote.delete(track.id);
        this._emit('remote-removed', track);
      }
    }
  }

  _onConnectionState() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    switch (pc.connectionState) {
      case 'connected':
        this._restarts = 0;
        clearTimeout(this._connectTimer);
        if (!this._connectedAt) this._connectedAt = performance.now();
        // A second later: Chromium fills in the selected pair's details (relayProtocol)
        // after it says "connected".
        setTimeout(() => { if (this.pc === pc && pc.connectionState === 'connected') this._report('connected'); }, 1000);
        this._setState('connected');
        this._watchFlow();
        break;
      case 'disconnected':
        this._setState('reconnecting');
        // A network change (Wi-Fi to 4G, a new address) leaves the old path dead; waiting
        // for "failed" takes ~30 s. Restart ICE if the path has not come back shortly.
        clearTimeout(this._disconnectTimer);
        this._disconnectTimer = setTimeout(() => {
          if (this.pc === pc && !this.closed && pc.connectionState === 'disconnected') {
            this._restartIce();
          }
        }, DISCONNECT_RESTART_MS);
        break;
      case 'failed':
        // Never connected: every pair failed (UDP blocked, relay unreachable or refused).
        // Restarting ICE would only try the same paths again for another half minute.
        if (!this._connectedAt) this._giveUp('blocked');
        else this._restartIce();
        break;
      default:
        break;
    }
  }

  _restartIce() {
    clearTimeout(this._disconnectTimer);
    if (this._restarts < MAX_RESTARTS) {
      this._restarts += 1;
      this.iceRestarts = (this.iceRestarts || 0) + 1;
      this._setState('reconnecting');
      this._enqueue(() => this._offer({ iceRestart: true })).catch(() => {});
    } else {
      this._giveUp('lost');
    }
  }

  /**
   * Stop trying: 'blocked' (the connection never came up: the network blocks calls) or
   * 'lost' (it came up, then could not be restored). The server is told why, the stage
   * offers retry and audio only.
   */
  _giveUp(failure) {
    if (this.closed || this.state === 'failed') return;
    clearTimeout(this._connectTimer);
    clearTimeout(this._disconnectTimer);
    this.failure = failure;
    this._report('failed');
    this._fail(new ShopcallError(failure === 'blocked' ? 'media_blocked' : 'media_failed',
      failure === 'blocked' ? 'could not connect: the network blocks calls'
        : 'the media connection failed'));
  }

  _fail(err) {
    console.warn('shopcall media: call media failed:', err && (err.code || err.name), err && err.message);
    this._setState('failed');
    this._emit('error', err);
  }

  setMuted(muted) {
    this.muted = !!muted;
    for (const t of this.localStream ? this.localStream.getAudioTracks() : []) t.enabled = !this.muted;
    this._emit('controls', this);
  }

  /**
   * Camera off stops sending video (`replaceTrack(null)`) and releases the camera, so its
   * light goes out; the other side sees its "camera off" state (frames stop: see
   * `_watchFlow`) instead of a black picture. Camera on opens the same camera again and
   * puts it back with replaceTrack: no renegotiation either way.
   */
  setCameraOff(off) {
    return this._cameraStep(async () => {
      if (!off && !this.cameraAvailable) {
        await this._addCamera();
        return;
      }
      if (!this.cameraAvailable || this.closed || !!off === this.cameraOff) return;
      if (off) {
        this.cameraOff = true;
        this._emit('controls', this);
        this._emit('camera', { off: true }); // the page tells the others (media.state)
        await this._putCamera(null);
      } else {
        let track;
        try {
          track = await this._openCamera(this.cameraDeviceId).catch(() => this._openCamera(null));
        } catch (err) {
          this._emit('problem', deviceErrorText(err, 'video'));
          return;
        }
        if (this.closed) {
          track.stop();
          return;
        }
        await this._putCamera(track);
        this.cameraOff = false;
        this._emit('camera', { off: false });
      }
      this._emit('controls', this);
    });
  }

  /**
   * The shopper joined without camera and now turns it on: the video transceiver, which
   * only received, starts sending too. That changes its direction, so it is the one case
   * that renegotiates (a new offer to the media server).
   */
  async _addCamera() {
    const transceiver = this._videoTransceiver;
    if (this.closed || !transceiver || !this.pc) return;
    let track;
    try {
      track = await this._openCamera(null);
    } catch (err) {
      this._emit('problem', deviceErrorText(err, 'video'));
      return;
    }
    if (this.closed) {
      track.stop();
      return;
    }
    this.cameraAvailable = true;
    this.cameraOff = false;
    this._emit('camera', { off: false });
    await this._putCamera(track);
    transceiver.sender.setStreams?.(this.localStream);
    transceiver.direction = 'sendrecv';
    await this.refreshCameras();
    this._emit('controls', this);
    await this._enqueue(() => this._offer());
  }

  /**
   * Front/back camera on phones (the next camera elsewhere). The current camera is stopped
   * before the next one opens, as many phones cannot run both; if the next one fails, the
   * previous one comes back. A camera that opens but gives no picture WebRTC can encode
   * (the infrared or depth cameras many laptops list) is skipped for the one after it.
   */
  switchCamera() {
    return this._cameraStep(async () => {
      if (this.closed || this.cameraOff) return;
      const cameras = await this.refreshCameras();
      const current = this.localStream && this.localStream.getVideoTracks()[0];
      let settings = current ? current.getSettings() : { deviceId: this.cameraDeviceId };
      const previous = this.cameraDeviceId;
      for (let tries = 1; tries < cameras.length; tries += 1) {
        const next = nextCameraConstraint(settings, cameras);
        if (!next) return;
        await this._putCamera(null);
        let track;
        try {
          track = await this._openCamera(next);
        } catch (err) {
          this._emit('problem', deviceErrorText(err, 'video'));
          track = await this._openCamera(previous).catch(() => null);
          tries = cameras.length; // back to where we were: stop here
        }
        if (this.closed) {
          if (track) track.stop();
          return;
        }
        await this._putCamera(track);
        if (!track) {
          this.cameraOff = true;
          break;
        }
        if (this.state !== 'connected' || await this._encoding()) break;
        settings = track.getSettings();
      }
      this._emit('controls', this);
    });
  }

  /** Whether the video sender encodes frames (checked for up to `timeoutMs`). */
  async _encoding(timeoutMs = 3000) {
    const sender = this._videoSender();
    if (!sender) return true;
    const encoded = async () => {
      let n = 0;
      (await sender.getStats()).forEach((s) => {
        if (s.type === 'outbound-rtp') n += s.framesEncoded || 0;
      });
      return n;
    };
    const start = await encoded();
    const until = performance.now() + timeoutMs;
    while (performance.now() < until) {
      await new Promise((resolve) => { setTimeout(resolve, 250); });
      if (this.closed || (await encoded()) > start) return true;
    }
    return false;
  }

  get hasMicrophone() {
    return !!(this.localStream && this.localStream.getAudioTracks().length);
  }

  get hasCamera() {
    return this.cameraAvailable;
  }

  /**
   * Watch what arrives, twice a second: a remote video track whose frames stopped while the
   * connection is up is "off" (the other side stopped its camera, or the server paused video
   * for bandwidth, which a media.notice also says); when audio stopped too it is "stalled"
   * (their network). Emits 'remote-video' {trackId, state: waiting|flowing|off|stalled}.
   */
  _watchFlow() {
    clearInterval(this._flowTimer);
    this._flowTimer = setInterval(() => this._pollFlow().catch(() => {}), FLOW_POLL_MS);
  }

  async _pollFlow() {
    const pc = this.pc;
    if (!pc || this.closed || this.state !== 'connected') return;
    const report = await pc.getStats();
    const now = performance.now();
    let audioPackets = 0;
    let hasAudio = false;
    const frames = new Map();
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      if (s.kind === 'audio') {
        hasAudio = true;
        audioPackets += s.packetsReceived || 0;
      } else if (s.kind === 'video' && s.trackIdentifier) {
        frames.set(s.trackIdentifier, s.framesDecoded || 0);
      }
    });
    if (audioPackets > this._audioIn.packets) this._audioIn = { packets: audioPackets, at: now };
    const audioFlowing = !hasAudio || now - this._audioIn.at < STALL_MS;
    for (const [trackId] of this.remote) {
      const entry = this.remote.get(trackId);
      if (!entry || entry.track.kind !== 'video') continue;
      const count = frames.get(trackId) ?? 0;
      let flow = this._flow.get(trackId);
      if (!flow) {
        flow = { frames: count, at: 0, since: now, state: 'waiting' };
        this._flow.set(trackId, flow);
      }
      let state = flow.state;
      if (flow.polled) flow.fps = (count - flow.frames) * 1000 / Math.max(1, now - flow.polled);
      flow.polled = now;
      if (count > flow.frames) {
        flow.at = now;
        state = 'flowing';
      } else if (flow.at && now - flow.at > STALL_MS) {
        state = audioFlowing ? 'off' : 'stalled';
      } else if (!flow.at && now - Math.max(flow.since, this._connectedAt) > NO_VIDEO_MS
          && audioFlowing) {
        state = 'off';
      }
      flow.frames = count;
      if (state !== flow.state) {
        flow.state = state;
        this._emit('remote-video', { trackId, state });
      }
    }
    this._emit('flow-tick');
  }

  /** The last known state of a remote video track (see _watchFlow). */
  remoteVideoState(trackId) {
    return (this._flow.get(trackId) || {}).state || 'waiting';
  }

  /** A summary of what is received: bitrate (kbit/s since the last call), loss, frames. */
  async stats() {
    if (!this.pc) return null;
    const report = await this.pc.getStats();
    const now = performance.now();
    const out = { bytes: 0, packetsReceived: 0, packetsLost: 0, framesDecoded: 0,
      framesPerSecond: null, width: null, height: null, rttMs: null, kbps: null };
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') {
        out.bytes += s.bytesReceived || 0;
        out.packetsReceived += s.packetsReceived || 0;
        out.packetsLost += Math.max(0, s.packetsLost || 0);
        if (s.kind === 'video') {
          out.framesDecoded += s.framesDecoded || 0;
          if (s.framesPerSecond != null) out.framesPerSecond = s.framesPerSecond;
          if (s.frameWidth) {
            out.width = s.frameWidth;
            out.height = s.frameHeight;
          }
        }
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded'
          && s.currentRoundTripTime != null) {
        out.rttMs = Math.round(s.currentRoundTripTime * 1000);
      }
    });
    const last = this._lastStats;
    if (last && now > last.at) {
      out.kbps = Math.max(0, ((out.bytes - last.bytes) * 8) / (now - last.at));
    }
    this._lastStats = { at: now, bytes: out.bytes };
    return out;
  }

  _stopLocal() {
    for (const t of this.localStream ? this.localStream.getTracks() : []) t.stop();
  }

  /** Release devices and the connection (the call itself is ended with call.end). */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const off of this._clientOffs) off();
    clearInterval(this._flowTimer);
    clearTimeout(this._disconnectTimer);
    clearTimeout(this._connectTimer);
    if (this._onDeviceChange) {
      navigator.mediaDevices.removeEventListener?.('devicechange', this._onDeviceChange);
    }
    this._stopLocal();
    if (this.pc) {
      try {
        this.pc.close();
      } catch {
        /* already closed */
      }
    }
    for (const { track } of this.remote.values()) this._emit('remote-removed', track);
    this.remote.clear();
    this._setState('closed');
  }
}

const MEDIA_ICONS = {
  mic: ['M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3z', 'M5 11a7 7 0 0 0 14 0', 'M12 18v3'],
  micOff: ['M9 9v3a3 3 0 0 0 5.1 2.1', 'M15 9.3V6a3 3 0 0 0-5.7-1.3', 'M5 11a7 7 0 0 0 11.9 5',
    'M19 11a7 7 0 0 1-.6 2.8', 'M12 18v3', 'M3 3l18 18'],
  cam: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3'],
  camOff: ['M3 7h12v10H3z', 'M15 10l6-3v10l-6-3', 'M2 3l20 18'],
  hangup: ['M3 14c5-5 13-5 18 0l-2 3-4-1v-3a11 11 0 0 0-6 0v3l-4 1z'],
  user: ['M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8z', 'M4 21a8 8 0 0 1 16 0'],
  flip: ['M4 8h3l2-3h6l2 3h3v11H4z', 'M9 13a3 3 0 0 1 5.2-2', 'M15 14a3 3 0 0 1-5.2 2',
    'M14 9.5l.4 1.6-1.6.3', 'M10 17.5l-.4-1.6 1.6-.3'],
};

// Catalogue keys (locales/<lang>/media.json) of the connection states and failures.
const STATE_TEXT = {
  starting: 'media.state.starting', connecting: 'media.state.connecting',
  reconnecting: 'media.state.reconnecting', failed: 'media.state.failed',
};
const FAILURE_TEXT = { blocked: 'media.failure.blocked', lost: 'media.failure.lost' };

/** A whole number in the page's language (frame rates). */
const countFormats = new Map(); // language -> Intl.NumberFormat (made once: tiles redraw often)
function formatCount(value) {
  try {
    const lang = language();
    if (!countFormats.has(lang)) {
      countFormats.set(lang, new Intl.NumberFormat(lang, { maximumFractionDigits: 0 }));
    }
    return countFormats.get(lang).format(value);
  } catch {
    return String(value);
  }
}

/**
 * The call's on-screen part: remote videos (one tile per remote video track), remote audio,
 * self view, a notice banner, the connection state and the controls.
 *
 * @param {CallMedia} media
 * @param {object} o
 * @param {string} o.remoteLabel  name shown on the remote tile ("Camille", "Shopper")
 * @param {() => void} o.onHangUp
 * @param {(o: {audioOnly: boolean}) => void} [o.onRetry]  after a failed connection: try
 *   again (the page makes a new CallMedia), with sound only if asked
 */
export class CallStage {
  constructor(media, { remoteLabel = null, onHangUp, onRetry = null }) {
    this.media = media;
    this.remoteLabel = remoteLabel || t('media.remote');
    this.onRetry = onRetry;
    this.tiles = new Map(); // track id -> element
    this.remoteWrap = h('div', { class: 'stage-remote' });
    this.placeholder = h('div', { class: 'stage-wait', role: 'status' },
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'stage-wait-text', text: t('media.state.connecting') }));
    // After a failed connection: the way out, on both sides of the call.
    this.retryBox = h('div', { class: 'stage-retry', hidden: true },
      h('button', { class: 'btn primary small retry', type: 'button',
        onclick: () => onRetry && onRetry({ audioOnly: media.audioOnly }), text: t('media.retry') }),
      media.kind === 'video' ? h('button', { class: 'btn small audio-only', type: 'button',
        onclick: () => onRetry && onRetry({ audioOnly: true }), text: t('media.audioOnly') }) : null);
    this.placeholder.append(this.retryBox);
    this.remoteWrap.append(this.placeholder);
    this.selfVideo = h('video', { class: 'self-video', autoplay: true, playsInline: true,
      muted: true, 'aria-label': t('media.self.camera') });
    this.selfVideo.muted = true;
    this.selfOff = h('div', { class: 'self-off', hidden: true }, icon(MEDIA_ICONS.camOff, { size: 18 }));
    this.selfView = h('div', { class: 'stage-self', hidden: true }, this.selfVideo, this.selfOff);
    this.notice = h('div', { class: 'stage-notice', role: 'status', hidden: true });
    this.audioWrap = h('div', { class: 'stage-audio', hidden: true });
    this.muteBtn = h('button', { class: 'media-btn', type: 'button', 'aria-pressed': 'false',
      onclick: () => media.setMuted(!media.muted) });
    const report = (err) => console.warn('shopcall media: camera change failed', err);
    this.camBtn = h('button', { class: 'media-btn', type: 'button', 'aria-pressed': 'false',
      onclick: () => media.setCameraOff(!media.cameraOff).catch(report) });
    // Shown only when this device has more than one camera (front/back on a phone).
    this.flipBtn = h('button', { class: 'media-btn flip', type: 'button', hidden: true,
      onclick: () => media.switchCamera().catch(report) },
    icon(MEDIA_ICONS.flip, { size: 20 }), h('span', { text: t('media.switchCamera') }));
    this.noticePaused = false;
    this.mirrorOn = false;
    this.panels = h('div', { class: 'stage-panels', hidden: true });
    this.hangBtn = h('button', { class: 'media-btn hangup', type: 'button', onclick: onHangUp },
      icon(MEDIA_ICONS.hangup, { size: 20 }), h('span', { text: t('media.hangUp') }));
    this.controls = h('div', { class: 'stage-controls', role: 'group', 'aria-label': t('media.controls') },
      this.muteBtn, media.kind === 'video' ? this.camBtn : null,
      media.kind === 'video' ? this.flipBtn : null, this.hangBtn);
    this.video = h('div', { class: `stage-video kind-${media.kind}` },
      this.remoteWrap, this.selfView, this.notice);
    this.el = h('section', { class: 'stage', 'aria-label': t(media.kind === 'video' ? 'media.stage.video' : 'media.stage.audio') },
      this.video, this.panels, this.controls, this.audioWrap);
    this._offs = [
      media.on('local', (stream) => {
        this._showSelf(stream);
        this._renderControls();
      }),
      media.on('remote-added', (track) => this._addRemote(track)),
      media.on('remote-removed', (track) => this._removeRemote(track)),
      media.on('state', (state) => this._renderState(state)),
      media.on('controls', () => this._renderControls()),
      media.on('cameras', () => this._renderControls()),
      media.on('mirror', () => this.setMirror(this.mirrorOn)),
      media.on('remote-video', ({ trackId }) => this._renderRemoteState(trackId)),
      media.on('sources', () => this._relabel()),
      media.on('peers', () => this._relabel()),
      // Only when someone could not connect (or did after all): a full state render on
      // every media.layer would redraw the controls several times a second.
      media.on('unreachable', () => this._renderState(this.media.state)),
      media.on('flow-tick', () => {
        for (const trackId of this.tiles.keys()) this._renderRemoteState(trackId);
      }),
    ];
    if (media.localStream) this._showSelf(media.localStream);
    for (const { track } of media.remote.values()) this._addRemote(track);
    this._renderControls();
    this._renderState(media.state);
  }

  _showSelf(stream) {
    if (!stream.getVideoTracks().length || (this.mirrorOn && this.media.mirror)) return;
    this.selfVideo.srcObject = stream;
    this.selfView.hidden = false;
    this.selfVideo.play?.().catch(() => {});
  }

  _addRemote(track) {
    if (this.tiles.has(track.id)) return;
    const stream = new MediaStream([track]);
    let el;
    if (track.kind === 'video') {
      const name = this._nameOf(track.id);
      const video = h('video', { class: 'remote-video', autoplay: true, playsInline: true,
        muted: true, 'aria-label': t('media.tile.camera', { name }) });
      video.muted = true; // sound comes from the audio element
      video.srcObject = stream;
      el = h('div', { class: 'remote-tile', dataset: { trackId: track.id } }, video,
        h('span', { class: 'remote-name', text: name }),
        h('span', { class: 'remote-rate', hidden: true }),
        h('div', { class: 'remote-off', role: 'status', hidden: true },
          icon(MEDIA_ICONS.user, { size: 40 }), h('span', { class: 'remote-off-text' })));
      this.tiles.set(track.id, el);
      this._renderRemoteState(track.id);
      this.remoteWrap.append(el);
      video.play?.().catch(() => {});
    } else {
      el = h('audio', { class: 'remote-audio', autoplay: true, dataset: { trackId: track.id } });
      el.srcObject = stream;
      this.audioWrap.append(el);
      el.play?.().catch(() => {});
    }
    this.tiles.set(track.id, el);
    this._layout();
  }

  /**
   * The name on a remote tile: the participant the server says the track comes from (a
   * staff member's first name, "Shopper"), else the label this stage was made with. With a
   * colleague in the call there are several tiles, and only the server knows whose is whose.
   */
  _nameOf(trackId) {
    const source = this.media.sourceOf ? this.media.sourceOf(trackId) : null;
    if (!source) return this.remoteLabel;
    if (source.name) return String(source.name).split(' ')[0];
    return String(source.participant_id || '').startsWith('shopper:') ? t('media.shopper') : this.remoteLabel;
  }

  _relabel() {
    for (const [trackId, el] of this.tiles) {
      const label = el.querySelector && el.querySelector('.remote-name');
      if (!label) continue;
      const name = this._nameOf(trackId);
      label.textContent = name;
      el.querySelector('video').setAttribute('aria-label', t('media.tile.camera', { name }));
      this._renderRemoteState(trackId);
    }
  }

  _removeRemote(track) {
    const el = this.tiles.get(track.id);
    if (!el) return;
    this.tiles.delete(track.id);
    const media = el.querySelector ? el.querySelector('video') || el : el;
    media.srcObject = null;
    el.remove();
    this._layout();
  }

  _layout() {
    const videos = this.remoteWrap.querySelectorAll('.remote-tile').length;
    this.remoteWrap.dataset.count = String(videos);
    this.placeholder.hidden = videos > 0 && this.media.state !== 'failed';
  }

  _renderState(state) {
    const text = this.placeholder.querySelector('.stage-wait-text');
    if (state === 'connected' && this.media.unreachable.size) {
      text.textContent = t('media.peer.unreachable', { name: this.remoteLabel });
    } else if (state === 'connected') {
      text.textContent = this.media.kind === 'video'
        ? t('media.peer.waitingCamera', { name: this.remoteLabel })
        : t('media.peer.connected', { name: this.remoteLabel });
    } else if (state === 'failed' && FAILURE_TEXT[this.media.failure]) {
      text.textContent = t(FAILURE_TEXT[this.media.failure]);
    } else {
      text.textContent = t(STATE_TEXT[state] || 'media.state.connecting');
    }
    this.retryBox.hidden = !(state === 'failed' && this.onRetry);
    this.placeholder.querySelector('.spinner').hidden = ['connected', 'failed', 'closed'].includes(state);
    this.el.dataset.state = state;
    this._layout();
    this._renderControls(); // "Start camera" needs the connection to exist
  }

  _renderControls() {
    const m = this.media;
    this.muteBtn.replaceChildren(icon(m.muted ? MEDIA_ICONS.micOff : MEDIA_ICONS.mic, { size: 20 }),
      h('span', { text: t(m.muted ? 'media.unmute' : 'media.mute') }));
    this.muteBtn.setAttribute('aria-pressed', String(m.muted));
    this.muteBtn.classList.toggle('is-on', m.muted);
    this.muteBtn.disabled = !m.hasMicrophone;
    this.camBtn.replaceChildren(icon(m.cameraOff ? MEDIA_ICONS.camOff : MEDIA_ICONS.cam, { size: 20 }),
      h('span', { text: t(m.cameraOff ? 'media.camera.start' : 'media.camera.stop') }));
    this.camBtn.setAttribute('aria-pressed', String(m.cameraOff));
    this.camBtn.classList.toggle('is-on', m.cameraOff);
    // Joined without camera: "Start camera" can still add it (video calls).
    this.camBtn.disabled = !m.hasCamera && !m.pc;
    this.flipBtn.hidden = !m.canSwitchCamera;
    this.flipBtn.disabled = m.cameraOff;
    this.selfOff.hidden = !m.cameraOff;
    this.selfView.classList.toggle('is-off', m.cameraOff);
  }

  /** Show (or with an empty text, hide) a banner over the video, e.g. "Video paused". */
  setNotice(text) {
    this.notice.hidden = !text;
    this.notice.textContent = text || '';
    this.noticePaused = !!text;
    for (const trackId of this.tiles.keys()) this._renderRemoteState(trackId);
  }

  /**
   * What a remote video tile shows over the video, and why, as the server said it: "camera
   * off" only when its owner turned it off (media.state); "video paused: weak connection"
   * while the server pauses it for this device's link (media.layer, media.notice); the
   * frame rate while it is thinned; "interrupted" when frames stop for no reason we were
   * told (the sender's network). Never a frozen or black picture without a word.
   */
  _renderRemoteState(trackId) {
    const el = this.tiles.get(trackId);
    const off = el && el.querySelector && el.querySelector('.remote-off');
    if (!off) return;
    const flow = this.media.remoteVideoState(trackId);
    const source = this.media.sourceOf ? this.media.sourceOf(trackId) : null;
    const peer = source && this.media.peerState ? this.media.peerState(source.participant_id)
      : { cameraOff: false, paused: false, layer: null };
    const name = this._nameOf(trackId);
    let text = '';
    let state = flow;
    if (peer.cameraOff) {
      text = t('media.tile.cameraOff', { name });
      state = 'camera-off';
    } else if (peer.paused || (this.noticePaused && flow !== 'flowing')) {
      text = t('media.tile.paused');
      state = 'paused';
    } else if (flow === 'off' || flow === 'stalled') {
      text = t('media.tile.interrupted', { name });
    } else if (flow === 'waiting') {
      text = t('media.tile.starting');
    }
    off.hidden = !text;
    off.dataset.state = state;
    off.querySelector('.remote-off-text').textContent = text;
    el.classList.toggle('is-off', !!text);
    const rate = el.querySelector('.remote-rate');
    if (rate) {
      const thinned = !text && peer.layer != null;
      const fps = Math.round(this.media.remoteFps ? this.media.remoteFps(trackId) : 0);
      rate.hidden = !thinned;
      let rateText = '';
      if (thinned) {
        rateText = fps > 0 ? t('media.tile.fps', { fps: formatCount(fps) }) : t('media.tile.fewerFrames');
      }
      rate.textContent = rateText;
      el.dataset.layer = peer.layer == null ? 'all' : String(peer.layer);
    }
  }

  /**
   * Try-on on: the self view shows the server's mirror (the camera with the garment drawn
   * on it, as the other side sees it); off: the local camera again.
   */
  setMirror(on) {
    this.mirrorOn = !!on;
    const mirror = this.mirrorOn && this.media.mirror;
    if (mirror) {
      this.selfVideo.srcObject = new MediaStream([mirror]);
      this.selfView.hidden = false;
    } else if (this.media.localStream) {
      this.selfVideo.srcObject = this.media.localStream;
    }
    this.selfVideo.setAttribute('aria-label', t(mirror ? 'media.self.mirror' : 'media.self.camera'));
    this.selfView.classList.toggle('is-mirror', !!mirror);
    this.selfVideo.play?.().catch(() => {});
  }

  /** Add a panel under the video (e.g. the try-on garment picker). */
  addPanel(el) {
    this.panels.append(el);
    this.panels.hidden = false;
  }

  destroy() {
    for (const off of this._offs) off();
    for (const el of this.tiles.values()) {
      const media = el.querySelector ? el.querySelector('video') || el : el;
      media.srcObject = null;
    }
    this.tiles.clear();
    this.selfVideo.srcObject = null;
    this.el.remove();
  }
}

/**
 * Text for a `media.notice` event: the known codes get our wording, others the server's;
 * null for the ones CallMedia follows itself (a participant who could not connect), which
 * must not touch the notice banner.
 */
export function noticeText(event) {
  switch (event && event.code) {
    case 'peer_connection_failed':
    case 'peer_connected':
      return null;
    case 'video_paused':
      return t(event.direction === 'sending'
        ? 'media.notice.sendingPaused' : 'media.notice.receivingPaused');
    case 'video_resumed':
      return '';
    default:
      return (event && (event.message || event.text)) || '';
  }
}
