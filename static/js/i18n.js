// The page's words, in one table. English is the default; Brazilian
// Portuguese is chosen when the browser prefers Portuguese.
//
// Templates carry the English words too, so the login and register pages
// still read well with JavaScript off; elements with data-i18n* attributes
// get the table's words once a script runs (see translatePage).

const strings = {
  en: {
    appName: "papo",
    username: "Username",
    password: "Password",
    logIn: "Log in",
    register: "Create account",
    noAccount: "New here?",
    haveAccount: "Already have an account?",
    usernameHint: "3–32 letters, digits, _ . or -",
    passwordHint: "At least 8 characters",
    logOut: "Log out",
    rooms: "Rooms",
    roomOnline: "{n} online",
    people: "Online",
    menu: "Rooms and people",
    roomName: "Room name",
    joinRoom: "Go",
    roomHint: "a–z, 0–9, _ and -, up to 64",
    invalidRoom: "A room name is 1–64 of a–z, 0–9, _ and -.",
    badRoom: "“{name}” is not a room name (a–z, 0–9, _ and -, up to 64), so here is #{room}.",
    composerLabel: "Message",
    composerPlaceholder: "Message #{room} — / for commands",
    send: "Send",
    skipToComposer: "Skip to the message box",
    messages: "Messages in #{room}",
    typing1: "{a} is typing…",
    typing2: "{a} and {b} are typing…",
    typingMany: "{a}, {b} and {n} more are typing…",
    joined: "{user} joined the chat",
    left: "{user} left the chat",
    action: "* {user} {text}",
    privateTo: "to {user}",
    privateFrom: "from {user}",
    privateLabel: "private",
    you: "you",
    streamDown: "Connection lost. Reconnecting…",
    loadingOlder: "Loading older messages…",
    loadOlder: "Load older messages",
    historyStart: "This is the start of #{room}.",
    historyFailed: "Older messages could not be loaded.",
    sendFailed: "Not sent: {reason}",
    tooFast: "Slow down a little, then try again.",
    offline: "the server cannot be reached",
    commands: "Commands",
    cmdHelp: "list the commands",
    cmdWho: "who is online in this room",
    cmdMsg: "a private message to USER",
    cmdW: "same as /msg",
    cmdMe: "an action: * you TEXT",
    cmdStats: "a user's message count",
    cmdRooms: "rooms with someone online",
    title: "#{room} · papo",
    titleUnread: "({n}) #{room} · papo",
    pageTitle: "{page} · papo",
  },
  "pt-BR": {
    appName: "papo",
    username: "Nome de usuário",
    password: "Senha",
    logIn: "Entrar",
    register: "Criar conta",
    noAccount: "Primeira vez aqui?",
    haveAccount: "Já tem uma conta?",
    usernameHint: "3–32 letras, dígitos, _ . ou -",
    passwordHint: "Pelo menos 8 caracteres",
    logOut: "Sair",
    rooms: "Salas",
    roomOnline: "{n} online",
    people: "Online",
    menu: "Salas e pessoas",
    roomName: "Nome da sala",
    joinRoom: "Ir",
    roomHint: "a–z, 0–9, _ e -, até 64",
    invalidRoom: "O nome de uma sala tem 1–64 de a–z, 0–9, _ e -.",
    badRoom: "“{name}” não é um nome de sala (a–z, 0–9, _ e -, até 64); por isso, aqui está #{room}.",
    composerLabel: "Mensagem",
    composerPlaceholder: "Mensagem em #{room} — / para comandos",
    send: "Enviar",
    skipToComposer: "Pular para a caixa de mensagem",
    messages: "Mensagens em #{room}",
    typing1: "{a} está digitando…",
    typing2: "{a} e {b} estão digitando…",
    typingMany: "{a}, {b} e mais {n} estão digitando…",
    joined: "{user} entrou na conversa",
    left: "{user} saiu da conversa",
    action: "* {user} {text}",
    privateTo: "para {user}",
    privateFrom: "de {user}",
    privateLabel: "privada",
    you: "você",
    streamDown: "Conexão perdida. Reconectando…",
    loadingOlder: "Carregando mensagens anteriores…",
    loadOlder: "Carregar mensagens anteriores",
    historyStart: "Este é o início de #{room}.",
    historyFailed: "Não foi possível carregar as mensagens anteriores.",
    sendFailed: "Não enviada: {reason}",
    tooFast: "Vá com calma e tente de novo.",
    offline: "o servidor não responde",
    commands: "Comandos",
    cmdHelp: "lista os comandos",
    cmdWho: "quem está online nesta sala",
    cmdMsg: "uma mensagem privada para USER",
    cmdW: "o mesmo que /msg",
    cmdMe: "uma ação: * você TEXTO",
    cmdStats: "o número de mensagens de alguém",
    cmdRooms: "salas com alguém online",
    title: "#{room} · papo",
    titleUnread: "({n}) #{room} · papo",
    pageTitle: "{page} · papo",
  },
};

// pickLanguage returns the first of the browser's languages that the table
// has. Any Portuguese maps to pt-BR: it is the Portuguese we have, and a
// reader of pt-PT understands it better than English.
export function pickLanguage(languages) {
  for (const tag of languages || []) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("pt")) return "pt-BR";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

export const lang = pickLanguage(navigator.languages);
const table = strings[lang];

// t returns the string for key with {name} placeholders filled from vars.
// A missing key falls back to English, then to the key itself, so a gap in
// a translation shows up as a readable word rather than "undefined".
export function t(key, vars = {}) {
  const template = table[key] ?? strings.en[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name) =>
    name in vars ? String(vars[name]) : whole,
  );
}

// translatePage fills the elements that the templates mark: data-i18n (text),
// data-i18n-placeholder, data-i18n-aria-label and data-i18n-title. vars fill
// placeholders such as {room} for the whole page.
export function translatePage(vars = {}, root = document) {
  document.documentElement.lang = lang;
  const marked = "[data-i18n], [data-i18n-placeholder], [data-i18n-aria-label], [data-i18n-title]";
  for (const el of root.querySelectorAll(marked)) {
    const { i18n, i18nPlaceholder, i18nAriaLabel, i18nTitle } = el.dataset;
    if (i18n) el.textContent = t(i18n, vars);
    if (i18nPlaceholder) el.placeholder = t(i18nPlaceholder, vars);
    if (i18nAriaLabel) el.setAttribute("aria-label", t(i18nAriaLabel, vars));
    if (i18nTitle) el.title = t(i18nTitle, vars);
  }
}
