// The composer: Enter sends, Shift+Enter starts a new line, "/" opens the
// command suggestions, and typing is announced to the room.
import { t } from "./i18n.js";

// The commands of the contract's /help table; /w is its alias of /msg.
export const COMMANDS = [
  { name: "help", usage: "/help", hint: "cmdHelp" },
  { name: "who", usage: "/who", hint: "cmdWho" },
  { name: "msg", usage: "/msg USER TEXT", hint: "cmdMsg" },
  { name: "w", usage: "/w USER TEXT", hint: "cmdW" },
  { name: "me", usage: "/me TEXT", hint: "cmdMe" },
  { name: "stats", usage: "/stats [USER]", hint: "cmdStats" },
  { name: "rooms", usage: "/rooms", hint: "cmdRooms" },
];

const TYPING_RENEW_MS = 3000; // the server drops a "true" not renewed within 6 s

// TypingSignal turns keystrokes into POST /typing calls: true when typing
// starts and again every few seconds while it goes on, false once when it
// stops (sent, cleared, or focus left).
export class TypingSignal {
  #send;
  #active = false;
  #lastSent = 0;

  constructor(send) {
    this.#send = send;
  }

  input(text) {
    // A command is not chat: a "/msg bia …" in progress should not tell the
    // whole room that we are typing.
    if (text.trim() === "" || text.startsWith("/")) {
      this.stop();
      return;
    }
    const now = Date.now();
    if (!this.#active || now - this.#lastSent >= TYPING_RENEW_MS) {
      this.#active = true;
      this.#lastSent = now;
      this.#send(true);
    }
  }

  stop() {
    if (!this.#active) return;
    this.#active = false;
    this.#send(false);
  }
}

// Suggestions is the listbox under the composer while the text is "/word".
class Suggestions {
  #box;
  #input;
  #items = [];
  #active = -1;

  constructor(box, input, onPick) {
    this.#box = box;
    this.#input = input;
    // mousedown, not click: picking must not take focus from the textarea.
    box.addEventListener("mousedown", (e) => {
      const option = e.target.closest("[role=option]");
      if (!option) return;
      e.preventDefault();
      onPick(this.#items[Number(option.dataset.index)]);
    });
  }

  get open() {
    return !this.#box.hidden;
  }

  get active() {
    return this.#items[this.#active];
  }

  get first() {
    return this.#items[0];
  }

  update(text) {
    const m = /^\/(\w*)$/.exec(text);
    this.#items = m ? COMMANDS.filter((c) => c.name.startsWith(m[1].toLowerCase())) : [];
    this.#active = -1;
    this.#render();
  }

  move(step) {
    const n = this.#items.length;
    this.#active = (this.#active + step + n) % n;
    this.#render();
  }

  close() {
    this.#items = [];
    this.#render();
  }

  #render() {
    const box = this.#box;
    box.replaceChildren();
    this.#items.forEach((cmd, i) => {
      const li = document.createElement("li");
      li.id = `command-${cmd.name}`;
      li.setAttribute("role", "option");
      li.dataset.index = String(i);
      li.setAttribute("aria-selected", String(i === this.#active));
      const usage = document.createElement("code");
      usage.textContent = cmd.usage;
      const hint = document.createElement("span");
      hint.textContent = t(cmd.hint);
      li.append(usage, " ", hint);
      box.append(li);
    });
    box.hidden = this.#items.length === 0;
    const active = this.active;
    if (active) this.#input.setAttribute("aria-activedescendant", `command-${active.name}`);
    else this.#input.removeAttribute("aria-activedescendant");
  }
}

// Composer wires the form. onSend(text) returns a promise that rejects when
// the server did not take the text (or a command answered ok: false); the
// composer then gives the text back.
export class Composer {
  #input;
  #typing;
  #suggestions;
  #onSend;

  constructor({ form, input, suggestions, onSend, onTyping }) {
    this.#input = input;
    this.#onSend = onSend;
    this.#typing = new TypingSignal(onTyping);
    this.#suggestions = new Suggestions(suggestions, input, (cmd) => this.#complete(cmd));

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.#submit();
    });
    input.addEventListener("keydown", (e) => this.#keydown(e));
    input.addEventListener("input", () => {
      this.#suggestions.update(input.value);
      this.#typing.input(input.value);
    });
    input.addEventListener("blur", () => {
      this.#typing.stop();
      this.#suggestions.close();
    });
  }

  focus() {
    this.#input.focus();
  }

  #keydown(e) {
    // While an IME composes (Japanese, Chinese…), Enter confirms a word.
    if (e.isComposing || e.keyCode === 229) return;
    const s = this.#suggestions;
    if (s.open) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        s.move(e.key === "ArrowDown" ? 1 : -1);
        return;
      }
      if (e.key === "Escape") {
        e.preventDefault();
        s.close();
        return;
      }
      // Tab completes the highlighted command, or the first; Enter only a
      // highlighted one, so that "/help" then Enter simply sends.
      if ((e.key === "Tab" || e.key === "Enter") && !e.shiftKey) {
        const pick = s.active ?? (e.key === "Tab" ? s.first : undefined);
        if (pick && this.#input.value !== `/${pick.name}`) {
          e.preventDefault();
          this.#complete(pick);
          return;
        }
      }
    }
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      this.#submit();
    }
  }

  #complete(cmd) {
    this.#input.value = `/${cmd.name} `;
    this.#suggestions.close();
    this.#input.focus();
  }

  async #submit() {
    const text = this.#input.value;
    if (text.trim() === "") return;
    // Clear at once so the next message can be typed; the text comes back
    // if the server turns it down.
    this.#input.value = "";
    this.#suggestions.close();
    this.#typing.stop();
    try {
      await this.#onSend(text);
    } catch {
      this.#giveBack(text);
    }
  }

  // #giveBack puts text that was not sent back in the box, ahead of
  // anything typed since, which stays as it was, with the caret or
  // selection on the same characters. An empty box gets the caret at the end.
  #giveBack(text) {
    const input = this.#input;
    const typed = input.value;
    if (typed === "") {
      input.value = text;
      return;
    }
    const { selectionStart, selectionEnd, selectionDirection } = input;
    const shift = text.length + 1; // the text and the line break after it
    input.value = `${text}\n${typed}`;
    input.setSelectionRange(selectionStart + shift, selectionEnd + shift, selectionDirection);
  }
}
