// The chat page: wires the stream, the message list, the composer and the
// side panels together. Everything the user wrote is put in the page as
// text; nothing here builds HTML from strings.
import { api } from "./api.js";
import { Composer } from "./composer.js";
import { History } from "./history.js";
import { t, translatePage } from "./i18n.js";
import { MessageList } from "./messages.js";
import { renderUsers, TypingIndicator } from "./presence.js";
import { setupRooms } from "./rooms.js";
import { DOWN, RoomStream } from "./stream.js";

const $ = (id) => document.getElementById(id);
const room = document.body.dataset.room;
const me = document.body.dataset.user;

translatePage({ room });

const messages = new MessageList($("scroller"), $("messages"), me);
const typingLine = new TypingIndicator($("typing"));
const older = new History({
  room,
  messages,
  scroller: $("scroller"),
  button: $("load-older"),
  status: $("history-status"),
});

// --- a room name in the URL that was not one ---

// The server sends /r/Not-A-Room! here, to the default room, with the name
// it could not use in ?bad_room=. It is said once, after the newest
// messages, as text; the URL loses it, so a reload does not say it again.
let badRoom = new URLSearchParams(location.search).get("bad_room");
if (badRoom !== null) history.replaceState(history.state, "", location.pathname + location.hash);
function noteBadRoom() {
  if (badRoom === null) return;
  messages.addNotice(t("badRoom", { name: badRoom, room }), "error");
  badRoom = null;
}

// --- unread count in the title, while the tab is hidden ---

let unread = 0;
function updateTitle() {
  document.title = unread > 0 ? t("titleUnread", { n: unread, room }) : t("title", { room });
}
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) {
    unread = 0;
    updateTitle();
  }
});
updateTitle();

// The room switcher in the side panel: its counts follow this room's
// users events, and the other rooms are asked for once the stream is live.
const roomsPanel = setupRooms({
  room,
  list: $("rooms"),
  form: $("room-form"),
  input: $("room-name"),
  error: $("room-error"),
});

// --- events from the stream (our own, or relayed by the leader tab) ---

function onMessage(msg) {
  if (!messages.add(msg)) return;
  if (document.hidden && msg.username !== me && msg.kind !== "system") {
    unread++;
    updateTitle();
  }
}

const handlers = {
  message: onMessage,
  users: (data) => {
    renderUsers($("users"), $("user-count"), data.users ?? [], me);
    roomsPanel.here((data.users ?? []).length);
  },
  typing: (data) => {
    if (data.username !== me) typingLine.set(data.username, data.typing);
  },
  // A command's reply is shown from the answer to our own POST. The same
  // reply also comes as a stream event to every tab of this user in the
  // room; showing it there too would show it twice in the tab that asked.
  reply: () => {},
  ready: () => {
    older.enable();
    roomsPanel.refresh();
    noteBadRoom();
  },
};

const stream = new RoomStream(room, {
  onEvent: (name, data) => handlers[name]?.(data),
  onStatus: (status) => {
    $("banner").hidden = status !== DOWN;
    if (status === DOWN) typingLine.clear(); // no "false" can reach us now
    document.body.dataset.stream = status;
  },
  onRole: (role) => {
    document.body.dataset.role = role; // handy in devtools and in the e2e tests
    if (role === "follower") loadRecent();
  },
});

// loadRecent shows the newest messages in a follower tab, which did not get
// the backlog that the leader's stream replayed before it arrived. Anything
// after this page comes over the channel; overlaps are dropped by id.
async function loadRecent() {
  try {
    for (const msg of await api.history(room)) messages.add(msg);
    messages.scrollToBottom();
  } catch {
    // the stream still delivers what comes next, and scrolling up retries
  }
  older.enable();
  noteBadRoom();
}

// --- sending ---

function sendError(err) {
  if (err.status === 429) return t("tooFast");
  if (err.status === 0) return t("offline");
  return err.message;
}

async function send(text) {
  let answer;
  try {
    answer = await api.postMessage(room, text);
  } catch (err) {
    messages.addNotice(t("sendFailed", { reason: sendError(err) }), "error");
    throw err;
  }
  if (answer?.message) {
    messages.add(answer.message); // at once; the stream's copy is dropped by id
    messages.scrollToBottom();
  }
  const reply = answer?.reply;
  // A /me or /msg that worked shows up as its message; its reply adds nothing.
  const quiet = reply?.ok && ["me", "msg", "w"].includes(reply.command);
  if (reply && !quiet && reply.output) messages.addNotice(reply.output, reply.ok ? "reply" : "error");
  // A command that answered ok: false (a typo in a name, a missing
  // argument) did nothing: its text goes back in the box to be fixed.
  if (reply?.ok === false) throw new Error(reply.output || "command failed");
}

const composer = new Composer({
  form: $("composer-form"),
  input: $("composer"),
  suggestions: $("suggestions"),
  onSend: send,
  onTyping: (on) => api.setTyping(room, on).catch(() => {}),
});

// --- side panel: the toggle that shows it on phones ---

const toggle = $("sidebar-toggle");
function showSidebar(open) {
  toggle.setAttribute("aria-expanded", String(open));
  $("sidebar").classList.toggle("open", open);
}
toggle.addEventListener("click", () => showSidebar(toggle.getAttribute("aria-expanded") !== "true"));
// Escape folds the panel from anywhere, as it does a menu.
document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
    showSidebar(false);
    toggle.focus();
  }
});

stream.start();
window.addEventListener("pagehide", () => stream.stop());
// Back from the back/forward cache, the page has been frozen for a while and
// gave up its stream on the way in: load it afresh rather than patch it up.
window.addEventListener("pageshow", (e) => {
  if (e.persisted) location.reload();
});
composer.focus();
