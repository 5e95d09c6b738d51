"""The table list of schema.sql, read once and shared by both dialects."""

import re
from pathlib import Path

SCHEMA_PATH = Path(__file__).with_name("schema.sql")


def mysql_statements(text: str | None = None) -> list[str]:
    """The CREATE TABLE statements of schema.sql, comments removed."""
    text = SCHEMA_PATH.read_text(encoding="utf-8") if text is None else text
    text = re.sub(r"--[^\n]*", "", text)
    return [s.strip() for s in text.split(";") if s.strip()]


def sqlite_statements(text: str | None = None) -> list[str]:
    """Derive SQLite DDL from the MySQL schema: same tables, columns and keys.

    Only the constructs schema.sql uses are translated: AUTO_INCREMENT primary keys, UNSIGNED,
    MEDIUMTEXT, table options, `UNIQUE KEY` (kept inline) and `KEY` (moved to CREATE INDEX).
    """
    out: list[str] = []
    for stmt in mysql_statements(text):
        table = re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", stmt).group(1)
        body = re.sub(r"\)\s*ENGINE=.*$", ")", stmt, flags=re.S)
        body = re.sub(r"\w+ UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY",
                      "INTEGER PRIMARY KEY AUTOINCREMENT", body)
        body = body.replace(" UNSIGNED", "").replace("MEDIUMTEXT", "TEXT")
        body = re.sub(r"UNIQUE KEY \w+ \(", "UNIQUE (", body)
        indexes = re.findall(r",\s*KEY (\w+) \(([^)]*)\)", body)
        body = re.sub(r",\s*KEY \w+ \([^)]*\)", "", body)
        out.append(body)
        out += [f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})"
                for name, cols in indexes]
    return out
