import { buildService, canaryWeights, shareWeights } from '../../../controlplane/builder';
import { parseHostNode } from '../../../controlplane/host';
import { parseServiceConfig } from '../../../controlplane/service-config';
import { localService } from '../../../agent/agent-process';
import { Host } from '../../../controlplane/types';

const raw = (extra: Record<string, unknown>, name = 'web') => ({
  name,
  text: JSON.stringify({
    type: 'zookeeper',
    path: '/services/web',
    port: 8080,
    listen_options: ['mode http'],
    ...extra,
  }),
  origin: `zookeeper /service_config/${name}`,
  format: 'json' as const,
});
const host = (name: string, labels?: Record<string, string>, weight = 1): Host =>
  parseHostNode(
    name,
    Buffer.from(
      JSON.stringify({
        host: `10.0.0.${name.replace(/\D/g, '') || 1}`,
        port: 80,
        name,
        weight,
        ...(labels ? { labels } : {}),
      }),
    ),
  );

describe('service-config traffic options (issue 12)', () => {
  test('drain_timeout_ms, slow_start_ms, zone_label and canary parse into the config', () => {
    const c = parseServiceConfig(
      raw({
        drain_timeout_ms: 5000,
        slow_start_ms: 20000,
        zone_label: 'zone',
        canary: { labels: { canary: true }, share: 0.05 },
      }),
    );
    expect(c.drainTimeoutMs).toBe(5000);
    expect(c.zoneLabel).toBe('zone');
    expect(c.canary).toEqual({ labels: { canary: 'true' }, share: 0.05 });
    // slow start is HAProxy's slowstart on every server; zone-aware routing uses every backup when no local server is up.
    expect(c.serverOptions).toEqual(['slowstart 20000ms']);
    expect(c.listenOptions).toEqual(['mode http', 'option allbackups']);
  });

  test.each([
    [{ drain_timeout_ms: 0 }, /drain_timeout_ms: expected an integer 1-86400000 \(milliseconds\), got number 0/],
    [{ slow_start_ms: '10s' }, /slow_start_ms: expected an integer 1-3600000 \(milliseconds\), got string "10s"/],
    [
      { slow_start_ms: 1000, listen_options: ['mode http', 'balance source'] },
      /slow_start_ms: "balance source" is a static algorithm, which HAProxy cannot ramp/,
    ],
    [{ zone_label: 'zone name' }, /zone_label: expected a label name such as "zone"/],
    [
      { canary: { labels: { canary: 'true' }, share: 5 } },
      /canary.share: expected a share of the traffic between 0 and 1 \(e.g. 0.05 for 5 %\), got number 5/,
    ],
    [{ canary: { labels: {}, share: 0.05 } }, /canary.labels: expected at least one label/],
    [{ canary: { label: 'canary', share: 0.05 } }, /canary.label: unknown key \(expected labels, share\)/],
    [
      { canary: { labels: { canary: 'true' }, share: 0.1 }, listen_options: ['balance static-rr'] },
      /canary: "balance static-rr" is a static algorithm, which takes no runtime weights/,
    ],
  ])('%j is refused with a message naming the key', (extra, message) => {
    expect(() => parseServiceConfig(raw(extra))).toThrow(message);
  });
});

describe('weighted canaries: runtime weights for a share of the traffic', () => {
  test.each([
    [1, 3, 0.05],
    [1, 19, 0.05],
    [2, 5, 0.05],
    [5, 2, 0.05],
    [1, 100, 0.01],
    [3, 3, 0.5],
  ])('%i canaries, %i others, share %f: within 0.5 point with weights 1-256', (nc, ns, share) => {
    const { wc, ws } = shareWeights(nc, ns, share);
    expect(wc).toBeGreaterThanOrEqual(1);
    expect(ws).toBeLessThanOrEqual(256);
    expect(Math.abs((nc * wc) / (nc * wc + ns * ws) - share)).toBeLessThan(0.005);
  });

  test('canary hosts get the canary weight, others the rest; weight-0 hosts stay drained; one side empty: as discovered', () => {
    const hosts = [host('h1', { canary: 'true' }), host('h2'), host('h3'), host('h4', {}, 0)];
    const config = parseServiceConfig(raw({ canary: { labels: { canary: 'true' }, share: 0.05 } }));
    const s = buildService(config, hosts);
    const w = Object.fromEntries(s.servers.map((v) => [v.name, v.weight]));
    expect(w.h4).toBe(0);
    expect(Math.abs(w.h1! / (w.h1! + w.h2! + w.h3!) - 0.05)).toBeLessThan(0.005);
    expect(w.h2).toBe(w.h3);
    expect(canaryWeights(s.servers, [host('h2'), host('h3')], config.canary!).map((v) => v.weight)).toEqual(
      s.servers.map((v) => v.weight),
    );
  });
});

describe('zone-aware routing', () => {
  test("servers carry their host's zone; an agent in a zone makes the others backups; an agent without the label uses every server", () => {
    const config = parseServiceConfig(raw({ zone_label: 'zone' }));
    const s = buildService(config, [host('h1', { zone: 'east' }), host('h2', { zone: 'west' }), host('h3')]);
    expect(s.zoneLabel).toBe('zone');
    expect(s.servers.map((v) => [v.name, v.zone])).toEqual([
      ['h1', 'east'],
      ['h2', 'west'],
      ['h3', undefined],
    ]);
    const east = localService(s, undefined, { zone: 'east' });
    expect(east.servers.map((v) => [v.name, v.options])).toEqual([
      ['h1', []],
      ['h2', ['backup']],
      ['h3', ['backup']],
    ]);
    expect(localService(s, undefined, { rack: 'r1' })).toBe(s);
    // Idempotent: a state the agent cached (already localized) is not marked twice.
    expect(localService(east, undefined, { zone: 'east' }).servers.map((v) => v.options)).toEqual([
      [],
      ['backup'],
      ['backup'],
    ]);
  });
});

describe('review findings', () => {
  test('a share the weights cannot reach gets the nearest one, not an even split', () => {
    const { wc, ws } = shareWeights(1, 2000, 0.15);
    expect(wc).toBe(256);
    expect(ws).toBe(1);
    expect(256 / (256 + 2000)).toBeGreaterThan(0.1);
  });

  test('null values in a YAML service config read as absent, also for the schema check', () => {
    const c = parseServiceConfig({
      name: 'web',
      text: 'type: zookeeper\npath: /services/web\nport: 8080\nlisten_options:\nagents:\nserver_options:\n',
      origin: 'web.yml',
      format: 'yaml',
    });
    expect(c.listenOptions).toEqual([]);
    expect(c.agents).toBeUndefined();
  });
});
