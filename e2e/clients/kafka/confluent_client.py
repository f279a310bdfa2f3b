#!/usr/bin/env python3
"""confluent-kafka (librdkafka 2.x) driven by flags for the Kafka e2e tests.

Modes: produce, consume (optionally in a group, or at --partition/--offset), member (a
long-lived group member that prints one JSON line per event and leaves the group when its
stdin closes) and offsets (earliest, latest and by-timestamp offsets of one partition).
Flags and output are described in common.py. librdkafka's asynchronous errors (failed
authentication, unreachable brokers) are collected through error_cb into "errors".
"""

import logging
import os
import sys
import tempfile
import threading
import time
import uuid

from common import Result, headers_of, key_of, line, parser, payload

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

CLIENT = "confluent-kafka"
# Consumer errors librdkafka recovers from by itself (a topic being created, end of a
# partition, a dropped connection); anything else ends a `consume`.
RETRIABLE = (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT)


def on_error(res, err):
    """Failed authentication and fatal errors fail the run; transient ones (a dropped
    connection librdkafka retries) are kept as warnings."""
    fatal = err.fatal() or err.code() == KafkaError._AUTHENTICATION
    res.setdefault("errors" if fatal else "warnings", []).append(f"{err.name()}: {err.str()}")


def base_config(args, res):
    conf = {
        "bootstrap.servers": args.brokers,
        "socket.timeout.ms": int(min(args.timeout, 30) * 1000),
        "error_cb": lambda err: on_error(res, err),
    }
    # Opt-in librdkafka debug logs (e.g. E2E_RDKAFKA_DEBUG=cgrp,broker,protocol), one file
    # per client process under E2E_RDKAFKA_LOG_DIR: how group and metadata races are traced.
    if os.environ.get("E2E_RDKAFKA_DEBUG"):
        log_dir = os.environ.get("E2E_RDKAFKA_LOG_DIR", tempfile.gettempdir())
        log = logging.getLogger(f"rdkafka-{os.getpid()}")
        log.addHandler(logging.FileHandler(os.path.join(log_dir, f"rdkafka-{args.mode}-{os.getpid()}.log")))
        log.setLevel(logging.DEBUG)
        conf["debug"] = os.environ["E2E_RDKAFKA_DEBUG"]
        conf["logger"] = log
    if args.sasl_mechanism:
        conf.update({
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": args.sasl_mechanism,
            "sasl.username": args.user,
            "sasl.password": args.password,
        })
    return conf


def produce(args, res):
    conf = base_config(args, res)
    conf.update({
        "acks": args.acks,
        "compression.type": args.compression,
        "enable.idempotence": args.idempotent,
        "linger.ms": 5,
        "message.timeout.ms": int(args.timeout * 1000),
    })
    producer = Producer(conf)

    def delivered(err, msg):
        if err is not None:
            res["errors"].append(f"delivery: {err.name()}: {err.str()}")
        else:
            res["acked"] += 1
            res["offsets"].append([msg.partition(), msg.offset()])

    for i in range(args.count):
        kw = {}
        if args.partition >= 0:
            kw["partition"] = args.partition
        if args.timestamp_start:
            kw["timestamp"] = args.timestamp_start + i * args.timestamp_step
        while True:
            try:
                producer.produce(args.topic, value=payload(args.prefix, i, args.value_size).encode(),
                                 key=key_of(args, i).encode(), headers=headers_of(args),
                                 on_delivery=delivered, **kw)
                break
            except BufferError:
                producer.poll(0.1)
    left = producer.flush(args.timeout)
    if left:
        res["errors"].append(f"{left} records still undelivered after {args.timeout}s")


def consumer_config(args, res, group):
    reset = args.reset or ("latest" if args.from_end else "earliest")
    conf = base_config(args, res)
    conf.update({
        # librdkafka needs a group id even for assign(); an unused random one commits nothing.
        "group.id": group or f"e2e-nogroup-{uuid.uuid4()}",
        "auto.offset.reset": reset,
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 200,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
    })
    return conf


def consume(args, res):
    consumer = Consumer(consumer_config(args, res, args.group))
    if args.partition >= 0:
        consumer.assign([TopicPartition(args.topic, args.partition,
                                        args.offset if args.offset >= 0 else -1001)])
    else:
        consumer.subscribe([args.topic], on_assign=lambda c, parts: res["assignments"].append(
            sorted(p.partition for p in parts)))
    deadline = time.monotonic() + args.timeout
    while len(res["records"]) < args.count and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() in RETRIABLE:
                res.setdefault("warnings", []).append(f"consume: {msg.error().name()}: {msg.error().str()}")
                continue
            res["errors"].append(f"consume: {msg.error().name()}: {msg.error().str()}")
            break
        ts = msg.timestamp()[1]
        res.record(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(), msg.headers(), ts)
    if args.group and not args.no_commit and res["records"]:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as e:
            res["errors"].append(f"commit: {e}")
    if len(res["records"]) < args.count and not res["errors"]:
        res["errors"].append(f"consumed {len(res['records'])} of {args.count} records within {args.timeout}s")
    consumer.close()


def member(args):
    """A group member until stdin closes: prints assigned/revoked/record events, commits after
    each record, then leaves the group and prints "left"."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    errors = []
    conf = consumer_config(args, {"errors": errors}, args.group)
    consumer = Consumer(conf)
    consumer.subscribe(
        [args.topic],
        on_assign=lambda c, ps: line({"event": "assigned", "partitions": sorted(p.partition for p in ps)}),
        on_revoke=lambda c, ps: line({"event": "revoked", "partitions": sorted(p.partition for p in ps)}),
    )
    deadline = time.monotonic() + args.timeout
    while not stop.is_set() and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                line({"event": "error", "error": f"{msg.error().name()}: {msg.error().str()}"})
            continue
        line({"event": "record", "partition": msg.partition(), "offset": msg.offset(),
              "value": msg.value().decode("utf-8", "replace")})
        try:
            consumer.commit(message=msg, asynchronous=False)
        except KafkaException as e:
            line({"event": "error", "error": f"commit: {e}"})
    for e in errors:
        line({"event": "error", "error": e})
    consumer.close()
    line({"event": "left"})


def offsets(args, res):
    consumer = Consumer(consumer_config(args, res, ""))
    p = max(args.partition, 0)
    try:
        lo, hi = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=args.timeout)
        res["earliest"], res["latest"] = lo, hi
        found = consumer.offsets_for_times([TopicPartition(args.topic, p, args.timestamp)],
                                           timeout=args.timeout)[0]
        if found.error:
            res["errors"].append(f"offsets_for_times: {found.error}")
        # librdkafka reports "no record at or after the timestamp" as offset -1 (end).
        res["for_time"] = None if found.offset < 0 else found.offset
    except KafkaException as e:
        res["errors"].append(f"offsets: {e}")
    consumer.close()


def main():
    args = parser(__doc__).parse_args()
    if args.mode == "member":
        member(args)
        return
    res = Result(CLIENT, args.mode)
    try:
        {"produce": produce, "consume": consume, "offsets": offsets}[args.mode](args, res)
    except KafkaException as e:
        res["errors"].append(f"{type(e).__name__}: {e}")
    res.emit()


if __name__ == "__main__":
    main()
