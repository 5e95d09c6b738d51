// Message actions in the web client (docs/protocol.md, "Message actions"): a menu on every
// message (the ⋯ button, a right-click or a long press) with Reply, React, Edit, Recall and
// Delete for me; the quote above the composer and in the bubble; reactions as chips with
// counts; "edited" and "NAME recalled a message". ↑ in an empty composer edits the last own
// message. app.js calls the hooks below; user text goes into the page through textContent.

import { MsgId } from "./wire.js";

const QUICK_EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🎉"];
const LONG_PRESS_MS = 500;

// What the actions add to a message object of app.js, from a chat frame.
export function extra(f) {
  const out = {};
  if (f.quote) out.quote = f.quote;
  if (f.edited) out.edited = f.edited;
  if (f.recalled) {
    out.recalled = true;
    out.by = f.by;
  }
  if (f.reactions) out.reactions = f.reactions;
  return out;
}

export function installActions(app) {
  const { state, connection, conversation, element, renderMessages, saveLocal, sideStatus } = app;
  const $ = (id) => document.getElementById(id);
  const composing = { reply: null, edit: null }; // the message being answered or edited
  const bar = element("div", { id: "reply-bar", hidden: "" });
  $("composer").before(bar);

  // Change every message with this mid, in whichever conversation holds it (`quoting`: and
  // every message quoting it).
  function each(mid, change, quoting = null) {
    let found = false;
    for (const conv of state.conversations.values()) {
      for (const m of conv.messages) {
        if (m.mid === mid) change(m);
        else if (quoting && m.quote?.id === mid) quoting(m);
        else continue;
        found = true;
      }
    }
    if (found) {
      renderMessages(false);
      saveLocal();
    }
  }

  function recalled(m, by) {
    m.recalled = true;
    m.by = by;
    m.text = "";
    delete m.quote;
    delete m.reactions;
  }

  function quoteRecalled(m) {
    m.quote = { id: m.quote.id, name: m.quote.name, recalled: true };
  }

  function recall(mid, by) {
    each(mid, (m) => recalled(m, by), quoteRecalled);
  }

  function reacted(m, id, emoji, on) {
    const reactions = { ...(m.reactions || {}) };
    const who = new Set(reactions[emoji] || []);
    if (on) who.add(id); else who.delete(id);
    if (who.size) reactions[emoji] = [...who]; else delete reactions[emoji];
    m.reactions = reactions;
  }

  function name(id) {
    if (state.me && id === state.me.id) return "You";
    const friend = state.friends.get(id);
    if (friend) return friend.name;
    for (const group of state.groups.values()) {
      const member = (group.users || []).find((u) => u.id === id);
      if (member) return member.name;
    }
    return `user ${id}`;
  }

  // Frames of the actions; undefined for the rest.
  function received(f) {
    switch (f.msgid) {
      case MsgId.RECALLED:
        connection.ack(f.ack);
        return recall(f.mid, f.by);
      case MsgId.EDITED:
        connection.ack(f.ack);
        return each(f.mid, (m) => { m.text = f.msg; m.edited = f.edited; });
      case MsgId.REACTION:
        return each(f.mid, (m) => reacted(m, f.id, f.emoji, f.on));
      case MsgId.HIDE:
        if (f.errno) return sideStatus(f.errmsg);
        return hidden(f.mid);
      case MsgId.RECALL_ACK: case MsgId.EDIT_ACK: case MsgId.REACT_ACK:
        return answered(f);
      default: return undefined;
    }
  }

  function answered(f) {
    if (f.errno) return sideStatus(f.errmsg);
    if (f.msgid === MsgId.RECALL_ACK) return recall(f.mid, state.me.id);
    if (f.msgid === MsgId.REACT_ACK) return each(f.mid, (m) => reacted(m, state.me.id, f.emoji, f.on));
    return each(f.mid, (m) => { m.edited = f.edited; });
  }

  function hidden(mid) {
    for (const conv of state.conversations.values()) {
      conv.messages = conv.messages.filter((m) => m.mid !== mid);
    }
    renderMessages(false);
    saveLocal();
  }

  // A message's state as HISTORY has it now, for a copy this page already holds.
  function update(m, h) {
    if (h.recalled) return recalled(m, h.by);
    m.text = h.msg;
    if (h.edited) m.edited = h.edited;
    if (h.quote) m.quote = h.quote;
    if (h.reactions) m.reactions = h.reactions; else delete m.reactions;
    return undefined;
  }

  function owner(key) {
    if (!key?.startsWith("g:")) return false;
    const group = state.groups.get(Number(key.slice(2)));
    return (group?.users || []).some((u) => u.id === state.me?.id && u.role === "creator");
  }

  function choices(m, key) {
    const list = [["Reply", () => startReply(m)], ["React", () => pickEmoji(m)]];
    if (m.own) list.push(["Edit", () => startEdit(m)]);
    if (m.own || owner(key)) {
      list.push(["Recall", () => connection.send({ msgid: MsgId.RECALL, mid: m.mid })]);
    }
    list.push(["Delete for me", () => connection.send({ msgid: MsgId.HIDE, mid: m.mid })]);
    return list;
  }

  function closeMenu() {
    document.querySelector(".action-menu")?.remove();
  }

  function openMenu(item, m, key) {
    closeMenu();
    if (!m.mid || m.recalled) return;
    const menu = element("div", { class: "action-menu", role: "menu" });
    for (const [label, act] of choices(m, key)) {
      menu.append(element("button", { type: "button", role: "menuitem", text: label,
                                      onclick: () => { closeMenu(); act(); } }));
    }
    item.append(menu);
    menu.querySelector("button")?.focus();
  }

  function pickEmoji(m) {
    const row = element("div", { class: "action-menu emoji-row", role: "menu" });
    for (const emoji of QUICK_EMOJI) {
      row.append(element("button", { type: "button", role: "menuitem", text: emoji,
                                     "aria-label": `React ${emoji}`, onclick: () => {
        closeMenu();
        react(m, emoji);
      } }));
    }
    document.querySelector(`[data-mid="${m.mid}"]`)?.append(row);
    row.querySelector("button")?.focus();
  }

  function react(m, emoji) {
    const mine = (m.reactions?.[emoji] || []).includes(state.me.id);
    connection.send({ msgid: MsgId.REACT, mid: m.mid, emoji, on: !mine });
  }

  function showBar(label, text) {
    bar.replaceChildren(element("span", { class: "label", text: label }),
                        element("span", { class: "excerpt", text }),
                        element("button", { type: "button", "aria-label": "Cancel", text: "×",
                                            onclick: cancel }));
    bar.hidden = false;
    $("text").focus();
  }

  function startReply(m) {
    composing.edit = null;
    composing.reply = m;
    showBar(`Reply to ${m.name || name(m.from)}`, m.text.slice(0, 200));
  }

  function startEdit(m) {
    composing.reply = null;
    composing.edit = m;
    $("text").value = m.text;
    showBar("Edit message", m.text.slice(0, 200));
  }

  function cancel() {
    composing.reply = composing.edit = null;
    bar.hidden = true;
    bar.replaceChildren();
  }

  // The composer's text went out: an edit is sent here (true); a reply adds `reply_to` and
  // the quote to the chat message app.js sends (false).
  function submit(text) {
    if (composing.edit) {
      connection.send({ msgid: MsgId.EDIT, mid: composing.edit.mid, msg: text });
      composing.edit.text = text;
      cancel();
      renderMessages(false);
      return true;
    }
    return false;
  }

  function outgoing(frame, message) {
    const m = composing.reply;
    if (!m) return;
    frame.reply_to = m.mid;
    message.quote = { id: m.mid, name: m.name || name(m.from), msg: m.text.slice(0, 200) };
    cancel();
  }

  // The parts of one rendered message: quote, text or recall line, edited, reactions, menu.
  function decorate(item, m, key) {
    item.dataset.mid = m.mid || "";
    const text = item.querySelector(".text");
    if (m.recalled) {
      item.classList.add("recalled");
      const by = m.by ?? m.from;
      text.textContent = `${by === m.from && !m.own ? m.name : name(by)} recalled a message`;
      return;
    }
    if (m.quote) {
      const quote = m.quote.recalled ? "(recalled)" : m.quote.msg;
      text.before(element("blockquote", { class: "quote" },
                          element("span", { class: "who", text: m.quote.name }), ` ${quote}`));
    }
    const meta = item.querySelector(".meta");
    if (m.edited) meta.prepend(element("span", { class: "edited", text: "edited " }));
    const chips = Object.entries(m.reactions || {});
    if (chips.length) {
      item.append(element("div", { class: "reactions" }, ...chips.map(([emoji, who]) =>
        element("button", { type: "button", class: who.includes(state.me?.id) ? "chip mine" : "chip",
                            title: who.map(name).join(", "), text: `${emoji} ${who.length}`,
                            onclick: () => react(m, emoji) }))));
    }
    if (!m.mid) return;
    item.append(element("button", { type: "button", class: "more", "aria-label": "Message actions",
                                    text: "⋯", onclick: () => openMenu(item, m, key) }));
    item.addEventListener("contextmenu", (event) => {
      event.preventDefault();
      openMenu(item, m, key);
    });
    let timer = null;
    item.addEventListener("touchstart", () => {
      timer = setTimeout(() => openMenu(item, m, key), LONG_PRESS_MS);
    }, { passive: true });
    item.addEventListener("touchend", () => clearTimeout(timer));
  }

  $("text").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !bar.hidden) {
      event.stopPropagation();
      cancel();
      return;
    }
    if (event.key !== "ArrowUp" || $("text").value || !state.active) return;
    const last = [...conversation(state.active).messages].reverse()
      .find((m) => m.own && m.mid && !m.recalled);
    if (!last) return;
    event.preventDefault();
    startEdit(last);
  });
  document.addEventListener("click", (event) => {
    if (!event.target.closest(".action-menu, .more")) closeMenu();
  });

  return { received, update, decorate, submit, outgoing, cancel };
}
