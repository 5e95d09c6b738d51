"""chatd in the browser: the WebSocket transport and the site that serves the web client."""
