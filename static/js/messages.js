// The message list: renders contract Messages as text (never as HTML),
// keeps them in id order, drops repeats by id, and keeps the reader's
// scroll position sensible while messages arrive at either end.
import { lang, t } from "./i18n.js";

const timeFormat = new Intl.DateTimeFormat(lang, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(lang, { dateStyle: "short", timeStyle: "short" });
const fullFormat = new Intl.DateTimeFormat(lang, { dateStyle: "full", timeStyle: "medium" });

// el builds an element with a class and text. Text always goes through
// textContent, which is what keeps "<script>" in a message inert.
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// timeElement shows the local time, with the date too when it is not today.
function timeElement(iso) {
  const when = new Date(iso);
  const node = el("time", "when");
  if (Number.isNaN(when.getTime())) return node;
  const today = when.toDateString() === new Date().toDateString();
  node.dateTime = when.toISOString();
  node.textContent = (today ? timeFormat : dateTimeFormat).format(when);
  node.title = fullFormat.format(when);
  return node;
}

// systemText words a join or leave in the reader's language from the event
// fields; an event this page does not know keeps the server's own text.
function systemText(msg) {
  if (msg.event === "join") return t("joined", { user: msg.username });
  if (msg.event === "leave") return t("left", { user: msg.username });
  return msg.message;
}

// renderMessage returns the <li> for one Message. me is the reader's name.
export function renderMessage(msg, me) {
  const li = el("li", `msg msg-${msg.kind}`);
  li.dataset.id = String(msg.id);
  if (msg.username === me) li.classList.add("mine");
  const meta = el("div", "meta");
  let body;
  switch (msg.kind) {
    case "system":
      body = el("p", "text", systemText(msg));
      break;
    case "action":
      body = el("p", "text", t("action", { user: msg.username, text: msg.message }));
      break;
    case "private": {
      // Say which way it went: "to bia" on the sender's side, "from ana"
      // on the receiver's.
      meta.append(el("span", "badge", t("privateLabel")));
      const other = msg.username === me ? t("privateTo", { user: msg.to }) : t("privateFrom", { user: msg.username });
      meta.append(el("span", "author", other));
      body = el("p", "text", msg.message);
      break;
    }
    default:
      meta.append(el("span", "author", msg.username));
      body = el("p", "text", msg.message);
  }
  meta.append(timeElement(msg.created_at));
  // The text's own first strong letter sets its direction: Hebrew or
  // Arabic reads right to left even on an English page.
  body.dir = "auto";
  li.append(meta, body);
  return li;
}

// MAX_SHOWN bounds the list. Past it, the oldest lines leave the page while
// the reader is at the bottom; scrolling up brings them back from history.
// A list that only grows makes a tab open all day slower with every message.
const MAX_SHOWN = 1000;
// SETTLE_MS settles a batch in a hidden tab too, which draws no frames.
const SETTLE_MS = 250;

export class MessageList {
  #scroller;
  #list;
  #me;
  #seen = new Set(); // the ids shown, no more: a trimmed id can come back
  #maxId = 0;
  #floor = 0; // the highest id trimmed away; anything at or below is history's
  #stick = null; // was the reader at the bottom when this batch began? null: no batch
  #batch = 0;
  #onTrim = null;

  constructor(scroller, list, me) {
    this.#scroller = scroller;
    this.#list = list;
    this.#me = me;
  }

  // whenTrimmed calls fn after the oldest messages left the page.
  whenTrimmed(fn) {
    this.#onTrim = fn;
  }

  // add renders msg unless its id is already shown, and reports whether it
  // was new. Live messages and replays from a resumed stream or another tab
  // can overlap, so this is the one place that drops repeats.
  add(msg) {
    if (!msg || typeof msg.id !== "number" || this.#seen.has(msg.id)) return false;
    // One older than what was trimmed away would sit above the gap that
    // history fills; history brings it back in its place.
    if (msg.id <= this.#floor) return false;
    this.#beginBatch();
    this.#seen.add(msg.id);
    this.#insert(renderMessage(msg, this.#me), msg.id);
    return true;
  }

  // addOlder renders a page of history above what is shown, keeping the
  // messages the reader is looking at where they are on screen. The page
  // must end where the list starts (see History), so it closes any gap.
  addOlder(messages) {
    const fromBottom = this.#scroller.scrollHeight - this.#scroller.scrollTop;
    let added = 0;
    for (const msg of messages) {
      if (typeof msg.id !== "number" || this.#seen.has(msg.id)) continue;
      this.#seen.add(msg.id);
      this.#insert(renderMessage(msg, this.#me), msg.id);
      added++;
    }
    if (this.#floor > 0) this.#floor = Math.min(this.#floor, this.oldestId() - 1);
    this.#scroller.scrollTop = this.#scroller.scrollHeight - fromBottom;
    return added;
  }

  // addNotice shows a line that is not a stored message, such as a command's
  // reply or a failed send. It goes at the bottom and is never deduplicated.
  addNotice(text, kind) {
    const li = el("li", `notice notice-${kind}`);
    const body = el("p", "text", text);
    body.dir = "auto";
    li.append(body);
    li.setAttribute("role", kind === "error" ? "alert" : "status");
    this.#list.append(li);
    this.scrollToBottom();
  }

  // oldestId is the lowest message id shown, the cursor for paging back.
  oldestId() {
    const first = this.#list.querySelector("[data-id]");
    return first ? Number(first.dataset.id) : 0;
  }

  nearBottom() {
    const s = this.#scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.#scroller.scrollTop = this.#scroller.scrollHeight;
  }

  // #beginBatch notes, before the first message of a batch goes in, whether
  // the reader is at the bottom, and settles the batch before the next
  // frame. Reading the scroll position forces a layout, so a burst of
  // messages costs one layout per frame rather than one per message.
  #beginBatch() {
    if (this.#stick !== null) return;
    this.#stick = this.nearBottom();
    const batch = ++this.#batch;
    const settle = () => this.#settle(batch);
    requestAnimationFrame(settle);
    setTimeout(settle, SETTLE_MS);
  }

  // #settle keeps a reader who was at the bottom there, below the batch,
  // and only then trims: someone reading back keeps what they are reading.
  #settle(batch) {
    if (batch !== this.#batch || this.#stick === null) return;
    const stick = this.#stick;
    this.#stick = null;
    if (!stick) return;
    this.#trim();
    this.scrollToBottom();
  }

  // #trim drops the oldest lines (messages and notices) past MAX_SHOWN,
  // and forgets their ids, so that paging back shows them again in place.
  #trim() {
    const list = this.#list;
    if (list.children.length <= MAX_SHOWN) return;
    while (list.children.length > MAX_SHOWN) {
      const first = list.firstElementChild;
      const id = Number(first.dataset.id); // NaN for a notice
      if (id) {
        this.#seen.delete(id);
        this.#floor = Math.max(this.#floor, id);
      }
      first.remove();
    }
    this.#onTrim?.();
  }

  // #insert keeps id order. The common case, a newer message, appends; an
  // older one (history, or a late relay) goes before the first higher id.
  #insert(li, id) {
    if (id > this.#maxId) {
      this.#maxId = id;
      this.#list.append(li);
      return;
    }
    for (const other of this.#list.querySelectorAll("[data-id]")) {
      if (Number(other.dataset.id) > id) {
        other.before(li);
        return;
      }
    }
    this.#list.append(li);
  }
}
