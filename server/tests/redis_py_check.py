"""redis-py against a Redis-protocol server, unchanged: strings, expiry,
keys, scan_iter, pipelines and transactions (MULTI/EXEC with WATCH), in
RESP2 or RESP3.

    python redis_py_check.py --port PORT --protocol 2|3 [--sections a,b]

Run by server/tests/real_clients.rs against `cairn serve`; it passes
against Debian's redis-server 7.0 too, which is how its expectations were
checked. Prints one `ok <section>` line per section and exits 1 with the
failing assertion otherwise. Each protocol uses its own database (SELECT
2 or 3), which the sections flush.
"""

import argparse
import sys
import time

import redis

SECTIONS = ["basic", "strings", "expiry", "keys", "scan", "pipelines", "transactions"]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def raises(fn, text, what):
    try:
        fn()
    except redis.ResponseError as e:
        check(text in str(e), f"{what}: error {str(e)!r} lacks {text!r}")
        return
    raise AssertionError(f"{what}: no error reply")


def basic(r, r2):
    # Only commands that every stage of the server has: no FLUSHDB here.
    r.delete("b:w", "b:w2")
    eq(r.ping(), True, "PING")
    eq(r.echo("hi there"), b"hi there", "ECHO")
    eq(r.set("b:k", "v"), True, "SET")
    eq(r.get("b:k"), b"v", "GET")
    eq(r.get("b:missing"), None, "GET of a missing key")
    binary = bytes(range(256)) * 4
    r.set(b"b:\x00bin\xff", binary)
    eq(r.get(b"b:\x00bin\xff"), binary, "a binary key and value")
    eq(r.delete("b:k", "b:missing", b"b:\x00bin\xff"), 2, "DEL counts the keys removed")
    # A non-transactional pipeline of plain commands: replies in order.
    p = r.pipeline(transaction=False)
    for i in range(200):
        p.set(f"b:p{i}", i)
    for i in range(200):
        p.get(f"b:p{i}")
    out = p.execute()
    eq(out[:200], [True] * 200, "pipelined SETs")
    eq(out[200:], [str(i).encode() for i in range(200)], "pipelined GETs")
    # MULTI/EXEC with WATCH: untouched, it commits.
    with r.pipeline() as p:
        p.watch("b:w")
        check(p.get("b:w") is None, "watched key starts missing")
        p.multi()
        p.set("b:w", "mine")
        p.get("b:w")
        eq(p.execute(), [True, b"mine"], "EXEC after an untouched WATCH")
    # Another connection writes the watched key: EXEC aborts, nothing applied.
    with r.pipeline() as p:
        p.watch("b:w")
        r2.set("b:w", "theirs")
        p.multi()
        p.set("b:w", "mine again")
        p.set("b:w2", "side effect")
        try:
            p.execute()
            raise AssertionError("EXEC after a conflicting write did not abort")
        except redis.WatchError:
            pass
    eq(r.get("b:w"), b"theirs", "the aborted transaction wrote nothing")
    eq(r.get("b:w2"), None, "the aborted transaction wrote nothing (second key)")
    # The second connection selected the same database.
    eq(r2.get("b:p7"), b"7", "a second connection sees the writes")


def strings(r, r2):
    r.flushdb()
    eq(r.set("s:a", "1", nx=True), True, "SET NX on a missing key")
    eq(r.set("s:a", "2", nx=True), None, "SET NX on an existing key")
    eq(r.set("s:missing", "2", xx=True), None, "SET XX on a missing key")
    eq(r.set("s:a", "3", xx=True, get=True), b"1", "SET XX GET returns the old value")
    eq(r.set("s:a", "4", ex=100), True, "SET EX")
    eq(r.set("s:a", "5", keepttl=True), True, "SET KEEPTTL")
    check(0 < r.ttl("s:a") <= 100, "KEEPTTL kept the TTL")
    eq(r.setnx("s:b", "x"), True, "SETNX on a missing key")
    eq(r.setnx("s:b", "y"), False, "SETNX on an existing key")
    eq(r.setex("s:c", 100, "c"), True, "SETEX")
    eq(r.psetex("s:d", 100000, "d"), True, "PSETEX")
    eq(r.mset({"s:m1": "1", "s:m2": "2"}), True, "MSET")
    eq(r.mget("s:m1", "s:missing", "s:m2"), [b"1", None, b"2"], "MGET")
    eq(r.msetnx({"s:m2": "x", "s:m3": "3"}), False, "MSETNX with one existing key")
    eq(r.get("s:m3"), None, "MSETNX set nothing")
    eq(r.getset("s:m1", "one"), b"1", "GETSET")
    eq(r.getdel("s:m1"), b"one", "GETDEL")
    eq(r.exists("s:m1"), 0, "GETDEL deleted")
    eq(r.getex("s:m2", ex=50), b"2", "GETEX EX")
    check(0 < r.ttl("s:m2") <= 50, "GETEX set a TTL")
    eq(r.getex("s:m2", persist=True), b"2", "GETEX PERSIST")
    eq(r.ttl("s:m2"), -1, "GETEX PERSIST removed the TTL")
    eq(r.append("s:ap", "hello"), 5, "APPEND to a missing key")
    eq(r.append("s:ap", " world"), 11, "APPEND")
    eq(r.strlen("s:ap"), 11, "STRLEN")
    eq(r.getrange("s:ap", 0, 4), b"hello", "GETRANGE")
    eq(r.getrange("s:ap", -5, -1), b"world", "GETRANGE with negative offsets")
    eq(r.setrange("s:ap", 6, "WORLD"), 11, "SETRANGE")
    eq(r.get("s:ap"), b"hello WORLD", "SETRANGE wrote")
    eq(r.setrange("s:pad", 3, "x"), 4, "SETRANGE pads with zero bytes")
    eq(r.get("s:pad"), b"\x00\x00\x00x", "SETRANGE padding")
    eq(r.incr("s:n"), 1, "INCR of a missing key")
    eq(r.incrby("s:n", 41), 42, "INCRBY")
    eq(r.decr("s:n"), 41, "DECR")
    eq(r.decrby("s:n", 50), -9, "DECRBY")
    eq(r.incrbyfloat("s:f", 1.5), 1.5, "INCRBYFLOAT")
    eq(r.incrbyfloat("s:f", "0.25"), 1.75, "INCRBYFLOAT again")
    eq(r.get("s:f"), b"1.75", "INCRBYFLOAT stores the shortest text")
    raises(lambda: r.incr("s:ap"), "value is not an integer or out of range", "INCR of text")
    r.set("s:max", str(2**63 - 1))
    raises(lambda: r.incr("s:max"), "increment or decrement would overflow", "INCR overflow")
    raises(lambda: r.execute_command("GET"), "wrong number of arguments for 'get' command", "arity")
    raises(lambda: r.execute_command("SET", "k", "v", "BOGUS"), "syntax error", "SET syntax")


def expiry(r, r2):
    r.flushdb()
    r.set("e:k", "v")
    eq(r.ttl("e:k"), -1, "TTL without expiry")
    eq(r.ttl("e:missing"), -2, "TTL of a missing key")
    eq(r.expire("e:k", 100), True, "EXPIRE")
    check(98 <= r.ttl("e:k") <= 100, "TTL after EXPIRE")
    check(98_000 <= r.pttl("e:k") <= 100_000, "PTTL after EXPIRE")
    eq(r.expire("e:k", 50, nx=True), False, "EXPIRE NX with a TTL")
    eq(r.expire("e:k", 50, gt=True), False, "EXPIRE GT with a smaller TTL")
    eq(r.expire("e:k", 200, gt=True), True, "EXPIRE GT with a greater TTL")
    eq(r.expire("e:k", 300, lt=True), False, "EXPIRE LT with a greater TTL")
    eq(r.pexpire("e:k", 150_000, xx=True), True, "PEXPIRE XX")
    at = int(time.time()) + 1000
    eq(r.expireat("e:k", at), True, "EXPIREAT")
    eq(r.expiretime("e:k"), at, "EXPIRETIME")
    eq(r.pexpireat("e:k", at * 1000 + 500), True, "PEXPIREAT")
    eq(r.pexpiretime("e:k"), at * 1000 + 500, "PEXPIRETIME")
    eq(r.persist("e:k"), True, "PERSIST")
    eq(r.persist("e:k"), False, "PERSIST without a TTL")
    eq(r.expiretime("e:k"), -1, "EXPIRETIME without a TTL")
    eq(r.expiretime("e:missing"), -2, "EXPIRETIME of a missing key")
    r.set("e:short", "v", px=150)
    eq(r.get("e:short"), b"v", "a key before it expires")
    time.sleep(0.4)
    eq(r.get("e:short"), None, "a key after it expired")
    eq(r.exists("e:short"), 0, "EXISTS after expiry")
    eq(r.ttl("e:short"), -2, "TTL after expiry")
    r.set("e:past", "v")
    eq(r.expire("e:past", -1), True, "EXPIRE with a negative TTL")
    eq(r.get("e:past"), None, "a negative TTL deletes")


def keys(r, r2):
    r.flushdb()
    eq(r.dbsize(), 0, "DBSIZE after FLUSHDB")
    r.mset({"k:a": "1", "k:b": "2", "other": "3"})
    eq(r.exists("k:a", "k:b", "k:a", "nope"), 3, "EXISTS counts repeats")
    eq(r.type("k:a"), b"string", "TYPE of a string")
    eq(r.type("nope"), b"none", "TYPE of a missing key")
    eq(sorted(r.keys("k:*")), [b"k:a", b"k:b"], "KEYS with a pattern")
    eq(sorted(r.keys("*")), [b"k:a", b"k:b", b"other"], "KEYS *")
    check(r.randomkey() in (b"k:a", b"k:b", b"other"), "RANDOMKEY")
    eq(r.rename("k:a", "k:c"), True, "RENAME")
    eq(r.get("k:c"), b"1", "RENAME moved the value")
    eq(r.renamenx("k:c", "k:b"), False, "RENAMENX onto an existing key")
    eq(r.renamenx("k:c", "k:d"), True, "RENAMENX")
    raises(lambda: r.rename("nope", "x"), "no such key", "RENAME of a missing key")
    eq(r.unlink("k:d", "nope"), 1, "UNLINK")
    eq(r.dbsize(), 2, "DBSIZE")
    r.flushdb()
    eq(r.dbsize(), 0, "FLUSHDB")
    eq(r.randomkey(), None, "RANDOMKEY of an empty database")


def scan(r, r2):
    r.flushdb()
    want = set()
    p = r.pipeline(transaction=False)
    for i in range(500):
        p.set(f"user:{i}", i)
        want.add(f"user:{i}".encode())
    for i in range(100):
        p.set(f"other:{i}", i)
    p.execute()
    got = list(r.scan_iter(match="user:*", count=37))
    eq(len(got), len(set(got)), "SCAN returned no key twice (no changes during the scan)")
    eq(set(got), want, "scan_iter MATCH")
    eq(len(list(r.scan_iter(count=1000))), 600, "scan_iter of every key")
    eq(len(list(r.scan_iter(match="other:*", _type="string"))), 100, "SCAN TYPE string")
    eq(list(r.scan_iter(_type="hash")), [], "SCAN TYPE hash")
    cursor, page = r.scan(0, match="user:1*", count=10000)
    eq(cursor, 0, "one SCAN with a large COUNT ends the walk")
    eq(len(page), 111, "SCAN MATCH user:1*")


def pipelines(r, r2):
    r.flushdb()
    r.delete("p:n")
    p = r.pipeline(transaction=False)
    for _ in range(1000):
        p.incr("p:n")
    out = p.execute()
    eq(out, list(range(1, 1001)), "1000 pipelined INCRs")
    # An error reply inside a pipeline comes back in place.
    r.set("p:text", "abc")
    p = r.pipeline(transaction=False)
    p.incr("p:n")
    p.incr("p:text")
    p.get("p:n")
    out = p.execute(raise_on_error=False)
    eq(out[0], 1001, "pipeline before an error")
    check(isinstance(out[1], redis.ResponseError), "the error in place")
    eq(out[2], b"1001", "pipeline after an error")


def transactions(r, r2):
    r.flushdb()
    r.set("t:bal", 100)

    def move(pipe):
        bal = int(pipe.get("t:bal"))
        pipe.multi()
        pipe.set("t:bal", bal - 10)
        pipe.incrby("t:moved", 10)

    out = r.transaction(move, "t:bal")
    eq(out, [True, 10], "a WATCH transaction")
    eq(r.get("t:bal"), b"90", "the transaction applied")
    # A conflicting write between WATCH and EXEC: the helper retries.
    tries = []

    def conflicted(pipe):
        bal = int(pipe.get("t:bal"))
        if not tries:
            r2.incr("t:bal")
        tries.append(bal)
        pipe.multi()
        pipe.set("t:bal", bal * 2)

    r.transaction(conflicted, "t:bal")
    eq(tries, [90, 91], "the first EXEC aborted, the retry saw the other write")
    eq(r.get("t:bal"), b"182", "the retry applied")
    # A runtime error inside EXEC: the other commands still apply (Redis).
    r.set("t:text", "abc")
    p = r.pipeline()
    p.set("t:x", "1")
    p.incr("t:text")
    p.set("t:y", "2")
    out = p.execute(raise_on_error=False)
    eq(out[0], True, "EXEC reply 0")
    check(isinstance(out[1], redis.ResponseError), "EXEC reply 1 is the error")
    eq(out[2], True, "EXEC reply 2")
    eq(r.mget("t:x", "t:y"), [b"1", b"2"], "the rest of the transaction applied")
    # An error while queueing (wrong arity): EXECABORT, nothing applied.
    p = r.pipeline()
    p.set("t:z", "1")
    p.execute_command("GET")
    try:
        p.execute()
        raise AssertionError("EXEC after a queueing error did not fail")
    except redis.ResponseError as e:
        check("EXECABORT" in str(e) or "wrong number" in str(e), f"EXECABORT: {e}")
    eq(r.get("t:z"), None, "EXECABORT applied nothing")
    # UNWATCH, then a write by another client: EXEC commits.
    with r.pipeline() as p:
        p.watch("t:bal")
        p.unwatch()
        r2.set("t:bal", 1)
        p.multi()
        p.incr("t:bal")
        eq(p.execute(), [2], "EXEC after UNWATCH")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", type=int, choices=[2, 3], required=True)
    ap.add_argument("--sections", default=",".join(SECTIONS))
    a = ap.parse_args()
    db = a.protocol
    conn = dict(host=a.host, port=a.port, db=db, protocol=a.protocol, socket_timeout=30)
    r = redis.Redis(**conn)
    r2 = redis.Redis(**conn)
    if a.protocol == 3:
        hello = r.execute_command("HELLO", "3")
        eq(hello.get(b"proto", hello.get("proto")), 3, "HELLO 3 reports proto 3")
    for name in a.sections.split(","):
        if name not in SECTIONS:
            print(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}", file=sys.stderr)
            return 2
        globals()[name](r, r2)
        print(f"ok {name} (protocol {a.protocol}, redis-py {redis.__version__})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
