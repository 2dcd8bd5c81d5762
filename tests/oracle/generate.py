#!/usr/bin/env python3
"""Seedable input generator for the Kafka Streams oracle (tests/oracle/README.md).

Writes JSON lines {"key": str|null, "value": {...}|null, "timestamp": ms} to stdout:
random keys from a pool of --keys, values with numeric fields to aggregate
(amount: int, price: float, qty: int or now and then a float) and candidate
group-by fields of every scalar type (category: string, region: integer, vip:
boolean, score: float, user.id: string under an object), timestamps that go
backwards now and then (out of order), tombstones (null values), null keys, and
group-by fields that are missing, null, an object or an array (Kafka Streams
re-keys those records to a null key and drops them). Every rate is an option;
--clean sets the rates of whatever Kafka Streams drops to 0, for runs that must
not depend on how the dropped records are handled. Same arguments, same bytes
(Python 3 stdlib only).

  generate.py --seed 1 --records 2000 --keys 50 > input.jsonl
  generate.py --seed 1 --clean > input.jsonl
"""
import argparse
import json
import random
import sys

# Group-by strings, with the edges of a key's text: empty, non-ASCII, quotes,
# a space, and one that looks like a number (the key "7" of the integer 7 too).
CATEGORIES = ["books", "games", "music", "garden", "tools", "toys", "food", "", "café", "日本", 'say "hi"', "a b", "7"]
# Floats whose JSON text is the same in Java (Jackson, Double.toString) and
# Rust (serde_json, ryu): both print a plain decimal between 1e-3 and 1e7 and
# differ outside it (1.0E7 against 10000000.0), so group-by keys stay inside.
SCORES = [0.5, 1.25, 2.5, 10.0, 99.75, -3.5, 0.001, 1234567.5]
# The group-by candidates: (field path, value maker). The oracle and weir
# both take a dotted path (`user.id`).
GROUP_FIELDS = ["category", "region", "vip", "score", "user.id"]


def group_value(rng, field):
    if field == "category":
        return rng.choice(CATEGORIES)
    if field == "region":
        return rng.randint(-3, 12)
    if field == "vip":
        return rng.random() < 0.3
    if field == "score":
        return rng.choice(SCORES)
    return f"u{rng.randrange(40)}"  # user.id


def bad_value(rng):
    """A group-by field Kafka Streams cannot key by: null, an object or an array."""
    return rng.choice([None, {"nested": rng.randrange(3)}, [rng.randrange(3)]])


def records(seed, n, keys, null_keys=0.02, tombstones=0.05, bad_fields=0.03, late=0.2, late_ms=5000, ghosts=0.0,
            round_ms=1):
    """The records, as dicts. Rates are per record (bad_fields per field). Timestamps are
    rounded down to a multiple of round_ms (1: as drawn): on a coarse grid, records often fall
    exactly on window starts, ends and grace edges."""
    rng = random.Random(seed)
    ts = 1_700_000_000_000
    for i in range(n):
        ts += rng.randint(0, 1000)
        # Late records: up to late_ms before the newest timestamp.
        t = ts - rng.randint(1, late_ms) if rng.random() < late else ts
        t -= t % round_ms
        if ghosts and rng.random() < ghosts:
            # A tombstone for a key no other record has (a table deletes a row it never had).
            yield {"key": f"ghost{i}", "value": None, "timestamp": t}
            continue
        key = None if rng.random() < null_keys else f"k{rng.randrange(keys)}"
        if rng.random() < tombstones:
            yield {"key": key, "value": None, "timestamp": t}
            continue
        value = {
            "amount": rng.randint(-100, 1000),
            "price": round(rng.uniform(0, 500), rng.choice([0, 1, 2, 3])),
            # Mostly integers, 10% floats (halves and integral ones, 3.0): a sum
            # turns float at the first, and min/max meet ties of 3 and 3.0.
            "qty": rng.randint(0, 20) if rng.random() >= 0.1 else rng.randint(0, 40) / 2,
            "name": f"item-{rng.randrange(10_000)}",
        }
        for field in GROUP_FIELDS:
            r = rng.random()
            if r < bad_fields / 2:
                continue  # missing
            good = r >= bad_fields
            v = group_value(rng, field) if good else bad_value(rng)
            if field == "user.id":
                # The parent can be bad too: missing id, or `user` itself null.
                if not good and rng.random() < 0.5:
                    value["user"] = None
                else:
                    value["user"] = {"id": v, "since": rng.randint(2000, 2025)}
            else:
                value[field] = v
        yield {"key": key, "value": value, "timestamp": t}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--keys", type=int, default=50)
    p.add_argument("--null-keys", type=float, default=0.02, help="rate of null keys (default 0.02)")
    p.add_argument("--tombstones", type=float, default=0.05, help="rate of null values (default 0.05)")
    p.add_argument("--bad-fields", type=float, default=0.03,
                   help="rate, per group-by field, of missing (half) or null/object/array fields (default 0.03)")
    p.add_argument("--late", type=float, default=0.2, help="rate of out-of-order records (default 0.2)")
    p.add_argument("--late-ms", type=int, default=5000, help="how late, at most (default 5000)")
    p.add_argument("--ghosts", type=float, default=0.0,
                   help="rate of tombstones for keys no other record has (default 0; for tables)")
    p.add_argument("--round-ms", type=int, default=1,
                   help="round timestamps down to a multiple of this (default 1: as drawn)")
    p.add_argument("--clean", action="store_true",
                   help="no null keys, tombstones or bad group-by fields: nothing Kafka Streams drops")
    a = p.parse_args()
    if a.clean:
        a.null_keys = a.tombstones = a.bad_fields = 0.0
    out = sys.stdout
    for r in records(a.seed, a.records, a.keys, a.null_keys, a.tombstones, a.bad_fields, a.late, a.late_ms,
                     a.ghosts, a.round_ms):
        out.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
