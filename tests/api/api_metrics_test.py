#!/usr/bin/python3
"""The Prometheus endpoint (issue 11): warrend with --prometheus-port serves /metrics and
/metrics/per-object in the text exposition format with RabbitMQ's metric names; the output is
read with python3-prometheus-client's own parser, and the values must follow what a pika client
did (connections, channels, consumers, queues, messages published, routed, returned, delivered,
acknowledged, redelivered, dead-lettered). Warren-only: it starts warrend itself."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from api_common import check, fatal, free_port, listening, failures

try:
    import pika
    import requests
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    print(f"SKIP: {e.name} is not installed (apt-get install python3-prometheus-client)")
    sys.exit(77)


def samples(url):
    """{(name, frozenset(labels)): value} of one scrape, parsed by prometheus_client."""
    r = requests.get(url, timeout=10)
    check(r.status_code == 200, f"GET {url}: {r.status_code}")
    check(r.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
          f"content type {r.headers.get('content-type')}")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(got, name, **labels):
    return got.get((name, frozenset(labels.items())))


def main():
    exe = os.environ.get("WARREND")
    if not exe or not os.access(exe, os.X_OK):
        print("SKIP: WARREND is not set")
        sys.exit(77)
    data = tempfile.mkdtemp(prefix="warren-metrics-")
    port, mport, pport = free_port(), free_port(), free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1",
                             "--management-port", str(mport), "--prometheus-port", str(pport),
                             "--data-dir", data, "--log-level", "error"])
    try:
        deadline = time.monotonic() + 10
        while not (listening("127.0.0.1", port) and listening("127.0.0.1", pport)):
            if time.monotonic() > deadline or proc.poll() is not None:
                fatal("warrend did not listen on its AMQP and Prometheus ports")
            time.sleep(0.02)
        url = f"http://127.0.0.1:{pport}/metrics"
        before = samples(url)
        check(value(before, "rabbitmq_connections") == 0, "no connection yet")
        check(any(k[0] == "rabbitmq_build_info" and ("rabbitmq_version", "3.10.8") in k[1]
                  for k in before), "rabbitmq_build_info with its labels")
        check(any(k[0] == "rabbitmq_identity_info" for k in before), "rabbitmq_identity_info")
        check(value(before, "rabbitmq_disk_space_available_bytes") > 0, "disk space")
        check(value(before, "rabbitmq_process_resident_memory_bytes") > 0, "memory")
        check(value(before, "rabbitmq_process_open_fds") > 0, "open fds")

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("m-q", arguments={"x-message-ttl": 0,
                                           "x-dead-letter-exchange": "",
                                           "x-dead-letter-routing-key": "m-dlq"})
        ch.queue_declare("m-dlq")
        ch.queue_declare("m-work")
        for i in range(10):
            ch.basic_publish("", "m-work", b"w%d" % i)
        ch.basic_publish("", "m-q", b"expires at once")
        ch.basic_publish("amq.direct", "nowhere", b"dropped")
        try:
            ch.basic_publish("amq.direct", "nowhere", b"returned", mandatory=True)
        except pika.exceptions.UnroutableError:
            pass
        ch2 = conn.channel()
        got = []
        ch2.basic_qos(prefetch_count=100)
        ch2.basic_consume("m-work", lambda c, m, p, b: got.append(m.delivery_tag))
        deadline = time.monotonic() + 5
        while len(got) < 10 and time.monotonic() < deadline:
            conn.process_data_events(0.05)
        check(len(got) == 10, f"consumed {len(got)} of 10")
        ch2.basic_nack(got[9], requeue=True)          # one comes back, redelivered
        ch2.basic_ack(got[8], multiple=True)           # nine acknowledged
        deadline = time.monotonic() + 5
        while len(got) < 11 and time.monotonic() < deadline:
            conn.process_data_events(0.05)
        check(len(got) == 11, "the nacked message was redelivered")

        now = samples(url)
        proto = {"protocol": "amqp091"}
        expect = {
            "rabbitmq_connections": 1, "rabbitmq_channels": 2, "rabbitmq_consumers": 1,
            "rabbitmq_queues": 3, "rabbitmq_queue_messages": 2,  # m-dlq's letter, 1 unacked
            "rabbitmq_queue_messages_ready": 1, "rabbitmq_queue_messages_unacked": 1,
        }
        for name, want in expect.items():
            check(value(now, name) == want, f"{name} = {value(now, name)}, want {want}")
        totals = {
            "rabbitmq_global_messages_received_total": 13,
            "rabbitmq_global_messages_received_confirm_total": 13,
            "rabbitmq_global_messages_confirmed_total": 13,
            "rabbitmq_global_messages_routed_total": 11,
            "rabbitmq_global_messages_unroutable_dropped_total": 1,
            "rabbitmq_global_messages_unroutable_returned_total": 1,
            "rabbitmq_global_messages_delivered_total": 11,
            "rabbitmq_global_messages_acknowledged_total": 9,
            "rabbitmq_global_messages_redelivered_total": 1,
        }
        for name, want in totals.items():
            check(value(now, name, **proto) == want,
                  f"{name} = {value(now, name, **proto)}, want {want}")
        dl = value(now, "rabbitmq_global_messages_dead_lettered_expired_total",
                   queue_type="rabbit_classic_queue", dead_letter_strategy="at_most_once")
        check(dl == 1, f"dead-lettered (expired) = {dl}, want 1")
        check(value(now, "rabbitmq_connections_opened_total") == 1, "connections opened")
        check(value(now, "rabbitmq_channels_opened_total") == 2, "channels opened")

        detail = samples(url + "/per-object")
        check(value(detail, "rabbitmq_queue_messages", vhost="/", queue="m-dlq") == 1,
              "per-object m-dlq (RabbitMQ's name: rabbitmq_queue_messages{vhost,queue})")
        check(value(detail, "rabbitmq_queue_consumers", vhost="/", queue="m-work") == 1,
              "per-object consumers")
        check(value(detail, "rabbitmq_queue_messages") is None,
              "no aggregate rabbitmq_queue_messages among the per-object series")
        check(requests.get(f"http://127.0.0.1:{pport}/nope", timeout=5).status_code == 404,
              "unknown path 404")
        check(requests.post(url, timeout=5).status_code == 405, "POST /metrics 405")

        conn.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after = samples(url)
            if value(after, "rabbitmq_connections_closed_total") == 1:
                break
            time.sleep(0.05)
        check(value(after, "rabbitmq_connections") == 0 and
              value(after, "rabbitmq_connections_closed_total") == 1 and
              value(after, "rabbitmq_channels_closed_total") == 2,
              "connection and channels counted closed")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(5)
            check(rc in (0, -signal.SIGTERM), f"warrend exited with {rc}")
        except subprocess.TimeoutExpired:
            proc.kill()
            check(False, "warrend ignored SIGTERM")
        shutil.rmtree(data, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("PASS")


if __name__ == "__main__":
    main()
