#!/usr/bin/env node
// amqplib over AMQPS, run by tls_test.py: node amqplib_tls.js PORT CA CERT KEY. Connects to
// amqps://localhost:PORT with the CA and a client certificate (PLAIN as guest), publishes 50
// messages with confirms, consumes them back and checks every body. Exit 0 pass, 1 fail.
'use strict';

const fs = require('fs');
const path = require('path');
const amqp = require(path.join(__dirname, 'amqplib', 'node_modules', 'amqplib'));

async function main() {
  const [port, ca, cert, key] = process.argv.slice(2);
  const conn = await amqp.connect(`amqps://guest:guest@localhost:${port}/`, {
    ca: [fs.readFileSync(ca)], cert: fs.readFileSync(cert), key: fs.readFileSync(key),
    servername: 'localhost',
  });
  const ch = await conn.createConfirmChannel();
  const q = 'tls-amqplib';
  await ch.assertQueue(q, {autoDelete: true});
  const sent = [];
  for (let i = 0; i < 50; i++) {
    const body = Buffer.alloc(i * 1000 + 1, i);
    sent.push(body);
    ch.sendToQueue(q, body);
  }
  await ch.waitForConfirms();
  const got = [];
  await new Promise((resolve, reject) => {
    ch.consume(q, (m) => {
      got.push(m.content);
      ch.ack(m);
      if (got.length === sent.length) resolve();
    }).catch(reject);
    setTimeout(() => reject(new Error(`only ${got.length} of ${sent.length} came back`)), 10000);
  });
  for (let i = 0; i < sent.length; i++) {
    if (!got[i].equals(sent[i])) throw new Error(`message ${i} differs`);
  }
  await conn.close();
  console.log(`amqplib over TLS: ${got.length} messages`);
}

main().then(() => process.exit(0), (e) => {
  console.error(`amqplib over TLS: ${e.stack || e}`);
  process.exit(1);
});
