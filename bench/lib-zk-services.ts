/**
 * Shared by fanout, pushsize and sustained: services in a real ZooKeeper laid out as the control plane's
 * `service_config: {type: zookeeper}` follows them — `/service_config/NAME` (a zookeeper watcher config) and one
 * node per host under `/services/NAME` — and the control plane started on them as the built CLI.
 *
 * Service 0 is `web` (the fanout benchmark's single service, at /services/web, listening on 18080); service i > 0
 * is `web<i>` on port 18080 + i. Host h of service s is node `h<h>` with address 10.(s>>8).(s&255).(h%254+1).
 * Writes are pipelined (node-zookeeper-client keeps many requests in flight), as discovery.ts populates.
 */
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { freePort, sleep } from '../testkit/net';
import { ZkTestClient } from '../testkit/zk-client';
import { CliChild, controlPlaneYaml, listAgents, startCli, waitForDesiredState } from './lib-grpc';

/**
 * Time for the control plane's push bucket (controlplane.pushes_per_second, default 2000) to refill after N pushes,
 * plus a margin: waited between changes, each change measures a fan-out, not the limiter.
 */
export const refillGapMs = (n: number): number => 300 + n / 2;

export const serviceName = (s: number): string => (s === 0 ? 'web' : `web${s}`);
export const servicePath = (s: number): string => `/services/${serviceName(s)}`;
export const hostPath = (s: number, h: number): string => `${servicePath(s)}/h${h}`;

/** A host node's data: `{"address","port"}`; `address` and `port` override the defaults above. */
export function hostData(s: number, h: number, override: { address?: string; port?: number } = {}): string {
  return JSON.stringify({
    address: override.address ?? `10.${(s >> 8) & 255}.${s & 255}.${(h % 254) + 1}`,
    port: override.port ?? 8080 + Math.floor(h / 254),
  });
}

/** Service s's config node: a zookeeper watcher on its host nodes (the fanout benchmark's service, one per index). */
export function serviceConfig(s: number, zkConnect: string): string {
  return JSON.stringify({
    type: 'zookeeper',
    server: zkConnect,
    path: servicePath(s),
    port: 18080 + s,
    listen_options: ['mode http', 'balance roundrobin'],
    server_options: ['check inter 2000'],
  });
}

function create(zkc: ZkTestClient, p: string, data: string): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    zkc.client.create(p, Buffer.from(data), (err) => (err ? reject(err) : resolve())),
  );
}

async function pipelined(items: Iterable<() => Promise<void>>, inFlight = 5000): Promise<void> {
  const batch: Promise<void>[] = [];
  for (const start of items) {
    batch.push(start());
    if (batch.length >= inFlight) await Promise.all(batch.splice(0));
  }
  await Promise.all(batch);
}

/** Creates the host nodes of services [from, to), `hosts` each (and /services, /service_config if missing). */
export async function createHosts(zkc: ZkTestClient, from: number, to: number, hosts: number): Promise<void> {
  for (const p of ['/services', '/service_config']) {
    const exists = await new Promise<boolean>((resolve, reject) =>
      zkc.client.exists(p, (err, stat) => (err ? reject(err) : resolve(!!stat))),
    );
    if (!exists) await create(zkc, p, '');
  }
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  await pipelined(range(to - from).map((i) => () => create(zkc, servicePath(from + i), '')));
  await pipelined(
    range(to - from).flatMap((i) =>
      range(hosts).map((h) => () => create(zkc, hostPath(from + i, h), hostData(from + i, h))),
    ),
  );
}

/** Creates the config nodes of services [from, to): from then on the control plane serves them. */
export async function createConfigs(zkc: ZkTestClient, zkConnect: string, from: number, to: number): Promise<void> {
  await pipelined(
    Array.from(
      { length: to - from },
      (_, i) => () => create(zkc, `/service_config/${serviceName(from + i)}`, serviceConfig(from + i, zkConnect)),
    ),
  );
}

/** One ZooKeeper request (setData on an existing node, any version); resolves when ZooKeeper has answered. */
export function setData(zkc: ZkTestClient, p: string, data: string): Promise<void> {
  return new Promise<void>((resolve, reject) =>
    zkc.client.setData(p, Buffer.from(data), -1, (err) => (err ? reject(err) : resolve())),
  );
}

/** The control plane (built CLI, its own process) following /service_config; resolves once it has a desired state. */
export async function startControlPlane(
  zkConnect: string,
  dir: string,
  logLevel: string,
  extraYaml = '',
): Promise<{ cp: CliChild; address: string }> {
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const cfg = path.join(dir, 'controlplane.yml');
  writeFileSync(cfg, controlPlaneYaml(zkConnect, port, extraYaml));
  const cp = startCli(['controlplane', '--config', cfg], path.join(dir, 'controlplane.log'), logLevel);
  await waitForDesiredState(cp, address, 120_000);
  return { cp, address };
}

/**
 * Polls ControlPlaneAdmin.ListAgents until `n` agents are connected and have ACKed the desired version, and that
 * version has not changed for `quietMs`; returns false on timeout.
 */
export async function waitAllAcked(address: string, n: number, timeoutMs: number, quietMs = 500): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let version = '';
  let since = Date.now();
  for (;;) {
    const view = await listAgents(address).catch(() => undefined);
    if (view) {
      if (view.desiredVersion !== version) {
        version = view.desiredVersion;
        since = Date.now();
      }
      const acked = view.agents.filter((a) => a.connected && a.lastAckedVersion === view.desiredVersion).length;
      if (acked >= n && Date.now() - since >= quietMs) return true;
    }
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}
