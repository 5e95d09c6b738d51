// Notifications in the web client: the "Notifications" switch (permission, the service
// worker, a Web Push subscription sent as PUSH_SUBSCRIBE), per-conversation mute (MUTE),
// `@` completion of a group's member names in the composer with `mentions` on the message,
// and the mentions of the user highlighted. app.js calls the exported hooks.

import { Errno, MsgId } from "./wire.js";

const $ = (id) => document.getElementById(id);
const api = { send: () => false, members: () => [], me: () => null, open: () => {} };
const state = { vapid: null, muted: new Map() };

function keyOf(entry) {
  return entry.groupid ? `g:${entry.groupid}` : `u:${entry.peer}`;
}

function target(key) {
  const id = Number(key.slice(2));
  return key.startsWith("u:") ? { peer: id } : { groupid: id };
}

function applicationServerKey(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - text.length % 4) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function status(text) {
  $("push-status").textContent = text;
}

async function subscription(create) {
  const registration = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  await navigator.serviceWorker.ready;
  const existing = await registration.pushManager.getSubscription();
  if (existing || !create) return existing;
  return registration.pushManager.subscribe({
    userVisibleOnly: true, applicationServerKey: applicationServerKey(state.vapid) });
}

async function switchOn() {
  if (await Notification.requestPermission() !== "granted") {
    $("push-toggle").checked = false;
    return status("Notifications are blocked in this browser.");
  }
  try {
    const sub = await subscription(true);
    api.send({ msgid: MsgId.PUSH_SUBSCRIBE, kind: "webpush", subscription: sub.toJSON() });
    localStorage.setItem("chatd.push", "on");
  } catch (error) {
    $("push-toggle").checked = false;
    status(`No push service: ${error.message || error}`);
  }
}

async function switchOff() {
  localStorage.setItem("chatd.push", "off");
  api.send({ msgid: MsgId.PUSH_SUBSCRIBE, kind: "webpush", subscription: null });
  const sub = await subscription(false).catch(() => null);
  if (sub) await sub.unsubscribe();
}

export function setup(hooks) {
  Object.assign(api, hooks);
  const toggle = $("push-toggle");
  toggle.addEventListener("change", () => (toggle.checked ? switchOn() : switchOff()));
  if ("serviceWorker" in navigator) {
    navigator.serviceWorker.addEventListener("message", (event) => {
      if (event.data?.open) api.open(event.data.open);
    });
  }
  $("text").addEventListener("input", complete);
  $("text").addEventListener("keydown", chooseCompletion, true);
}

export function loggedIn(ack) {
  state.vapid = ack.vapid || null;
  state.muted = new Map((ack.muted || []).map((m) => [keyOf(m), m.until]));
  const usable = Boolean(state.vapid) && "serviceWorker" in navigator && "PushManager" in window;
  $("push-switch").hidden = !usable;
  $("push-toggle").checked = usable && localStorage.getItem("chatd.push") === "on"
    && Notification.permission === "granted";
  if ($("push-toggle").checked) switchOn();
}

export function received(f) {
  if (f.msgid === MsgId.PUSH_SUBSCRIBE_ACK) {
    if (f.errno !== Errno.OK) $("push-toggle").checked = false;
    return status(f.errno === Errno.OK ? (f.subscribed ? "Notifications on" : "Notifications off")
      : f.errmsg);
  }
  if (f.msgid === MsgId.MUTE_ACK && f.errno === Errno.OK) {
    const key = keyOf(f);
    if (f.until === 0) state.muted.delete(key); else state.muted.set(key, f.until);
    const button = $("mute");
    if (button && button.dataset.key === key) label(button, key);
  }
  return undefined;
}

function muted(key) {
  const until = state.muted.get(key);
  return until === -1 || (until !== undefined && until > Date.now());
}

function label(button, key) {
  button.textContent = muted(key) ? "Unmute" : "Mute";
  button.setAttribute("aria-pressed", String(muted(key)));
}

export function muteButton(key) {
  const button = document.createElement("button");
  Object.assign(button, { type: "button", id: "mute" });
  button.dataset.key = key;
  label(button, key);
  button.addEventListener("click", () => api.send({
    msgid: MsgId.MUTE, ...target(key), until: muted(key) ? 0 : -1 }));
  return button;
}

// ---- mentions

const AT_WORD = /(^|\s)@([^\s@]*)$/;

export function mentions(text) {
  const names = [...text.matchAll(/(?:^|\s)@([^\s@:,.!?]+)/g)].map((m) => m[1]);
  if (names.includes("all")) return { mentions: "all" };
  const me = api.me()?.id;
  const ids = api.members().filter((u) => u.id !== me && names.includes(u.name)).map((u) => u.id);
  return ids.length ? { mentions: [...new Set(ids)].sort((a, b) => a - b) } : {};
}

export function mentionsMe(message) {
  const me = api.me()?.id;
  return !message.own && (message.mentions === "all"
    || (Array.isArray(message.mentions) && message.mentions.includes(me)));
}

function complete() {
  const list = $("mention-list");
  const text = $("text").value.slice(0, $("text").selectionStart);
  const word = AT_WORD.exec(text);
  const me = api.me()?.id;
  const found = word ? api.members().filter((u) => u.id !== me
    && u.name.toLowerCase().startsWith(word[2].toLowerCase())).slice(0, 8) : [];
  list.replaceChildren(...found.map((u, i) => {
    const item = document.createElement("li");
    Object.assign(item, { textContent: u.name, id: `mention-${i}` });
    item.setAttribute("role", "option");
    item.addEventListener("mousedown", (event) => {
      event.preventDefault();
      insertName(u.name);
    });
    return item;
  }));
  list.hidden = found.length === 0;
}

function insertName(name) {
  const input = $("text");
  const before = input.value.slice(0, input.selectionStart).replace(AT_WORD, `$1@${name} `);
  input.value = before + input.value.slice(input.selectionStart);
  input.setSelectionRange(before.length, before.length);
  $("mention-list").hidden = true;
  input.focus();
}

function chooseCompletion(event) {
  const list = $("mention-list");
  if (list.hidden || !list.firstChild) return;
  if (event.key === "Tab" || event.key === "Enter") {
    event.preventDefault();
    event.stopImmediatePropagation();
    insertName(list.firstChild.textContent);
  } else if (event.key === "Escape") {
    list.hidden = true;
    event.stopImmediatePropagation();
  }
}
