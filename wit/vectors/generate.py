#!/usr/bin/env python3
"""Writes weir's golden test vectors: wit/vectors/{batches,results}/*.hex and
wit/vectors/index.json, from the cases defined below.

This is a second encoder of the packed layout, written from wit/README.md
alone and independent of the Rust one (wit/packed): the Rust tests read the
files it writes and must agree byte for byte. Run it after changing a case:

    python3 wit/vectors/generate.py

Each .hex file is the packed bytes as hex digit pairs, one field per line,
with a `#` comment saying what the field is. Whitespace and comments are not
part of the bytes.
"""

import json
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
ABSENT = 0xFFFF_FFFF
TAG_EMIT, TAG_FORWARD, TAG_POISON, TAG_FAILED = 0, 1, 2, 3
TAG_ACCUMULATOR = 0  # aggregate results; POISON and FAILED as above


# ---- byte values in JSON: text as a string, anything else as {"hex": ...}


def raw(v):
    """JSON form (str, {"hex"}, or None) -> bytes or None."""
    if v is None:
        return None
    if isinstance(v, dict):
        return bytes.fromhex(v["hex"])
    return v.encode("utf-8")


def show(b):
    """bytes -> a short readable form for comments."""
    if b is None:
        return "absent"
    try:
        text = b.decode("utf-8")
        if text.isprintable():
            return json.dumps(text, ensure_ascii=False)
    except UnicodeDecodeError:
        pass
    return "0x" + b.hex()


class Packed:
    """Bytes with one comment per field."""

    def __init__(self):
        self.lines = []  # (bytes, comment)

    def put(self, b, comment):
        self.lines.append((bytes(b), comment))

    def u8(self, v, comment):
        self.put(struct.pack("<B", v), comment)

    def u32(self, v, comment):
        self.put(struct.pack("<I", v), comment)

    def i64(self, v, comment):
        self.put(struct.pack("<q", v), comment)

    def optional(self, b, what, indent):
        if b is None:
            self.u32(ABSENT, f"{indent}{what}: absent")
        else:
            self.u32(len(b), f"{indent}{what} length {len(b)}")
            if b:
                self.put(b, f"{indent}{what} {show(b)}")

    def record(self, r, indent=""):
        self.i64(r["timestamp"], f"{indent}timestamp {r['timestamp']} ms")
        self.optional(raw(r["key"]), "key", indent)
        self.optional(raw(r["value"]), "value", indent)
        self.u32(len(r["headers"]), f"{indent}header count {len(r['headers'])}")
        for name, value in r["headers"]:
            self.optional(raw(name), "header name", indent + "  ")
            self.optional(raw(value), "header value", indent + "  ")

    def bytes(self):
        return b"".join(b for b, _ in self.lines)

    def text(self, title):
        out = [f"# {title}"]
        for b, comment in self.lines:
            out.append(f"{b.hex(' '):<48} # {comment}" if b else f"# {comment}")
        return "\n".join(out) + "\n"


def rec(timestamp=1000, key="k1", value="boom", headers=None):
    return {
        "timestamp": timestamp,
        "key": key,
        "value": value,
        "headers": [["trace", "abc"]] if headers is None else headers,
    }


# ---- batches: what the host sends; every SDK must read them as `records`

BATCHES = {
    "one-record": {
        "description": "One record with key, value and one header: the input of most result vectors.",
        "records": [rec()],
    },
    "mixed": {
        "description": "Four records covering every field form: no key, an empty key (not absent), a tombstone, "
        "a null header value, a repeated header name, a non-ASCII header name, binary key and value, "
        "negative and large timestamps.",
        "records": [
            rec(timestamp=0, key=None, value='{"n":1}', headers=[]),
            rec(timestamp=-1, key="", value=None, headers=[["h", None], ["h", "2"], ["é", {"hex": "00ff"}]]),
            rec(timestamp=1764460800000, key={"hex": "00ff10"}, value={"hex": "deadbeef"}, headers=[]),
            rec(timestamp=1000, key="k4", value="boom", headers=[["trace", ""]]),
        ],
    },
}


def batch_bytes(name):
    b = BATCHES[name]
    p = Packed()
    p.u32(len(b["records"]), f"record count {len(b['records'])}")
    for i, r in enumerate(b["records"]):
        p.put(b"", f"record {i}")
        p.record(r, "  ")
    return p


# ---- results: what a plugin returns for a batch, and what the host concludes

ONE = BATCHES["one-record"]["records"][0]


def emit(*records):
    return {"emit": [{"port": port, "record": r} for port, r in records]}


def fwd(port):
    return {"forward": port}


def fail(kind, reason):
    return {"failure": {"kind": kind, "reason": reason}}


def malformed(offset, expected):
    return {"malformed": {"offset": offset, "expected": expected}}


def valid(results):
    """A result list that is well formed; `results` in their JSON form."""

    def write(p):
        p.u32(len(results), f"result count {len(results)}")
        for i, r in enumerate(results):
            if "forward" in r:
                p.u8(TAG_FORWARD, f"result {i}: FORWARD")
                p.u32(r["forward"], f"  port {r['forward']}")
            elif "emit" in r:
                p.u8(TAG_EMIT, f"result {i}: EMIT")
                p.u32(len(r["emit"]), f"  record count {len(r['emit'])}")
                for e in r["emit"]:
                    p.u32(e["port"], f"  port {e['port']}")
                    p.record(e["record"], "    ")
            elif "poison" in r or "failed" in r:
                tag, msg = (TAG_POISON, r["poison"]) if "poison" in r else (TAG_FAILED, r["failed"])
                p.u8(tag, f"result {i}: {'POISON' if tag == TAG_POISON else 'FAILED'}")
                p.optional(msg.encode(), "message", "  ")

    return write


def by_hand(*fields):
    """Bytes no correct encoder writes: (bytes, comment) pairs."""

    def write(p):
        for b, comment in fields:
            p.put(b, comment)

    return write


def u32(v):
    return struct.pack("<I", v)


def i64(v):
    return struct.pack("<q", v)


MALFORMED = "plugin returned a malformed result: malformed packed buffer at byte {offset}: expected {expected}"
FILTER_RULE = "a filter step keeps or drops records; it cannot emit new ones (emitted {n})"
MAP_RULE = "a map step emits exactly one record per input (emitted {n})"
SELECT_KEY_RULE = "a select-key step emits exactly one record per input (emitted {n})"
SELECT_KEY_ONLY = "a select-key step changes only the key, but the plugin changed the {field}"

# Each case: batch, step kind, declared ports, optional limits, the bytes,
# what `decoded` reads (the layout only; None when malformed) and what the
# host concludes per input record (or that the whole result is malformed).
RESULTS = {}


def case(name, description, kind, write, decoded, host, batch="one-record", ports=("out",), limits=None):
    RESULTS[name] = {
        "description": description,
        "batch": batch,
        "kind": kind,
        "ports": list(ports),
        "limits": limits or {},
        "write": write,
        "decoded": decoded,
        "host": host,
    }


def ok(name, description, kind, results, host, **kw):
    case(name, description, kind, valid(results), results, {"outcomes": host}, **kw)


def contract(name, description, kind, results, reason, **kw):
    case(name, description, kind, valid(results), results,
         {"outcomes": [fail("contract", reason)]}, **kw)


def bad(name, description, kind, fields, offset, expected, **kw):
    case(name, description, kind, by_hand(*fields), None, malformed(offset, expected), **kw)


UPPER = rec(value="BOOM")
REKEYED = rec(key="k2")

# -- well formed and within the rules
ok("filter-keeps", "A filter keeps its input: FORWARD on port 0.", "filter",
   [fwd(0)], [fwd(0)])
ok("filter-drops", "A filter drops its input: EMIT of zero records.", "filter",
   [emit()], [emit()])
ok("map-emits-one", "A map replaces the value.", "map",
   [emit((0, UPPER))], [emit((0, UPPER))])
ok("map-forwards", "A map may hand its input back unchanged with FORWARD.", "map",
   [fwd(0)], [fwd(0)])
ok("flat-map-emits-two", "A flat-map emits two records on port 0.", "flat-map",
   [emit((0, UPPER), (0, rec(key=None, value=None, headers=[])))],
   [emit((0, UPPER), (0, rec(key=None, value=None, headers=[])))])
ok("branch-forwards-to-port-1", "A branch sends its input to its second port.", "branch",
   [fwd(1)], [fwd(1)], ports=("left", "right"))
ok("branch-emits-on-port-1", "A branch may emit new records on any declared port.", "branch",
   [emit((1, UPPER))], [emit((1, UPPER))], ports=("left", "right"))
ok("select-key-rekeys", "A select-key step emits its input with only the key changed.", "select-key",
   [emit((0, REKEYED))], [emit((0, REKEYED))])
ok("select-key-drops-key", "A select-key step may remove the key.", "select-key",
   [emit((0, rec(key=None)))], [emit((0, rec(key=None)))])
ok("poison", "The plugin says the record is bad data: the error policy decides.", "map",
   [{"poison": "bad data"}], [fail("poison", "bad data")])
ok("failed", "The plugin says it failed on the record: the host retries it once, alone, on a fresh "
   "instance, and if that fails too the error policy gets kind `failed`.", "map",
   [{"failed": "bug"}], [{"retry": "bug"}])
ok("mixed-outcomes", "One result per record of `mixed`: forward, drop, emit with absent fields, poison.",
   "flat-map",
   [fwd(0), emit(), emit((0, rec(timestamp=-1, key=None, value=None, headers=[["h", None]]))),
    {"poison": "no"}],
   [fwd(0), emit(), emit((0, rec(timestamp=-1, key=None, value=None, headers=[["h", None]]))),
    fail("poison", "no")],
   batch="mixed")

# -- well formed, but the step kind's rules are broken: a `contract` failure
# for that record alone (the instance is kept)
contract("filter-emits", "A filter emits a record.", "filter",
         [emit((0, ONE))], FILTER_RULE.format(n=1))
contract("map-emits-zero", "A map emits nothing.", "map",
         [emit()], MAP_RULE.format(n=0))
contract("map-emits-two", "A map emits two records.", "map",
         [emit((0, UPPER), (0, UPPER))], MAP_RULE.format(n=2))
contract("select-key-emits-two", "A select-key step emits two records.", "select-key",
         [emit((0, REKEYED), (0, REKEYED))], SELECT_KEY_RULE.format(n=2))
contract("select-key-changes-value", "A select-key step changes the value.", "select-key",
         [emit((0, rec(key="k2", value="BOOM")))], SELECT_KEY_ONLY.format(field="value"))
contract("select-key-changes-headers", "A select-key step adds a header.", "select-key",
         [emit((0, rec(key="k2", headers=[["trace", "abc"], ["x", "1"]])))],
         SELECT_KEY_ONLY.format(field="headers"))
contract("select-key-changes-timestamp", "A select-key step moves the timestamp.", "select-key",
         [emit((0, rec(key="k2", timestamp=2000)))], SELECT_KEY_ONLY.format(field="timestamp"))
contract("forward-to-undeclared-port", "A map forwards to port 1, but declared one port.", "map",
         [fwd(1)], "forwarded to undeclared port 1")
contract("emit-on-undeclared-port", "A flat-map emits on port 1, but declared one port.", "flat-map",
         [emit((1, UPPER))], "emitted on undeclared port 1")
contract("header-name-not-utf8", "A map emits a header whose name is not UTF-8.", "map",
         [emit((0, rec(headers=[[{"hex": "fffe"}, "v"]])))], "emitted a header name that is not UTF-8")
case("output-limit", "A flat-map emits more than `output-per-record` (16 bytes here; a record counts key, "
     "value, header names and values, plus 8).", "flat-map",
     valid([emit((0, rec(key=None, value="x" * 9, headers=[])))]),
     [emit((0, rec(key=None, value="x" * 9, headers=[])))],
     {"outcomes": [fail("output-limit", "outputs for one record exceed 16 bytes")]},
     limits={"output-per-record": 16})

# -- malformed: the whole result is refused, the instance is discarded, and
# every record of the batch is retried alone on a fresh instance. A record
# whose result is malformed when it is alone fails with kind `trap`.
FWD0 = (bytes([TAG_FORWARD]) + u32(0), "result 0: FORWARD port 0")
bad("empty", "No bytes at all.", "map", [], 0, "result count")
bad("count-too-large", "Two results for a batch of one record.", "map",
    [(u32(2), "result count 2 (the batch has 1 record)"), FWD0, FWD0], 0, "one result per input record")
bad("count-zero", "No result for a batch of one record.", "filter",
    [(u32(0), "result count 0 (the batch has 1 record)")], 0, "one result per input record")
bad("unknown-tag", "A result tag that does not exist.", "map",
    [(u32(1), "result count 1"), (b"\x04", "result 0: tag 4 (unknown)")], 4, "result tag 0..=3")
bad("truncated-port", "The buffer ends inside a FORWARD's port.", "filter",
    [(u32(1), "result count 1"), (b"\x01\x00\x00", "result 0: FORWARD, 3 of the port's 4 bytes")],
    5, "forward port")
bad("truncated-record", "The buffer ends inside an emitted record's value.", "map",
    [(u32(1), "result count 1"), (bytes([TAG_EMIT]) + u32(1), "result 0: EMIT 1 record"),
     (u32(0), "  port 0"), (i64(1000), "    timestamp 1000"), (u32(2) + b"k1", "    key \"k1\""),
     (u32(4) + b"BO", "    value length 4, but only 2 bytes follow")],
    31, "record value")
bad("emit-count-too-large", "EMIT says two records but carries one.", "map",
    [(u32(1), "result count 1"), (bytes([TAG_EMIT]) + u32(2), "result 0: EMIT 2 records"),
     (u32(0), "  port 0"), (i64(1000), "    timestamp 1000"), (u32(ABSENT), "    key: absent"),
     (u32(ABSENT), "    value: absent"), (u32(0), "    header count 0")],
    33, "output port")
bad("trailing-bytes", "A correct result followed by one more byte.", "filter",
    [(u32(1), "result count 1"), FWD0, (b"\x00", "trailing byte after the last result")],
    9, "end of result")
bad("absent-header-name", "A header name with the ABSENT length: names cannot be null.", "map",
    [(u32(1), "result count 1"), (bytes([TAG_EMIT]) + u32(1), "result 0: EMIT 1 record"),
     (u32(0), "  port 0"), (i64(1000), "    timestamp 1000"), (u32(ABSENT), "    key: absent"),
     (u32(ABSENT), "    value: absent"), (u32(1), "    header count 1"),
     (u32(ABSENT), "      header name: ABSENT (not allowed)")],
    33, "header name")
bad("length-past-end", "A value length far beyond the buffer.", "map",
    [(u32(1), "result count 1"), (bytes([TAG_EMIT]) + u32(1), "result 0: EMIT 1 record"),
     (u32(0), "  port 0"), (i64(1000), "    timestamp 1000"), (u32(ABSENT), "    key: absent"),
     (u32(0xFFFF_FFFE), "    value length 4294967294")],
    29, "record value")
bad("poison-message-not-utf8", "A POISON message that is not UTF-8.", "map",
    [(u32(1), "result count 1"), (bytes([TAG_POISON]), "result 0: POISON"),
     (u32(2) + b"\xff\xfe", "  message: 2 bytes, not UTF-8")],
    5, "poison message")


# ---- the aggregator world: `add`/`subtract` batches of groups, `merge`
# batches of pairs, and their per-record results (wit/README.md)

OPENED = '{"type":"AccountOpened"}'
DEPOSITED = '{"type":"Deposited","amount":5}'
AGG_BATCHES = {
    "two-groups": {
        "call": "add",
        "description": "Two keys: `acct-1` has no accumulator yet and two records; `acct-2` has one and "
        "one record. Records carry their own key (the group's).",
        "groups": [
            {"key": "acct-1", "accumulator": None,
             "records": [rec(timestamp=10, key="acct-1", value=OPENED, headers=[]),
                         rec(timestamp=11, key="acct-1", value=DEPOSITED, headers=[["trace", "abc"]])]},
            {"key": "acct-2", "accumulator": '{"balance":1}',
             "records": [rec(timestamp=12, key="acct-2", value=DEPOSITED, headers=[])]},
        ],
    },
    "binary-group": {
        "call": "add",
        "description": "One binary key whose accumulator is empty (not absent), and a tombstone record.",
        "groups": [
            {"key": {"hex": "00ff"}, "accumulator": "",
             "records": [rec(timestamp=-1, key={"hex": "00ff"}, value=None, headers=[])]},
        ],
    },
    "one-pair": {
        "call": "merge",
        "description": "One `merge` pair: a key and two accumulators.",
        "pairs": [{"key": "acct-1", "left": '{"balance":1}', "right": '{"balance":2}'}],
    },
}


def agg_batch_bytes(name):
    b = AGG_BATCHES[name]
    p = Packed()
    if b["call"] == "merge":
        p.u32(len(b["pairs"]), f"pair count {len(b['pairs'])}")
        for i, pair in enumerate(b["pairs"]):
            p.put(b"", f"pair {i}")
            p.optional(raw(pair["key"]), "key", "  ")
            p.optional(raw(pair["left"]), "left accumulator", "  ")
            p.optional(raw(pair["right"]), "right accumulator", "  ")
        return p
    p.u32(len(b["groups"]), f"group count {len(b['groups'])}")
    for i, g in enumerate(b["groups"]):
        p.put(b"", f"group {i}")
        p.optional(raw(g["key"]), "key", "  ")
        p.optional(raw(g["accumulator"]), "accumulator", "  ")
        p.u32(len(g["records"]), f"  record count {len(g['records'])}")
        for j, r in enumerate(g["records"]):
            p.put(b"", f"  record {j}")
            p.record(r, "    ")
    return p


def agg_valid(results):
    def write(p):
        p.u32(len(results), f"result count {len(results)}")
        for i, r in enumerate(results):
            if "accumulator" in r:
                p.u8(TAG_ACCUMULATOR, f"result {i}: ACCUMULATOR")
                p.optional(raw(r["accumulator"]), "accumulator", "  ")
            else:
                tag, msg = (TAG_POISON, r["poison"]) if "poison" in r else (TAG_FAILED, r["failed"])
                p.u8(tag, f"result {i}: {'POISON' if tag == TAG_POISON else 'FAILED'}")
                p.optional(msg.encode(), "message", "  ")

    return write


AGG_RESULTS = {}


def agg_case(name, description, batch, write, decoded, host):
    AGG_RESULTS[name] = {"description": description, "batch": batch, "write": write,
                         "decoded": decoded, "host": host}


def agg_ok(name, description, batch, results, host):
    agg_case(name, description, batch, agg_valid(results), results, {"outcomes": host})


def agg_bad(name, description, batch, fields, offset, expected):
    agg_case(name, description, batch, by_hand(*fields), None, malformed(offset, expected))


def acc(v):
    return {"accumulator": v}


def update(v):
    return {"update": v}


agg_ok("accumulators", "The accumulator after each record, in batch order: both of `acct-1`'s, then `acct-2`'s.",
       "two-groups",
       [acc('{"balance":0}'), acc('{"balance":5}'), acc('{"balance":6}')],
       [update('{"balance":0}'), update('{"balance":5}'), update('{"balance":6}')])
agg_ok("poison-keeps-the-accumulator", "The first record of `acct-1` is poison: its accumulator stays "
       "absent, and the second record starts from none.", "two-groups",
       [{"poison": "no account"}, acc('{"balance":5}'), acc('{"balance":6}')],
       [fail("poison", "no account"), update('{"balance":5}'), update('{"balance":6}')])
agg_ok("failed", "The plugin failed on the second record: the host retries it once, alone, on a fresh "
       "instance, from the accumulator before it.", "two-groups",
       [acc('{"balance":0}'), {"failed": "bug"}, acc('{"balance":6}')],
       [update('{"balance":0}'), {"retry": "bug"}, update('{"balance":6}')])
agg_ok("removes-and-empty", "An absent accumulator removes the key's accumulator (downstream sees a "
       "tombstone); an empty one is a value.", "binary-group",
       [acc(None)], [update(None)])
agg_ok("merged", "One merged accumulator for the pair.", "one-pair",
       [acc('{"balance":3}')], [update('{"balance":3}')])

ACC0 = (bytes([TAG_ACCUMULATOR]) + u32(0), "result: ACCUMULATOR, empty")
agg_bad("aggregate-forward-tag", "FORWARD (tag 1) is not an aggregate result.", "binary-group",
        [(u32(1), "result count 1"), (b"\x01" + u32(0), "result 0: tag 1 (FORWARD: not allowed here)")],
        4, "aggregate result tag 0, 2 or 3")
agg_bad("aggregate-count-per-group", "One result per group instead of one per record.", "two-groups",
        [(u32(2), "result count 2 (the batch has 3 records)"), ACC0, ACC0], 0, "one result per input record")
agg_bad("accumulator-past-end", "An accumulator length beyond the buffer.", "binary-group",
        [(u32(1), "result count 1"), (bytes([TAG_ACCUMULATOR]) + u32(10) + b"{}", "result 0: ACCUMULATOR, "
         "length 10 but 2 bytes follow")], 9, "accumulator")
agg_bad("aggregate-trailing-bytes", "A correct result followed by one more byte.", "binary-group",
        [(u32(1), "result count 1"), ACC0, (b"\x00", "trailing byte after the last result")],
        9, "end of result")


def agg_records(b):
    if b["call"] == "merge":
        return len(b["pairs"])
    return sum(len(g["records"]) for g in b["groups"])


def main():
    index = {
        "contract": "weir:plugin@0.2.0",
        "format": "Each file is hex digit pairs; whitespace and `#` comments to the end of a line are not part "
        "of the bytes. Byte values in JSON are a string (its UTF-8 bytes), {\"hex\": ...} for other "
        "bytes, or null (absent: the ABSENT length). See wit/README.md, section Golden vectors.",
        "batches": [],
        "results": [],
    }
    for sub in ("batches", "results"):
        (HERE / sub).mkdir(exist_ok=True)
        for old in (HERE / sub).glob("*.hex"):
            old.unlink()
    for name, b in BATCHES.items():
        p = batch_bytes(name)
        (HERE / "batches" / f"{name}.hex").write_text(p.text(f"batch `{name}`: {b['description']}"))
        index["batches"].append({"name": name, "file": f"batches/{name}.hex", **b})
    for name, r in RESULTS.items():
        p = Packed()
        r["write"](p)
        (HERE / "results" / f"{name}.hex").write_text(
            p.text(f"result `{name}` for batch `{r['batch']}`, step kind {r['kind']}: {r['description']}"))
        entry = {"name": name, "file": f"results/{name}.hex"}
        entry.update({k: v for k, v in r.items() if k != "write"})
        if "malformed" in r["host"]:
            m = r["host"]["malformed"]
            entry["host"] = {
                "malformed": m,
                "alone": fail("trap", MALFORMED.format(**m)),
            }
        index["results"].append(entry)
    index["aggregate"] = {"batches": [], "results": []}
    for sub in ("aggregate/batches", "aggregate/results"):
        (HERE / sub).mkdir(parents=True, exist_ok=True)
        for old in (HERE / sub).glob("*.hex"):
            old.unlink()
    for name, b in AGG_BATCHES.items():
        p = agg_batch_bytes(name)
        (HERE / "aggregate/batches" / f"{name}.hex").write_text(
            p.text(f"{b['call']} batch `{name}`: {b['description']}"))
        index["aggregate"]["batches"].append({"name": name, "file": f"aggregate/batches/{name}.hex", **b})
    for name, r in AGG_RESULTS.items():
        p = Packed()
        r["write"](p)
        b = AGG_BATCHES[r["batch"]]
        (HERE / "aggregate/results" / f"{name}.hex").write_text(
            p.text(f"{b['call']} result `{name}` for batch `{r['batch']}`: {r['description']}"))
        entry = {"name": name, "file": f"aggregate/results/{name}.hex"}
        entry.update({k: v for k, v in r.items() if k != "write"})
        entry["records"] = agg_records(b)
        if "malformed" in r["host"]:
            m = r["host"]["malformed"]
            entry["host"] = {"malformed": m, "alone": fail("trap", MALFORMED.format(**m))}
        index["aggregate"]["results"].append(entry)
    (HERE / "index.json").write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
