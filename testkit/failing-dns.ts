import { createSocket } from 'node:dgram';

/** How a FailingDns fails: it answers every question SERVFAIL or REFUSED, or never answers (a timeout). */
export type DnsFailure = 'servfail' | 'refused' | 'silent';

export interface FailingDns {
  /** "127.0.0.1:PORT", for the dns watcher's nameservers. */
  readonly server: string;
  stop(): Promise<void>;
}

const RCODE: Record<Exclude<DnsFailure, 'silent'>, number> = { servfail: 2, refused: 5 };

/**
 * A nameserver on a free loopback UDP port that cannot answer: a broken primary in front of a working fallback.
 * (dnsmasq cannot play it: without an upstream it answers REFUSED, and with a dead one it does not answer at all.)
 */
export async function startFailingDns(failure: DnsFailure): Promise<FailingDns> {
  const socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    if (failure === 'silent' || query.length < 12) return;
    // The reply is the header and the question: same id, QR set, opcode and RD kept, RA set, no records.
    let end = 12;
    while (end < query.length && query[end] !== 0) end += query[end]! + 1;
    end += 5; // the root label, QTYPE and QCLASS
    if (end > query.length) return;
    const reply = Buffer.alloc(end);
    query.copy(reply, 0, 0, end);
    reply[2] = 0x80 | (query[2]! & 0x79);
    reply[3] = 0x80 | RCODE[failure];
    reply.writeUInt16BE(1, 4);
    reply.writeUInt32BE(0, 6);
    reply.writeUInt16BE(0, 10);
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    server: `127.0.0.1:${socket.address().port}`,
    stop: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
