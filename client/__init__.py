"""chat-client: the bundled command-line client of chatd (see docs/client.md)."""
