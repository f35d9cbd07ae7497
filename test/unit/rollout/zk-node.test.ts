import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { decodeNode, encodeNode, MAX_DECODED_NODE_BYTES, MAX_NODE_BYTES } from '../../../controlplane/ha/node-codec';
import {
  EMPTY_DOC,
  FleetAgent,
  FleetDoc,
  onRevision,
  releasedRevision,
  step,
} from '../../../controlplane/rollout/engine';

const POLICY = { waves: ['1', '10%', '50%', '100%'], bakeMs: 0, maxNacks: 0, autoRollback: true };

/** A rollout document after a revision went out, wave by wave, to `n` agents with realistic host names. */
function rolledOut(n: number): FleetDoc {
  const ids = Array.from({ length: n }, (_, i) => `web-${String(i).padStart(5, '0')}.dc${i % 4}.example.com`);
  const running = new Map(ids.map((id) => [id, 'r1']));
  let doc = onRevision(onRevision(EMPTY_DOC, 'r1', POLICY, 0), 'r2', POLICY, 1_795_000_000_000);
  let t = 1_795_000_000_000;
  for (let i = 0; i < 20 && doc.current?.state === 'running'; i++) {
    for (const id of ids) running.set(id, releasedRevision(doc, id));
    const fleet = new Map<string, FleetAgent>(ids.map((id) => [id, { nodeId: id, runningRevision: running.get(id)! }]));
    const r = step(doc, fleet, t);
    doc = r.doc;
    t = (r.wakeAt ?? t) + 1;
  }
  return doc;
}

test('a small document stays plain JSON (readable in zkCli) and reads back', () => {
  const doc = rolledOut(20);
  const data = encodeNode(doc, 'the rollout document');
  expect(data.toString()[0]).toBe('{');
  expect(decodeNode(data)).toEqual(JSON.parse(JSON.stringify(doc)));
});

test('the rollout document of 12,000 agents is compressed under ZooKeeper’s node limit and reads back', () => {
  const doc = rolledOut(12_000);
  expect(doc.current?.state).toBe('completed');
  expect(Object.keys(doc.current!.results)).toHaveLength(12_000);
  const json = JSON.stringify(doc).length;
  expect(json).toBeGreaterThan(MAX_NODE_BYTES); // as plain JSON it would not fit
  const data = encodeNode(doc, 'the rollout document');
  expect(data.length).toBeLessThan(MAX_NODE_BYTES / 4);
  expect(decodeNode(data)).toEqual(JSON.parse(JSON.stringify(doc)));
});

test('past the limit the write is refused with a message that says so', () => {
  const big = { blob: randomBytes(1536 * 1024).toString('base64') }; // random: gzip cannot bring it under 1 MB
  expect(() => encodeNode(big, 'the rollout document')).toThrow(
    /^the rollout document is \d+ bytes \(\d+ as JSON\), over ZooKeeper's node limit of \d+ bytes \(jute\.maxbuffer\)$/,
  );
});

test('a gzip bomb in a node is refused with a message naming the bound, not inflated', () => {
  // 64 MiB + 1 of zeros compresses to about 64 KB: small enough for any ZooKeeper node.
  const bomb = gzipSync(Buffer.alloc(MAX_DECODED_NODE_BYTES + 1, 0x20));
  expect(bomb.length).toBeLessThan(MAX_NODE_BYTES);
  expect(() => decodeNode(bomb, 'revision r1')).toThrow(
    /^revision r1: \d+ bytes of gzip inflate to more than 67108864 bytes \(MAX_DECODED_NODE_BYTES\); refused$/,
  );
  // A broken gzip stream is an error that names the node too.
  expect(() => decodeNode(Buffer.from([0x1f, 0x8b, 1, 2, 3]), 'traffic node cp1')).toThrow(
    /^traffic node cp1: not valid gzip/,
  );
  // Up to the bound it still reads (a document of the bound's size, gzipped, decodes).
  const big = encodeNode({ pad: 'x'.repeat(2 * 1024 * 1024) }, 'big');
  expect((decodeNode(big) as { pad: string }).pad.length).toBe(2 * 1024 * 1024);
});
