"""The client's memory across runs: the newest mid each device has seen, in a small JSON file.

A device that was away catches up with SYNC from the last mid it has (docs/protocol.md,
Devices); keeping it in a file lets a restarted client do the same.
"""

from __future__ import annotations

import json
import os
import tempfile

MAX_ENTRIES = 1000
"""Accounts, devices and servers remembered; the least recently saved are forgotten."""


def default_path() -> str:
    """`$XDG_STATE_HOME/chat-client/last-mids.json`, by default under ~/.local/state."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "chat-client", "last-mids.json")


class LastMids:
    """Last mid per server (`scope`), user and device; None as the path keeps them in memory."""

    def __init__(self, path: str | None, scope: str = "") -> None:
        self._path = path
        self._scope = scope
        self._mids: dict[str, int] = {}
        self.problem = ""
        """Why the file could not be read or written, for the user; empty when it could."""
        if path is not None and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    data = json.load(f)
                self._mids = {str(k): v for k, v in data.items() if isinstance(v, int)}
            except (OSError, ValueError, AttributeError) as error:
                self.problem = f"cannot read {path}: {error}"

    def get(self, key: str) -> int:
        return self._mids.get(f"{self._scope} {key}", 0)

    def save(self, key: str, mid: int) -> None:
        """Remember `mid` for `key` and write the file whole, atomically (a crash leaves the
        old file or the new one)."""
        key = f"{self._scope} {key}"
        self._mids.pop(key, None)
        self._mids[key] = mid
        while len(self._mids) > MAX_ENTRIES:
            del self._mids[next(iter(self._mids))]
        if self._path is None:
            return
        folder = os.path.dirname(os.path.abspath(self._path))
        temporary = ""
        try:
            os.makedirs(folder, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=folder, delete=False,
                                             encoding="utf-8") as f:
                temporary = f.name
                json.dump(self._mids, f)
            os.replace(temporary, self._path)
            self.problem = ""
        except OSError as error:
            self.problem = f"cannot write {self._path}: {error}"
            if temporary and os.path.exists(temporary):
                os.unlink(temporary)
