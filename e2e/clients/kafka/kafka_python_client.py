#!/usr/bin/env python3
"""kafka-python (pure-Python Kafka client) driven by flags for the Kafka e2e tests.

Modes: produce, consume (optionally in a group, or at --partition/--offset), member (a
long-lived group member that prints one JSON line per event and leaves the group when its
stdin closes) and offsets (earliest, latest and by-timestamp offsets of one partition).
Flags and output are described in common.py.
"""

import logging
import sys
import threading
import time

from common import Result, headers_of, key_of, line, parser, payload

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener

CLIENT = "kafka-python"


def security(args):
    if not args.sasl_mechanism:
        return {}
    return {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": args.sasl_mechanism,
        "sasl_plain_username": args.user,
        "sasl_plain_password": args.password,
    }


def common_config(args):
    return {
        "bootstrap_servers": args.brokers.split(","),
        "request_timeout_ms": int(min(args.timeout, 30) * 1000),
        "bootstrap_timeout_ms": int(min(args.timeout, 30) * 1000),
        **security(args),
    }


def delivery(args):
    """Common config plus a delivery timeout, which kafka-python wants above linger +
    request timeout."""
    conf = common_config(args)
    conf["delivery_timeout_ms"] = max(int(args.timeout * 1000), conf["request_timeout_ms"] + 1000)
    return conf


def produce(args, res):
    acks = "all" if args.acks == "all" else int(args.acks)
    producer = KafkaProducer(
        acks=acks,
        compression_type=None if args.compression == "none" else args.compression,
        enable_idempotence=args.idempotent,
        linger_ms=5,
        max_block_ms=int(args.timeout * 1000),
        **delivery(args),
    )
    futures = []
    for i in range(args.count):
        ts = args.timestamp_start + i * args.timestamp_step if args.timestamp_start else None
        futures.append(producer.send(
            args.topic,
            value=payload(args.prefix, i, args.value_size).encode(),
            key=key_of(args, i).encode(),
            headers=headers_of(args),
            partition=None if args.partition < 0 else args.partition,
            timestamp_ms=ts,
        ))
    producer.flush(timeout=args.timeout)
    deadline = time.monotonic() + args.timeout
    for f in futures:
        try:
            md = f.get(timeout=max(0.1, deadline - time.monotonic()))
            res["acked"] += 1
            res["offsets"].append([md.partition, md.offset])
        except Exception as e:  # the client's own error is what the test reports
            res["errors"].append(f"{type(e).__name__}: {e}")
    producer.close(timeout=5)


def consumer_config(args, group):
    reset = args.reset or ("latest" if args.from_end else "earliest")
    return dict(
        group_id=group or None,
        auto_offset_reset="none" if reset == "error" else reset,
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
        **common_config(args),
    )


def consume(args, res):
    consumer = KafkaConsumer(**consumer_config(args, args.group))
    if args.partition >= 0:
        tp = TopicPartition(args.topic, args.partition)
        consumer.assign([tp])
        if args.offset >= 0:
            consumer.seek(tp, args.offset)
    else:
        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass

            def on_partitions_assigned(self, assigned):
                res["assignments"].append(sorted(tp.partition for tp in assigned))

        consumer.subscribe([args.topic], listener=Listener())
    deadline = time.monotonic() + args.timeout
    try:
        while len(res["records"]) < args.count and time.monotonic() < deadline:
            # Never take more than asked, so a commit covers exactly what was consumed.
            polled = consumer.poll(timeout_ms=500, max_records=args.count - len(res["records"]))
            for tp, msgs in polled.items():
                for m in msgs:
                    res.record(m.topic, m.partition, m.offset, m.key, m.value, m.headers, m.timestamp)
        if args.group and not args.no_commit:
            consumer.commit()
    except Exception as e:
        res["errors"].append(f"{type(e).__name__}: {e}")
    if len(res["records"]) < args.count and not res["errors"]:
        res["errors"].append(f"consumed {len(res['records'])} of {args.count} records within {args.timeout}s")
    consumer.close()


def member(args):
    """A group member until stdin closes: prints assigned/revoked/record events, commits after
    each poll, then leaves the group and prints "left"."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            line({"event": "revoked", "partitions": sorted(tp.partition for tp in revoked)})

        def on_partitions_assigned(self, assigned):
            line({"event": "assigned", "partitions": sorted(tp.partition for tp in assigned)})

    consumer = KafkaConsumer(**consumer_config(args, args.group))
    consumer.subscribe([args.topic], listener=Listener())
    deadline = time.monotonic() + args.timeout
    while not stop.is_set() and time.monotonic() < deadline:
        polled = consumer.poll(timeout_ms=200)
        for tp, msgs in polled.items():
            for m in msgs:
                line({"event": "record", "partition": m.partition, "offset": m.offset,
                      "value": m.value.decode("utf-8", "replace")})
        if polled:
            consumer.commit()
    consumer.close()
    line({"event": "left"})


def offsets(args, res):
    consumer = KafkaConsumer(**consumer_config(args, ""))
    tp = TopicPartition(args.topic, max(args.partition, 0))
    try:
        res["earliest"] = consumer.beginning_offsets([tp], timeout_ms=args.timeout * 1000)[tp]
        res["latest"] = consumer.end_offsets([tp], timeout_ms=args.timeout * 1000)[tp]
        found = consumer.offsets_for_times({tp: args.timestamp}, timeout_ms=args.timeout * 1000)[tp]
        res["for_time"] = None if found is None else found.offset
    except Exception as e:
        res["errors"].append(f"{type(e).__name__}: {e}")
    consumer.close()


def main():
    # kafka-python reports failed logins and connection errors only through logging.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    args = parser(__doc__).parse_args()
    if args.mode == "member":
        member(args)
        return
    res = Result(CLIENT, args.mode)
    try:
        {"produce": produce, "consume": consume, "offsets": offsets}[args.mode](args, res)
    except Exception as e:
        res["errors"].append(f"{type(e).__name__}: {e}")
    res.emit()


if __name__ == "__main__":
    main()
