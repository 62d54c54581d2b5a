// The lane's MQTT contract (docs/mqtt-api.md) over websockets: retained state and devices,
// scans and events, and requests answered on {base}/response/{op} by request_id.

import mqtt from "mqtt";

// How long a request may go unanswered before the page says so. Provider calls are bounded by
// the agent (a few seconds each), so this is only reached when the agent or broker is away.
export const ANSWER_TIMEOUT_MS = 30000;
// Events and scans are QoS 1: the same event_id may arrive twice.
const REMEMBERED_EVENTS = 500;

function noAnswer(requestId, message) {
  return { request_id: requestId, status: "error", error: { code: "no_answer", message } };
}

function randomId() {
  // getRandomValues works outside secure contexts too (a display opened over plain http).
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class LaneClient {
  constructor(settings, connect = mqtt.connect) {
    this.settings = settings;
    this.connect = connect;
    this.handlers = new Map();
    this.pending = new Map(); // request_id → {promise, resolve, timer, key}; key null: a read
    this.unanswered = new Map(); // op + params → request_id of a request that got no answer
    this.seen = new Set();
    this.screen = `display-${randomId()}`;
    this.counter = 0;
    this.mqtt = null;
  }

  /** on("state" | "device" | "scan" | "event" | "connection" | "subscribed", handler) */
  on(type, handler) {
    this.handlers.set(type, [...(this.handlers.get(type) ?? []), handler]);
  }

  emit(type, ...args) {
    for (const handler of this.handlers.get(type) ?? []) {
      handler(...args);
    }
  }

  start() {
    const { ws, base, username, password } = this.settings;
    // MQTT 3.1.1: nothing here needs v5, and the demo's embedded broker speaks only 3.1.1.
    this.mqtt = this.connect(ws, {
      protocolVersion: 4,
      clientId: this.screen,
      username: username || undefined,
      password: password || undefined,
      reconnectPeriod: 2000,
      connectTimeout: 10000,
    });
    // Exactly what docs/security.md's ACL lets a POS screen read: never request/#.
    const topics = ["state", "devices/+", "scan", "event", "response/+"].map((t) => `${base}/${t}`);
    this.mqtt.on("connect", () => {
      this.emit("connection", "connected", "");
      this.mqtt.subscribe(topics, { qos: 1 }, (error) => {
        if (error) {
          this.emit("connection", "error", `subscribe refused: ${error.message}`);
        } else {
          this.emit("subscribed"); // answers can reach the page now: requests may go out
        }
      });
    });
    this.mqtt.on("reconnect", () => this.emit("connection", "connecting", ""));
    this.mqtt.on("close", () => {
      this.dropReads("The connection to the broker dropped before the answer came.");
      this.emit("connection", "disconnected", "");
    });
    this.mqtt.on("error", (error) => this.emit("connection", "error", error.message));
    this.mqtt.on("message", (topic, payload) => this.route(topic, payload));
  }

  route(topic, payload) {
    const suffix = topic.slice(this.settings.base.length + 1);
    let body = null;
    try {
      body = payload.length ? JSON.parse(new TextDecoder().decode(payload)) : null;
    } catch {
      return; // not the contract's JSON: nothing a screen can show
    }
    if (suffix.startsWith("devices/")) {
      this.emit("device", suffix.slice("devices/".length), body); // null: the record was cleared
    } else if (body === null || typeof body !== "object") {
      return;
    } else if (suffix === "state") {
      this.emit("state", body);
    } else if ((suffix === "scan" || suffix === "event") && this.isNew(body.event_id)) {
      this.emit(suffix, body);
    } else if (suffix.startsWith("response/")) {
      this.answer(body);
    }
  }

  isNew(eventId) {
    if (this.seen.has(eventId)) {
      return false;
    }
    this.seen.add(eventId);
    if (this.seen.size > REMEMBERED_EVENTS) {
      this.seen.delete(this.seen.values().next().value);
    }
    return true;
  }

  answer(response) {
    const waiting = this.pending.get(response.request_id);
    for (const [key, id] of this.unanswered) {
      if (id === response.request_id) {
        this.unanswered.delete(key); // a late answer: the next request is a new intent
      }
    }
    if (waiting) {
      clearTimeout(waiting.timer);
      this.pending.delete(response.request_id);
      this.unanswered.delete(waiting.key);
      waiting.resolve(response);
    }
  }

  /**
   * Publish {request_id, ...params} to {base}/request/{op}; resolves with the Response (status
   * "ok" or "error"; never rejects). A request identical to one that got no answer reuses its
   * request_id, so pressing the button again after a timeout cannot do the thing twice.
   */
  request(op, params = {}) {
    const key = `${op} ${JSON.stringify(params)}`;
    const requestId = this.unanswered.get(key) ?? this.nextId();
    const waiting = this.pending.get(requestId);
    if (waiting) {
      return waiting.promise; // a double press: one request, one answer
    }
    this.unanswered.set(key, requestId);
    return this.publish(op, params, requestId, key);
  }

  /**
   * A read-only request (`order.get`): resolves like request(), but always under a new
   * request_id, since the agent keeps each answer under its id and an old one is an old state;
   * and it is given up (`no_answer`) when the connection drops or on dropReads(), since its
   * answer cannot come any more: the caller reads again once it can.
   */
  read(op, params = {}) {
    const requestId = this.nextId();
    if (!this.mqtt?.connected) {
      return Promise.resolve(noAnswer(requestId, "Not connected to the broker."));
    }
    return this.publish(op, params, requestId, null);
  }

  /** Give up the reads waiting for an answer: the agent that would give it went away. */
  dropReads(message) {
    for (const [requestId, waiting] of this.pending) {
      if (waiting.key === null) {
        clearTimeout(waiting.timer);
        this.pending.delete(requestId);
        waiting.resolve(noAnswer(requestId, message));
      }
    }
  }

  nextId() {
    return `${this.screen}-${++this.counter}`;
  }

  publish(op, params, requestId, key) {
    let resolve;
    const promise = new Promise((done) => {
      resolve = done;
    });
    const timer = setTimeout(() => {
      this.pending.delete(requestId);
      resolve(
        noAnswer(
          requestId,
          `Nothing came back within ${ANSWER_TIMEOUT_MS / 1000} s. Check the lane's status; sending the same request again is safe.`,
        ),
      );
    }, ANSWER_TIMEOUT_MS);
    this.pending.set(requestId, { promise, resolve, timer, key });
    const body = JSON.stringify({ request_id: requestId, ...params });
    this.mqtt.publish(`${this.settings.base}/request/${op}`, body, { qos: 1 });
    return promise;
  }
}
