"""chatd in the browser: the site that serves the web client (site), each HTTP connection
with its limits (channel), the WebSocket transport (socket, frames) and /wire.js (wiretable)."""
