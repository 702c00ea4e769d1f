#!/usr/bin/env node
// Interop with amqplib (node, from npm, installed into tests/interop/amqplib/node_modules by
// `npm ci --prefix tests/interop/amqplib`): a topic exchange, two queues bound with patterns,
// 200 messages published with every property, consumed with manual acks and prefetch, each
// checked field by field, exact counts on both queues.
// Starts its own warrend ($WARREND, free port, temp data dir) unless WARREN_TEST_HOST and
// WARREN_TEST_PORT name a broker to use. Exit 0 pass, 1 fail, 77 skip (no amqplib installed,
// or nothing to test against).
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const util = require('util');

let amqp;
try {
  amqp = require(path.join(__dirname, 'amqplib', 'node_modules', 'amqplib'));
} catch (e) {
  console.log('SKIP: amqplib is not installed (npm ci --prefix tests/interop/amqplib)');
  process.exit(77);
}

const N = 200;

class Failure extends Error {}

function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

// warrend on a free port with a temp data dir, or an external broker.
class Broker {
  async start() {
    this.proc = null;
    this.dataDir = null;
    const host = process.env.WARREN_TEST_HOST;
    const port = process.env.WARREN_TEST_PORT;
    if (host && port) {
      this.host = host;
      this.port = Number(port);
      console.log(`using external broker ${host}:${port}`);
      return;
    }
    const exe = process.env.WARREND;
    let runnable = false;
    try {
      fs.accessSync(exe || '', fs.constants.X_OK);
      runnable = !!exe;
    } catch (e) {
      runnable = false;
    }
    if (!runnable) {
      console.log('SKIP: WARREND is not set and WARREN_TEST_HOST/PORT are not set');
      process.exit(77);
    }
    this.host = '127.0.0.1';
    this.dataDir = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'warren-amqplib-'));
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = await freePort();
      this.exited = null;
      this.proc = childProcess.spawn(exe, ['--port', String(this.port), '--bind', '127.0.0.1',
        '--data-dir', this.dataDir, '--log-level', 'warn'], { stdio: ['ignore', 'inherit', 'inherit'] });
      this.proc.on('exit', (code, signal) => { this.exited = { code, signal }; });
      const deadline = Date.now() + 10000;
      while (Date.now() < deadline && !this.exited) {
        if (await canConnect(this.host, this.port)) {
          console.log(`started ${exe} on 127.0.0.1:${this.port} (pid ${this.proc.pid})`);
          return;
        }
        await sleep(20);
      }
      if (!this.exited) {
        await this.stop();
        throw new Failure('warrend did not listen within 10 s');
      }
    }
    await this.stop();
    throw new Failure('warrend exited before listening (3 attempts)');
  }

  // SIGTERM, 5 s, SIGKILL. Resolves false when warrend had died or exited badly.
  async stop() {
    let ok = true;
    if (this.proc) {
      if (this.exited) {
        console.error(`warrend died during the test (${util.inspect(this.exited)})`);
        ok = false;
      } else {
        this.proc.kill('SIGTERM');
        const deadline = Date.now() + 5000;
        while (!this.exited && Date.now() < deadline) await sleep(10);
        if (!this.exited) {
          this.proc.kill('SIGKILL');
          while (!this.exited) await sleep(10);
          console.error('warrend ignored SIGTERM for 5 s');
          ok = false;
        } else if (!(this.exited.code === 0 || this.exited.signal === 'SIGTERM')) {
          console.error(`warrend exited badly on SIGTERM (${util.inspect(this.exited)})`);
          ok = false;
        }
      }
      this.proc = null;
    }
    if (this.dataDir) {
      fs.rmSync(this.dataDir, { recursive: true, force: true });
      this.dataDir = null;
    }
    return ok;
  }
}

// ---- what message i looks like ----------------------------------------------------------------

function routingKey(i) {
  return `interop.${i % 2 ? 'odd' : 'even'}.${i}`;
}

function bodyFor(i) {
  const size = i % 40 === 0 ? [0, 1, 131064, 131065, 300000][(i / 40) % 5] : (i * 37) % 1000;
  const b = Buffer.alloc(size);
  for (let k = 0; k < size; k++) b[k] = (i + k * 7) & 0xff;
  return b;
}

function headersFor(i) {
  return {
    str: `value ${i}`,
    utf8: 'sträng ✓',
    int: i,
    neg: -i - 1,
    big: 2 ** 40 + i,
    float: i + 0.5,
    bool: i % 2 === 0,
    none: null,
    list: [1, 'two', [true, null], { k: 'v' }],
    nested: { level: 1, deeper: { level: 2, list: [i, -i - 1] } },
    bytes: Buffer.from([0, 1, 0xff, i & 0xff]),
  };
}

function optionsFor(i) {
  return {
    contentType: 'application/octet-stream',
    contentEncoding: 'identity',
    headers: headersFor(i),
    deliveryMode: i % 2 ? 2 : 1,
    priority: i % 10,
    correlationId: `corr-${i}`,
    replyTo: `reply-${i}`,
    expiration: '3600000',
    messageId: `msg-${i}`,
    timestamp: 1700000000 + i,
    type: 'amqplib-test',
    userId: 'guest',
    appId: 'warren-interop',
  };
}

const PROPS = ['contentType', 'contentEncoding', 'deliveryMode', 'priority', 'correlationId',
  'replyTo', 'expiration', 'messageId', 'timestamp', 'type', 'userId', 'appId'];

function checkMessage(i, msg, x, queue) {
  const want = optionsFor(i);
  check(msg.fields.exchange === x, `message ${i}: exchange ${msg.fields.exchange}`);
  check(msg.fields.routingKey === routingKey(i), `message ${i}: routing key ${msg.fields.routingKey}`);
  check(msg.fields.redelivered === false, `message ${i}: redelivered`);
  check(msg.content.equals(bodyFor(i)), `message ${i} on ${queue}: body of ${msg.content.length}`
    + ` octets differs (want ${bodyFor(i).length})`);
  for (const p of PROPS) {
    check(msg.properties[p] === want[p],
      `message ${i}: ${p} ${util.inspect(msg.properties[p])} != ${util.inspect(want[p])}`);
  }
  check(util.isDeepStrictEqual(msg.properties.headers, want.headers),
    `message ${i}: headers ${util.inspect(msg.properties.headers, { depth: 5 })} != `
    + `${util.inspect(want.headers, { depth: 5 })}`);
}

// ---- the test ---------------------------------------------------------------------------------

async function run(broker) {
  const url = `amqp://guest:guest@${broker.host}:${broker.port}/%2F`;
  const conn = await amqp.connect(url, { timeout: 10000 });
  conn.on('error', (e) => console.error(`connection error: ${e.message}`));
  const caps = conn.connection.serverProperties.capabilities || {};
  for (const cap of ['publisher_confirms', 'basic.nack', 'consumer_cancel_notify',
    'exchange_exchange_bindings', 'per_consumer_qos']) {
    check(caps[cap] === true, `capability ${cap} = ${util.inspect(caps[cap])}`);
  }

  const ch = await conn.createChannel();
  const x = `amqplib-interop-${process.pid}`;
  const qAll = `${x}-all`;
  const qOdd = `${x}-odd`;
  const xok = await ch.assertExchange(x, 'topic', { durable: false, autoDelete: false });
  check(xok.exchange === x, `assertExchange answered ${util.inspect(xok)}`);
  const qok = await ch.assertQueue(qAll, { exclusive: true, durable: false });
  check(qok.queue === qAll && qok.messageCount === 0 && qok.consumerCount === 0,
    `assertQueue answered ${util.inspect(qok)}`);
  await ch.assertQueue(qOdd, { exclusive: true, durable: false });
  await ch.bindQueue(qAll, x, 'interop.#');
  await ch.bindQueue(qOdd, x, 'interop.odd.*');
  await ch.bindQueue(qOdd, x, '*.*.1'); // overlaps with interop.odd.* for i=1: still one copy

  for (let i = 0; i < N; i++) {
    if (!ch.publish(x, routingKey(i), bodyFor(i), optionsFor(i))) {
      await new Promise((resolve) => ch.once('drain', resolve));
    }
  }
  ch.publish(x, 'elsewhere.odd', Buffer.from('unrouted'), {}); // matches no binding
  console.log(`published ${N} messages to topic exchange ${x}`);

  // RabbitMQ's queue counts lag the publishes a little: poll (at most 10 s) for the count.
  let odd = await ch.checkQueue(qOdd);
  for (const deadline = Date.now() + 10000; odd.messageCount < N / 2 && Date.now() < deadline;) {
    await sleep(20);
    odd = await ch.checkQueue(qOdd);
  }
  check(odd.messageCount === N / 2, `queue ${qOdd} holds ${odd.messageCount}, want ${N / 2}`);

  await ch.prefetch(50);
  let got = 0;
  let failure = null;
  let lastTag = 0;
  const done = new Promise((resolve) => {
    ch.consume(qAll, (msg) => {
      try {
        check(msg !== null, 'consumer cancelled by the broker');
        check(got < N, `message ${got} is one more than the ${N} published`);
        check(msg.fields.deliveryTag === lastTag + 1,
          `delivery tag ${msg.fields.deliveryTag} after ${lastTag}`);
        lastTag = msg.fields.deliveryTag;
        checkMessage(got, msg, x, qAll);
        ch.ack(msg);
        got++;
        if (got === N) resolve();
      } catch (e) {
        failure = failure || e;
        resolve();
      }
    }, { noAck: false }).then((ok) => {
      check(ok.consumerTag.startsWith('amq.ctag-'), `consumer tag ${ok.consumerTag}`);
      console.log(`consuming with tag ${ok.consumerTag}`);
    }).catch((e) => { failure = failure || e; resolve(); });
  });
  const timeout = sleep(30000).then(() => { failure = failure || new Failure(`consumed ${got} of ${N} in 30 s`); });
  await Promise.race([done, timeout]);
  if (failure) throw failure;
  await sleep(300);
  if (failure) throw failure;
  check(got === N, `consumed ${got} messages, not ${N}`);
  console.log(`consumed and acked ${N} messages in order with identical bodies and properties`);

  // The odd queue: basic.get each, in order, then empty.
  // Acked all at once at the end (multiple), which also spares Nagle's delay on each get.
  let last = null;
  for (let k = 0; k < N / 2; k++) {
    const msg = await ch.get(qOdd, { noAck: false });
    check(msg !== false, `get ${k} on ${qOdd} returned nothing`);
    check(msg.fields.messageCount === N / 2 - 1 - k, `get-ok message count ${msg.fields.messageCount}`);
    checkMessage(2 * k + 1, msg, x, qOdd);
    last = msg;
  }
  check((await ch.get(qOdd)) === false, `${qOdd} not empty after ${N / 2} gets`);
  ch.ack(last, true);
  const all = await ch.checkQueue(qAll);
  check(all.messageCount === 0 && all.consumerCount === 1, `queue ${qAll}: ${util.inspect(all)}`);
  console.log(`${N / 2} odd messages by basic.get, counts exact`);

  await ch.unbindQueue(qOdd, x, 'interop.odd.*');
  await ch.deleteExchange(x);
  await ch.close();
  await conn.close();
}

async function main() {
  const broker = new Broker();
  try {
    await broker.start();
    await run(broker);
  } catch (e) {
    await broker.stop();
    console.error(`FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
    process.exit(1);
  }
  if (!(await broker.stop())) {
    console.error('FAIL: warrend did not shut down cleanly');
    process.exit(1);
  }
  console.log('PASS');
  process.exit(0);
}

main();
