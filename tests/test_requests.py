"""Request validation against the field table and *Limits* of docs/protocol.md."""

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from chatd.messages import ChatError, Errno, MsgId
from chatd.requests import validate

MAX_INT = (1 << 63) - 1

# The smallest valid request of every client msgid.
MINIMAL: dict[int, dict[str, Any]] = {
    1: {"id": 1, "password": "p"},
    3: {},
    4: {"name": "n", "password": "p"},
    6: {"to": 2, "msg": "m"},
    7: {"friendid": 2},
    8: {"groupname": "g"},
    9: {"groupid": 1},
    10: {"groupid": 1, "msg": "m"},
    17: {"mid": 1},
    18: {},
    19: {},
    21: {},
}

# Every optional field, with a valid value.
OPTIONAL: dict[int, dict[str, Any]] = {
    1: {"proto": 2},
    3: {"id": 1},
    4: {},
    6: {"id": 1, "time": "2026-11-26 10:00:01", "cid": "c1"},
    7: {"id": 1},
    8: {"id": 1, "groupdesc": "d"},
    9: {"id": 1},
    10: {"id": 1, "time": "", "cid": "c"},
    17: {"mids": [1, 2]},
    18: {},
    19: {"id": 1},
    21: {"id": 1},
}

INT_FIELDS = [(1, "id"), (1, "proto"), (3, "id"), (6, "id"), (6, "to"), (7, "id"),
              (7, "friendid"), (8, "id"), (9, "id"), (9, "groupid"), (10, "id"),
              (10, "groupid"), (17, "mid"), (19, "id"), (21, "id")]

# (msgid, field, shortest, longest) in characters, from the *Limits* table.
STR_FIELDS = [(1, "password", 1, 128), (4, "name", 1, 50), (4, "password", 1, 128),
              (6, "msg", 1, 32768), (6, "time", 0, 64), (6, "cid", 1, 64),
              (8, "groupname", 1, 50), (8, "groupdesc", 0, 200),
              (10, "msg", 1, 32768), (10, "time", 0, 64), (10, "cid", 1, 64)]

REQUIRED = [(msgid, name) for msgid, fields in MINIMAL.items() for name in fields
            if msgid != MsgId.RECV_ACK]

NAMES = [(4, "name"), (8, "groupname")]


def frame(msgid: int, **fields: Any) -> dict[str, Any]:
    return {"msgid": msgid, **MINIMAL[msgid], **fields}


def without(msgid: int, name: str) -> dict[str, Any]:
    f = frame(msgid)
    del f[name]
    return f


class ValidateTests(SynchronousTestCase):

    def refused(self, msgid: int, f: dict[str, Any]) -> ChatError:
        with self.assertRaises(ChatError, msg=f) as caught:
            validate(msgid, f)
        return caught.exception

    def assertRefused(self, msgid: int, f: dict[str, Any], errno: int, field: str) -> None:
        err = self.refused(msgid, f)
        text = {Errno.MISSING_FIELD: "missing field", Errno.WRONG_TYPE: "field has the wrong type",
                Errno.OUT_OF_RANGE: "field is out of range"}[errno]
        self.assertEqual((err.errno, err.errmsg), (errno, f"{text}: {field}"), f)

    def assertAccepted(self, msgid: int, f: dict[str, Any]) -> None:
        try:
            validate(msgid, f)
        except ChatError as e:
            self.fail(f"{f} refused: {e.errmsg}")

    # presence

    def test_minimal_requests_are_accepted(self):
        for msgid in MINIMAL:
            self.assertAccepted(msgid, frame(msgid))

    def test_requests_with_every_optional_field_are_accepted(self):
        for msgid in MINIMAL:
            self.assertAccepted(msgid, frame(msgid, **OPTIONAL[msgid]))

    def test_unknown_extra_fields_are_ignored(self):
        for msgid in MINIMAL:
            self.assertAccepted(msgid, frame(msgid, extra=[1, {"x": None}], id2="z"))

    def test_a_missing_required_field_is_named(self):
        for msgid, name in REQUIRED:
            self.assertRefused(msgid, without(msgid, name), Errno.MISSING_FIELD, name)

    def test_a_null_required_field_counts_as_missing(self):
        for msgid, name in REQUIRED:
            self.assertRefused(msgid, frame(msgid, **{name: None}), Errno.MISSING_FIELD, name)

    def test_null_optional_fields_count_as_absent(self):
        for msgid, optional in OPTIONAL.items():
            for name in optional:
                if name != "mids":
                    self.assertAccepted(msgid, frame(msgid, **{name: None}))

    def test_recv_ack_needs_mid_or_mids(self):
        self.assertAccepted(17, {"msgid": MsgId.RECV_ACK, "mids": [5]})
        self.assertRefused(17, {"msgid": MsgId.RECV_ACK}, Errno.MISSING_FIELD, "mid")
        self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mid": None, "mids": None},
                           Errno.MISSING_FIELD, "mid")

    # integers

    def test_integers_refuse_other_types(self):
        for msgid, name in INT_FIELDS:
            for bad in (True, False, 1.0, 1.5, "1", [1], {"v": 1}):
                self.assertRefused(msgid, frame(msgid, **{name: bad}), Errno.WRONG_TYPE, name)

    def test_integers_are_1_to_2_pow_63_minus_1(self):
        for msgid, name in INT_FIELDS:
            if name == "proto":
                continue
            for good in (1, 2, MAX_INT):
                self.assertAccepted(msgid, frame(msgid, **{name: good}))
            for bad in (0, -1, -MAX_INT - 1, MAX_INT + 1, 1 << 64, 1 << 200):
                self.assertRefused(msgid, frame(msgid, **{name: bad}), Errno.OUT_OF_RANGE, name)

    def test_proto_is_1_or_2(self):
        for good in (1, 2):
            self.assertAccepted(1, frame(1, proto=good))
        for bad in (0, 3, -2, MAX_INT):
            self.assertRefused(1, frame(1, proto=bad), Errno.OUT_OF_RANGE, "proto")

    # strings

    def test_strings_refuse_other_types(self):
        for msgid, name, _, _ in STR_FIELDS:
            for bad in (5, 0, True, 1.5, ["x"], {"x": "y"}):
                self.assertRefused(msgid, frame(msgid, **{name: bad}), Errno.WRONG_TYPE, name)

    def test_string_lengths_follow_the_limits(self):
        for msgid, name, shortest, longest in STR_FIELDS:
            for good in ("x" * shortest, "x" * longest):
                self.assertAccepted(msgid, frame(msgid, **{name: good}))
            self.assertRefused(msgid, frame(msgid, **{name: "x" * (longest + 1)}),
                               Errno.OUT_OF_RANGE, name)
            if shortest > 0:
                self.assertRefused(msgid, frame(msgid, **{name: ""}), Errno.OUT_OF_RANGE, name)

    def test_lengths_count_characters_not_bytes(self):
        for msgid, name, _, longest in STR_FIELDS:
            self.assertAccepted(msgid, frame(msgid, **{name: "😀" * longest}))
            self.assertRefused(msgid, frame(msgid, **{name: "😀" * (longest + 1)}),
                               Errno.OUT_OF_RANGE, name)

    # names

    def test_names_with_control_characters_are_refused(self):
        for msgid, name in NAMES:
            for bad in ("a\x00b", "a\nb", "tab\t", "\x1b[31mred", "del\x7f", "c1\x85",
                        "\r"):
                self.assertRefused(msgid, frame(msgid, **{name: bad}), Errno.OUT_OF_RANGE, name)

    def test_names_of_only_spaces_are_refused(self):
        for msgid, name in NAMES:
            for bad in (" ", " " * 50, "\u3000", "\u00a0 \u2003"):
                self.assertRefused(msgid, frame(msgid, **{name: bad}), Errno.OUT_OF_RANGE, name)

    def test_names_with_inner_spaces_and_any_script_are_accepted(self):
        for msgid, name in NAMES:
            for good in ("Ann Lee", "中文名字", "Ünïcödé", "😀", "a-b_c.d"):
                self.assertAccepted(msgid, frame(msgid, **{name: good}))

    def test_other_strings_may_hold_control_characters(self):
        self.assertAccepted(6, frame(6, msg="line one\nline two\ttab\x00"))
        self.assertAccepted(4, frame(4, password="\x00\x01 "))

    # ONE_CHAT's `toid`

    def test_toid_is_accepted_as_to(self):
        f = {"msgid": MsgId.ONE_CHAT, "toid": 42, "msg": "m"}
        self.assertAccepted(6, f)
        self.assertEqual(f["to"], 42)

    def test_to_wins_over_toid(self):
        f = {"msgid": MsgId.ONE_CHAT, "to": 7, "toid": 42, "msg": "m"}
        self.assertAccepted(6, f)
        self.assertEqual(f["to"], 7)

    def test_toid_is_validated_as_to(self):
        self.assertRefused(6, {"msgid": MsgId.ONE_CHAT, "toid": "42", "msg": "m"}, Errno.WRONG_TYPE,
                           "to")
        self.assertRefused(6, {"msgid": MsgId.ONE_CHAT, "toid": 0, "msg": "m"}, Errno.OUT_OF_RANGE,
                           "to")
        self.assertRefused(6, {"msgid": MsgId.ONE_CHAT, "msg": "m"}, Errno.MISSING_FIELD, "to")

    # RECV_ACK's `mids`

    def test_mids_hold_1_to_1000_ids(self):
        self.assertAccepted(17, {"msgid": MsgId.RECV_ACK, "mids": [1]})
        self.assertAccepted(17, {"msgid": MsgId.RECV_ACK, "mids": list(range(1, 1001))})
        self.assertAccepted(17, {"msgid": MsgId.RECV_ACK, "mids": [MAX_INT]})
        self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mids": []}, Errno.OUT_OF_RANGE, "mids")
        self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mids": list(range(1, 1002))},
                           Errno.OUT_OF_RANGE,
                           "mids")

    def test_mids_must_be_a_list_of_ints(self):
        for bad in ("1", 1, {"1": 1}, [1, "2"], [True], [1.0], [[1]], [None]):
            self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mids": bad}, Errno.WRONG_TYPE, "mids")

    def test_each_mid_is_in_range(self):
        for bad in ([0], [1, -5], [MAX_INT + 1], [1 << 70]):
            self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mids": bad}, Errno.OUT_OF_RANGE,
                               "mids")

    def test_a_wrong_type_in_mids_outranks_a_mid_out_of_range(self):
        """Types and ranges are checked in one pass: a mid out of range before a wrong type,
        or a list too long as well, still gets the wrong type's error."""
        for bad in ([0, "2"], [-1, 1.0], [0] + ["x"] * 1001):
            self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mids": bad}, Errno.WRONG_TYPE, "mids")
        self.assertRefused(17, {"msgid": MsgId.RECV_ACK, "mids": [0] * 1001}, Errno.OUT_OF_RANGE,
                           "mids")
