// WebRTC helpers shared by the studio (publish) and the viewer page (subscribe).
// One RTCPeerConnection per stream; offer/answer over HTTP with the candidates already gathered
// (host candidates gather in milliseconds when no STUN/TURN server is configured).

// No public STUN server by default: the deployment decides which ICE servers exist.
export const ICE_SERVERS = [];

export function createPeer() {
  return new RTCPeerConnection({ iceServers: ICE_SERVERS });
}

export function iceGatheringDone(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

// Offer, wait for candidates, send through `postOffer`, apply the answer. Returns the server's answer.
export async function negotiate(pc, postOffer) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await iceGatheringDone(pc);
  const answer = await postOffer({ sdp: pc.localDescription.sdp, type: "offer" });
  await pc.setRemoteDescription({ type: answer.type || "answer", sdp: answer.sdp });
  return answer;
}

// Report "connecting" | "connected" | "lost" | "failed" | "closed". A short "disconnected" often
// recovers by itself, so it only counts as lost after `graceMs`.
export function watchConnection(pc, onChange, graceMs = 4000) {
  let timer = null;
  const update = () => {
    clearTimeout(timer);
    switch (pc.connectionState) {
      case "new":
      case "connecting":
        onChange("connecting");
        break;
      case "connected":
        onChange("connected");
        break;
      case "disconnected":
        timer = setTimeout(() => {
          if (pc.connectionState === "disconnected") onChange("lost");
        }, graceMs);
        break;
      case "failed":
        onChange("failed");
        break;
      case "closed":
        onChange("closed");
        break;
      default:
        break;
    }
  };
  pc.addEventListener("connectionstatechange", update);
  return () => {
    clearTimeout(timer);
    pc.removeEventListener("connectionstatechange", update);
  };
}

// Encoder limits on a live sender: bitrate, frame rate and what to sacrifice under pressure.
// Returns the list of settings the browser refused (older browsers lack degradationPreference).
// Calls for one sender run one after another: overlapping getParameters/setParameters pairs (a
// quality change while the publication is still being limited) made Chromium refuse one of them.
const senderQueues = new WeakMap();

export function applySenderLimits(sender, limits) {
  const previous = senderQueues.get(sender) || Promise.resolve();
  const next = previous.catch(() => {}).then(() => limitNow(sender, limits));
  senderQueues.set(sender, next);
  return next;
}

async function limitNow(sender, { maxBitrate, maxFramerate, degradationPreference }) {
  const refused = [];
  await setParameters(sender, (params) => {
    if (!params.encodings || params.encodings.length === 0) params.encodings = [{}];
    for (const encoding of params.encodings) {
      if (maxBitrate) encoding.maxBitrate = maxBitrate;
      if (maxFramerate) encoding.maxFramerate = maxFramerate;
    }
  });
  if (degradationPreference) {
    try {
      await setParameters(sender, (params) => {
        params.degradationPreference = degradationPreference;
      });
    } catch {
      refused.push("degradationPreference");
    }
  }
  return refused;
}

// getParameters and setParameters in one synchronous step; Chromium answers InvalidStateError when
// its copy of the parameters went stale in between (renegotiation), so read them afresh and retry.
async function setParameters(sender, edit) {
  for (let attempt = 1; ; attempt += 1) {
    const params = sender.getParameters();
    edit(params);
    try {
      await sender.setParameters(params);
      return;
    } catch (err) {
      if (err.name !== "InvalidStateError" || attempt >= 3) throw err;
    }
  }
}

// Resolves once the video element shows a decoded frame (for switching layouts without a black flash).
export function firstFrame(video, timeoutMs = 15000) {
  return new Promise((resolve, reject) => {
    if (video.readyState >= 2 && video.videoWidth > 0) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error("no video arrived"));
    }, timeoutMs);
    const ready = () => {
      if (video.videoWidth > 0) {
        cleanup();
        resolve();
      }
    };
    const cleanup = () => {
      clearTimeout(timer);
      video.removeEventListener("loadeddata", ready);
      video.removeEventListener("resize", ready);
      video.removeEventListener("playing", ready);
    };
    video.addEventListener("loadeddata", ready);
    video.addEventListener("resize", ready);
    video.addEventListener("playing", ready);
  });
}

// Human messages for getUserMedia/getDisplayMedia failures.
export function captureErrorMessage(err, what) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return what === "screen"
      ? "Screen sharing was blocked or cancelled. Click “Share screen” again and allow it."
      : "Camera or microphone access was denied. Allow it in the browser's site settings, then try again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return what === "screen"
      ? "No screen is available to share on this device."
      : "No camera was found (or none supports the chosen quality). Plug one in or pick a lower quality.";
  }
  if (name === "NotReadableError" || name === "AbortError") {
    return `The ${what} is in use by another application or could not be started.`;
  }
  if (name === "TypeError" && what === "screen") {
    return "This browser cannot share the screen.";
  }
  return `Could not start the ${what}: ${(err && err.message) || "unknown error"}`;
}
