// Thin wrappers around the routes of the HTTP contract (shared/API.md).
// Every call is same-origin, so the browser sends Sec-Fetch-Site:
// same-origin and the server's cross-origin check lets it through.

// ApiError carries the contract's error body: {"error": {code, message}}.
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function request(method, path, body) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  };
  if (body instanceof URLSearchParams) {
    init.body = body; // fetch labels it application/x-www-form-urlencoded
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, "offline", String(err));
  }
  if (res.status === 401) {
    // The session ended (logout in another tab, or it expired): the only
    // useful place is the login page.
    location.assign("/login");
    throw new ApiError(401, "unauthorized", "not logged in");
  }
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const e = data?.error ?? {};
    throw new ApiError(res.status, e.code, e.message, res.headers.get("Retry-After"));
  }
  return data;
}

const roomPath = (room) => `/rooms/${encodeURIComponent(room)}`;

export const api = {
  // postMessage answers {message} for a message, or {reply} for a command.
  postMessage: (room, message) => request("POST", `${roomPath(room)}/messages`, { message }),
  // typing goes as a form field: the contract spells it "true"/"false",
  // which leaves no doubt about string versus boolean.
  setTyping: (room, typing) =>
    request("POST", `${roomPath(room)}/typing`, new URLSearchParams({ typing: String(typing) })),
  // history returns messages oldest first, all with id below before when given.
  history: (room, before, limit = 50) => {
    const q = new URLSearchParams({ limit: String(limit) });
    if (before) q.set("before", String(before));
    return request("GET", `${roomPath(room)}/messages?${q}`).then((d) => d.messages ?? []);
  },
  users: (room) => request("GET", `${roomPath(room)}/users`).then((d) => d.users ?? []),
  // rooms lists {room, users} for the rooms with someone online, busiest
  // first (GET /rooms, papo's addition to the contract).
  rooms: () => request("GET", "/rooms").then((d) => d.rooms ?? []),
  me: () => request("GET", "/me").then((d) => d.user),
};

export const eventsURL = (room, lastEventId) => {
  const base = `${roomPath(room)}/events`;
  return lastEventId ? `${base}?last_event_id=${encodeURIComponent(lastEventId)}` : base;
};
