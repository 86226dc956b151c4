// Emmett's PostgreSQL event store under the load of esbench's `append`
// scenario: W appenders, each appending one event per call to its own
// stream with the expected version, the same ~300-byte payload, until
// N events are written. Prints one JSON line like esbench's.
//
// Usage: node append.mjs POSTGRES_URL EVENTS APPENDERS
import { getPostgreSQLEventStore } from '@event-driven-io/emmett-postgresql';
import { randomUUID } from 'node:crypto';

const [url, eventsArg, appendersArg] = process.argv.slice(2);
if (!url || !eventsArg || !appendersArg) {
  console.error('usage: node append.mjs POSTGRES_URL EVENTS APPENDERS');
  process.exit(2);
}
const total = Number(eventsArg);
const appenders = Number(appendersArg);

// esbench's sample_payload, field for field.
const payload = (n) => ({
  order_id: '3f2c8a4e-5b1d-4e7a-9c3b-2d1e0f9a8b7c',
  customer: `customer-${n % 9973}`,
  sku: `SKU-${n % 1000}`,
  quantity: (n % 7) + 1,
  unit_price_cents: 1999 + (n % 500),
  currency: 'EUR',
  note: 'padding to make the payload about as large as a typical event',
  tags: ['web', `promo-${n % 13}`],
  shipping: { method: 'standard', country: 'DE' },
});

const store = getPostgreSQLEventStore(url);
await store.schema.migrate();

// Warm-up, untimed: every appender's pool connection and prepared paths.
await Promise.all(
  Array.from({ length: appenders }, () =>
    store.appendToStream(`warmup-${randomUUID()}`, [
      { type: 'OrderPlaced', data: payload(0) },
    ]),
  ),
);

const perAppender = Math.floor(total / appenders);
const latencies = [];
let written = 0;
const start = process.hrtime.bigint();
await Promise.all(
  Array.from({ length: appenders }, async (_, w) => {
    const stream = `order-${randomUUID()}`;
    let version = 0n;
    for (let i = 0; i < perAppender; ++i) {
      const t0 = process.hrtime.bigint();
      const res = await store.appendToStream(
        stream,
        [{ type: 'OrderPlaced', data: payload(w * perAppender + i) }],
        { expectedStreamVersion: version },
      );
      latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
      version = res.nextExpectedStreamVersion;
      ++written;
    }
  }),
);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
await store.close();
latencies.sort((a, b) => a - b);
const pct = (q) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
console.log(
  JSON.stringify({
    backend: 'emmett-postgresql',
    scenario: 'append',
    events: written,
    writers: appenders,
    seconds,
    events_per_sec: written / seconds,
    p50_us: pct(0.5),
    p99_us: pct(0.99),
  }),
);
