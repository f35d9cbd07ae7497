import { randomBytes } from 'node:crypto';

/**
 * What one stream server's sessions counted, for metrics and benchmarks: pushes by kind, resyncs asked for, bytes of
 * push bodies written, Stats messages dropped for coming too soon after the stream's previous one, NACKs whose
 * running version was not believed (see AgentRegistry.nack). The server's owner makes one and reads it.
 */
export class StreamStats {
  deltaPushes = 0;
  fullPushes = 0;
  protocol0Pushes = 0;
  resyncs = 0;
  bytes = 0;
  statsDropped = 0;
  nackRunningRefused = 0;
}

/**
 * Push nonces. They only need to be unique per stream and unguessable across restarts: a random prefix (one per
 * server) and a counter.
 */
export class NonceSource {
  private counter = 0;

  constructor(private readonly prefix = randomBytes(6).toString('hex')) {}

  next(): string {
    return `${this.prefix}-${++this.counter}`;
  }
}
