#!/usr/bin/env python3
"""Seedable input generator for the Kafka Streams oracle (tests/oracle/README.md).

Writes JSON lines {"key": str|null, "value": {...}|null, "timestamp": ms} to stdout:
random keys from a pool of --keys, values with numeric fields (amount: int,
price: float) and string fields (category, name), timestamps that go backwards
now and then (out of order), about 5% null values (tombstones), about 2% null
keys, and about 3% values without the group-by field `category` (re-keys to a
null key). Same --seed, same output (Python 3 stdlib only).

  generate.py --seed 1 --records 2000 --keys 50 > input.jsonl
"""
import argparse
import json
import random
import sys

CATEGORIES = ["books", "games", "music", "garden", "tools", "toys", "food"]


def records(seed, n, keys):
    rng = random.Random(seed)
    ts = 1_700_000_000_000
    for i in range(n):
        ts += rng.randint(0, 1000)
        # ~20% of records are late: up to 5 s before the newest timestamp.
        t = ts - rng.randint(1, 5000) if rng.random() < 0.2 else ts
        key = None if rng.random() < 0.02 else f"k{rng.randrange(keys)}"
        if rng.random() < 0.05:
            value = None
        else:
            value = {
                "amount": rng.randint(-100, 1000),
                "price": round(rng.uniform(0, 500), rng.choice([0, 1, 2, 3])),
                "name": f"item-{rng.randrange(10_000)}",
            }
            if rng.random() >= 0.03:
                value["category"] = rng.choice(CATEGORIES)
        yield {"key": key, "value": value, "timestamp": t}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--records", type=int, default=2000)
    p.add_argument("--keys", type=int, default=50)
    a = p.parse_args()
    out = sys.stdout
    for r in records(a.seed, a.records, a.keys):
        out.write(json.dumps(r, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
