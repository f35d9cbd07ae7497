import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { FileDescriptorSet, FileDescriptorProto } = require('protobufjs/ext/descriptor') as {
  FileDescriptorSet: { decode(b: Uint8Array): unknown };
  FileDescriptorProto: { encode(m: object): { finish(): Uint8Array } };
};
import { HealthCheckResponse_ServingStatus, HealthServer, HealthService } from './gen/grpc/health/v1/health';
import { ProxyMgrError } from './errors';
import { findUp } from './fs';

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
  if (tls.requireClientCert && !ca) throw new ProxyMgrError('CONFIG_INVALID', 'tls.require_client_cert needs tls.ca to check client certificates against');
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: readFileSync(tls.cert), private_key: readFileSync(tls.key) }], tls.requireClientCert ?? false);
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
    server.bindAsync(address, creds, (err, port) => (err ? reject(new ProxyMgrError('CONFIG_INVALID', `cannot listen on ${address}: ${err.message}`, { cause: err })) : resolve(port)));
  });
}

/**
 * grpc.health.v1: "" (the whole server) and every named service answer with `status()`. Watch sends the
 * current status and then on every change signalled through the returned `changed()`.
 */
export function addHealth(server: grpc.Server, status: () => boolean) {
  const watchers = new Set<grpc.ServerWritableStream<unknown, unknown>>();
  const current = () => ({ status: status() ? HealthCheckResponse_ServingStatus.SERVING : HealthCheckResponse_ServingStatus.NOT_SERVING });
  const impl: HealthServer = {
    check: (_call, callback) => callback(null, current()),
    watch: (call) => {
      watchers.add(call as grpc.ServerWritableStream<unknown, unknown>);
      call.write(current());
      call.on('cancelled', () => watchers.delete(call as grpc.ServerWritableStream<unknown, unknown>));
    },
  };
  server.addService(HealthService, impl);
  return {
    changed: () => {
      for (const w of watchers) w.write(current());
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
  const set = FileDescriptorSet.decode(readFileSync(findUp(path.join('proto', 'proxymgr.binpb')))) as unknown as { file: object[] };
  const files = set.file.map((f) => FileDescriptorProto.encode(f).finish());
  const definition = { files: { format: 'Protocol Buffer 3 DescriptorProto', type: {}, fileDescriptorProtos: files } } as unknown as protoLoader.PackageDefinition;
  new ReflectionService(definition, { services: [...services, 'grpc.health.v1.Health'] }).addToServer(server);
}

/** ProxyMgr errors become gRPC statuses here, at the edge. */
export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof ProxyMgrError) {
    const code = err.code === 'STATE_INVALID' || err.code === 'CONFIG_INVALID' ? grpc.status.INVALID_ARGUMENT : grpc.status.FAILED_PRECONDITION;
    return { code, details: `${err.code}: ${err.message}` };
  }
  return { code: grpc.status.INTERNAL, details: err instanceof Error ? err.message : String(err) };
}
