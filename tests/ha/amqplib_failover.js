#!/usr/bin/env node
// amqplib through failovers, run by ha_clients_test.py: node amqplib_failover.js URL1 URL2.
// A publisher (confirm channel, persistent messages) and a consumer (manual acks) on one
// connection to whichever URL answers; when the connection closes or fails, both start again on
// the next URL, as README advises. Runs until stdin closes, then prints one JSON line:
// {"confirmed": [ids the broker confirmed], "got": [ids consumed]}.
'use strict';

const path = require('path');
const amqp = require(path.join(__dirname, '..', 'interop', 'amqplib', 'node_modules', 'amqplib'));

const urls = process.argv.slice(2);
const queue = 'ha-clients-amqplib';
const confirmed = new Set();
const got = new Set();
let next = 0;
let stopping = false;
let current = null;
let id = 0;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function session() {
  const url = urls[next % urls.length];
  next++;
  const conn = await amqp.connect(url, {timeout: 2000});
  current = conn;
  const closed = new Promise((resolve) => {
    conn.on('close', resolve);
    conn.on('error', () => {});
  });
  const pub = await conn.createConfirmChannel();
  const sub = await conn.createChannel();
  await pub.assertQueue(queue, {durable: true});
  await sub.prefetch(50);
  await sub.consume(queue, (m) => {
    if (!m) return;
    got.add(Number(m.content.toString().split(' ')[1]));
    sub.ack(m);
  });
  let alive = true;
  closed.then(() => { alive = false; });
  (async () => { // a confirm that never comes (the broker died) leaves this one waiting: fine
    while (!stopping && alive) {
      const i = id++;
      await new Promise((resolve) => {
        pub.sendToQueue(queue, Buffer.from(`m ${i}`), {persistent: true}, (err) => {
          if (!err) confirmed.add(i);
          resolve();
        });
      });
      await sleep(2);
    }
  })().catch(() => {});
  await closed;
}

// Stop publishing, let the consumer catch up (10 s at most), then close.
async function finish() {
  stopping = true;
  for (let t = 0; t < 100 && [...confirmed].some((i) => !got.has(i)); t++) await sleep(100);
  if (current) await current.close().catch(() => {});
}

async function main() {
  process.stdin.on('end', () => { finish(); });
  process.stdin.resume();
  while (!stopping) {
    try {
      await session();
      if (process.env.HA_TRACE) console.error(`amqplib: connection closed`);
    } catch (e) {
      if (process.env.HA_TRACE) console.error(`amqplib: ${e.message}`);
      await sleep(50);
    }
  }
  console.log(JSON.stringify({confirmed: [...confirmed], got: [...got]}));
  process.exit(0);
}

main();
