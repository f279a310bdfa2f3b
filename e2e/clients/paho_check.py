#!/usr/bin/env python3
"""MQTT scenarios driven with paho-mqtt (a third-party client) against a RobustMQ broker.

Usage: paho_check.py SCENARIO --port PORT --version {3,5} [--qos N]
Scenarios: pubsub, retained, will, will-delay, persistent (one broker); cross (subscribe
on --port2, publish on --port); hold and resume (a persistent session held on one broker,
then resumed on another after the first was killed); acl (after the rules the Rust test adds);
shared (one broker) and shared-cross (members on --port and --port2); share-member and
publish-many (pieces the Rust test runs around a broker crash).
Exits 0 when the scenario holds, 1 with a message on stderr when it does not.
Every wait is bounded; nothing here waits longer than about 20 s.
"""

import argparse
import os
import queue
import signal
import subprocess
import sys
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST = "127.0.0.1"


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def client(args, client_id="", clean=True, expiry=None):
    proto = mqtt.MQTTv5 if args.version == 5 else mqtt.MQTTv311
    kw = {}
    if proto == mqtt.MQTTv311:
        kw["clean_session"] = clean
    if getattr(args, "ws", False):
        kw["transport"] = "websockets"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=proto, **kw)
    if getattr(args, "ws", False):
        c.ws_set_options(path="/mqtt")
    c.inbox = queue.Queue()
    c.connack = queue.Queue()
    c.subacks = queue.Queue()
    c.on_message = lambda cl, ud, m: cl.inbox.put(m)
    c.on_connect = lambda cl, ud, flags, rc, props: cl.connack.put((flags, rc))
    c.on_subscribe = lambda cl, ud, mid, rcs, props: cl.subacks.put(rcs)
    c._rmq = dict(clean=clean, expiry=expiry)
    if getattr(args, "cafile", None):
        c.tls_set(ca_certs=args.cafile)
    return c


def connect(c, args, will=None):
    props = None
    if args.version == 5:
        props = Properties(PacketTypes.CONNECT)
        if c._rmq["expiry"] is not None:
            props.SessionExpiryInterval = c._rmq["expiry"]
        c.connect(HOST, args.port, keepalive=30, clean_start=c._rmq["clean"], properties=props)
    else:
        c.connect(HOST, args.port, keepalive=30)
    c.loop_start()
    try:
        flags, rc = c.connack.get(timeout=10)
    except queue.Empty:
        fail("no CONNACK within 10 s")
    if rc.is_failure if hasattr(rc, "is_failure") else rc != 0:
        fail(f"CONNECT refused: {rc}")
    return flags


def subscribe(c, topic, qos):
    c.subscribe(topic, qos=qos)
    try:
        rcs = c.subacks.get(timeout=10)
    except queue.Empty:
        fail(f"no SUBACK for {topic}")
    for rc in rcs:
        value = rc.value if hasattr(rc, "value") else rc
        if value >= 0x80:
            fail(f"subscription to {topic} refused: {rc}")


def stop(c):
    c.disconnect()
    c.loop_stop()


def collect(c, n, timeout):
    got = []
    deadline = time.time() + timeout
    while len(got) < n and time.time() < deadline:
        try:
            got.append(c.inbox.get(timeout=max(0.01, deadline - time.time())))
        except queue.Empty:
            break
    return got


def pubsub(args):
    base = f"e2e/{uuid.uuid4().hex[:8]}"
    sub = client(args)
    connect(sub, args)
    subscribe(sub, f"{base}/#", args.qos)
    pub = client(args)
    connect(pub, args)
    n = 20
    for i in range(n):
        info = pub.publish(f"{base}/t{i % 3}", f"msg-{i}", qos=args.qos)
        if args.qos > 0:
            info.wait_for_publish(timeout=10)
            if not info.is_published():
                fail(f"publish {i} not acknowledged")
    got = collect(sub, n, 10)
    payloads = [m.payload.decode() for m in got]
    if payloads != [f"msg-{i}" for i in range(n)]:
        fail(f"subscriber got {payloads}")
    if any(m.qos != args.qos for m in got):
        fail(f"qos {[m.qos for m in got]} != {args.qos}")
    if any(m.retain for m in got):
        fail("live messages must not carry RETAIN")
    stop(pub)
    stop(sub)
    print(f"pubsub v{args.version} qos{args.qos}: {n} messages in order")


def retained(args):
    topic = f"e2e/retained/{uuid.uuid4().hex[:8]}"
    pub = client(args)
    connect(pub, args)
    pub.publish(topic, "keep-me", qos=1, retain=True).wait_for_publish(timeout=10)
    sub = client(args)
    connect(sub, args)
    subscribe(sub, "e2e/retained/#", 1)
    got = [m for m in collect(sub, 50, 3) if m.topic == topic]
    if len(got) != 1 or got[0].payload != b"keep-me" or not got[0].retain:
        fail(f"retained message not delivered on subscribe: {[(m.topic, m.payload, m.retain) for m in got]}")
    stop(sub)
    pub.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout=10)
    sub2 = client(args)
    connect(sub2, args)
    subscribe(sub2, topic, 1)
    got = collect(sub2, 1, 1.5)
    if got:
        fail(f"cleared retained message still delivered: {got[0].payload}")
    stop(sub2)
    stop(pub)
    print(f"retained v{args.version}: delivered with RETAIN, cleared by an empty payload")


def will_child(args, topic, delay):
    """Runs in a child process: connect with a will, then wait to be SIGKILLed."""
    c = client(args, client_id=f"will-{uuid.uuid4().hex[:6]}", expiry=(30 if delay else None))
    props = None
    if args.version == 5 and delay:
        props = Properties(PacketTypes.WILLMESSAGE)
        props.WillDelayInterval = delay
    c.will_set(topic, "gone", qos=1, properties=props)
    connect(c, args)
    print("connected", flush=True)
    time.sleep(60)


def spawn_will_child(args, topic, delay):
    p = subprocess.Popen(
        [sys.executable, __file__, "will-child", "--port", str(args.port), "--version", str(args.version),
         "--topic", topic, "--delay", str(delay)],
        stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if line != "connected":
        p.kill()
        fail(f"will child did not connect: {line!r}")
    return p


def will(args):
    topic = f"e2e/will/{uuid.uuid4().hex[:8]}"
    watcher = client(args)
    connect(watcher, args)
    subscribe(watcher, topic, 1)
    # Graceful DISCONNECT: no will.
    graceful = client(args)
    graceful.will_set(topic, "should-not-arrive", qos=1)
    connect(graceful, args)
    stop(graceful)
    # Ungraceful: the process dies, the socket drops without DISCONNECT.
    p = spawn_will_child(args, topic, 0)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    got = collect(watcher, 2, 5)
    payloads = [m.payload for m in got]
    if payloads != [b"gone"]:
        fail(f"expected only the killed client's will, got {payloads}")
    stop(watcher)
    print(f"will v{args.version}: sent on a dropped connection, not after DISCONNECT")


def will_delay(args):
    if args.version != 5:
        fail("will delay exists only in MQTT 5")
    topic = f"e2e/willdelay/{uuid.uuid4().hex[:8]}"
    watcher = client(args)
    connect(watcher, args)
    subscribe(watcher, topic, 1)
    p = spawn_will_child(args, topic, 2)
    killed = time.time()
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=10)
    early = collect(watcher, 1, 1.0)
    if early:
        fail("delayed will arrived before its delay")
    got = collect(watcher, 1, 6)
    if [m.payload for m in got] != [b"gone"]:
        fail("delayed will never arrived")
    waited = time.time() - killed
    if waited < 1.9:
        fail(f"delayed will arrived after {waited:.2f} s, before the 2 s delay")
    stop(watcher)
    print(f"will-delay: arrived after {waited:.1f} s")


def persistent(args):
    cid = f"pers-{uuid.uuid4().hex[:8]}"
    base = f"e2e/pers/{cid}"
    s = client(args, client_id=cid, clean=False, expiry=300)
    flags = connect(s, args)
    subscribe(s, f"{base}/#", 1)
    stop(s)
    pub = client(args)
    connect(pub, args)
    for i in range(5):
        pub.publish(f"{base}/x", f"offline-{i}", qos=1).wait_for_publish(timeout=10)
    stop(pub)
    s2 = client(args, client_id=cid, clean=False, expiry=300)
    flags = connect(s2, args)
    if not flags.session_present:
        fail("session_present not set on resume")
    got = collect(s2, 5, 10)
    payloads = [m.payload.decode() for m in got]
    if payloads != [f"offline-{i}" for i in range(5)]:
        fail(f"resumed session got {payloads}")
    stop(s2)
    # A clean start drops the session.
    s3 = client(args, client_id=cid, clean=True)
    flags = connect(s3, args)
    if flags.session_present:
        fail("clean start reported a present session")
    stop(s3)
    print(f"persistent v{args.version}: offline QoS 1 messages delivered on resume")


def cross(args):
    """Publish on one broker, receive on another: storage is the bus."""
    base = f"e2e/cross/{uuid.uuid4().hex[:8]}"
    sub_args = argparse.Namespace(**{**vars(args), "port": args.port2})
    sub = client(sub_args)
    connect(sub, sub_args)
    subscribe(sub, f"{base}/#", args.qos)
    pub = client(args)
    connect(pub, args)
    n = 10
    for i in range(n):
        info = pub.publish(f"{base}/x", f"c-{i}", qos=args.qos)
        if args.qos:
            info.wait_for_publish(timeout=10)
    got = [m.payload.decode() for m in collect(sub, n, 10)]
    if got != [f"c-{i}" for i in range(n)]:
        fail(f"subscriber on the other broker got {got}")
    stop(pub)
    stop(sub)
    print(f"cross v{args.version} qos{args.qos}: {n} messages across brokers")


def hold(args):
    """Connect a persistent session, subscribe, say 'ready', then wait to be killed."""
    s = client(args, client_id=args.client_id, clean=False, expiry=300)
    connect(s, args)
    subscribe(s, f"e2e/hold/{args.client_id}/#", 1)
    print("ready", flush=True)
    time.sleep(60)


def resume(args):
    """Publish while the session is away, then resume it (on any broker) and get it all."""
    base = f"e2e/hold/{args.client_id}"
    pub = client(args)
    connect(pub, args)
    n = 5
    for i in range(n):
        pub.publish(f"{base}/x", f"away-{i}", qos=1).wait_for_publish(timeout=10)
    stop(pub)
    s = client(args, client_id=args.client_id, clean=False, expiry=300)
    flags = connect(s, args)
    if not flags.session_present:
        fail("session_present not set when resuming on this broker")
    got = [m.payload.decode() for m in collect(s, n, 10)]
    if got != [f"away-{i}" for i in range(n)]:
        fail(f"resumed session got {got}")
    stop(s)
    print(f"resume v{args.version}: {n} messages published while away delivered")


def acl(args):
    """Run after `ctl acl add`: alice may not publish to secret/#, nobody may subscribe
    to private/#; everything else is open. Also checks the password."""
    bad = client(args)
    bad.username_pw_set(args.username, "wrong-" + args.password)
    bad.connect(HOST, args.port, keepalive=30)
    bad.loop_start()
    try:
        _, rc = bad.connack.get(timeout=10)
    except queue.Empty:
        fail("no CONNACK for a wrong password")
    value = rc.value if hasattr(rc, "value") else rc
    # paho reports the 3.1.1 return code 4 as reason code 0x86 too.
    want = 0x86
    if value != want:
        fail(f"wrong password got CONNACK {value:#x}, want {want:#x}")
    bad.loop_stop()

    watcher = client(args)
    connect(watcher, args)
    subscribe(watcher, "secret/#", 1)
    alice = client(args)
    alice.username_pw_set(args.username, args.password)
    acks = {}
    alice.on_publish = lambda cl, ud, mid, rc, props: acks.__setitem__(mid, rc)
    connect(alice, args)
    info = alice.publish("secret/plans", "leak", qos=1)
    deadline = time.time() + 10
    while info.mid not in acks and time.time() < deadline:
        time.sleep(0.02)
    if info.mid not in acks:
        fail("no PUBACK for the denied publish")
    rc = acks[info.mid]
    value = rc.value if hasattr(rc, "value") else rc
    if args.version == 5 and value != 0x87:
        fail(f"denied publish got PUBACK {value:#x}, want 0x87")
    if collect(watcher, 1, 1.5):
        fail("a denied publish was delivered")

    alice.subscribe("private/#", qos=1)
    try:
        rcs = alice.subacks.get(timeout=10)
    except queue.Empty:
        fail("no SUBACK for the denied subscription")
    value = rcs[0].value if hasattr(rcs[0], "value") else rcs[0]
    want = 0x87 if args.version == 5 else 0x80
    if value != want:
        fail(f"denied subscribe got {value:#x}, want {want:#x}")

    # Allowed traffic still flows for the same user.
    subscribe(alice, "open/#", 1)
    alice.publish("open/x", "fine", qos=1).wait_for_publish(timeout=10)
    got = [m.payload for m in collect(alice, 1, 5)]
    if got != [b"fine"]:
        fail(f"allowed publish/subscribe got {got}")
    stop(alice)
    stop(watcher)
    print(f"acl v{args.version}: bad password, denied publish and subscribe refused")


def shared(args):
    """Two members of $share/g/...: every message reaches exactly one, and both get some."""
    base = f"e2e/shared/{uuid.uuid4().hex[:8]}"
    members = []
    for _ in range(2):
        m = client(args)
        connect(m, args)
        subscribe(m, f"$share/g/{base}/#", 1)
        members.append(m)
    pub = client(args)
    connect(pub, args)
    n = 40
    for i in range(n):
        pub.publish(f"{base}/x", f"s-{i}", qos=1).wait_for_publish(timeout=10)
    got = [collect(m, n, 5) for m in members]
    counts = [len(g) for g in got]
    payloads = sorted(p for g in got for p in (m.payload.decode() for m in g))
    if payloads != sorted(f"s-{i}" for i in range(n)):
        fail(f"shared group did not get each message exactly once: counts {counts}")
    if min(counts) == 0:
        fail(f"one member got nothing: counts {counts}")
    for m in members + [pub]:
        stop(m)
    print(f"shared v{args.version}: {n} messages split {counts}")


def drain(members, n, timeout, quiet=1.0):
    """Payloads each member got: until `n` in all (or `timeout`), then `quiet` seconds more
    so that duplicates show."""
    got = [[] for _ in members]
    deadline = time.time() + timeout
    settle = None
    while time.time() < (settle or deadline):
        idle = True
        for i, m in enumerate(members):
            try:
                while True:
                    got[i].append(m.inbox.get_nowait().payload.decode())
                    idle = False
            except queue.Empty:
                pass
        if settle is None and sum(map(len, got)) >= n:
            settle = time.time() + quiet
        if idle:
            time.sleep(0.02)
    return got


def shared_cross(args):
    """$share/g/... members on two brokers (--port, --port2). With the membership settled,
    every message reaches exactly one member and the members on both brokers get some
    (the group's shards are split between the brokers). Then broker 2's members leave and
    messages published right away all reach broker 1's members: the shards are handed over
    at the position where broker 2 stopped, so nothing is lost (some may come twice)."""
    base = f"e2e/shared-cross/{uuid.uuid4().hex[:8]}"
    other = argparse.Namespace(**{**vars(args), "port": args.port2})
    sides = []
    for a in (args, other):
        ms = []
        for _ in range(2):
            m = client(a)
            connect(m, a)
            subscribe(m, f"$share/g/{base}/#", 1)
            ms.append(m)
        sides.append(ms)
    # The brokers follow each other's membership through a meta watch: give it a moment,
    # since messages published while views differ may be delivered twice.
    time.sleep(1)
    pub = client(args)
    connect(pub, args)
    n = 200
    # Many topics, so that records land in every shard of the binding.
    for i in range(n):
        pub.publish(f"{base}/{i % 16}", f"s-{i}", qos=1).wait_for_publish(timeout=10)
    got = drain(sides[0] + sides[1], n, 20)
    per_broker = [sum(len(g) for g in got[:2]), sum(len(g) for g in got[2:])]
    payloads = sorted(p for g in got for p in g)
    if payloads != sorted(f"s-{i}" for i in range(n)):
        fail(f"shared group across brokers did not get each message exactly once: "
             f"{len(payloads)} deliveries of {n}, {len(set(payloads))} distinct, per broker {per_broker}")
    if min(per_broker) == 0:
        fail(f"the members on one broker got nothing: per broker {per_broker}")

    for m in sides[1]:
        stop(m)
    m2 = 100
    for i in range(m2):
        pub.publish(f"{base}/{i % 16}", f"h-{i}", qos=1).wait_for_publish(timeout=10)
    after = drain(sides[0], m2, 20)
    seen = [p for g in after for p in g]
    missing = sorted(set(f"h-{i}" for i in range(m2)) - set(seen))
    if missing:
        fail(f"{len(missing)} messages lost when broker 2's members left: {missing[:10]}")
    for m in sides[0] + [pub]:
        stop(m)
    print(f"shared-cross v{args.version}: {n} messages split {per_broker} between the brokers "
          f"(members {[len(g) for g in got]}); after broker 2's members left, {m2} messages "
          f"reached broker 1's members ({len(seen) - len(set(seen))} twice)")


def share_member(args):
    """A member of $share/crash/{--topic}/#: says 'ready', then prints each payload it gets
    on its own line for --delay seconds (the Rust test reads them as they come)."""
    m = client(args)
    connect(m, args)
    subscribe(m, f"$share/crash/{args.topic}/#", 1)
    print("ready", flush=True)
    deadline = time.time() + args.delay
    while time.time() < deadline:
        try:
            print(m.inbox.get(timeout=0.2).payload.decode(), flush=True)
        except queue.Empty:
            pass
    stop(m)


def publish_many(args):
    """Publishes --count QoS 1 messages k-0.. to {--topic}/{i % 16}."""
    pub = client(args)
    connect(pub, args)
    for i in range(args.count):
        pub.publish(f"{args.topic}/{i % 16}", f"k-{i}", qos=1).wait_for_publish(timeout=10)
    stop(pub)
    print(f"published {args.count}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--version", type=int, choices=[3, 5], default=5)
    ap.add_argument("--qos", type=int, choices=[0, 1, 2], default=1)
    ap.add_argument("--topic")
    ap.add_argument("--delay", type=int, default=0)
    ap.add_argument("--port2", type=int)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--client-id", default="")
    ap.add_argument("--ws", action="store_true", help="connect over WebSocket (subprotocol mqtt)")
    ap.add_argument("--cafile", help="connect over TLS, trusting this CA/certificate")
    ap.add_argument("--username", default="")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    scenarios = {"pubsub": pubsub, "retained": retained, "will": will, "will-delay": will_delay,
                 "persistent": persistent, "cross": cross, "hold": hold, "resume": resume, "acl": acl,
                 "shared": shared, "shared-cross": shared_cross, "share-member": share_member,
                 "publish-many": publish_many}
    if args.scenario == "will-child":
        will_child(args, args.topic, args.delay)
        return
    if args.scenario not in scenarios:
        fail(f"unknown scenario {args.scenario}")
    scenarios[args.scenario](args)


if __name__ == "__main__":
    main()
