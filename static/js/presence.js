// Who is here and who is typing.
import { t } from "./i18n.js";

// renderUsers fills the online list; the reader is marked "(you)".
export function renderUsers(listEl, countEl, users, me) {
  listEl.replaceChildren(
    ...users.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      if (name === me) {
        li.classList.add("me");
        const you = document.createElement("span");
        you.className = "you";
        you.textContent = ` (${t("you")})`;
        li.append(you);
      }
      return li;
    }),
  );
  countEl.textContent = String(users.length);
}

// A "typing: true" that is not renewed is dropped by the server after 6 s
// with a "typing: false"; this local expiry only covers a false that never
// arrives (the stream went down in between).
const TYPING_EXPIRY_MS = 8000;

export class TypingIndicator {
  #el;
  #timers = new Map(); // username -> timeout id, in order of arrival

  constructor(el) {
    this.#el = el;
  }

  set(username, typing) {
    clearTimeout(this.#timers.get(username));
    this.#timers.delete(username);
    if (typing) {
      this.#timers.set(
        username,
        setTimeout(() => this.set(username, false), TYPING_EXPIRY_MS),
      );
    }
    this.#render();
  }

  clear() {
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#render();
  }

  #render() {
    const [a, b, ...rest] = this.#timers.keys();
    let text = "";
    if (rest.length > 0) text = t("typingMany", { a, b, n: rest.length });
    else if (b) text = t("typing2", { a, b });
    else if (a) text = t("typing1", { a });
    this.#el.textContent = text;
  }
}
