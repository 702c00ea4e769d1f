#!/usr/bin/env python3
"""Write the golden frame fixtures (tests/fixtures/) and the fuzz seed corpora (tests/fuzz/corpus/
for fuzz_frame, tests/fuzz/corpus-table/ for fuzz_table, tests/fuzz/corpus-conf/ for fuzz_conf,
tests/fuzz/corpus-conn/ for fuzz_conn, tests/fuzz/corpus-http/ for fuzz_http).

This encoder is written from the AMQP 0-9-1 spec and shares no code with protocol/, so the
unit tests that compare the C codec's output to these bytes catch bugs a symmetric
encode/decode round trip cannot. Fixtures:
    frames/*.bin   valid byte streams (some start with the protocol header)
    broken/*.bin   one corruption class each; the file name is the expected status
Every fixture is also a seed, alongside small single-frame seeds. The table seeds are table
bodies (no length prefix) of the kinds a broker meets: clients' client-properties (what pika,
rabbitmq-c and amqplib send), an AMQPLAIN response, declare and binding arguments, headers with
every type, x-death and CC/BCC. The configuration seeds are dist/warren.conf as shipped and
with every key it shows uncommented, the files the integration and interop tests write, the
TLS keys, the lists, and one of each refused line. The connection seeds are whole client
sessions as one byte stream (each synchronous step's answer is not awaited, so an ack follows
a basic.get, which answers in the same turn, not a consume); the HTTP seeds are requests as
clients send them (guest:guest, bodies in JSON, chunked, pipelined, malformed). Usage:
    python3 tests/fuzz/make_corpus.py        # rewrites the fixtures and every corpus in place
"""
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, 'tests', 'fixtures')
CORPUS = os.path.join(ROOT, 'tests', 'fuzz', 'corpus')
CORPUS_TABLE = os.path.join(ROOT, 'tests', 'fuzz', 'corpus-table')
CORPUS_CONF = os.path.join(ROOT, 'tests', 'fuzz', 'corpus-conf')
CORPUS_CONN = os.path.join(ROOT, 'tests', 'fuzz', 'corpus-conn')
CORPUS_HTTP = os.path.join(ROOT, 'tests', 'fuzz', 'corpus-http')

PROTOCOL_HEADER = b'AMQP\x00\x00\x09\x01'
METHOD, HEADER, BODY, HEARTBEAT = 1, 2, 3, 8


def u8(v): return struct.pack('>B', v)
def u16(v): return struct.pack('>H', v)
def u32(v): return struct.pack('>I', v)
def u64(v): return struct.pack('>Q', v)


def shortstr(s):
    b = s.encode() if isinstance(s, str) else s
    assert len(b) <= 255
    return u8(len(b)) + b


def longstr(s):
    b = s.encode() if isinstance(s, str) else s
    return u32(len(b)) + b


def value(t, v):
    """One field value with its RabbitMQ type letter."""
    body = {
        't': lambda: u8(1 if v else 0), 'b': lambda: struct.pack('>b', v),
        'B': lambda: u8(v), 's': lambda: struct.pack('>h', v), 'u': lambda: u16(v),
        'I': lambda: struct.pack('>i', v), 'i': lambda: u32(v), 'l': lambda: struct.pack('>q', v),
        'L': lambda: struct.pack('>q', v),
        'f': lambda: struct.pack('>f', v), 'd': lambda: struct.pack('>d', v),
        'D': lambda: u8(v[0]) + u32(v[1]), 'S': lambda: longstr(v), 'x': lambda: longstr(v),
        'T': lambda: u64(v), 'F': lambda: table(v), 'A': lambda: array(v), 'V': lambda: b'',
    }[t]()
    return t.encode() + body


def table_body(entries):
    return b''.join(shortstr(k) + value(t, v) for k, t, v in entries)


def table(entries):
    return longstr(table_body(entries))


def array(items):
    return longstr(b''.join(value(t, v) for t, v in items))


def bits(*flags):
    """Packs consecutive bit fields into one octet, first field in the low bit."""
    assert len(flags) <= 8
    return u8(sum(1 << i for i, f in enumerate(flags) if f))


def method(class_id, method_id, *fields):
    return u16(class_id) + u16(method_id) + b''.join(fields)


def frame(ftype, channel, payload):
    return u8(ftype) + u16(channel) + u32(len(payload)) + payload + b'\xce'


PROPS = ['content-type:s', 'content-encoding:s', 'headers:F', 'delivery-mode:o', 'priority:o',
         'correlation-id:s', 'reply-to:s', 'expiration:s', 'message-id:s', 'timestamp:T',
         'type:s', 'user-id:s', 'app-id:s', 'reserved:s']


def content_header(body_size, props, class_id=60, extra_flags=0):
    flags, out = extra_flags, b''
    for i, p in enumerate(PROPS):
        name, kind = p.split(':')
        if name not in props:
            continue
        flags |= 1 << (15 - i)
        v = props[name]
        out += {'s': shortstr, 'F': table, 'o': u8, 'T': u64}[kind](v)
    return u16(class_id) + u16(0) + u64(body_size) + u16(flags) + out


# --- the values the unit tests check (keep in sync with tests/unit/test_codec.c) ---------

CLIENT_PROPS = [
    ('product', 'S', 'warren-tests'),
    ('version', 'S', '0.1.0'),
    ('capabilities', 'F', [('publisher_confirms', 't', True),
                           ('consumer_cancel_notify', 't', True),
                           ('connection.blocked', 't', False)]),
]
SERVER_PROPS = [
    ('product', 'S', 'Warren'),
    ('capabilities', 'F', [('exchange_exchange_bindings', 't', True),
                           ('basic.nack', 't', True),
                           ('per_consumer_qos', 't', True)]),
    ('cluster_name', 'S', 'warren@localhost'),
]
ALL_TYPES = [
    ('bool', 't', True), ('i8', 'b', -128), ('u8', 'B', 255), ('i16', 's', -32768),
    ('u16', 'u', 65535), ('i32', 'I', -2147483648), ('u32', 'i', 4294967295),
    ('i64', 'l', -9223372036854775808), ('f32', 'f', 1.5), ('f64', 'd', -0.25),
    ('dec', 'D', (2, 12345)), ('str', 'S', 'caf\u00e9'), ('bin', 'x', b'\x00\xce\xff'),
    ('ts', 'T', 1700000000), ('void', 'V', None),
    ('nested', 'F', [('arr', 'A', [('I', 1), ('S', 'two'),
                                   ('F', [('deep', 'A', [('t', False), ('V', None)])])])]),
    ('empty-table', 'F', []), ('empty-array', 'A', []),
]
ALL_PROPS = {
    'content-type': 'application/json', 'content-encoding': 'gzip', 'headers': ALL_TYPES,
    'delivery-mode': 2, 'priority': 9, 'correlation-id': 'corr-1', 'reply-to': 'amq.rabbitmq.reply-to',
    'expiration': '60000', 'message-id': 'msg-1', 'timestamp': 1700000000, 'type': 'order.created',
    'user-id': 'guest', 'app-id': 'warren-tests', 'reserved': 'cluster-a',
}


def client_session():
    """What a client sends: header, handshake, topology, one publish, close."""
    out = PROTOCOL_HEADER
    out += frame(METHOD, 0, method(10, 11, table(CLIENT_PROPS), shortstr('PLAIN'),
                                   longstr(b'\x00guest\x00guest'), shortstr('en_US')))
    out += frame(METHOD, 0, method(10, 31, u16(2047), u32(131072), u16(60)))
    out += frame(METHOD, 0, method(10, 40, shortstr('/'), shortstr(''), bits(False)))
    out += frame(METHOD, 1, method(20, 10, shortstr('')))
    out += frame(METHOD, 1, method(85, 10, bits(False)))
    out += frame(METHOD, 1, method(40, 10, u16(0), shortstr('ex.topic'), shortstr('topic'),
                                   bits(False, True, False, False, False),
                                   table([('alternate-exchange', 'S', 'ex.ae')])))
    out += frame(METHOD, 1, method(50, 10, u16(0), shortstr('orders'),
                                   bits(False, True, False, False, False),
                                   table([('x-queue-type', 'S', 'classic'),
                                          ('x-message-ttl', 'I', 60000),
                                          ('x-max-length', 'l', 1000000)])))
    out += frame(METHOD, 1, method(50, 20, u16(0), shortstr('orders'), shortstr('ex.topic'),
                                   shortstr('order.#'), bits(False), table([])))
    out += frame(METHOD, 1, method(60, 10, u32(0), u16(100), bits(False)))
    out += frame(METHOD, 1, method(60, 20, u16(0), shortstr('orders'), shortstr('ctag-1'),
                                   bits(False, False, False, False), table([('x-priority', 'I', 5)])))
    out += frame(METHOD, 1, method(60, 40, u16(0), shortstr('ex.topic'), shortstr('order.created'),
                                   bits(True, False)))
    out += frame(HEADER, 1, content_header(5, {'content-type': 'text/plain', 'delivery-mode': 2}))
    out += frame(BODY, 1, b'hello')
    out += frame(HEARTBEAT, 0, b'')
    out += frame(METHOD, 1, method(60, 80, u64(1), bits(False)))
    out += frame(METHOD, 1, method(60, 120, u64(7), bits(True, True)))
    out += frame(METHOD, 1, method(20, 40, u16(200), shortstr('bye'), u16(0), u16(0)))
    out += frame(METHOD, 0, method(10, 50, u16(200), shortstr('Goodbye'), u16(0), u16(0)))
    return out


def server_session():
    """What a server sends back."""
    out = frame(METHOD, 0, method(10, 10, u8(0), u8(9), table(SERVER_PROPS),
                                  longstr('PLAIN AMQPLAIN'), longstr('en_US')))
    out += frame(METHOD, 0, method(10, 30, u16(2047), u32(131072), u16(60)))
    out += frame(METHOD, 0, method(10, 41, shortstr('')))
    out += frame(METHOD, 1, method(20, 11, longstr('')))
    out += frame(METHOD, 1, method(50, 11, shortstr('orders'), u32(3), u32(1)))
    out += frame(METHOD, 1, method(60, 21, shortstr('ctag-1')))
    out += frame(METHOD, 1, method(60, 60, shortstr('ctag-1'), u64(42), bits(True),
                                   shortstr('ex.topic'), shortstr('order.created')))
    out += frame(HEADER, 1, content_header(0, {}))
    out += frame(METHOD, 1, method(60, 71, u64(43), bits(False), shortstr(''), shortstr('orders'),
                                   u32(2)))
    out += frame(HEADER, 1, content_header(3, {'priority': 1}))
    out += frame(BODY, 1, b'abc')
    out += frame(METHOD, 1, method(60, 50, u16(312), shortstr('NO_ROUTE'), shortstr('ex.topic'),
                                   shortstr('nowhere')))
    out += frame(HEADER, 1, content_header(0, {'message-id': 'm'}))
    out += frame(METHOD, 0, method(10, 60, shortstr('low on memory')))
    out += frame(METHOD, 0, method(10, 61))
    out += frame(METHOD, 0, method(10, 51))
    return out


def publish_all_props():
    body = b'{"id": 1, "state": "created"}'
    out = frame(METHOD, 3, method(60, 40, u16(0), shortstr('ex.topic'), shortstr('order.created'),
                                  bits(True, False)))
    out += frame(HEADER, 3, content_header(len(body), ALL_PROPS))
    out += frame(BODY, 3, body[:10])
    out += frame(BODY, 3, body[10:])
    return out


def nested(depth):
    """A headers table holding `depth` tables in total (the outer one included)."""
    entries = [('leaf', 'V', None)]
    for _ in range(depth - 1):
        entries = [('n', 'F', entries)]
    return entries


def broken():
    """name -> bytes; the name is the first status the stream must produce."""
    tune = method(10, 31, u16(2047), u32(131072), u16(60))
    good = frame(METHOD, 0, tune)
    return {
        'frame-end': good + good[:-1] + b'\x00',
        'frame-size': good + u8(BODY) + u16(1) + u32(131072),
        'frame-type': good + frame(4, 1, b'xx'),
        'short': frame(METHOD, 0, tune[:-1]),
        'short-table-length': frame(METHOD, 1, method(50, 10, u16(0), shortstr('q'), bits(),
                                                      u32(100) + b'\x01a')),
        'method': frame(METHOD, 1, method(60, 255)),
        'trailing': frame(METHOD, 0, tune + b'\x00'),
        'field-type': frame(METHOD, 1, method(50, 10, u16(0), shortstr('q'), bits(),
                                              longstr(shortstr('x-arg') + b'U' + u16(1)))),
        'depth': frame(HEADER, 1, content_header(0, {'headers': nested(33)})),
        'flags': frame(HEADER, 1, content_header(0, {'priority': 1}, extra_flags=1)),
        'class': frame(HEADER, 1, content_header(0, {}, class_id=50)),
    }


def table_seeds():
    """name -> table body, for fuzz_table."""
    caps = lambda *names: [(n, 't', True) for n in names]
    return {
        'pika-client-properties': table_body([
            ('product', 'S', 'Pika Python Client Library'), ('platform', 'S', 'Python 3.11.2'),
            ('capabilities', 'F', caps('authentication_failure_close', 'basic.nack',
                                       'connection.blocked', 'consumer_cancel_notify',
                                       'publisher_confirms')),
            ('information', 'S', 'See http://pika.rtfd.org'), ('version', 'S', '1.3.1')]),
        'rabbitmq-c-client-properties': table_body([
            ('product', 'S', 'rabbitmq-c'), ('version', 'S', '0.11.0'), ('platform', 'S', 'Linux'),
            ('copyright', 'S', 'Copyright (c) 2007-2014 VMWare Inc, Tony Garnock-Jones, '
                               'and Alan Antonuk.'),
            ('information', 'S', 'See https://github.com/alanxz/rabbitmq-c'),
            ('capabilities', 'F', caps('authentication_failure_close'))]),
        'amqplib-client-properties': table_body([
            ('product', 'S', 'amqplib'), ('version', 'S', '0.10.3'),
            ('platform', 'S', 'Node.JS v18.19.0'),
            ('information', 'S', 'https://amqp-node.github.io/amqplib/'),
            ('capabilities', 'F', caps('publisher_confirms', 'exchange_exchange_bindings',
                                       'basic.nack', 'consumer_cancel_notify',
                                       'connection.blocked', 'authentication_failure_close')),
            ('connection_name', 'S', 'orders-worker')]),
        'amqplain-response': table_body([('LOGIN', 'S', 'guest'), ('PASSWORD', 'S', 'guest')]),
        'server-properties': table_body(SERVER_PROPS),
        'headers-all-types': table_body(ALL_TYPES),
        'queue-args': table_body([
            ('x-message-ttl', 'I', 60000), ('x-expires', 'l', 3600000), ('x-max-length', 'b', 10),
            ('x-max-length-bytes', 'i', 1048576), ('x-overflow', 'S', 'reject-publish-dlx'),
            ('x-dead-letter-exchange', 'S', 'dlx'), ('x-dead-letter-routing-key', 'S', 'dead'),
            ('x-max-priority', 'B', 10), ('x-single-active-consumer', 't', True),
            ('x-queue-mode', 'S', 'lazy'), ('x-consumer-timeout', 'u', 3000)]),
        'quorum-args': table_body([
            ('x-queue-type', 'S', 'quorum'), ('x-delivery-limit', 's', 3),
            ('x-quorum-initial-group-size', 'I', 3),
            ('x-max-in-memory-length', 'l', 5)]),
        'binding-any-with-x': table_body([
            ('x-match', 'S', 'any-with-x'), ('format', 'S', 'pdf'), ('type', 'x', b'report'),
            ('size', 'd', 1024.0), ('pages', 'D', (0, 12)), ('x-tenant', 'V', None)]),
        'x-death': table_body([
            ('x-death', 'A', [('F', [('count', 'l', 2), ('reason', 'S', 'expired'),
                                     ('queue', 'S', 'work'), ('time', 'T', 1700000000),
                                     ('exchange', 'S', ''),
                                     ('routing-keys', 'A', [('S', 'work')]),
                                     ('original-expiration', 'S', '100')])]),
            ('x-first-death-exchange', 'S', ''), ('x-first-death-queue', 'S', 'work'),
            ('x-first-death-reason', 'S', 'expired')]),
        'cc-bcc': table_body([('CC', 'A', [('S', 'a'), ('S', 'b')]), ('BCC', 'A', [('S', 'c')]),
                              ('L', 'L', 5), ('f', 'f', float('nan'))]),
    }


def conf_seeds():
    """name -> rabbitmq.conf text, for fuzz_conf."""
    with open(os.path.join(ROOT, 'dist', 'warren.conf'), 'rb') as f:
        shipped = f.read()
    # Every "#key = value" and "#   e.g. key = value" line of the shipped file, as a setting.
    keys = []
    for line in shipped.decode().splitlines():
        if line.startswith('#   e.g. ') and ' = ' in line:
            keys.append(line[len('#   e.g. '):])
        elif line.startswith('#') and line[1:2] not in ('#', ' ', '') and ' = ' in line:
            keys.append(line[1:])
    return {
        'warren.conf': shipped,
        'all-keys.conf': '\n'.join(keys).replace('/etc/warren/definitions.json', '/dev/null')
                         .encode() + b'\n',
        # tests/integration/10-connection-config.c: a file as an operator keeps it.
        'operator.conf': b'# rabbitmq.conf as an operator keeps it\n'
                         b'listeners.tcp.default = 5673\nheartbeat = 7\n'
                         b'frame_max = 16384   # bytes\nchannel_max = 99\n\n'
                         b'consumer_timeout = 900000\nmax_message_size = 1048576\n'
                         b'vm_memory_high_watermark.relative = 0.5\nlog.console.level = warning\n'
                         b'default_user = guest\ndefault_pass = guest\ndefault_vhost = /\n'
                         b'default_user_tags.administrator = true\n'
                         b'default_permissions.configure = .*\ndefault_permissions.write = .*\n'
                         b'default_permissions.read = .*\nloopback_users.guest = true\n'
                         b'disk_free_limit.absolute = 50MB\n',
        # tests/interop/tls_test.py: AMQPS with client certificates (readable files: /dev/null).
        'tls.conf': b'listeners.ssl.default = 127.0.0.1:5671\nlisteners.tcp = none\n'
                    b'ssl_options.cacertfile = /dev/null\nssl_options.certfile = /dev/null\n'
                    b'ssl_options.keyfile = /dev/null\nssl_options.password = secret\n'
                    b'ssl_options.verify = verify_peer\nssl_options.fail_if_no_peer_cert = false\n'
                    b'ssl_options.versions.1 = tlsv1.3\nssl_options.versions.2 = tlsv1.2\n'
                    b'ssl_options.ciphers.1 = TLS_AES_256_GCM_SHA384\n'
                    b'ssl_options.ciphers.2 = ECDHE-RSA-AES128-GCM-SHA256\n'
                    b'ssl_options.honor_cipher_order = true\nssl_options.depth = 2\n'
                    b'auth_mechanisms.1 = PLAIN\nauth_mechanisms.2 = AMQPLAIN\n'
                    b'auth_mechanisms.3 = EXTERNAL\nssl_handshake_timeout = 1500\n'
                    b'ssl_cert_login_from = common_name\nmanagement.ssl.port = 15671\n'
                    b'management.ssl.ip = 127.0.0.1\nmanagement.ssl.certfile = /dev/null\n'
                    b'prometheus.ssl.port = 15691\nencryption.key_command = cat key\n',
        'lists.conf': b'loopback_users = none\nloopback_users.alice = true\n'
                      b'loopback_users.guest = false\nloopback_users.bob = true\n'
                      b'default_user_tags.monitoring = true\n'
                      b'default_user_tags.administrator = false\n'
                      b'listeners.tcp.a = [::1]:5673\nlisteners.tcp.b = ::1:5674\n'
                      b'listeners.tcp.c = 0.0.0.0:5675\nlisteners.tcp.a = 5676\n'
                      b'management.tcp.port = none\nprometheus.tcp.ip = ::1\n',
        'bad-key.conf': b'listeners.tcp.default = 5672\n# a comment\nlistners.tcp.default = 5672\n',
        'bad-port.conf': b'heartbeat = 30\nlisteners.tcp.default = 99999\n',
        'bad-line.conf': b'listeners.tcp.default = 5672\nthis is not a setting\n',
        'section.conf': b'[rabbit]\nheartbeat = abc\n',
    }


# --- whole client sessions, for fuzz_conn -------------------------------------------------

def m(ch, class_id, method_id, *fields):
    return frame(METHOD, ch, method(class_id, method_id, *fields))


def login(user='guest', password='guest', vhost='/', mechanism='PLAIN', props=CLIENT_PROPS):
    if mechanism == 'AMQPLAIN':
        response = table_body([('LOGIN', 'S', user), ('PASSWORD', 'S', password)])
    else:
        response = b'\x00' + user.encode() + b'\x00' + password.encode()
    return (PROTOCOL_HEADER +
            m(0, 10, 11, table(props), shortstr(mechanism), longstr(response), shortstr('en_US')) +
            m(0, 10, 31, u16(2047), u32(131072), u16(0)) +
            m(0, 10, 40, shortstr(vhost), shortstr(''), bits(False)))


def channel_open(ch):
    return m(ch, 20, 10, shortstr(''))


def queue_declare(ch, name, durable=False, exclusive=True, auto_delete=False, args=()):
    return m(ch, 50, 10, u16(0), shortstr(name), bits(False, durable, exclusive, auto_delete, False),
             table(list(args)))


def publish(ch, exchange, key, body, props=None, mandatory=False):
    props = props or {}
    return (m(ch, 60, 40, u16(0), shortstr(exchange), shortstr(key), bits(mandatory, False)) +
            frame(HEADER, ch, content_header(len(body), props)) +
            (frame(BODY, ch, body) if body else b''))


def get(ch, queue, no_ack=False):
    return m(ch, 60, 70, u16(0), shortstr(queue), bits(no_ack))


def close_all(ch=1):
    return (m(ch, 20, 40, u16(200), shortstr('bye'), u16(0), u16(0)) +
            m(0, 10, 50, u16(200), shortstr('Goodbye'), u16(0), u16(0)))


def conn_seeds():
    """name -> the byte stream a client writes on one connection."""
    persistent = {'delivery-mode': 2, 'content-type': 'text/plain'}
    return {
        'get-ack': login() + channel_open(1) + queue_declare(1, 'fz-get') +
                   publish(1, '', 'fz-get', b'one', persistent) + publish(1, '', 'fz-get', b'two') +
                   get(1, 'fz-get') + m(1, 60, 80, u64(1), bits(False)) +
                   get(1, 'fz-get') + m(1, 60, 120, u64(2), bits(False, True)) +
                   get(1, 'fz-get', no_ack=True) + m(1, 50, 30, u16(0), shortstr('fz-get'), bits(False)) +
                   close_all(),
        'consume-confirm': login() + channel_open(1) + m(1, 85, 10, bits(False)) +
                           m(1, 40, 10, u16(0), shortstr('fz.topic'), shortstr('topic'),
                             bits(False, False, True, False, False), table([])) +
                           queue_declare(1, 'fz-c', args=[('x-max-priority', 'b', 5)]) +
                           m(1, 50, 20, u16(0), shortstr('fz-c'), shortstr('fz.topic'),
                             shortstr('a.#'), bits(False), table([])) +
                           m(1, 60, 10, u32(0), u16(10), bits(False)) +
                           m(1, 60, 20, u16(0), shortstr('fz-c'), shortstr('ctag'),
                             bits(False, False, False, False), table([('x-priority', 'I', 1)])) +
                           publish(1, 'fz.topic', 'a.b', b'hello', {'priority': 3}, mandatory=True) +
                           publish(1, 'fz.topic', 'nowhere', b'lost', mandatory=True) +
                           m(1, 60, 110, bits(True)) + m(1, 60, 30, shortstr('ctag'), bits(False)) +
                           m(1, 50, 50, u16(0), shortstr('fz-c'), shortstr('fz.topic'),
                             shortstr('a.#'), table([])) +
                           m(1, 40, 20, u16(0), shortstr('fz.topic'), bits(False, False)) +
                           close_all(),
        'tx': login() + channel_open(1) + m(1, 90, 10) + queue_declare(1, 'fz-tx') +
              publish(1, '', 'fz-tx', b'in a transaction') + m(1, 90, 20) +
              get(1, 'fz-tx') + m(1, 60, 90, u64(1), bits(True)) + m(1, 90, 30) + close_all(),
        'dead-letter': login() + channel_open(1) +
                       m(1, 40, 10, u16(0), shortstr('fz.dlx'), shortstr('fanout'),
                         bits(False, False, True, False, False), table([])) +
                       queue_declare(1, 'fz-dead') +
                       m(1, 50, 20, u16(0), shortstr('fz-dead'), shortstr('fz.dlx'), shortstr(''),
                         bits(False), table([])) +
                       queue_declare(1, 'fz-work', args=[('x-dead-letter-exchange', 'S', 'fz.dlx'),
                                                         ('x-message-ttl', 'I', 0),
                                                         ('x-max-length', 'I', 1),
                                                         ('x-overflow', 'S', 'drop-head')]) +
                       publish(1, '', 'fz-work', b'a', {'expiration': '0'}) +
                       publish(1, '', 'fz-work', b'b') + get(1, 'fz-dead') +
                       m(1, 60, 90, u64(1), bits(False)) + close_all(),
        'headers-exchange': login(mechanism='AMQPLAIN') + channel_open(1) + channel_open(2) +
                            m(1, 40, 10, u16(0), shortstr('fz.h'), shortstr('headers'),
                              bits(False, False, True, False, False), table([])) +
                            queue_declare(1, 'fz-h') +
                            m(1, 50, 20, u16(0), shortstr('fz-h'), shortstr('fz.h'), shortstr(''),
                              bits(False), table([('x-match', 'S', 'any'), ('k', 'I', 1),
                                                  ('L', 'L', 5)])) +
                            publish(2, 'fz.h', '', b'h', {'headers': [('k', 'l', 1)]}) +
                            publish(2, 'fz.h', '', b'all', {'headers': ALL_TYPES}) +
                            get(1, 'fz-h', True) + m(2, 20, 20, bits(True)) +
                            m(0, 10, 70, longstr('guest'), shortstr('refresh')) + close_all(2),
        'reply-to': login() + channel_open(1) + queue_declare(1, 'fz-rpc') +
                    m(1, 60, 20, u16(0), shortstr('amq.rabbitmq.reply-to'), shortstr(''),
                      bits(False, True, False, False), table([])) +
                    publish(1, '', 'fz-rpc', b'ping', {'reply-to': 'amq.rabbitmq.reply-to',
                                                        'correlation-id': '1'}) +
                    get(1, 'fz-rpc', True) + close_all(),
        'quorum-durable': login() + channel_open(1) +
                          queue_declare(1, 'fz-qq', durable=True, exclusive=False,
                                        args=[('x-queue-type', 'S', 'quorum'),
                                              ('x-delivery-limit', 'I', 1)]) +
                          m(1, 85, 10, bits(False)) +
                          publish(1, '', 'fz-qq', b'durable', persistent) + get(1, 'fz-qq') +
                          m(1, 60, 90, u64(1), bits(True)) + get(1, 'fz-qq') +
                          m(1, 60, 90, u64(2), bits(True)) +
                          m(1, 50, 40, u16(0), shortstr('fz-qq'), bits(False, False, False)) +
                          close_all(),
        'bad-login': login(password='wrong'),
        'no-vhost': login(vhost='nowhere') + channel_open(1),
        'unopened-channel': login() + get(3, 'q') + close_all(3),
        'split-body': login() + channel_open(1) + queue_declare(1, 'fz-big') +
                      m(1, 60, 40, u16(0), shortstr(''), shortstr('fz-big'), bits(False, False)) +
                      frame(HEADER, 1, content_header(6000, {})) + frame(BODY, 1, b'x' * 4000) +
                      frame(BODY, 1, b'y' * 2000) + get(1, 'fz-big', True) + close_all(),
        'header-only': PROTOCOL_HEADER,
        'wrong-protocol': b'AMQP\x01\x01\x00\x0a',
    }


# --- management API requests, for fuzz_http -------------------------------------------------

AUTH = 'Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n'


def http(verb, path, body=None, headers='', close=False, auth=True):
    out = '%s %s HTTP/1.1\r\nHost: localhost\r\n%s%s' % (verb, path, AUTH if auth else '', headers)
    if body is not None:
        out += 'Content-Type: application/json\r\nContent-Length: %d\r\n' % len(body.encode())
    if close:
        out += 'Connection: close\r\n'
    out += '\r\n' + (body or '')
    return out.encode()


def chunked(verb, path, pieces):
    out = ('%s %s HTTP/1.1\r\nHost: localhost\r\n%sContent-Type: application/json\r\n'
           'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n' % (verb, path, AUTH))
    for p in pieces:
        out += '%x\r\n%s\r\n' % (len(p.encode()), p)
    return (out + '0\r\n\r\n').encode()


def http_seeds():
    """name -> the bytes an HTTP client writes on one connection."""
    defs = ('{"rabbit_version":"3.10.8","users":[{"name":"fz","password":"fz","tags":""}],'
            '"vhosts":[{"name":"fzv"}],"permissions":[{"user":"fz","vhost":"fzv","configure":".*",'
            '"write":".*","read":".*"}],"queues":[{"name":"fzq","vhost":"fzv","durable":true,'
            '"auto_delete":false,"arguments":{"x-max-length":5}}],"exchanges":[{"name":"fzx",'
            '"vhost":"fzv","type":"direct","durable":true,"auto_delete":false,"internal":false,'
            '"arguments":{}}],"bindings":[{"source":"fzx","vhost":"fzv","destination":"fzq",'
            '"destination_type":"queue","routing_key":"k","arguments":{}}],"policies":[]}')
    return {
        'overview': http('GET', '/api/overview', close=True),
        'reads': http('GET', '/api/whoami') + http('GET', '/api/nodes') +
                 http('GET', '/api/queues?page=1&page_size=10&name=q&use_regex=false') +
                 http('HEAD', '/api/exchanges/%2F') + http('GET', '/api/connections', close=True),
        'queue-cycle': http('PUT', '/api/queues/%2F/q1',
                            '{"durable":false,"auto_delete":true,"arguments":{"x-message-ttl":1000}}') +
                       http('PUT', '/api/exchanges/%2F/x1', '{"type":"topic","durable":false}') +
                       http('POST', '/api/bindings/%2F/e/x1/q/q1', '{"routing_key":"a.#","arguments":{}}') +
                       http('POST', '/api/exchanges/%2F/x1/publish',
                            '{"properties":{"headers":{"h":1}},"routing_key":"a.b","payload":"hi",'
                            '"payload_encoding":"string"}') +
                       http('POST', '/api/queues/%2F/q1/get',
                            '{"count":1,"ackmode":"ack_requeue_false","encoding":"auto"}') +
                       http('DELETE', '/api/queues/%2F/q1/contents') +
                       http('DELETE', '/api/queues/%2F/q1?if-unused=true') +
                       http('DELETE', '/api/exchanges/%2F/x1', close=True),
        'tenancy': http('PUT', '/api/vhosts/v1', '{"description":"fuzz","tags":"a,b"}') +
                   http('PUT', '/api/users/u1', '{"password":"p","tags":"management"}') +
                   http('PUT', '/api/permissions/v1/u1', '{"configure":".*","write":".*","read":"^a"}') +
                   http('PUT', '/api/topic-permissions/v1/u1', '{"exchange":"amq.topic","write":".*","read":".*"}') +
                   http('PUT', '/api/vhost-limits/v1/max-queues', '{"value":10}') +
                   http('PUT', '/api/user-limits/u1/max-connections', '{"value":2}') +
                   http('DELETE', '/api/users/u1') + http('DELETE', '/api/vhosts/v1', close=True),
        'policy': http('PUT', '/api/policies/%2F/p1',
                       '{"pattern":"^q","definition":{"max-length":5,"dead-letter-exchange":"dlx"},'
                       '"priority":1,"apply-to":"queues"}') +
                  http('PUT', '/api/parameters/vhost-limits/%2F/limits', '{"value":{"max-queues":9}}') +
                  http('PUT', '/api/global-parameters/cluster_name', '{"value":"fz"}') +
                  http('DELETE', '/api/policies/%2F/p1', close=True),
        'definitions': http('POST', '/api/definitions', defs) +
                       http('GET', '/api/definitions', close=True),
        'malformed-json': http('PUT', '/api/queues/%2F/q2', '{"durable":tru', close=True),
        'chunked': chunked('PUT', '/api/queues/%2F/q3', ['{"durable":', 'false,"arguments":{}}']),
        'no-auth': http('GET', '/api/overview', auth=False, close=True),
        'bad-auth': b'GET /api/overview HTTP/1.1\r\nAuthorization: Basic !!!\r\n\r\n',
        'expect-continue': http('PUT', '/api/users/u2', '{"password_hash":"","tags":""}',
                                headers='Expect: 100-continue\r\n', close=True),
        'not-http': b'\x16\x03\x01\x00\x05hello',
    }


def write(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), 'wb') as f:
        f.write(data)


def main():
    frames = {
        'client-session.bin': client_session(),
        'server-session.bin': server_session(),
        'publish-all-props.bin': publish_all_props(),
    }
    for name, data in frames.items():
        write(os.path.join(FIXTURES, 'frames'), name, data)
        write(CORPUS, name, data)
    for name, data in broken().items():
        write(os.path.join(FIXTURES, 'broken'), name + '.bin', data)
        write(CORPUS, 'broken-' + name + '.bin', data)
    # Small single-frame seeds, so mutations start close to each decoder branch.
    seeds = {
        'heartbeat': frame(HEARTBEAT, 0, b''),
        'protocol-header': PROTOCOL_HEADER,
        'tune': frame(METHOD, 0, method(10, 30, u16(0), u32(131072), u16(0))),
        'queue-declare-bits': frame(METHOD, 1, method(50, 10, u16(0), shortstr('q'),
                                                      bits(True, False, True, False, True), table([]))),
        'queue-delete': frame(METHOD, 1, method(50, 40, u16(0), shortstr('q'),
                                                bits(True, True, False))),
        'exchange-bind': frame(METHOD, 1, method(40, 30, u16(0), shortstr('d'), shortstr('s'),
                                                 shortstr('k'), bits(False),
                                                 table([('x-match', 'S', 'all')]))),
        'update-secret': frame(METHOD, 0, method(10, 70, longstr('token'), shortstr('refresh'))),
        'header-all-types': frame(HEADER, 1, content_header(1, {'headers': ALL_TYPES})),
        'header-no-props': frame(HEADER, 1, content_header(0, {})),
        'header-depth-32': frame(HEADER, 1, content_header(0, {'headers': nested(32)})),
        'array-of-tables': frame(METHOD, 1, method(60, 20, u16(0), shortstr('q'), shortstr(''),
                                                   bits(), table([('x-args', 'A', [
                                                       ('F', [('a', 'b', -1)]),
                                                       ('A', [('d', 2.5), ('x', b'')]),
                                                   ])]))),
    }
    for name, data in seeds.items():
        write(CORPUS, name + '.bin', data)
    for name, data in table_seeds().items():
        write(CORPUS_TABLE, name + '.bin', data)
    for name, data in conf_seeds().items():
        write(CORPUS_CONF, name, data)
    for name, data in conn_seeds().items():
        write(CORPUS_CONN, name + '.bin', data)
    for name, data in http_seeds().items():
        write(CORPUS_HTTP, name + '.http', data)
    return 0


if __name__ == '__main__':
    sys.exit(main())
