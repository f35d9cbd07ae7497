import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createLogger, silentLogger } from '../../common/platform/log';
import { parseConfig } from '../../common/config/config';
import { ControlPlaneProcess } from '../../controlplane/control-plane-process';
import { controlPlaneFromConfig } from '../../controlplane/wiring';
import { GrpcStateSource } from '../../agent/sources/grpc';
import { DesiredState } from '../../common/protocol/types';
import { ApplyResult } from '../../agent/agent';
import { eventually, freePort, sleep, tempDir } from '../../testkit/net';
import { makeCertificates } from '../../testkit/certs';

jest.setTimeout(60_000);

describe('mTLS between agents and the control plane', () => {
  const tmp = tempDir('proxymgr-mtls-');
  let cp: ControlPlaneProcess;
  let certs: ReturnType<typeof makeCertificates>;
  const sources: GrpcStateSource[] = [];

  beforeAll(async () => {
    certs = makeCertificates(tmp.dir);
    const services = path.join(tmp.dir, 'services');
    mkdirSync(services);
    writeFileSync(
      path.join(services, 'web.json'),
      JSON.stringify({ type: 'static', port: 18080, hosts: ['127.0.0.1:9001'] }),
    );
    const port = await freePort();
    const config = parseConfig(
      `service_config: {type: file, path: ${services}}
controlplane:
  listen: 127.0.0.1:${port}
  tls: {ca: ${certs.ca}, cert: ${certs.serverCert}, key: ${certs.serverKey}, require_client_cert: true}
`,
      path.join(tmp.dir, 'cp.yml'),
    );
    cp = controlPlaneFromConfig({
      config,
      log: process.env.PROXYMGR_TEST_LOG ? createLogger({}, 'debug') : silentLogger,
    });
    await cp.start();
    await cp.discovery.waitFor((s) => s.services.length === 1);
  });
  afterAll(async () => {
    await Promise.all(sources.map((s) => s.stop()));
    await cp?.stop();
    tmp.cleanup();
  });

  /** A real agent stream client; records the states it is pushed and ACKs them. */
  function connect(nodeId: string, tls: { ca?: string; cert?: string; key?: string }) {
    const received: DesiredState[] = [];
    const source = new GrpcStateSource({
      addresses: [`127.0.0.1:${cp.port}`],
      nodeId,
      labels: {},
      agentVersion: 'test',
      haproxyVersion: 'none',
      runningVersion: () => received.at(-1)?.version ?? '',
      tls,
      log: silentLogger,
      backoffBaseMs: 100,
      backoffMaxMs: 200,
    });
    sources.push(source);
    void source.start(async (state): Promise<ApplyResult> => {
      received.push(state);
      return { version: state.version, outcome: 'nothing', reasons: [], commands: [], problems: [], durationMs: 0 };
    });
    return { source, received };
  }

  test('an agent with a certificate from the CA gets the desired state', async () => {
    const good = connect('good', { ca: certs.ca, cert: certs.agentCert, key: certs.agentKey });
    expect(await eventually(() => good.received.length === 1)).toBe(true);
    expect(good.received[0]!.services.map((s) => s.name)).toEqual(['web']);
    expect(await eventually(() => cp.registry.get('good')?.lastAckedVersion === good.received[0]!.version)).toBe(true);
  });

  test('an agent without a client certificate, or with one from another CA, is refused', async () => {
    const none = connect('no-cert', { ca: certs.ca });
    const rogue = connect('rogue', { ca: certs.ca, cert: certs.rogueCert, key: certs.rogueKey });
    await sleep(1500); // several reconnect attempts
    expect(none.received).toEqual([]);
    expect(rogue.received).toEqual([]);
    expect(cp.registry.get('no-cert')).toBeUndefined();
    expect(cp.registry.get('rogue')).toBeUndefined();
    expect(none.source.lastError).toMatch(/UNAVAILABLE/);
    expect(rogue.source.lastError).toMatch(/UNAVAILABLE/);
  });
});
