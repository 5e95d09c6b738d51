// Photos and files in the web client (docs/protocol.md, *Attachments*): the attach button,
// drag and drop, pasting an image, uploads with a progress bar, a reason and a retry when
// one fails, and how a message's attachment is shown. Names and links go into the page as
// text and attributes, never as HTML.

import { Errno, MsgId } from "./wire.js";

let hooks = null; // {connection, active(): the open conversation's key, send(text, attachment, key)}
const asking = []; // uploads whose UPLOAD_ACK is awaited, in the order they were asked for

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

export function sizeText(size) {
  if (size < 1024) return `${size} B`;
  return size < 1 << 20 ? `${(size / 1024).toFixed(1)} KB` : `${(size / (1 << 20)).toFixed(1)} MB`;
}

export function initAttachments(given) {
  hooks = given;
  const input = document.getElementById("file");
  document.getElementById("attach").addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    for (const file of input.files) start(file);
    input.value = "";
  });
  const zone = document.getElementById("conversation");
  zone.addEventListener("dragover", (event) => {
    if (!hooks.active()) return;
    event.preventDefault();
    zone.classList.add("dropping");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dropping");
    for (const file of event.dataTransfer.files) start(file);
  });
  document.getElementById("text").addEventListener("paste", (event) => {
    const images = [...(event.clipboardData?.files || [])].filter((f) => f.type.startsWith("image/"));
    if (!images.length) return;
    event.preventDefault();
    images.forEach(start);
  });
}

function start(file) {
  const key = hooks.active();
  if (!key) return;
  const upload = { file, key, row: null };
  upload.row = element("li", { class: "upload" });
  document.getElementById("uploads").append(upload.row);
  ask(upload);
}

// A slot for the file from the chat connection; the answer comes to uploadAnswered.
function ask(upload) {
  const id = Number(upload.key.slice(2));
  const where = upload.key.startsWith("u:") ? { to: id } : { groupid: id };
  show(upload, "waiting", 0);
  asking.push(upload);
  hooks.connection.send({ msgid: MsgId.UPLOAD, name: upload.file.name || "pasted.png",
                          size: upload.file.size, mime: mimeOf(upload.file), ...where });
}

function mimeOf(file) {
  return file.type || "application/octet-stream";
}

export function uploadAnswered(f) {
  const upload = asking.shift();
  if (!upload) return;
  if (f.errno !== Errno.OK) {
    failed(upload, f.errmsg);
    return;
  }
  put(upload, f.upload);
}

// The bytes over HTTP, with progress; then the chat message naming the upload.
function put(upload, slot) {
  const xhr = new XMLHttpRequest();
  xhr.open("PUT", slot.put);
  xhr.setRequestHeader("Content-Type", mimeOf(upload.file));
  xhr.upload.onprogress = (event) => {
    if (event.lengthComputable) show(upload, "uploading", event.loaded / event.total);
  };
  xhr.onload = () => {
    let body = {};
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      // not JSON: a proxy's page; the status says enough
    }
    if (xhr.status !== 201) {
      failed(upload, body.errmsg || `HTTP ${xhr.status}`);
      return;
    }
    upload.row.remove();
    hooks.send("", body, upload.key);
  };
  xhr.onerror = () => failed(upload, "the connection was cut off");
  xhr.send(upload.file);
}

function show(upload, kind, fraction) {
  upload.row.dataset.state = kind;
  upload.row.replaceChildren(
    element("span", { class: "name", text: upload.file.name || "pasted image" }),
    element("progress", { max: "1", value: String(fraction) }),
    element("span", { class: "status", text: kind === "waiting" ? "starting…"
      : `${Math.round(fraction * 100)}% of ${sizeText(upload.file.size)}` }));
}

function failed(upload, reason) {
  upload.row.dataset.state = "failed";
  upload.row.replaceChildren(
    element("span", { class: "name", text: upload.file.name || "pasted image" }),
    element("span", { class: "status", role: "alert", text: `not sent: ${reason}` }),
    element("button", { type: "button", class: "retry", text: "Retry", onclick: () => ask(upload) }),
    element("button", { type: "button", class: "dismiss", text: "Dismiss",
                        onclick: () => upload.row.remove() }));
}

// A photo as its thumbnail linking to the original; any other file as its name and size,
// downloaded under its name.
export function attachmentView(a) {
  if (a.thumb) {
    return element("a", { class: "photo", href: a.url, target: "_blank", rel: "noopener" },
      element("img", { src: a.thumb, alt: a.name, loading: "lazy" }));
  }
  return element("a", { class: "file", href: a.url, download: a.name,
                        text: `${a.name} (${sizeText(a.size)})` });
}
