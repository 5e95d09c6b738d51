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
    """Derive SQLite DDL from the MySQL schema: same tables, columns and keys."""
    return [out for stmt in mysql_statements(text) for out in sqlite_statement(stmt)]


def sqlite_statement(stmt: str) -> list[str]:
    """One MySQL DDL statement in SQLite's words (a CREATE TABLE may become several).

    Only the constructs chatd's DDL uses are translated: AUTO_INCREMENT primary keys, UNSIGNED,
    MEDIUMTEXT, table options, `UNIQUE KEY` (kept inline) and `KEY` (moved to CREATE INDEX).
    """
    body = re.sub(r"\)\s*ENGINE=.*$", ")", stmt, flags=re.S)
    body = re.sub(r"\w+ UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY",
                  "INTEGER PRIMARY KEY AUTOINCREMENT", body)
    body = body.replace(" UNSIGNED", "").replace("MEDIUMTEXT", "TEXT")
    created = re.search(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", body)
    if created is None:
        return [body]
    body = re.sub(r"UNIQUE KEY \w+ \(", "UNIQUE (", body)
    indexes = re.findall(r",\s*KEY (\w+) \(([^)]*)\)", body)
    body = re.sub(r",\s*KEY \w+ \([^)]*\)", "", body)
    return [body] + [f"CREATE INDEX IF NOT EXISTS {name} ON {created.group(1)} ({cols})"
                     for name, cols in indexes]
