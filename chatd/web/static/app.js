// The chatd web client: proto-2 frames over /ws (docs/protocol.md). Every piece of user text
// goes into the page through textContent, never as HTML.

import * as accounts from "./accounts.js";
import { attachmentView, initAttachments, uploadAnswered } from "./attach.js";
import { extra, installActions } from "./actions.js";
import { Connection, compareMids } from "./connection.js";
// The msgids and errnos of docs/protocol.md, served by the node from chatd/messages.py.
import { Errno, MsgId } from "./wire.js";
import * as notifications from "./notifications.js";

const KEPT_PER_CONVERSATION = 200;
const TYPING_SHOWN_MS = 5000;
const TYPING_EVERY_MS = 3000;
const PRESENCE_EVERY_MS = 15000;

const $ = (id) => document.getElementById(id);

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

function stored(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key));
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Full or disabled storage: the session still works, only reloads forget more.
  }
}

function device() {
  let name = localStorage.getItem("chatd.device");
  if (!name) {
    const agent = /Mobile/.test(navigator.userAgent) ? "phone" : "browser";
    name = `${agent}-${Math.random().toString(36).slice(2, 8)}`;
    localStorage.setItem("chatd.device", name);
  }
  return name;
}

const state = {
  session: stored("chatd.session", null), // {id, token, name}
  password: null, // only between the login form and its reply
  me: null,
  friends: new Map(),
  groups: new Map(),
  conversations: new Map(), // "u:ID" / "g:ID" -> {messages, unread, more, loaded}
  outbox: [], // own messages without SEND_ACK: {key, frame}
  active: null,
  loggedIn: false,
  busyRetries: 0,
  supports: { history: true, read: true, typing: true },
  typingTimer: null,
  lastTyping: 0,
  readSent: new Map(),
  readUpTo: new Map(), // "u:ID" -> the peer's read marker on my messages
  pendingHistory: null,
  blocked: new Set(),
  cidCounter: 0,
};

const connection = new Connection(
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
  { opened, frame: received, closed });
const actions = installActions({ state, connection, conversation, element, renderMessages,
                                 saveLocal, sideStatus });

// ---- connection and login

function setConnection(text, kind) {
  $("conn").textContent = text;
  $("conn").dataset.state = kind;
}

function opened() {
  setConnection("connecting…", "connecting");
  if (state.session && state.session.token) {
    connection.send({ msgid: MsgId.LOGIN, id: state.session.id, token: state.session.token,
                      proto: 2, device: device() });
  } else if (state.password !== null && state.session) {
    connection.send({ msgid: MsgId.LOGIN, id: state.session.id, password: state.password,
                      proto: 2, device: device() });
  } else {
    showAuth("");
  }
}

function closed(delay) {
  state.loggedIn = false;
  updateComposer();
  if (delay === null) setConnection("offline", "offline");
  else setConnection(`offline — reconnecting in ${Math.ceil(delay / 1000)} s`, "offline");
}

function showAuth(message) {
  $("chat").hidden = true;
  $("auth").hidden = false;
  $("logout").hidden = true;
  $("me").textContent = "";
  $("auth-status").textContent = message;
  setConnection(connection.ready ? "connected" : "offline", connection.ready ? "ready" : "offline");
}

function loggedIn(ack) {
  state.password = null;
  state.busyRetries = 0;
  state.session = { id: ack.id, token: ack.token, name: ack.name };
  store("chatd.session", state.session);
  if (!state.me || state.me.id !== ack.id) loadLocal(ack.id);
  state.me = { id: ack.id, name: ack.name };
  state.loggedIn = true;
  setFriends(ack.friends || []);
  setGroups(ack.groups || []);
  for (const entry of ack.unread || []) {
    const conv = conversation(entry.peer ? `u:${entry.peer}` : `g:${entry.groupid}`);
    conv.unread = Math.max(conv.unread, entry.count);
  }
  notifications.loggedIn(ack);
  for (const frame of ack.offlinemsg || []) received(frame);
  accounts.loggedIn(ack);
  for (const { frame } of state.outbox) connection.send(frame);
  $("auth").hidden = true;
  $("chat").hidden = false;
  $("logout").hidden = false;
  $("me").textContent = `${ack.name} (id ${ack.id})`;
  setConnection("online", "online");
  renderLists();
  if (state.active) openConversation(state.active, false);
  updateComposer();
}

function loginRefused(ack) {
  if (ack.errno === Errno.ALREADY_ONLINE && state.busyRetries < 5) {
    // The previous page of this browser may still be leaving: its close is on its way.
    state.busyRetries += 1;
    setConnection("account busy, retrying…", "connecting");
    setTimeout(opened, 700 * state.busyRetries);
    return;
  }
  const hadToken = state.session && state.session.token;
  state.session = state.session ? { id: state.session.id, name: state.session.name } : null;
  store("chatd.session", state.session);
  state.password = null;
  const ended = hadToken && ack.errno === Errno.BAD_LOGIN;
  showAuth(ended ? "Your session has ended: please log in again." : ack.errmsg || "Login failed.");
}

// ---- frames from the server

function received(f) {
  switch (f.msgid) {
    case MsgId.LOGIN_ACK: return f.errno === Errno.OK ? loggedIn(f) : loginRefused(f);
    case MsgId.REG_ACK: return registered(f);
    case MsgId.ONE_CHAT: case MsgId.GROUP_CHAT: return incoming(f);
    case MsgId.SEND_ACK: return sendAcked(f);
    case MsgId.ERROR: return refused(f);
    case MsgId.ADD_FRIEND_ACK:
      return f.errno === Errno.OK ? friendAdded(f.friend) : sideStatus(f.errmsg);
    case MsgId.CREATE_GROUP_ACK:
      if (f.errno !== Errno.OK) return sideStatus(f.errmsg);
      sideStatus(`Group created: id ${f.groupid}`);
      return connection.send({ msgid: MsgId.GROUP_LIST });
    case MsgId.ADD_GROUP_ACK:
      if (f.errno !== Errno.OK) return sideStatus(f.errmsg);
      state.groups.set(f.group.groupid, f.group);
      return renderLists();
    case MsgId.FRIEND_LIST_ACK:
      if (f.errno === Errno.OK) setFriends(f.friends);
      return renderLists();
    case MsgId.GROUP_LIST_ACK:
      if (f.errno === Errno.OK) setGroups(f.groups);
      return renderLists();
    case MsgId.LOGOUT_ACK: return f.errno === Errno.OK ? loggedOut() : sideStatus(f.errmsg);
    case MsgId.HISTORY_ACK: return historyArrived(f);
    case MsgId.READ: return readArrived(f);
    case MsgId.TYPING: return typingArrived(f);
    case MsgId.LEAVE_GROUP_ACK: case MsgId.KICK_MEMBER_ACK: case MsgId.BLOCK_ACK:
      if (f.errno !== Errno.OK) sideStatus(f.errmsg);
      return connection.send({ msgid: MsgId.GROUP_LIST });
    case MsgId.NOTICE: return noticeArrived(f);
    case MsgId.UPLOAD_ACK: return uploadAnswered(f);
    default:
      if (f.msgid >= MsgId.RECALL && f.msgid <= MsgId.HIDE) return actions.received(f);
      if (f.msgid >= MsgId.PUSH_SUBSCRIBE && f.msgid <= MsgId.MUTE_ACK) return notifications.received(f);
      return accounts.frame(f);
  }
}

function registered(f) {
  if (f.errno !== Errno.OK) {
    state.password = null;
    return showAuth(f.errmsg);
  }
  state.session = { id: f.id, name: $("reg-name").value.trim() };
  $("login-id").value = String(f.id);
  $("auth-status").textContent = `Registered: your id is ${f.id}. Logging in…`;
  connection.send({ msgid: MsgId.LOGIN, id: f.id, password: state.password, proto: 2,
                    device: device() });
}

function keyOf(f) {
  if (f.msgid === MsgId.GROUP_CHAT) return `g:${f.groupid}`;
  const peer = state.me && f.id === state.me.id ? (f.to ?? f.toid) : f.id;
  return `u:${peer}`;
}

function incoming(f) {
  connection.ack(f.mid);
  if (f.hidden) return;
  const key = keyOf(f);
  const conv = conversation(key);
  const own = state.me && f.id === state.me.id;
  if (conv.messages.some((m) => m.mid === f.mid || (f.cid && m.cid === f.cid && m.from === f.id))) {
    return;
  }
  const message = { mid: f.mid, cid: f.cid, from: f.id, name: f.name, text: f.msg,
                    time: f.time || "", own, state: own ? "sent" : "", attachment: f.attachment,
                    mentions: f.mentions, ...extra(f) };
  insert(conv, message);
  if (!own) {
    const seen = key === state.active && !document.hidden;
    if (!seen) {
      conv.unread += 1;
      notify(f, key);
    }
  }
  if (key === state.active) renderMessages(true);
  if (key === state.active && !document.hidden) markRead();
  renderLists();
  saveLocal();
}

function insert(conv, message) {
  conv.messages.push(message);
  conv.messages.sort((a, b) => compareMids(a.mid, b.mid));
  if (conv.messages.length > KEPT_PER_CONVERSATION * 2) {
    conv.messages.splice(0, conv.messages.length - KEPT_PER_CONVERSATION);
  }
}

// The server settled one of our messages (SEND_ACK or a refusal): take it out of the outbox
// and let `update` mark it. False when the cid is not one of ours in flight.
function settle(cid, update) {
  const index = state.outbox.findIndex((o) => o.frame.cid === cid);
  if (index < 0) return false;
  const { key } = state.outbox[index];
  state.outbox.splice(index, 1);
  const message = conversation(key).messages.find((m) => m.cid === cid && m.own);
  if (message) update(message, key);
  if (key === state.active) renderMessages(false);
  saveLocal();
  return true;
}

function sendAcked(f) {
  settle(f.cid, (message, key) => {
    message.mid = f.mid;
    if (message.state !== "read") message.state = "sent";
    conversation(key).messages.sort((a, b) => compareMids(a.mid, b.mid));
    if (compareMids(state.readUpTo.get(key) ?? "0", f.mid) >= 0) message.state = "read";
  });
}

function refused(f) {
  if (f.errno === Errno.UNKNOWN_MSGID && f.ref === MsgId.HISTORY) state.supports.history = false;
  if (f.errno === Errno.UNKNOWN_MSGID && f.ref === MsgId.READ) state.supports.read = false;
  if (f.errno === Errno.UNKNOWN_MSGID && f.ref === MsgId.TYPING) state.supports.typing = false;
  if (f.errno === Errno.UNKNOWN_MSGID) return undefined;
  const failed = f.cid && settle(f.cid, (message) => {
    message.state = "failed";
    message.error = f.errmsg;
  });
  if (failed) return undefined;
  if (f.errno === Errno.NOT_LOGGED_IN && state.loggedIn) return connection.drop();
  return sideStatus(f.errmsg);
}

function friendAdded(friend) {
  state.friends.set(friend.id, friend);
  sideStatus(`${friend.name} is now your friend.`);
  renderLists();
}

function historyArrived(f) {
  if (f.errno !== Errno.OK) return sideStatus(f.errmsg);
  const messages = f.messages || [];
  const key = f.peer ? `u:${f.peer}` : f.groupid ? `g:${f.groupid}` : state.pendingHistory;
  state.pendingHistory = null;
  if (!key) return;
  const conv = conversation(key);
  conv.more = Boolean(f.more);
  conv.loaded = true;
  const list = $("messages");
  const fromBottom = list.scrollHeight - list.scrollTop;
  for (const h of messages) {
    const known = conv.messages.find((m) => m.mid === h.mid);
    if (known) {
      if (h.attachment) known.attachment = h.attachment; // with fresh links
      actions.update(known, h);
      continue;
    }
    const own = h.id === state.me.id;
    insert(conv, { mid: h.mid, cid: h.cid, from: h.id, name: h.name, text: h.msg ?? "",
                   time: h.time || "", own, state: own ? "sent" : "", attachment: h.attachment,
                   ...extra(h) });
  }
  if (key === state.active) {
    renderMessages(false);
    list.scrollTop = list.scrollHeight - fromBottom;
  }
  saveLocal();
}

function readArrived(f) {
  if (!state.me) return;
  if (f.id === state.me.id) {
    const conv = conversation(f.peer ? `u:${f.peer}` : `g:${f.groupid}`);
    conv.unread = 0;
    return renderLists();
  }
  if (!f.peer) return undefined;
  const key = `u:${f.id}`;
  if (compareMids(state.readUpTo.get(key) ?? "0", f.mid) < 0) state.readUpTo.set(key, f.mid);
  for (const m of conversation(key).messages) {
    if (m.own && m.mid && compareMids(m.mid, f.mid) <= 0) m.state = "read";
  }
  if (key === state.active) renderMessages(false);
  saveLocal();
  return undefined;
}

function typingArrived(f) {
  if (state.active !== `u:${f.id}`) return;
  const who = state.friends.get(f.id)?.name || `user ${f.id}`;
  $("typing").textContent = `${who} is typing…`;
  clearTimeout(state.typingTimer);
  state.typingTimer = setTimeout(() => { $("typing").textContent = ""; }, TYPING_SHOWN_MS);
}

function noticeArrived(f) {
  const texts = {
    kicked: f.groupid ? `You were removed from group ${f.groupid}.` : "You were disconnected.",
    logged_in_elsewhere: "This device logged in elsewhere; this page is now offline.",
    banned: "This account is banned.",
    broadcast: f.msg || "",
    password_changed: "Your password was changed on another device; please log in again.",
    account_deleted: "This account was deleted.",
    friend_added: `${f.friend?.name} accepted your friend request.`,
  };
  if (f.kind === "friend_added") connection.send({ msgid: MsgId.FRIEND_LIST });
  showNotice(texts[f.kind] ?? `Notice: ${f.kind}`);
  if (f.kind === "kicked" && f.groupid) {
    state.groups.delete(f.groupid);
    if (state.active === `g:${f.groupid}`) closeConversation();
    renderLists();
  }
  if (["logged_in_elsewhere", "banned", "password_changed", "account_deleted"].includes(f.kind)) {
    connection.stop();
  }
}

function loggedOut() {
  state.session = null;
  store("chatd.session", null);
  state.me = null;
  state.loggedIn = false;
  state.outbox = [];
  state.conversations = new Map();
  state.active = null;
  showAuth("Logged out.");
}

// ---- conversations

function conversation(key) {
  if (!state.conversations.has(key)) {
    state.conversations.set(key, { messages: [], unread: 0, more: true, loaded: false });
  }
  return state.conversations.get(key);
}

function title(key) {
  const id = Number(key.slice(2));
  if (key.startsWith("u:")) return people().find((p) => p.id === id)?.name || `user ${id}`;
  return state.groups.get(id)?.groupname || `group ${id}`;
}

function openConversation(key, focus = true) {
  if (key !== state.active) actions.cancel();
  state.active = key;
  const conv = conversation(key);
  conv.unread = 0;
  document.body.classList.add("in-conversation");
  $("conv-title").textContent = title(key);
  $("typing").textContent = "";
  renderActions(key);
  renderMembers(key);
  renderMessages(true);
  renderLists();
  updateComposer();
  if (!conv.loaded && state.supports.history && state.loggedIn) requestHistory(key, null);
  if (key.startsWith("g:") && state.loggedIn) connection.send({ msgid: MsgId.GROUP_LIST });
  markRead();
  saveLocal();
  if (focus) $("text").focus();
}

function closeConversation() {
  state.active = null;
  document.body.classList.remove("in-conversation");
  $("conv-title").textContent = "Choose a conversation";
  $("conv-actions").replaceChildren();
  $("members").hidden = true;
  accounts.groupShown(null);
  $("messages").replaceChildren();
  updateComposer();
  renderLists();
  saveLocal();
}

function target(key) {
  const id = Number(key.slice(2));
  return key.startsWith("u:") ? { peer: id } : { groupid: id };
}

function requestHistory(key, before) {
  const frame = { msgid: MsgId.HISTORY, ...target(key), limit: 50 };
  if (before) frame.before = before;
  state.pendingHistory = key;
  connection.send(frame);
}

function markRead() {
  const key = state.active;
  if (!key || !state.supports.read || !state.loggedIn || document.hidden) return;
  const last = [...conversation(key).messages].reverse().find((m) => !m.own && m.mid);
  if (!last || compareMids(state.readSent.get(key) ?? "0", last.mid) >= 0) return;
  state.readSent.set(key, last.mid);
  connection.send({ msgid: MsgId.READ, ...target(key), mid: last.mid });
}

function send(text, attachment = null, key = state.active) {
  state.cidCounter += 1;
  const cid = `${device()}-${Date.now().toString(36)}-${state.cidCounter}`;
  const id = Number(key.slice(2));
  const time = new Date().toLocaleString();
  const frame = key.startsWith("u:")
    ? { msgid: MsgId.ONE_CHAT, to: id, msg: text, cid, time }
    : { msgid: MsgId.GROUP_CHAT, groupid: id, msg: text, cid, time, ...notifications.mentions(text) };
  if (attachment) frame.attachment = { id: attachment.id };
  const message = { mid: null, cid, from: state.me.id, name: state.me.name, text, time,
                   own: true, state: "sending", attachment };
  actions.outgoing(frame, message);
  insert(conversation(key), message);
  state.outbox.push({ key, frame });
  connection.send(frame);
  saveLocal();
  if (key === state.active) renderMessages(true);
}

// ---- local copies: the history and the unsent messages survive a reload

function loadLocal(userId) {
  const saved = stored(`chatd.conversations.${userId}`, {});
  state.conversations = new Map();
  for (const [key, conv] of Object.entries(saved)) {
    state.conversations.set(key, { messages: conv.messages || [], unread: conv.unread || 0,
                                   more: true, loaded: false });
  }
  state.outbox = stored(`chatd.outbox.${userId}`, []);
  state.active = stored(`chatd.active.${userId}`, null);
}

// Written at once, not batched: a reload right after a message arrives must still find it.
function saveLocal() {
  if (!state.me) return;
  const out = {};
  for (const [key, conv] of state.conversations) {
    out[key] = { messages: conv.messages.slice(-KEPT_PER_CONVERSATION), unread: conv.unread };
  }
  store(`chatd.conversations.${state.me.id}`, out);
  store(`chatd.outbox.${state.me.id}`, state.outbox);
  store(`chatd.active.${state.me.id}`, state.active);
}

// ---- rendering

function setFriends(friends) {
  state.friends = new Map(friends.map((f) => [f.id, f]));
}

function setGroups(groups) {
  state.groups = new Map(groups.map((g) => [g.groupid, g]));
  if (state.active) {
    renderMembers(state.active);
    renderActions(state.active);
  }
}

function badge(count) {
  return count ? element("span", { class: "badge", text: String(count),
                                   "aria-label": `${count} unread` }) : "";
}

// Friends, then the people who wrote without being friends (they still get a conversation).
function people() {
  const all = new Map(state.friends);
  for (const [key, conv] of state.conversations) {
    const id = Number(key.slice(2));
    if (!key.startsWith("u:") || all.has(id)) continue;
    const theirs = conv.messages.find((m) => !m.own);
    all.set(id, { id, name: theirs ? theirs.name : `user ${id}`, state: "unknown" });
  }
  return [...all.values()];
}

function renderLists() {
  const friends = people().map((f) => {
    const key = `u:${f.id}`;
    return element("li", {},
      element("button", { type: "button", class: key === state.active ? "item active" : "item",
                          "data-key": key, onclick: () => openConversation(key) },
        element("span", { class: `presence ${f.state}`, title: f.state,
                          "aria-label": f.state }),
        element("span", { class: "name", text: f.name }),
        badge(conversation(key).unread)));
  });
  $("friends").replaceChildren(...friends);
  const groups = [...state.groups.values()].map((g) => {
    const key = `g:${g.groupid}`;
    const online = (g.users || []).filter((u) => u.state === "online").length;
    return element("li", {},
      element("button", { type: "button", class: key === state.active ? "item active" : "item",
                          "data-key": key, onclick: () => openConversation(key) },
        element("span", { class: "name", text: g.groupname }),
        element("span", { class: "meta", text: `#${g.groupid} · ${online}/${(g.users || []).length}` }),
        badge(conversation(key).unread)));
  });
  $("groups").replaceChildren(...groups);
  const total = [...state.conversations.values()].reduce((n, c) => n + c.unread, 0);
  document.title = total ? `(${total}) chatd` : "chatd";
}

function renderActions(key) {
  const id = Number(key.slice(2));
  const actions = [];
  if (key.startsWith("u:")) {
    const blocked = state.blocked.has(id);
    actions.push(element("button", { type: "button", id: "block", onclick: () => {
      connection.send({ msgid: MsgId.BLOCK, userid: id, block: !blocked });
      if (blocked) state.blocked.delete(id); else state.blocked.add(id);
      renderActions(key);
    }, text: blocked ? "Unblock" : "Block" }));
  } else {
    actions.push(element("button", { type: "button", id: "leave", onclick: () => {
      connection.send({ msgid: MsgId.LEAVE_GROUP, groupid: id });
      state.groups.delete(id);
      closeConversation();
    }, text: "Leave" }));
  }
  actions.push(notifications.muteButton(key));
  $("conv-actions").replaceChildren(...actions);
}

function renderMembers(key) {
  accounts.groupShown(key);
  const list = $("members");
  if (!key.startsWith("g:")) {
    list.hidden = true;
    return;
  }
  const group = state.groups.get(Number(key.slice(2)));
  const users = group?.users || [];
  const myRole = users.find((u) => u.id === state.me?.id)?.role;
  const mayKick = (u) => myRole === "owner" || (myRole === "admin" && u.role === "member");
  list.replaceChildren(...users.map((u) => element("li", { class: u.state },
    element("span", { class: `presence ${u.state}`, "aria-label": u.state }),
    element("span", { text: u.role === "member" ? u.name : `${u.name} (${u.role})` }),
    mayKick(u) && u.id !== state.me.id
      ? element("button", { type: "button", class: "kick", text: "Remove",
                            "aria-label": `Remove ${u.name}`, onclick: () => connection.send(
                              { msgid: MsgId.KICK_MEMBER, groupid: group.groupid, userid: u.id }) })
      : "")));
  list.hidden = users.length === 0;
}

const STATE_TEXT = { sending: "sending…", sent: "sent", read: "read", failed: "not sent" };

function renderMessages(toBottom) {
  const list = $("messages");
  const conv = state.active ? conversation(state.active) : { messages: [] };
  const group = state.active?.startsWith("g:");
  list.replaceChildren(...conv.messages.map((m) => {
    const item = element("li", { class: m.own ? "message own" : "message" });
    if (notifications.mentionsMe(m)) item.classList.add("mention");
    if (group && !m.own) item.append(element("span", { class: "who", text: m.name }));
    item.append(element("p", { class: "text", text: m.text }));
    if (m.attachment) item.append(attachmentView(m.attachment));
    const meta = element("span", { class: "meta", text: m.time });
    if (m.own) {
      meta.append(" ", element("span", { class: "state", "data-state": m.state,
                                         text: m.error ? `not sent: ${m.error}` : STATE_TEXT[m.state] }));
    }
    item.append(meta);
    actions.decorate(item, m, state.active);
    return item;
  }));
  if (toBottom) list.scrollTop = list.scrollHeight;
}

function updateComposer() {
  const usable = Boolean(state.active && state.me);
  $("text").disabled = !usable;
  $("send").disabled = !usable;
  $("attach").disabled = !usable;
}

function sideStatus(text) {
  $("side-status").textContent = text || "";
}

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
  setTimeout(() => { $("notice").hidden = true; }, 8000);
}

function notify(f, key) {
  if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") {
    return;
  }
  const from = key.startsWith("g:") ? `${f.name} in ${title(key)}` : f.name;
  const note = new Notification(from, { body: f.msg, tag: key });
  note.onclick = () => {
    window.focus();
    openConversation(key);
  };
}

// ---- the user's actions

function number(input) {
  const value = Number(input.value.trim());
  return Number.isSafeInteger(value) && value > 0 ? value : null;
}

function askNotifications() {
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission();
  }
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = number($("login-id"));
  if (!id) return showAuth("The user id is a number.");
  askNotifications();
  state.session = { id };
  state.password = $("login-password").value;
  $("login-password").value = "";
  if (!connection.send({ msgid: MsgId.LOGIN, id, password: state.password, proto: 2,
                         device: device() })) {
    $("auth-status").textContent = "Connecting…";
  }
  return undefined;
});

$("register-form").addEventListener("submit", (event) => {
  event.preventDefault();
  askNotifications();
  state.password = $("reg-password").value;
  $("reg-password").value = "";
  connection.send({ msgid: MsgId.REG, name: $("reg-name").value.trim(), password: state.password });
});

$("logout").addEventListener("click", () => {
  if (!connection.send({ msgid: MsgId.LOGOUT })) loggedOut();
});

// A form that sends one request naming an id typed into it.
function idForm(form, input, what, request) {
  $(form).addEventListener("submit", (event) => {
    event.preventDefault();
    const id = number($(input));
    if (!id) return sideStatus(`A ${what} id is a number.`);
    connection.send(request(id));
    $(input).value = "";
    return undefined;
  });
}

idForm("add-friend-form", "add-friend-id", "user",
       (id) => ({ msgid: MsgId.ADD_FRIEND, friendid: id }));
idForm("join-group-form", "join-group-id", "group",
       (id) => ({ msgid: MsgId.ADD_GROUP, groupid: id }));

$("create-group-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connection.send({ msgid: MsgId.CREATE_GROUP, groupname: $("group-name").value.trim(),
                    groupdesc: "" });
  $("group-name").value = "";
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !state.active) return;
  if (!actions.submit(text)) send(text);
  $("text").value = "";
});

$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

$("text").addEventListener("input", () => {
  const key = state.active;
  if (!key?.startsWith("u:") || !state.supports.typing || !state.loggedIn) return;
  if (Date.now() - state.lastTyping < TYPING_EVERY_MS) return;
  state.lastTyping = Date.now();
  connection.send({ msgid: MsgId.TYPING, to: Number(key.slice(2)) });
});

$("messages").addEventListener("scroll", () => {
  const key = state.active;
  const conv = key && conversation(key);
  if (!conv || $("messages").scrollTop > 40 || !conv.more || !state.supports.history) return;
  if (state.pendingHistory) return;
  const oldest = conv.messages.find((m) => m.mid);
  if (oldest) requestHistory(key, oldest.mid);
});

$("back").addEventListener("click", closeConversation);

document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && state.active) {
    closeConversation();
    document.querySelector("#side button.item")?.focus();
  }
});

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  if (state.active) {
    conversation(state.active).unread = 0;
    renderLists();
    markRead();
  }
  if (state.loggedIn) connection.send({ msgid: MsgId.FRIEND_LIST });
});

// The server pushes no presence or membership changes: ask for them now and then.
setInterval(() => {
  if (!state.loggedIn || document.hidden) return;
  connection.send({ msgid: MsgId.FRIEND_LIST });
  connection.send({ msgid: MsgId.GROUP_LIST });
}, PRESENCE_EVERY_MS);

initAttachments({ connection, active: () => (state.me ? state.active : null), send });

notifications.setup({
  send: (frame) => connection.send(frame),
  members: () => (state.active?.startsWith("g:")
    ? state.groups.get(Number(state.active.slice(2)))?.users || [] : []),
  me: () => state.me,
  open: (key) => openConversation(key),
});
if (state.session && state.session.id) $("login-id").value = String(state.session.id);
accounts.setup({ connection, state, element, showNotice, store, refresh: renderLists });
connection.open();
