// The account, people and group-admin parts of the web client (docs/protocol.md, Accounts,
// people and groups): settings, password, profile, finding people, friend requests, and a
// group's roles, announcement and invite link. app.js hands frames it does not know to
// `frame` and tells `loggedIn` and `groupShown`; everything here writes text with
// textContent, never as HTML.

import { Errno, MsgId } from "./wire.js";

const $ = (id) => document.getElementById(id);
let app = null; // { connection, state, element, sideStatus, showNotice, store, refresh }

function send(frame) {
  app.connection.send(frame);
}

function status(text) {
  $("account-status").textContent = text || "";
}

export function setup(parts) {
  app = parts;
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send({ msgid: MsgId.SETTINGS, friend_requests: $("friend-requests").value,
           discoverable: $("discoverable").checked });
  });
  $("password-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send({ msgid: MsgId.SET_PASSWORD, old: $("old-password").value,
           new: $("new-password").value });
  });
  $("profile-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const frame = { msgid: MsgId.SET_PROFILE, bio: $("profile-bio").value };
    const name = $("profile-name").value.trim();
    if (name) frame.name = name;
    send(frame);
  });
  $("find-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send({ msgid: MsgId.FIND_USER, name: $("find-name").value.trim() });
  });
  $("delete-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (window.confirm("Delete your account for good?")) {
      send({ msgid: MsgId.DELETE_ACCOUNT, password: $("delete-password").value });
    }
  });
  $("role-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send({ msgid: MsgId.SET_ROLE, groupid: shownGroup(), userid: Number($("role-user").value),
           role: $("role-name").value });
  });
  $("announce-form").addEventListener("submit", (e) => {
    e.preventDefault();
    send({ msgid: MsgId.UPDATE_GROUP, groupid: shownGroup(),
           announcement: $("announce-text").value });
  });
  $("invite-button").addEventListener("click", () => send({ msgid: MsgId.INVITE,
                                                             groupid: shownGroup() }));
  $("copy-invite").addEventListener("click", () => navigator.clipboard
    ?.writeText($("invite-link").textContent).catch(() => {}));
  $("download").addEventListener("click", download);
  window.addEventListener("hashchange", joinFromLink);
  joinFromLink();
}

// "Download my data": GET /export with the session's resume token (docs/protocol.md).
async function download() {
  const response = await fetch("/export", {
    headers: { Authorization: `Bearer ${app.state.session?.token || ""}` } });
  if (!response.ok) return status("The download failed; log in again and retry.");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = `chatd-${app.state.me.id}.json`;
  link.click();
  URL.revokeObjectURL(link.href);
  return status("Your data was downloaded.");
}

// An invite link (INVITE's `url`, "/#join=CODE") opens the page, or changes its address.
function joinFromLink() {
  const code = new URLSearchParams(location.hash.slice(1)).get("join");
  if (!code) return;
  app.state.joinCode = code;
  history.replaceState(null, "", location.pathname);
  if (app.state.loggedIn) joinNow();
}

function joinNow() {
  send({ msgid: MsgId.JOIN_BY_INVITE, code: app.state.joinCode });
  app.state.joinCode = null;
}

// ---- after login

export function loggedIn(ack) {
  app.state.requests = new Map((ack.requests || []).map((r) => [r.id, r]));
  renderRequests();
  send({ msgid: MsgId.SETTINGS });
  if (app.state.joinCode) joinNow();
}

function renderRequests() {
  const list = $("requests");
  const { element } = app;
  list.replaceChildren(...[...app.state.requests.values()].map((r) => element("li", {},
    element("span", { text: `${r.name} (id ${r.id})` }),
    element("button", { type: "button", class: "accept", text: "Accept",
                        onclick: () => answer(r.id, true) }),
    element("button", { type: "button", class: "decline", text: "Decline",
                        onclick: () => answer(r.id, false) }))));
  $("requests-head").hidden = app.state.requests.size === 0;
}

function answer(userId, accept) {
  send({ msgid: MsgId.ANSWER_REQUEST, userid: userId, accept });
}

// ---- the group shown in the conversation pane

function shownGroup() {
  const key = app.state.active || "";
  return key.startsWith("g:") ? Number(key.slice(2)) : null;
}

export function groupShown(key) {
  const group = key && key.startsWith("g:") ? app.state.groups.get(Number(key.slice(2))) : null;
  $("announcement").textContent = group?.announcement || "";
  $("announcement").hidden = !group?.announcement;
  const moderator = group && (group.role === "owner" || group.role === "admin");
  $("group-admin").hidden = !moderator;
  $("role-form").hidden = !group || group.role !== "owner";
}

// ---- frames

const REPLIES = {
  [MsgId.SETTINGS_ACK]: (f) => {
    $("friend-requests").value = f.friend_requests;
    $("discoverable").checked = f.discoverable;
    status("Settings saved.");
  },
  [MsgId.SET_PASSWORD_ACK]: (f) => {
    app.state.session = { ...app.state.session, token: f.token };
    app.store("chatd.session", app.state.session);
    $("old-password").value = "";
    $("new-password").value = "";
    status("Password changed; your other devices are signed out.");
  },
  [MsgId.SET_PROFILE_ACK]: (f) => {
    app.state.me.name = f.profile.name;
    $("me").textContent = `${f.profile.name} (id ${f.profile.id})`;
    status("Profile saved.");
  },
  [MsgId.FIND_USER_ACK]: (f) => {
    const { element } = app;
    $("found").replaceChildren(...f.users.map((u) => element("li", {},
      element("span", { text: `${u.name} (id ${u.id})` }),
      element("button", { type: "button", class: "add", text: "Add",
                          onclick: () => send({ msgid: MsgId.ADD_FRIEND, friendid: u.id }) }))));
    status(f.users.length ? "" : "Nobody found by that name.");
  },
  [MsgId.ANSWER_REQUEST_ACK]: (f) => {
    app.state.requests.delete(f.userid);
    renderRequests();
    if (f.accept) send({ msgid: MsgId.FRIEND_LIST });
  },
  [MsgId.SET_ROLE_ACK]: () => status("Role set."),
  [MsgId.UPDATE_GROUP_ACK]: () => status("Group updated."),
  [MsgId.INVITE_ACK]: (f) => {
    $("invite-link").textContent = `${location.origin}${f.url}`;
    $("invite").hidden = false;
  },
  [MsgId.JOIN_BY_INVITE_ACK]: (f) => {
    app.state.groups.set(f.group.groupid, f.group);
    app.refresh();
  },
  [MsgId.DELETE_ACCOUNT_ACK]: () => app.showNotice("Your account was deleted."),
};

export function frame(f) {
  if (f.msgid === MsgId.FRIEND_REQUEST) {
    app.state.requests.set(f.id, f);
    return renderRequests();
  }
  if (f.msgid === MsgId.GROUP_CHANGED) return send({ msgid: MsgId.GROUP_LIST });
  const reply = REPLIES[f.msgid];
  if (!reply) return undefined;
  if (f.errno !== Errno.OK) return status(f.errmsg);
  return reply(f);
}
