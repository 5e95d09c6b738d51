"""One wire table: chatd/messages.py. The browser gets it as /wire.js, nothing else in the
client, the node, the bench, the web client or the tests writes a copy of it, and it agrees
with docs/protocol.md."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

import chatd.messages
from chatd.messages import ERRMSG, Errno, MsgId
from chatd.web import wiretable
from tests.harness import serve_web, start_node

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "chatd" / "web" / "static"
TABLES = {"MsgId": MsgId, "Errno": Errno}


def parse_module(text: str) -> dict[str, dict[str, int]]:
    """The object literals of the served module, read back as JSON; every line that is not
    a comment belongs to one of them."""
    tables = {}
    pattern = r"export const (\w+) = Object\.freeze\((\{.*?\})\);\n"
    for name, literal in re.findall(pattern, text, re.S):
        quoted = re.sub(r"^(\s*)([A-Za-z_]\w*):", r'\1"\2":', literal, flags=re.M)
        tables[name] = json.loads(re.sub(r",(\s*)\}$", r"\1}", quoted))
    rest = re.sub(pattern, "", text, flags=re.S)
    assert all(line.startswith("//") for line in rest.splitlines()), rest
    return tables


class ModuleTests(SynchronousTestCase):
    """The text of /wire.js."""

    def test_every_msgid_and_errno_with_its_value(self):
        tables = parse_module(wiretable.module_text())
        self.assertEqual(tables, {name: {m.name: int(m) for m in table}
                                  for name, table in TABLES.items()})

    def test_it_is_an_es_module_a_browser_can_import(self):
        """Node imports it as the browser does (skipped where Node is not installed)."""
        node = shutil.which("node")
        if node is None:
            self.skipTest("no node to import the module with")
        path = Path(self.mktemp()).with_suffix(".mjs")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wiretable.module_text(), encoding="utf-8")
        script = ("const m = await import(process.argv[1]);"
                  "console.log(JSON.stringify({MsgId: m.MsgId, Errno: m.Errno,"
                  " frozen: Object.isFrozen(m.MsgId) && Object.isFrozen(m.Errno)}));")
        out = subprocess.run([node, "--input-type=module", "-e", script, path.resolve().as_uri()],
                             capture_output=True, text=True, timeout=60, check=True).stdout
        got = json.loads(out)
        self.assertTrue(got.pop("frozen"))
        self.assertEqual(got, {name: {m.name: int(m) for m in table}
                               for name, table in TABLES.items()})

    def test_the_web_client_imports_it_and_uses_only_its_names(self):
        for path in sorted(STATIC.glob("*.js")):
            text = path.read_text(encoding="utf-8")
            for name, table in TABLES.items():
                used = set(re.findall(rf"\b{name}\.([A-Za-z_]\w*)", text))
                if used:
                    self.assertRegex(text, rf'import \{{[^}}]*\b{name}\b[^}}]*\}} from '
                                           rf'"\./wire\.js";', path.name)
                self.assertEqual(used - set(table.__members__), set(), (path.name, name))


def _doc_table(section: str) -> list[tuple[int, str]]:
    """The rows (number, second column) of the table under a heading of docs/protocol.md."""
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    text = doc[doc.index(f"\n## {section}\n") + 1:]
    text = text[:text.find("\n## ")]
    return [(int(n), cell.strip()) for n, cell in re.findall(r"^\| (\d+) \| ([^|]+) \|", text,
                                                             re.M)]


class ContractTests(SynchronousTestCase):
    """With every number in the code read from the table, the table is checked against the
    contract, docs/protocol.md: what the literals in the tests used to pin down."""

    def test_the_documented_msgids(self):
        self.assertEqual(sorted(n for n, _ in _doc_table("Message ids")), sorted(MsgId))

    def test_the_documented_errnos_and_their_texts(self):
        rows = _doc_table("Errors")
        self.assertEqual(sorted(n for n, _ in rows), sorted(set(Errno) - {Errno.OK}))
        for number, text in rows:
            self.assertTrue(text.startswith(ERRMSG[Errno(number)]), (number, text))


class SiteTests(TestCase):
    """/wire.js on a real listening web site."""

    async def get(self, path: bytes, headers: dict[bytes, list[bytes]] | None = None):
        web = await serve_web(self, await start_node(self))
        url = b"http://127.0.0.1:%d%s" % (web.port, path)
        response = await Agent(reactor).request(b"GET", url, Headers(headers or {}))
        return response, await readBody(response)

    async def test_served_at_its_path_as_javascript(self):
        response, body = await self.get(b"/wire.js")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/javascript; charset=utf-8"])
        self.assertEqual(response.headers.getRawHeaders(b"x-content-type-options"),
                         [b"nosniff"])
        self.assertIsNotNone(response.headers.getRawHeaders(b"content-security-policy"))
        self.assertEqual(body.decode("utf-8"), wiretable.module_text())
        self.assertEqual(parse_module(body.decode("utf-8"))["MsgId"]["KICK_MEMBER"],
                         MsgId.KICK_MEMBER)

    async def test_the_same_caching_headers_as_the_static_files(self):
        caching = (b"last-modified", b"cache-control", b"expires", b"etag")
        wire, _ = await self.get(b"/wire.js")
        app, _ = await self.get(b"/app.js")
        self.assertEqual([name for name in caching if wire.headers.hasHeader(name)],
                         [name for name in caching if app.headers.hasHeader(name)])
        since = wire.headers.getRawHeaders(b"last-modified")
        again, body = await self.get(b"/wire.js", {b"if-modified-since": since})
        self.assertEqual((again.code, body), (304, b""))

    async def test_nothing_under_it(self):
        response, _ = await self.get(b"/wire.js/more")
        self.assertEqual(response.code, 404)


# ---- no second table

NAMES = {**{m.name: int(m) for m in Errno}, **{m.name: int(m) for m in MsgId}}
MSGIDS = frozenset(int(m) for m in MsgId)
ERRNOS = frozenset(int(m) for m in Errno) - {0}
FIELDS = {"msgid": MSGIDS, "ref": MSGIDS, "errno": ERRNOS}


def _int(node: ast.AST) -> int | None:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _copied_name(name: str, value: int | None) -> bool:
    """A constant named like a table member (LOGIN, LOGIN_MSG_ACK, _BUSY) with its number."""
    name = name.lstrip("_").replace("_MSG", "")
    return value is not None and NAMES.get(name) == value


def _upper(node: ast.AST | None) -> bool:
    """An upper-case name such as LOGIN_MSG or MsgId.LOGIN."""
    return (isinstance(node, ast.Name) and node.id.isupper()) or (
        isinstance(node, ast.Attribute) and node.attr.isupper())


def _field(node: ast.AST) -> str | None:
    """`msgid` for `msgid`, `frame["msgid"]`, `frame.get("msgid")` (and so on for FIELDS)."""
    key: object = None
    if isinstance(node, ast.Name):
        key = node.id
    elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        key = node.slice.value
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant):
        key = node.args[0].value
    return key if key in FIELDS else None


def table_copies(source: str, literals: bool = True) -> list[str]:
    """What in a Python source writes wire numbers itself: module-level constants named as
    the table's members with their values, tuple assignments of three or more table numbers
    to upper-case names, and (with `literals`) a dict of three or more names to msgids, a
    msgid/ref/errno number in a dict, a comparison or a byte template such as
    b'{"msgid":6,'."""
    found = []
    tree = ast.parse(source)
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if isinstance(target, ast.Name) and _copied_name(target.id, _int(node.value)):
                found.append(f"line {node.lineno}: {target.id} = {_int(node.value)}")
            elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs = [(t.id, _int(v)) for t, v in zip(target.elts, node.value.elts, strict=False)
                         if isinstance(t, ast.Name) and t.id.isupper()]
                values = {v for _, v in pairs}
                if any(_copied_name(*pair) for pair in pairs) or (
                        len(pairs) >= 3 and len(pairs) == len(target.elts)
                        and (values <= MSGIDS or values <= ERRNOS)):
                    found.append(f"line {node.lineno}: {', '.join(n for n, _ in pairs)}")
    if not literals:
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            pairs = [(key, _int(value)) for key, value in zip(node.keys, node.values,
                                                              strict=True)
                     if _int(value) in MSGIDS and (_upper(key) or _int(key) in MSGIDS)]
            if len(pairs) >= 3:
                found.append(f"line {node.lineno}: a dict of msgids {pairs[0][1]}, ...")
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value in FIELDS \
                        and _int(value) in FIELDS[key.value]:
                    found.append(f"line {node.lineno}: {key.value!r}: {_int(value)}")
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            fields = [f for f in map(_field, sides) if f]
            numbers = [_int(n) for side in sides
                       for n in (side.elts if isinstance(side, ast.Tuple | ast.List | ast.Set)
                                 else [side])]
            if any(n in FIELDS[f] for f in fields for n in numbers if n is not None):
                found.append(f"line {node.lineno}: {fields[0]} compared with a number")
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes) \
                and re.search(rb'"(msgid|ref)":\d', node.value):
            found.append(f"line {node.lineno}: {node.value[:30]!r}")
    return found


def js_copies(text: str) -> list[str]:
    """A table-like object literal (NAME: number, twice or more), a literal msgid, or a
    msgid/ref/errno compared with a number."""
    found = []
    entries = re.findall(r"\b[A-Z][A-Z0-9_]*\s*:\s*\d+", text)
    if len(entries) >= 2:
        found.append(f"a table: {entries[:3]}")
    found += re.findall(r"\bmsgid\s*:\s*\d+", text)
    found += re.findall(r"\b(?:msgid|ref|errno)\s*[!=]==?\s*[1-9]\d*", text)
    found += re.findall(r"\b[1-9]\d*\s*[!=]==?\s*[\w.]*\b(?:msgid|ref|errno)\b", text)
    return found


def _python_sources(*folders: str) -> list[Path]:
    table = Path(chatd.messages.__file__).resolve()
    return [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))
            if path.resolve() != table and ".venv" not in path.parts]


class NoSecondTableTests(SynchronousTestCase):

    def test_no_copy_in_the_client_the_node_or_the_bench(self):
        for path in _python_sources("client", "chatd"):
            copies = table_copies(path.read_text(encoding="utf-8"))
            self.assertEqual(copies, [], path.relative_to(ROOT))

    def test_no_table_in_the_tests(self):
        """Tests may write a number in a frame (a scenario on the wire), but take names
        from chatd.messages rather than keeping a table of their own."""
        for path in _python_sources("tests"):
            copies = table_copies(path.read_text(encoding="utf-8"), literals=False)
            self.assertEqual(copies, [], path.relative_to(ROOT))

    def test_no_copy_in_the_web_client(self):
        scripts = sorted(STATIC.glob("*.js"))
        self.assertIn("app.js", [path.name for path in scripts])
        for path in scripts:
            self.assertEqual(js_copies(path.read_text(encoding="utf-8")), [], path.name)

    def test_the_old_copies_would_be_found(self):
        """Each of the copies this table replaced, as it was."""
        python = [
            "LOGIN_MSG, LOGIN_MSG_ACK, LOGINOUT_MSG, REG_MSG = 1, 2, 3, 4\n",
            "KICK_MEMBER, BLOCK, NOTICE, DEVICES = 33, 35, 37, 38\n",
            "BAD_LOGIN = 1\n",
            "NAME_TAKEN = 3\n",
            "REMOVE_FRIEND, LEAVE_GROUP, KICK, BLOCK, NOTICE = 29, 31, 33, 35, 37\n",
            "MISSING, WRONG, RANGE = 105, 106, 107\n",
            "REPLY_TO = {LOGIN_MSG: 2, LOGINOUT_MSG: 15, REG_MSG: 5}\n",
            "CHAT_HEADS = (b'{\"msgid\":6,', b'{\"msgid\":10,')\n",
            "transport.write(b'{\"msgid\":17,\"mids\":[%b]}' % mids)\n",
            "send({'msgid': 18})\n",
            "if reply.get('errno') in (2, 130):\n    pass\n",
            "if frame['msgid'] == 6:\n    pass\n",
        ]
        for source in python:
            self.assertNotEqual(table_copies(source), [], source)
        self.assertNotEqual(table_copies(python[0], literals=False), [])
        javascript = [
            "const M = {\n  LOGIN: 1, LOGIN_ACK: 2,\n  KICK: 33, KICK_ACK: 34,\n};\n",
            "this.send({ msgid: 18 });\n",
            "if (ack.errno === 2 && retries < 5) {}\n",
            "if (f.errno === 104 && f.ref === M.HISTORY) {}\n",
        ]
        for text in javascript:
            self.assertNotEqual(js_copies(text), [], text)

    def test_what_is_not_a_copy(self):
        self.assertEqual(table_copies(
            "BLOCK = 4\nMAX_MIDS = 1000\nRATE, BURST = 2000, 4000\nERROR = int(MsgId.ERROR)\n"
            "ok = reply.get('errno') == 0\nframe = {'msgid': MsgId.LOGIN, 'errno': 0}\n"
            "HEAD = b'{\"msgid\":%d,' % ONE_CHAT\n"), [])
        self.assertEqual(js_copies(
            'import { MsgId } from "./wire.js";\nconst HEARTBEAT_MS = 25000;\n'
            "if (f.errno === Errno.OK) send({ msgid: MsgId.HEARTBEAT, limit: 50 });\n"), [])
