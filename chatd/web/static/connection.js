// The WebSocket to chatd: one JSON frame per text message, a heartbeat while idle, and
// reconnection with growing, jittered delays so a restarted cluster is not stormed.

import { MsgId } from "./wire.js";

const HEARTBEAT_MS = 25000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
// Messages read within this long are acknowledged together, in one RECV_ACK with `mids`:
// a burst (a busy group, the backlog after a reconnect) costs the server one frame, not one
// a message. Far below the server's ack timeout; at most MAX_ACK_MIDS in one frame.
const ACK_DELAY_MS = 50;
const MAX_ACK_MIDS = 1000;

// Message ids are 64-bit integers, past what a JavaScript number holds exactly: they travel
// as JSON numbers and live here as decimal strings. Inside a JSON string a quote is always
// escaped, so these patterns only ever match real keys.
const BIG_IN = /"(mid|before|last_mid|after|ack)":(\d+)/g;
const QUOTE_IN = /"quote":\{"id":(\d+)/g;
const BIG_IN_LIST = /"mids":\[([\d,]*)\]/g;
const BIG_OUT = /"(mid|before|after|reply_to)":"(\d+)"/g;

export function parse(text) {
  return JSON.parse(text.replace(BIG_IN, '"$1":"$2"')
    .replace(QUOTE_IN, '"quote":{"id":"$1"').replace(
    BIG_IN_LIST, (_, list) => `"mids":[${list.split(",").filter(Boolean).map((m) => `"${m}"`)}]`));
}

export function serialize(frame) {
  return JSON.stringify(frame).replace(BIG_OUT, '"$1":$2');
}

// Order of two message ids (decimal strings); an id not yet known sorts last.
export function compareMids(a, b) {
  if (a === b) return 0;
  if (a == null) return 1;
  if (b == null) return -1;
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export class Connection {
  // handlers: {opened(), frame(f), closed(delayMs)}
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
    this.attempt = 0;
    this.stopped = false;
    this.lastSent = 0;
    this.retryTimer = null;
    this.acks = [];
    this.ackTimer = null;
    setInterval(() => this.beat(), 5000);
  }

  open() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.handlers.opened();
    };
    socket.onmessage = (event) => {
      let frame;
      try {
        frame = parse(event.data);
      } catch {
        return;
      }
      this.handlers.frame(frame);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.acks = [];  // the server sends them again on the next link
      if (this.stopped) return this.handlers.closed(null);
      const delay = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** this.attempt);
      const jittered = Math.round(delay * (0.5 + Math.random() / 2));
      this.attempt += 1;
      this.retryTimer = setTimeout(() => this.open(), jittered);
      this.handlers.closed(jittered);
    };
  }

  get ready() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  send(frame) {
    if (!this.ready) return false;
    this.socket.send(serialize(frame));
    this.lastSent = Date.now();
    return true;
  }

  // Acknowledge one message (its mid, a decimal string) with the others read meanwhile.
  ack(mid) {
    this.acks.push(mid);
    if (this.acks.length >= MAX_ACK_MIDS) {
      this.sendAcks();
    } else if (this.ackTimer === null) {
      this.ackTimer = setTimeout(() => this.sendAcks(), ACK_DELAY_MS);
    }
  }

  sendAcks() {
    clearTimeout(this.ackTimer);
    this.ackTimer = null;
    const mids = this.acks;
    this.acks = [];
    if (!mids.length || !this.ready) return;
    this.socket.send(`{"msgid":${MsgId.RECV_ACK},"mids":[${mids.join(",")}]}`);
    this.lastSent = Date.now();
  }

  // Stop for good (logged out, or taken over by another login of this device).
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close();
  }

  // Drop the link now and let the back-off bring it back (used when it went quiet).
  drop() {
    if (this.socket) this.socket.close();
  }

  beat() {
    if (this.ready && Date.now() - this.lastSent > HEARTBEAT_MS) {
      this.send({ msgid: MsgId.HEARTBEAT });
    }
  }
}
