// The room switcher: the rooms this browser has visited (kept in
// localStorage), then the rooms where people are online now (GET /rooms,
// papo's addition to the contract), each with how many are there; and a
// form to go to any room by name, which creates it by using it.
import { api } from "./api.js";
import { t } from "./i18n.js";

const STORE_KEY = "papo-rooms";
const MAX_ROOMS = 20;
const MAX_ACTIVE = 20; // busy rooms shown beyond the visited ones
const REFRESH_MS = 30_000;
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

// roomItems lists the visited rooms, most recent first, then the busiest
// rooms not visited, each with how many are online there; active is what
// GET /rooms answered.
export function roomItems(visited, active) {
  const counts = new Map(active.map((r) => [r.room, r.users]));
  const names = [...visited];
  for (const r of active) {
    if (names.length >= visited.length + MAX_ACTIVE) break;
    if (ROOM_PATTERN.test(r.room) && !names.includes(r.room)) names.push(r.room);
  }
  return names.map((name) => ({ name, users: counts.get(name) ?? 0 }));
}

function render(list, room, items) {
  list.replaceChildren(
    ...items.map(({ name, users }) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = `/r/${name}`;
      a.textContent = `#${name}`;
      if (name === room) a.setAttribute("aria-current", "page");
      li.append(a);
      if (users > 0) {
        const count = document.createElement("span");
        count.className = "room-count";
        count.textContent = String(users);
        count.title = t("roomOnline", { n: users });
        count.setAttribute("aria-label", count.title);
        li.append(count);
      }
      return li;
    }),
  );
}

// setupRooms draws the switcher and returns its controls: refresh asks
// the server again; here sets how many are in the current room, as its
// users events tell.
export function setupRooms({ room, list, form, input, error }) {
  remember(room);
  const visited = recentRooms();
  if (!visited.includes("general")) visited.push("general");
  let active = [];
  let here = 0;
  const draw = () => {
    const others = active.filter((r) => r.room !== room);
    const counts = here > 0 ? [{ room, users: here }, ...others] : others;
    render(list, room, roomItems(visited, counts));
  };
  draw();
  const refresh = () =>
    api
      .rooms()
      .then((rooms) => {
        active = rooms;
        draw();
      })
      .catch(() => {}); // the list stays as it was; the next refresh may do better
  refresh();
  setInterval(() => {
    if (document.visibilityState === "visible") refresh();
  }, REFRESH_MS);
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
  return {
    refresh,
    here: (n) => {
      here = n;
      draw();
    },
  };
}
