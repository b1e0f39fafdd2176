// One event stream per room for all the tabs of this origin.
//
// Browsers give an origin about 6 HTTP/1.1 connections, so one EventSource
// per tab stalls the seventh tab. Instead the tabs on a room elect a leader
// with a Web Lock: the leader owns the EventSource and relays every event
// over a BroadcastChannel; the others (followers) render from the channel.
// When the leader's tab closes, its lock is released, the next tab in the
// lock's queue takes over and resumes from the last event id it saw, so
// nothing is missed; the message list drops any repeat by id.
//
// Web Locks exist only in secure contexts (HTTPS, or http://localhost and
// 127.0.0.1). Elsewhere every tab simply keeps its own stream.
import { api, eventsURL } from "./api.js";

const EVENTS = ["message", "users", "typing", "reply", "ready"];
// RETRY_MS is the stream's own "retry: 2000". A server that cannot be
// reached (restarting, or the network gone) costs nothing to ask again, and
// asking every 2 s brings the page back within the leave grace (5 s by
// default) of a restart, so nobody is announced as leaving and rejoining.
const RETRY_MS = 2000;
const RETRY_JITTER = 0.2; // so that a restart does not see every page at once
// A server that answers with an error (429 too many streams, 503 while it
// shuts down or its database is out) is asked less and less often.
const BACKOFF_MAX_MS = 10_000;
const BACKOFF_JITTER = 0.3;

// Why a connection was lost: NETWORK when no answer came (refused, reset,
// the stream ended), ANSWERED when the server answered with an error.
const NETWORK = "network";
const ANSWERED = "answered";

// Status values handed to onStatus.
export const CONNECTING = "connecting";
export const LIVE = "live";
export const DOWN = "down";

export class RoomStream {
  #room;
  #handlers;
  #channel = null;
  #source = null;
  #leader = false;
  #cursor = ""; // the last message event id seen, opaque as the contract says
  #status = CONNECTING;
  #users = null; // the last users event, for followers that join later
  #refusals = 0; // error answers in a row, for the backoff
  #stopped = false;
  #releaseLock = null; // ends the leader's hold on the lock
  #abortLock = new AbortController(); // withdraws a follower's place in the queue

  // handlers: onEvent(name, data), onStatus(status), onRole("leader"|"follower").
  constructor(room, handlers) {
    this.#room = room;
    this.#handlers = handlers;
  }

  start() {
    if (!navigator.locks || !window.BroadcastChannel) {
      this.#lead();
      return;
    }
    this.#channel = new BroadcastChannel(`papo-room-${this.#room}`);
    this.#channel.onmessage = (e) => this.#fromChannel(e.data);
    const lock = `papo-stream-${this.#room}`;
    // First try without waiting, so the tab knows its role at once; a
    // follower then queues for the lock, to take over when the leader goes.
    navigator.locks.request(lock, { ifAvailable: true }, (granted) => {
      if (granted) return this.#holdAsLeader();
      this.#follow();
      navigator.locks
        .request(lock, { signal: this.#abortLock.signal }, () => this.#holdAsLeader())
        .catch(() => {}); // AbortError, from stop()
      return undefined;
    });
  }

  // stop closes the stream and gives up the lock, or the place in its queue.
  // Call it on pagehide: a page kept in the back/forward cache is frozen,
  // and a frozen leader would hold the lock while relaying nothing.
  stop() {
    this.#stopped = true;
    this.#source?.close();
    this.#source = null;
    this.#abortLock.abort();
    this.#releaseLock?.();
    this.#channel?.close();
  }

  // The lock is held as long as the returned promise is pending: for the
  // life of the page, or until stop().
  #holdAsLeader() {
    this.#lead();
    return new Promise((resolve) => {
      this.#releaseLock = resolve;
    });
  }

  #lead() {
    this.#leader = true;
    this.#handlers.onRole?.("leader");
    this.#setStatus(CONNECTING);
    this.#connect();
  }

  #follow() {
    this.#handlers.onRole?.("follower");
    // Ask the leader for its cursor, status and users list.
    this.#channel.postMessage({ type: "hello" });
  }

  // --- leader side ---

  #connect() {
    const source = new EventSource(eventsURL(this.#room, this.#cursor));
    this.#source = source;
    for (const name of EVENTS) {
      source.addEventListener(name, (e) => this.#fromServer(name, e));
    }
    // EventSource closes itself for good (CLOSED) when the server answered
    // with an error status; after a network error it would try again by
    // itself (CONNECTING).
    source.onerror = () => {
      if (this.#source !== source) return;
      this.#lost(source.readyState === EventSource.CLOSED ? ANSWERED : NETWORK);
    };
  }

  #fromServer(name, e) {
    let data;
    try {
      data = JSON.parse(e.data);
    } catch {
      return; // not the contract's JSON; nothing sensible to show
    }
    // Only message events carry id:, and lastEventId keeps the previous
    // value on the others, so take it from messages alone.
    const id = name === "message" ? e.lastEventId : "";
    this.#deliver(name, data, id);
    this.#channel?.postMessage({ type: "event", name, data, id });
    if (name === "ready") {
      this.#refusals = 0;
      this.#setStatus(LIVE);
    }
  }

  // #lost closes the broken EventSource and opens a new one later, from our
  // own cursor. Doing the retry here, instead of letting EventSource retry by
  // itself, keeps one path for "resume from cursor" (after an error and
  // after a takeover), and lets us notice a session that ended.
  #lost(why, retryAfter) {
    if (this.#stopped) return;
    this.#source?.close();
    this.#source = null;
    this.#setStatus(DOWN);
    setTimeout(() => this.#reconnect(), this.#retryDelay(why, retryAfter));
  }

  // #retryDelay is the server's hint after a network failure, however many
  // came before; only error answers back off, honouring a Retry-After.
  #retryDelay(why, retryAfter) {
    if (why === NETWORK) return RETRY_MS * (1 + Math.random() * RETRY_JITTER);
    const backoff = Math.min(BACKOFF_MAX_MS, RETRY_MS * 2 ** this.#refusals++);
    const asked = Math.min(BACKOFF_MAX_MS, Number(retryAfter) * 1000 || 0);
    return Math.max(backoff, asked) * (1 + Math.random() * BACKOFF_JITTER);
  }

  async #reconnect() {
    if (this.#stopped) return;
    try {
      await api.me(); // a 401 here sends this page to /login
    } catch (err) {
      if (err.status === 401) this.#channel?.postMessage({ type: "signed-out" });
      else this.#lost(err.status === 0 ? NETWORK : ANSWERED, err.retryAfter);
      return;
    }
    this.#connect();
  }

  #setStatus(status) {
    this.#status = status;
    this.#handlers.onStatus?.(status);
    if (this.#leader) this.#announce();
  }

  #announce() {
    this.#channel?.postMessage({
      type: "state",
      cursor: this.#cursor,
      status: this.#status,
      users: this.#users,
    });
  }

  // --- both sides ---

  #deliver(name, data, id) {
    if (id) this.#cursor = id;
    if (name === "users") this.#users = data;
    this.#handlers.onEvent(name, data);
  }

  #fromChannel(msg) {
    if (this.#leader) {
      if (msg?.type === "hello") this.#announce();
      return;
    }
    switch (msg?.type) {
      case "signed-out":
        // The session ended (logged out, maybe in another tab): every tab
        // of it goes to the login page, not only the leader.
        location.assign("/login");
        break;
      case "event":
        this.#deliver(msg.name, msg.data, msg.id);
        break;
      case "state":
        // The channel keeps the leader's order, so its cursor covers exactly
        // the events relayed before this message.
        if (msg.cursor) this.#cursor = msg.cursor;
        if (msg.users && !this.#users) this.#deliver("users", msg.users, "");
        if (msg.status !== this.#status) {
          this.#status = msg.status;
          this.#handlers.onStatus?.(msg.status);
        }
        break;
    }
  }
}
