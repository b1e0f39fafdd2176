// Older messages, loaded through the paging route when the reader nears
// the top of the list (or presses the button, from the keyboard).
import { api } from "./api.js";
import { t } from "./i18n.js";

const PAGE = 50;
const NEAR_TOP_PX = 150;

export class History {
  #room;
  #messages; // MessageList
  #scroller;
  #button;
  #status;
  #enabled = false;
  #loading = false;
  #done = false;

  constructor({ room, messages, scroller, button, status }) {
    this.#room = room;
    this.#messages = messages;
    this.#scroller = scroller;
    this.#button = button;
    this.#status = status;
    scroller.addEventListener("scroll", () => this.maybeLoad(), { passive: true });
    button.addEventListener("click", () => this.load());
    messages.whenTrimmed(() => this.#reopen());
  }

  // enable is called once the newest messages are shown; paging before that
  // would fetch the same newest page twice.
  enable() {
    if (this.#enabled) return;
    this.#enabled = true;
    this.#button.hidden = false;
    this.maybeLoad();
  }

  // maybeLoad loads a page when the top is in sight: after a scroll, or when
  // the messages do not even fill the screen yet.
  maybeLoad() {
    if (this.#scroller.scrollTop < NEAR_TOP_PX) this.load();
  }

  async load() {
    if (!this.#enabled || this.#loading || this.#done) return;
    this.#loading = true;
    this.#show(t("loadingOlder"), true);
    try {
      const before = this.#messages.oldestId();
      const page = await api.history(this.#room, before || undefined, PAGE);
      if (this.#messages.oldestId() !== before) {
        // The list's start moved while the page was on its way (it was
        // trimmed, or the first messages came): the page may not end where
        // the list now starts, so ask again from there.
        this.#loading = false;
        this.#show("", false);
        requestAnimationFrame(() => this.maybeLoad());
        return;
      }
      this.#messages.addOlder(page);
      if (page.length < PAGE) this.#finish();
      else this.#show("", false);
    } catch {
      this.#show(t("historyFailed"), false);
      this.#loading = false;
      return; // no retry loop: the button and the next scroll try again
    }
    this.#loading = false;
    // The new page may still not fill the screen.
    requestAnimationFrame(() => this.maybeLoad());
  }

  // #reopen is for a list that dropped its oldest messages: the start of
  // the room is no longer shown, so paging back works again.
  #reopen() {
    if (!this.#done) return;
    this.#done = false;
    this.#button.hidden = !this.#enabled;
    this.#status.textContent = "";
  }

  #finish() {
    this.#done = true;
    this.#button.hidden = true;
    this.#status.textContent = t("historyStart", { room: this.#room });
  }

  #show(text, busy) {
    this.#status.textContent = text;
    this.#button.disabled = busy;
    this.#scroller.setAttribute("aria-busy", String(busy));
  }
}
