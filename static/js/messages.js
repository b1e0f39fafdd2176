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
  li.append(meta, body);
  return li;
}

export class MessageList {
  #scroller;
  #list;
  #me;
  #seen = new Set();
  #maxId = 0;

  constructor(scroller, list, me) {
    this.#scroller = scroller;
    this.#list = list;
    this.#me = me;
  }

  // add renders msg unless its id is already shown, and reports whether it
  // was new. Live messages and replays from a resumed stream or another tab
  // can overlap, so this is the one place that drops repeats.
  add(msg) {
    if (!msg || typeof msg.id !== "number" || this.#seen.has(msg.id)) return false;
    this.#seen.add(msg.id);
    const stick = this.nearBottom();
    this.#insert(renderMessage(msg, this.#me), msg.id);
    if (stick) this.scrollToBottom();
    return true;
  }

  // addOlder renders a page of history above what is shown, keeping the
  // messages the reader is looking at where they are on screen.
  addOlder(messages) {
    const fromBottom = this.#scroller.scrollHeight - this.#scroller.scrollTop;
    let added = 0;
    for (const msg of messages) {
      if (typeof msg.id !== "number" || this.#seen.has(msg.id)) continue;
      this.#seen.add(msg.id);
      this.#insert(renderMessage(msg, this.#me), msg.id);
      added++;
    }
    this.#scroller.scrollTop = this.#scroller.scrollHeight - fromBottom;
    return added;
  }

  // addNotice shows a line that is not a stored message, such as a command's
  // reply or a failed send. It goes at the bottom and is never deduplicated.
  addNotice(text, kind) {
    const li = el("li", `notice notice-${kind}`);
    li.append(el("p", "text", text));
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
