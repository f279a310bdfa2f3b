"""What the Kafka client scripts of the e2e suite share: flags, the payload rule, the JSON result.

Every script (kafka_python_client.py, confluent_client.py, and the Go franz-client) takes the
same flags and prints one JSON object on stdout (or, in `member` mode, one JSON object per
line), so the Rust tests drive and compare them alike:

    {"client": str, "op": str, "acked": int, "offsets": [[partition, offset], ...],
     "records": [{"topic", "partition", "offset", "key", "value", "headers": [[k, v]],
                  "timestamp"}], "assignments": [[partition, ...], ...],
     "errors": [str], "elapsed_s": float, ...op-specific fields}

Payload rule: value i is "<prefix>-<i>" padded with "x" to --value-size bytes; key i is --key
when given, else "k-<i>". Exit status 0 when the operation did all it was asked, 1 otherwise
(the JSON then says why in "errors"). Every wait is bounded by --timeout.
"""

import argparse
import json
import sys
import time


def payload(prefix, i, size):
    s = f"{prefix}-{i}"
    return s + "x" * (size - len(s)) if len(s) < size else s


def key_of(args, i):
    return args.key if args.key else f"k-{i}"


def headers_of(args):
    if not args.headers:
        return []
    return [(k, v.encode()) for k, _, v in (kv.partition("=") for kv in args.headers.split(","))]


def text(b):
    return None if b is None else (b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b))


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("mode", choices=["produce", "consume", "member", "offsets"])
    p.add_argument("--brokers", default="127.0.0.1:9092")
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=10, help="records to produce or to consume")
    p.add_argument("--prefix", default="msg")
    p.add_argument("--value-size", type=int, default=0)
    p.add_argument("--key", default="")
    p.add_argument("--headers", default="", help="k=v,k2=v2 on every record")
    p.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"])
    p.add_argument("--acks", default="all", choices=["all", "1", "0"])
    p.add_argument("--idempotent", action="store_true")
    p.add_argument("--partition", type=int, default=-1)
    p.add_argument("--offset", type=int, default=-1, help="consume: assign --partition at this offset")
    p.add_argument("--timestamp-start", type=int, default=0, help="produce: explicit CreateTime of record 0")
    p.add_argument("--timestamp-step", type=int, default=1000)
    p.add_argument("--timestamp", type=int, default=0, help="offsets: look up this timestamp")
    p.add_argument("--group", default="")
    p.add_argument("--from-end", action="store_true", help="no committed offset: start at the end")
    p.add_argument("--reset", default="", choices=["", "earliest", "latest", "error"],
                   help="auto.offset.reset (overrides --from-end)")
    p.add_argument("--no-commit", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--sasl-mechanism", default="", choices=["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    return p


class Result(dict):
    def __init__(self, client, op):
        super().__init__(client=client, op=op, acked=0, offsets=[], records=[], assignments=[], errors=[])
        self.started = time.monotonic()

    def record(self, topic, partition, offset, key, value, headers, timestamp):
        self["records"].append({
            "topic": topic, "partition": partition, "offset": offset, "key": text(key),
            "value": text(value), "headers": [[k, text(v)] for k, v in (headers or [])],
            "timestamp": timestamp,
        })

    def emit(self):
        self["elapsed_s"] = round(time.monotonic() - self.started, 3)
        print(json.dumps(self), flush=True)
        sys.exit(1 if self["errors"] else 0)


def line(obj):
    """One JSON line of a `member`'s event stream."""
    print(json.dumps(obj), flush=True)
