import { gunzipSync, gzipSync } from 'node:zlib';

/** Documents larger than this are stored gzip-compressed; smaller ones stay plain JSON (readable in zkCli). */
const COMPRESS_ABOVE_BYTES = 64 * 1024;
/** ZooKeeper's default jute.maxbuffer (1 MB) less room for the request; a bigger write makes it drop the connection. */
export const MAX_NODE_BYTES = 1024 * 1024 - 8 * 1024;

/**
 * JSON for a ZooKeeper node. The rollout document grows with the fleet (about 100 bytes of per-agent results and
 * wave membership per agent): above 64 KB it is gzipped (16–18× smaller: 68 KB at 12,000 agents), which keeps tens of thousands of agents
 * under ZooKeeper's node limit. Past the limit the write is refused here with a message saying so, instead of the
 * server dropping the session's connection.
 */
export function encodeNode(value: unknown, what: string): Buffer {
  const json = Buffer.from(JSON.stringify(value));
  const data = json.length > COMPRESS_ABOVE_BYTES ? gzipSync(json) : json;
  if (data.length > MAX_NODE_BYTES) {
    throw new Error(
      `${what} is ${data.length} bytes (${json.length} as JSON), over ZooKeeper's node limit of ${MAX_NODE_BYTES} bytes (jute.maxbuffer)`,
    );
  }
  return data;
}

/**
 * The most a compressed node may inflate to. A node holds at most jute.maxbuffer (1 MB) and what encodeNode writes
 * compresses 16–18×; 64 MiB leaves room for that and refuses a gzip bomb (1 MB of zeros inflates to about 1 GB) that
 * anyone able to write the node could plant.
 */
export const MAX_DECODED_NODE_BYTES = 64 * 1024 * 1024;

/** Reads what encodeNode wrote (gzip is recognised by its magic bytes; anything else is JSON). */
export function decodeNode(data: Buffer, what = 'ZooKeeper node'): unknown {
  if (!(data[0] === 0x1f && data[1] === 0x8b)) return JSON.parse(data.toString());
  let json: Buffer;
  try {
    json = gunzipSync(data, { maxOutputLength: MAX_DECODED_NODE_BYTES });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE')
      throw new Error(
        `${what}: ${data.length} bytes of gzip inflate to more than ${MAX_DECODED_NODE_BYTES} bytes (MAX_DECODED_NODE_BYTES); refused`,
        { cause: err },
      );
    throw new Error(`${what}: not valid gzip (${code ?? (err as Error).message})`, { cause: err });
  }
  return JSON.parse(json.toString());
}
