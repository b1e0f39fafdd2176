// The room switcher: the rooms this browser has visited (kept in
// localStorage, as the contract has no route that lists rooms), and a form
// to go to any room by name, which creates it by using it.
import { t } from "./i18n.js";

const STORE_KEY = "papo-rooms";
const MAX_ROOMS = 20;
export const ROOM_PATTERN = /^[a-z0-9_-]{1,64}$/;

function recentRooms() {
  try {
    const rooms = JSON.parse(localStorage.getItem(STORE_KEY) ?? "[]");
    return Array.isArray(rooms) ? rooms.filter((r) => ROOM_PATTERN.test(r)) : [];
  } catch {
    return [];
  }
}

// remember puts room first in the list, so that recent rooms come first.
function remember(room) {
  const rooms = [room, ...recentRooms().filter((r) => r !== room)].slice(0, MAX_ROOMS);
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(rooms));
  } catch {
    // storage full or disabled: the switcher just forgets
  }
}

export function setupRooms({ room, list, form, input, error }) {
  remember(room);
  const rooms = recentRooms();
  if (!rooms.includes("general")) rooms.push("general");
  list.replaceChildren(
    ...rooms.map((name) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/r/${name}`;
      a.textContent = `#${name}`;
      if (name === room) a.setAttribute("aria-current", "page");
      li.append(a);
      return li;
    }),
  );

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const name = input.value.trim().replace(/^#/, "").toLowerCase();
    if (!ROOM_PATTERN.test(name)) {
      error.textContent = t("invalidRoom");
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    location.assign(`/r/${name}`);
  });
  input.addEventListener("input", () => {
    error.textContent = "";
    input.removeAttribute("aria-invalid");
  });
}
