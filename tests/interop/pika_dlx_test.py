#!/usr/bin/python3
"""Interop with python3-pika: the retry pattern Celery/kombu-style applications build from
dead-lettering. A work queue dead-letters rejected messages (basic.reject requeue=False) through a
retry exchange into a delay queue with x-message-ttl; the delay queue dead-letters expired
messages back through the work exchange into the work queue. A consumer rejects each task until
x-death says it was rejected RETRIES times, then acks it.
Checked: every task comes back with the (work, rejected) and (delay, expired) counts going up by
one per round, x-death exactly as RabbitMQ 3.10.8 writes it for two entries (the delay entry,
updated last, first; count a 64-bit int, time a timestamp, routing-keys a list of str; the work
entry keeps the task's original-expiration, the delay one has none), the
x-first-death-* headers of the first rejection, the application's own headers and properties
kept, the expiration-free copies, and the exact totals (deliveries, rejects, acks, queues empty).
Starts its own warrend like pika_test.py, or uses WARREN_TEST_HOST/WARREN_TEST_PORT.
Exit 0 pass, 1 fail, 77 skip. RabbitMQ 3.10.8 passes it."""
import datetime
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pika_test exits 77 when pika is missing
from pika_test import check, connection_params, fail, run_test  # noqa: E402

import pika  # noqa: E402
import pika.compat  # noqa: E402

TASKS = 5
RETRIES = 3
DELAY_MS = 200


def main():
    run_test(run)


def death(entry, queue, reason, count, exchange, routing_keys, original_expiration=None):
    """One x-death table as pika decodes it; time checked against the wall clock."""
    check(isinstance(entry, dict), f"x-death entry is {type(entry).__name__}, not a table")
    keys = sorted(entry.keys())
    want_keys = ["count", "exchange", "queue", "reason", "routing-keys", "time"]
    if original_expiration is not None:
        want_keys = sorted(want_keys + ["original-expiration"])
        check(entry.get("original-expiration") == original_expiration,
              f"x-death original-expiration {entry.get('original-expiration')!r}")
    check(keys == want_keys, f"x-death entry keys {keys}, want {want_keys}")
    check(entry["queue"] == queue, f"x-death queue {entry['queue']!r}, want {queue!r}")
    check(entry["reason"] == reason, f"x-death reason {entry['reason']!r}, want {reason!r}")
    # pika decodes 64-bit field values ('l', 'L') as pika.compat.long and 32-bit ones as int
    check(isinstance(entry["count"], pika.compat.long) and entry["count"] == count,
          f"x-death count {entry['count']!r} ({type(entry['count']).__name__}) for "
          f"{queue}/{reason}, want {count} as a 64-bit integer")
    check(entry["exchange"] == exchange,
          f"x-death exchange {entry['exchange']!r}, want {exchange!r}")
    check(entry["routing-keys"] == routing_keys,
          f"x-death routing-keys {entry['routing-keys']!r}, want {routing_keys!r}")
    t = entry["time"]
    check(isinstance(t, datetime.datetime), f"x-death time is {type(t).__name__}, not a timestamp")
    skew = abs(t.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time())
    check(skew < 120, f"x-death time {t} is {skew:.0f} s off the wall clock")


def run(broker):
    params = connection_params(broker)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()

    tag = f"pika-dlx-{os.getpid()}"
    work_x, retry_x = f"{tag}.tasks", f"{tag}.retry"
    work_q, delay_q = f"{tag}.work", f"{tag}.delay"
    ch.exchange_declare(exchange=work_x, exchange_type="direct", auto_delete=True)
    ch.exchange_declare(exchange=retry_x, exchange_type="direct", auto_delete=True)
    ch.queue_declare(queue=work_q, arguments={
        "x-dead-letter-exchange": retry_x,
        "x-dead-letter-routing-key": "retry",
    })
    ch.queue_declare(queue=delay_q, arguments={
        "x-message-ttl": DELAY_MS,
        "x-dead-letter-exchange": work_x,
        "x-dead-letter-routing-key": "task",
    })
    ch.queue_bind(queue=work_q, exchange=work_x, routing_key="task")
    ch.queue_bind(queue=delay_q, exchange=retry_x, routing_key="retry")

    for i in range(TASKS):
        ch.basic_publish(work_x, "task", f"task-{i}".encode(), pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=f"id-{i}",
            correlation_id=f"corr-{i}", headers={"task": "tasks.add", "id": i},
            expiration="60000"))

    seen = {f"task-{i}": [] for i in range(TASKS)}
    deliveries = rejects = acks = 0
    done = 0
    deadline = time.monotonic() + 30
    ch.basic_qos(prefetch_count=10)
    for method, props, body in ch.consume(work_q, inactivity_timeout=0.2):
        if done == TASKS:
            break
        check(time.monotonic() < deadline,
              f"only {done} of {TASKS} tasks finished in 30 s; rounds seen {seen}")
        if method is None:
            continue
        deliveries += 1
        name = body.decode()
        check(name in seen, f"unexpected body {name!r}")
        i = int(name.split("-")[1])
        check(props.message_id == f"id-{i}" and props.correlation_id == f"corr-{i}"
              and props.content_type == "application/json" and props.delivery_mode == 2,
              f"{name}: properties changed: {props}")
        h = props.headers or {}
        check(h.get("task") == "tasks.add" and h.get("id") == i, f"{name}: headers lost: {h}")
        deaths = h.get("x-death")
        if deaths is None:
            rounds = 0
            check(props.expiration == "60000", f"{name}: expiration {props.expiration!r}")
            check(not any(k.startswith("x-") for k in h), f"{name}: x- headers on first try {h}")
        else:
            check(isinstance(deaths, list) and len(deaths) == 2,
                  f"{name}: x-death is {deaths!r}")
            rounds = deaths[1].get("count")
            death(deaths[0], delay_q, "expired", rounds, retry_x, ["retry"])
            death(deaths[1], work_q, "rejected", rounds, work_x, ["task"], "60000")
            check(props.expiration is None, f"{name}: dead letter kept expiration")
            check(h.get("x-first-death-queue") == work_q
                  and h.get("x-first-death-reason") == "rejected"
                  and h.get("x-first-death-exchange") == work_x,
                  f"{name}: x-first-death-* {h}")
            # RabbitMQ 3.10.8 writes no x-last-death-* (3.13 does; issue 5 asks for them):
            # allowed, but then they name the most recent death, x-death's first entry
            last = {k: v for k, v in h.items() if k.startswith("x-last-death-")}
            if last:
                check(last == {"x-last-death-exchange": retry_x,
                               "x-last-death-queue": delay_q,
                               "x-last-death-reason": "expired"},
                      f"{name}: x-last-death-* {last}")
        seen[name].append(rounds)
        if rounds < RETRIES:
            ch.basic_reject(method.delivery_tag, requeue=False)
            rejects += 1
        else:
            ch.basic_ack(method.delivery_tag)
            acks += 1
            done += 1
    ch.cancel()

    for name, rounds in seen.items():
        check(rounds == list(range(RETRIES + 1)), f"{name}: x-death counts seen {rounds}")
    check(deliveries == TASKS * (RETRIES + 1), f"{deliveries} deliveries")
    check(rejects == TASKS * RETRIES and acks == TASKS, f"{rejects} rejects, {acks} acks")
    for q in (work_q, delay_q):
        n = ch.queue_declare(queue=q, passive=True).method.message_count
        check(n == 0, f"{q} still holds {n} messages")
        ch.queue_delete(queue=q)
    conn.close()
    print(f"{TASKS} tasks retried {RETRIES} times each through {delay_q} "
          f"({deliveries} deliveries, {rejects} rejects, {acks} acks)")


if __name__ == "__main__":
    main()
