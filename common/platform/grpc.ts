import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
// eslint-disable-next-line @typescript-eslint/no-require-imports -- protobufjs/ext/descriptor has no typings and no ES module entry
const { FileDescriptorSet, FileDescriptorProto } = require('protobufjs/ext/descriptor') as {
  FileDescriptorSet: { decode(b: Uint8Array): unknown };
  FileDescriptorProto: { encode(m: object): { finish(): Uint8Array } };
};
import { HealthCheckResponse_ServingStatus, HealthServer, HealthService } from '../gen/grpc/health/v1/health';
import { ErrorCode, ProxyMgrError } from './errors';
import { findUp } from './fs';

/**
 * The largest message the control plane takes from an agent (`grpc.max_receive_message_length` of its server):
 * grpc-js's default, which every control-plane version applies, so an agent that fits its messages to it talks to
 * any of them. Kept there on purpose: the server buffers a message whole before it can refuse it, and it serves
 * thousands of streams. Agents fit what they send to it (agent/sources/message-fit.ts).
 */
export const AGENT_MESSAGE_LIMIT_BYTES = 4 * 1024 * 1024;

/** TLS settings from proxymgr.yml (PEM file paths). */
export interface TlsConfig {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
  /** Server side: refuse clients without a certificate signed by `ca` (mTLS). */
  readonly requireClientCert?: boolean;
}

export function serverCredentials(tls: TlsConfig | undefined): grpc.ServerCredentials {
  if (!tls) return grpc.ServerCredentials.createInsecure();
  if (!tls.cert || !tls.key) throw new ProxyMgrError('CONFIG_INVALID', 'tls: a server needs both cert and key');
  const ca = tls.ca ? readFileSync(tls.ca) : null;
  if (tls.requireClientCert && !ca)
    throw new ProxyMgrError(
      'CONFIG_INVALID',
      'tls.require_client_cert needs tls.ca to check client certificates against',
    );
  return grpc.ServerCredentials.createSsl(
    ca,
    [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }],
    tls.requireClientCert ?? false,
  );
}

export function channelCredentials(tls: TlsConfig | undefined): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(
    tls.ca ? readFileSync(tls.ca) : null,
    tls.key ? readFileSync(tls.key) : null,
    tls.cert ? readFileSync(tls.cert) : null,
  );
}

/** Binds `server` to "host:port" (port 0 picks a free one) and resolves with the port. */
export function bindServer(server: grpc.Server, address: string, creds: grpc.ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) => {
    server.bindAsync(address, creds, (err, port) =>
      err
        ? reject(new ProxyMgrError('CONFIG_INVALID', `cannot listen on ${address}: ${err.message}`, { cause: err }))
        : resolve(port),
    );
  });
}

/** What addHealth returns: how the owner tells Watch streams about a change, and ends them at shutdown. */
export interface Health {
  /**
   * The status may have changed: it is read again once the current event has run its course (a listener of an
   * 'exit' event runs before the emitter updated its own state) and sent to every Watch stream whose last status
   * differs. Safe to call often and from any event.
   */
  readonly changed: () => void;
  /** Ends every Watch stream and stops polling (a graceful server shutdown would otherwise wait on them forever). */
  readonly close: () => void;
}

/**
 * grpc.health.v1: "" (the whole server) and every named service answer with `status()`. Watch sends the current
 * status and then every change: at once when the owner calls `changed()` (the agent: HAProxy exited or was
 * restarted; the control plane: a snapshot was published), and otherwise within `pollMs`, because not every change
 * comes with an event (HAProxy's first start, a reload). Polling runs only while a Watch stream is open.
 */
export function addHealth(server: grpc.Server, status: () => boolean, opts: { pollMs?: number } = {}): Health {
  type Watcher = { call: grpc.ServerWritableStream<unknown, unknown>; last: HealthCheckResponse_ServingStatus };
  const watchers = new Set<Watcher>();
  const pollMs = opts.pollMs ?? 1000;
  let timer: NodeJS.Timeout | undefined;
  let scheduled = false;
  const read = () =>
    status() ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING;
  const check = () => {
    scheduled = false;
    if (watchers.size === 0) return;
    const now = read();
    for (const w of watchers) {
      if (w.last === now) continue;
      w.last = now;
      w.call.write({ status: now });
    }
  };
  const forget = (w: Watcher) => {
    watchers.delete(w);
    if (watchers.size === 0 && timer) {
      clearInterval(timer);
      timer = undefined;
    }
  };
  const impl: HealthServer = {
    check: (_call, callback) => callback(null, { status: read() }),
    watch: (call) => {
      const w: Watcher = { call: call, last: read() };
      watchers.add(w);
      call.write({ status: w.last });
      call.on('cancelled', () => forget(w));
      call.on('error', () => forget(w));
      timer ??= setInterval(check, pollMs).unref();
    },
  };
  server.addService(HealthService, impl);
  return {
    changed: () => {
      if (scheduled) return;
      scheduled = true;
      queueMicrotask(check);
    },
    close: () => {
      for (const w of [...watchers]) {
        forget(w);
        w.call.end();
      }
    },
  };
}

/**
 * Server reflection (for `services`, fully qualified, plus health) from the descriptor set `buf build` writes
 * (proto/proxymgr.binpb). Two traps avoided: proto-loader's loadSync mangles map<> entries, and its
 * package definitions merge every file of a package into one (so clients see each service twice and give up).
 * The reflection service only reads `fileDescriptorProtos` from the definition, so it gets the original files.
 */
export function addReflection(server: grpc.Server, services: readonly string[]): void {
  const set = FileDescriptorSet.decode(readFileSync(findUp(path.join('proto', 'proxymgr.binpb')))) as {
    file: object[];
  };
  const files = set.file.map((f) => FileDescriptorProto.encode(f).finish());
  const definition = {
    files: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos: files },
  } as unknown as protoLoader.PackageDefinition;
  new ReflectionService(definition, { services: [...services, 'grpc.health.v1.Health'] }).addToServer(server);
}

/** The gRPC status of each error code: the one place where ProxyMgr errors become gRPC statuses. */
const STATUS_OF: Record<ErrorCode, grpc.status> = {
  CONFIG_INVALID: grpc.status.INVALID_ARGUMENT,
  STATE_INVALID: grpc.status.INVALID_ARGUMENT,
  SERVICE_CONFIG_INVALID: grpc.status.INVALID_ARGUMENT,
  HOST_INVALID: grpc.status.INVALID_ARGUMENT,
  USAGE: grpc.status.INVALID_ARGUMENT,
  HAPROXY_CONFIG_INVALID: grpc.status.FAILED_PRECONDITION,
  HAPROXY_RUNTIME: grpc.status.FAILED_PRECONDITION,
  HAPROXY_START_FAILED: grpc.status.FAILED_PRECONDITION,
  HAPROXY_CHECK_FAILED: grpc.status.FAILED_PRECONDITION,
  SOCKET_BIND_FAILED: grpc.status.FAILED_PRECONDITION,
  FAIL_STATIC: grpc.status.FAILED_PRECONDITION,
  LIFECYCLE_INVALID: grpc.status.FAILED_PRECONDITION,
  FILE_REFUSED: grpc.status.FAILED_PRECONDITION,
  ROLLOUT_NONE: grpc.status.FAILED_PRECONDITION,
  ROLLOUT_BAD_STATE: grpc.status.FAILED_PRECONDITION,
  ROLLOUT_WRONG_ID: grpc.status.FAILED_PRECONDITION,
  IO_FAILED: grpc.status.UNAVAILABLE,
  ZK_SESSION_EXPIRED: grpc.status.UNAVAILABLE,
  ZK_DISCONNECTED: grpc.status.UNAVAILABLE,
  WATCHER_FAILED: grpc.status.UNAVAILABLE,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
};

/**
 * ProxyMgr errors become gRPC statuses here, at the edge (`CODE: message`). Anything else is a failure of
 * something underneath (ZooKeeper, the file system) at the moment: UNAVAILABLE, so a client may retry.
 */
export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof ProxyMgrError) return { code: STATUS_OF[err.code], details: `${err.code}: ${err.message}` };
  return { code: grpc.status.UNAVAILABLE, details: err instanceof Error ? err.message : String(err) };
}
