"""chatd in the browser: the site that serves the web client (site), each HTTP connection
with its limits (channel), the WebSocket transport (socket, frames), /wire.js (wiretable),
attachments' uploads and downloads (media), their bodies sent with sendfile (sending) and
paced so that the chat goes first (pacing), and /export (export)."""
