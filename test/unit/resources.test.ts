import {
  diff,
  Digest,
  fullDelta,
  globalsVersion,
  PROTOCOL_VERSION,
  resourceSet,
  ResourceSet,
  resourceVersion,
} from '../../common/protocol/resources';
import { DesiredState, Service } from '../../common/protocol/types';
import { HTTP_DEFAULTS, server, service, state } from '../../testkit/agent';

const names = (services: readonly Service[]) => services.map((s) => s.name).sort();

/** A deep copy: equal content in new objects (nothing memoized for them yet). */
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

const web = service('web', 8080, [server('a', 9001), server('b', 9002)]);
const api = service('api', 8081, [server('a', 9101)]);
const db = service('db', 5432, [server('p', 5433)], { listenOptions: ['mode tcp'] });

describe('resource versions', () => {
  test('the protocol this build speaks is 2', () => {
    expect(PROTOCOL_VERSION).toBe(2);
  });

  test('equal content in different objects has equal versions; any change gives a different version', () => {
    const copy = clone(web);
    expect(copy).not.toBe(web);
    expect(resourceVersion(copy)).toBe(resourceVersion(web));
    // Key order does not matter (canonical JSON).
    const reordered: Service = {
      servers: web.servers,
      serverOptions: web.serverOptions,
      listenOptions: web.listenOptions,
      bindAddress: web.bindAddress,
      port: web.port,
      name: web.name,
    };
    expect(resourceVersion(reordered)).toBe(resourceVersion(web));

    expect(resourceVersion({ ...web, port: 8090 })).not.toBe(resourceVersion(web));
    expect(resourceVersion({ ...web, servers: [server('a', 9001), server('b', 9002, { weight: 0 })] })).not.toBe(
      resourceVersion(web),
    );
    expect(resourceVersion({ ...web, servers: [server('a', 9001)] })).not.toBe(resourceVersion(web));
    expect(resourceVersion({ ...web, name: 'web2' })).not.toBe(resourceVersion(web));
    expect(resourceVersion(web)).toMatch(/^[0-9a-f]{32}$/);
  });

  test('globals versions depend on the content only', () => {
    const g = { global: ['maxconn 100'], defaults: HTTP_DEFAULTS };
    expect(globalsVersion(clone(g))).toBe(globalsVersion(g));
    expect(globalsVersion({ ...g, global: ['maxconn 200'] })).not.toBe(globalsVersion(g));
    expect(globalsVersion({ ...g, defaults: [...HTTP_DEFAULTS, 'option httplog'] })).not.toBe(globalsVersion(g));
    expect(globalsVersion(g)).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('Digest', () => {
  const terms: [string, string][] = [
    ['web', 'aa11'],
    ['api', 'bb22'],
    ['db', 'cc33'],
  ];

  test('the same set toggled in any order gives the same digest', () => {
    const orders = [
      [0, 1, 2],
      [2, 1, 0],
      [1, 2, 0],
    ];
    const hexes = orders.map((order) => {
      const d = new Digest();
      d.toggleGlobals('ff00');
      for (const i of order) d.toggle(...terms[i]!);
      return d.hex();
    });
    expect(new Set(hexes).size).toBe(1);
    // Globals toggled last instead of first: still the same.
    const d = new Digest();
    for (const t of terms) d.toggle(...t);
    d.toggleGlobals('ff00');
    expect(d.hex()).toBe(hexes[0]);
  });

  test('a toggle changes the digest; toggling the same term again undoes it (add and remove are one operation)', () => {
    const d = new Digest();
    for (const t of terms) d.toggle(...t);
    const before = d.hex();
    d.toggle('extra', 'dd44');
    expect(d.hex()).not.toBe(before);
    d.toggle('extra', 'dd44');
    expect(d.hex()).toBe(before);

    // A changed version of one resource changes the digest.
    const changed = new Digest();
    changed.toggle('web', 'aa12');
    changed.toggle('api', 'bb22');
    changed.toggle('db', 'cc33');
    expect(changed.hex()).not.toBe(before);
  });

  test('the globals term cannot be confused with a service term, nor name with version', () => {
    const a = new Digest();
    a.toggleGlobals('ab');
    const b = new Digest();
    b.toggle('globals', 'ab');
    expect(a.hex()).not.toBe(b.hex());
    const c = new Digest();
    c.toggle('ab', 'c');
    const e = new Digest();
    e.toggle('a', 'bc');
    expect(c.hex()).not.toBe(e.hex());
  });

  test('copy() is independent of the original', () => {
    const d = new Digest();
    d.toggle('web', 'aa11');
    const c = d.copy();
    expect(c.hex()).toBe(d.hex());
    c.toggle('api', 'bb22');
    expect(c.hex()).not.toBe(d.hex());
  });
});

describe('resourceSet', () => {
  test('names every service with its resource version, the globals version, and the state version', () => {
    const s = state([web, api]);
    const set = resourceSet(s);
    expect(set.version).toBe(s.version);
    expect(set.globalsVersion).toBe(globalsVersion(s.haproxy));
    expect([...set.resources.entries()].sort()).toEqual(
      [
        ['api', resourceVersion(api)],
        ['web', resourceVersion(web)],
      ].sort(),
    );
  });

  test('is memoized per state object', () => {
    const s = state([web, api]);
    expect(resourceSet(s)).toBe(resourceSet(s));
  });

  test('its digest is the digest of the globals and every (name, version), in any service order', () => {
    const s = state([web, api, db]);
    const d = new Digest();
    d.toggleGlobals(globalsVersion(s.haproxy));
    for (const x of [db, web, api]) d.toggle(x.name, resourceVersion(x));
    expect(resourceSet(s).digest).toBe(d.hex());
    expect(resourceSet(state([db, api, web])).digest).toBe(resourceSet(s).digest);
    expect(resourceSet(state(clone([web, api, db]))).digest).toBe(resourceSet(s).digest);
    // Different globals, different digest.
    expect(resourceSet(state([web, api, db], ['mode tcp'])).digest).not.toBe(resourceSet(s).digest);
    // One service fewer, or one changed: different digest.
    expect(resourceSet(state([web, api])).digest).not.toBe(resourceSet(s).digest);
    expect(resourceSet(state([web, api, { ...db, port: 5434 }])).digest).not.toBe(resourceSet(s).digest);
  });
});

describe('diff', () => {
  const v1 = state([web, api, db]);

  test('diff of identical states is empty', () => {
    const d = diff(resourceSet(v1), v1);
    expect(d).toEqual({
      version: v1.version,
      baseVersion: v1.version,
      full: false,
      haproxy: undefined,
      globalsVersion: resourceSet(v1).globalsVersion,
      upserted: [],
      removed: [],
      digest: resourceSet(v1).digest,
    });
    // Equal content in other objects (a rebuilt snapshot) is also empty.
    const rebuilt = state(clone([web, api, db]));
    const d2 = diff(resourceSet(v1), rebuilt);
    expect(d2.upserted).toEqual([]);
    expect(d2.removed).toEqual([]);
    expect(d2.haproxy).toBeUndefined();
  });

  test('a changed service is upserted; unchanged ones are not', () => {
    const web2 = { ...web, servers: [server('a', 9001), server('c', 9003)] };
    const v2 = state([web2, api, db]);
    const d = diff(resourceSet(v1), v2);
    expect(d.full).toBe(false);
    expect(d.baseVersion).toBe(v1.version);
    expect(d.version).toBe(v2.version);
    expect(d.upserted).toEqual([web2]);
    expect(d.upserted[0]).toBe(web2);
    expect(d.removed).toEqual([]);
    expect(d.haproxy).toBeUndefined();
    expect(d.digest).toBe(resourceSet(v2).digest);
    expect(d.digest).not.toBe(resourceSet(v1).digest);
  });

  test('an added service is upserted, a removed one is named in removed', () => {
    const cache = service('cache', 6379, [server('r', 6380)]);
    const v2 = state([web, cache, db]); // api removed, cache added
    const d = diff(resourceSet(v1), v2);
    expect(names(d.upserted)).toEqual(['cache']);
    expect(d.removed).toEqual(['api']);
    expect(d.digest).toBe(resourceSet(v2).digest);
  });

  test('added, changed and removed at once; a service renamed is one removed and one added', () => {
    const v2 = state([{ ...web, name: 'www' }, { ...api, port: 9999 }, db, service('new', 7000, [])]);
    const d = diff(resourceSet(v1), v2);
    expect(names(d.upserted)).toEqual(['api', 'new', 'www']);
    expect(d.removed).toEqual(['web']);
  });

  test('the globals are sent only when they changed; the globals version always', () => {
    const sameGlobalsOtherObject = state(clone([web, api, db]), [...HTTP_DEFAULTS]);
    expect(sameGlobalsOtherObject.haproxy).not.toBe(v1.haproxy);
    const d1 = diff(resourceSet(v1), sameGlobalsOtherObject);
    expect(d1.haproxy).toBeUndefined();
    expect(d1.globalsVersion).toBe(resourceSet(v1).globalsVersion);

    const v2 = state([web, api, db], [...HTTP_DEFAULTS, 'option httplog']);
    const d2 = diff(resourceSet(v1), v2);
    expect(d2.haproxy).toBe(v2.haproxy);
    expect(d2.globalsVersion).toBe(globalsVersion(v2.haproxy));
    expect(d2.globalsVersion).not.toBe(resourceSet(v1).globalsVersion);
    // Only the globals changed: no service is sent.
    expect(d2.upserted).toEqual([]);
    expect(d2.removed).toEqual([]);
    expect(d2.digest).toBe(resourceSet(v2).digest);
  });

  test('works from a declared set (what an agent said it holds), not only from a state', () => {
    const declared: ResourceSet = {
      version: 'held-by-agent',
      globalsVersion: resourceSet(v1).globalsVersion,
      resources: new Map([
        ['web', resourceVersion(web)],
        ['api', '0123456789abcdef0123456789abcdef'], // stale
        ['gone', resourceVersion(db)],
      ]),
    };
    const d = diff(declared, v1);
    expect(d.baseVersion).toBe('held-by-agent');
    expect(names(d.upserted)).toEqual(['api', 'db']);
    expect(d.removed).toEqual(['gone']);
    expect(d.haproxy).toBeUndefined();
  });

  test('an empty base gets every service and the globals', () => {
    const empty: ResourceSet = { version: 'x', globalsVersion: '', resources: new Map() };
    const d = diff(empty, v1);
    expect(names(d.upserted)).toEqual(['api', 'db', 'web']);
    expect(d.haproxy).toBe(v1.haproxy);
    expect(d.full).toBe(false);
  });
});

describe('fullDelta', () => {
  test('is the whole state, replacing whatever the agent holds', () => {
    const s: DesiredState = state([web, api, db]);
    const d = fullDelta(s);
    expect(d.full).toBe(true);
    expect(d.baseVersion).toBe('');
    expect(d.version).toBe(s.version);
    expect(d.haproxy).toBe(s.haproxy);
    expect(d.globalsVersion).toBe(resourceSet(s).globalsVersion);
    expect(d.upserted).toEqual(s.services);
    expect(d.removed).toEqual([]);
    expect(d.digest).toBe(resourceSet(s).digest);
  });
});
