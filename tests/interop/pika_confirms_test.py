#!/usr/bin/python3
"""Interop with python3-pika and publisher confirms: BlockingChannel.confirm_delivery(), 1000
publishes each waited for until the broker confirms it; every 10th is mandatory and unroutable
(pika raises UnroutableError carrying the basic.return 312 NO_ROUTE), every 10th other one is
unroutable without mandatory (confirmed, silently dropped); the rest are consumed with manual
acks and counted exactly. Then a publish to a missing exchange on a confirm channel (404).
Starts its own warrend like pika_test.py, or uses WARREN_TEST_HOST/WARREN_TEST_PORT.
Exit 0 pass, 1 fail, 77 skip. RabbitMQ 3.10.8 passes it."""
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pika_test exits 77 when pika is missing
from pika_test import (  # noqa: E402
    check,
    check_channel_works,
    connection_params,
    expect_channel_error,
    run_test,
)

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

N = 1000


def kind(i):
    """'returned' (mandatory, unroutable), 'dropped' (unroutable) or 'routed'."""
    if i % 10 == 0:
        return "returned"
    if i % 10 == 5:
        return "dropped"
    return "routed"


def main():
    run_test(run)


def run(broker):
    params = connection_params(broker)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()

    qname = f"pika-confirms-{os.getpid()}"
    nowhere = f"pika-confirms-nowhere-{os.getpid()}"
    ch.queue_declare(queue=qname, exclusive=True)

    returned = []
    for i in range(N):
        k = kind(i)
        key = qname if k == "routed" else nowhere
        body = f"{i}".encode()
        try:
            ch.basic_publish(exchange="", routing_key=key, body=body,
                             properties=pika.BasicProperties(message_id=str(i)),
                             mandatory=(k == "returned"))
            check(k != "returned", f"message {i}: mandatory and unroutable but not returned")
        except pika.exceptions.UnroutableError as e:
            check(k == "returned", f"message {i} ({k}) returned: {e!r}")
            check(len(e.messages) == 1, f"message {i}: {len(e.messages)} returned messages")
            ret = e.messages[0]
            check(ret.method.reply_code == 312, f"return code {ret.method.reply_code}")
            check(ret.method.reply_text == "NO_ROUTE", f"return text {ret.method.reply_text!r}")
            check(ret.method.routing_key == nowhere, f"return key {ret.method.routing_key!r}")
            check(ret.body == body, f"returned body {ret.body!r}, want {body!r}")
            check(ret.properties.message_id == str(i), "returned properties differ")
            returned.append(i)
    want_returned = [i for i in range(N) if kind(i) == "returned"]
    want_routed = [i for i in range(N) if kind(i) == "routed"]
    check(returned == want_returned, f"{len(returned)} returned, want {len(want_returned)}")
    print(f"{N} confirmed publishes, {len(returned)} returned as unroutable")

    # Every routed message is in the queue (confirmed means enqueued), and only those.
    ok = ch.queue_declare(queue=qname, passive=True)
    check(ok.method.message_count == len(want_routed),
          f"queue holds {ok.method.message_count}, want {len(want_routed)}")

    got = []

    def on_message(chan, method, properties, body):
        check(not method.redelivered, f"{body!r} redelivered")
        got.append(int(body))
        chan.basic_ack(method.delivery_tag)

    ch.basic_qos(prefetch_count=50)
    tag = ch.basic_consume(queue=qname, on_message_callback=on_message, auto_ack=False)
    deadline = time.monotonic() + 30
    while len(got) < len(want_routed) and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    conn.process_data_events(time_limit=0.3)
    check(got == want_routed,
          f"consumed {len(got)} messages, want {len(want_routed)} in publish order")
    ch.basic_cancel(tag)
    ok = ch.queue_declare(queue=qname, passive=True)
    check(ok.method.message_count == 0, f"{ok.method.message_count} left after acking all")
    print(f"consumed and acked {len(got)} messages in order; queue empty")

    # A publish to a missing exchange on a confirm channel closes that channel with 404.
    bad = conn.channel()
    bad.confirm_delivery()
    missing = f"pika-confirms-missing-{os.getpid()}"
    expect_channel_error(lambda: bad.basic_publish(exchange=missing, routing_key="k", body=b"lost"),
                         404, f"NOT_FOUND - no exchange '{missing}' in vhost '/'",
                         "publish to a missing exchange was confirmed")
    check_channel_works(ch, qname, b"after", "the confirm channel stopped working")
    print("404 on a confirm channel; the other one still confirms")

    ch.close()
    conn.close()


if __name__ == "__main__":
    main()
