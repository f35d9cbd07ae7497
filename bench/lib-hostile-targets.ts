/**
 * Hostile service configs aimed at the control itself, for `bench hostile`: health checks at sockets, ProxyMgr's
 * ports and link-local addresses; relays; loopback server targets; references to other services. Each generator is
 * seeded (`rand`) and returns the JSON text of a service config (a `static` service) that the option grammar or the
 * target policy must refuse — as a whole config (parseServiceConfig / sanitizeState) or, for host entries, by
 * leaving the server out. The own ports assume a policy built from HOSTILE_TARGET_LISTENS.
 */
import { picker } from './lib-hostile';

/** ProxyMgr's listen addresses the policy in the benchmark (and its test) is built from. */
export const HOSTILE_TARGET_LISTENS = ['0.0.0.0:7000', '0.0.0.0:9700', '127.0.0.1:7001', '127.0.0.1:9701'];
const OWN_PORTS = [7000, 9700, 7001, 9701];
const SOCKETS = [
  'unix@/run/proxymgr/haproxy.sock',
  '/run/proxymgr/haproxy.sock',
  '/var/lib/proxymgr/haproxy.sock',
  'abns@haproxy',
  'uxst@/run/proxymgr/haproxy.sock',
  'sockpair@3',
  'fd@3',
  'ipv4@127.0.0.1',
  'localhost',
  'metadata.google.internal',
];
const LINK_LOCAL = ['169.254.169.254', '169.254.0.1', '[fe80::1]'];

function service(
  rand: () => number,
  parts: { listen?: string[]; server?: string[]; hosts?: { address: string; port: number }[] },
): string {
  return JSON.stringify({
    type: 'static',
    port: 20000 + Math.floor(rand() * 20000),
    listen_options: parts.listen ?? ['mode http'],
    server_options: parts.server ?? [],
    hosts: parts.hosts ?? [{ address: '10.0.0.1', port: 8080 }],
  });
}

/** Health and agent checks aimed at unix sockets, the stats socket, ProxyMgr's own ports or link-local addresses. */
export function hostileCheckTarget(rand: () => number, ownPorts: readonly number[] = OWN_PORTS): string {
  const pick = picker(rand);
  const own = pick(ownPorts);
  const sock = pick(SOCKETS);
  const kind = pick(['tcp-check', 'http-check'] as const);
  const listenHead = kind === 'tcp-check' ? ['mode tcp', 'option tcp-check'] : ['mode http', 'option httpchk'];
  const lines = [
    `${kind} connect addr ${sock}`,
    `${kind} connect addr ${sock} port ${own}`,
    `${kind} connect addr 127.0.0.1 port ${own}`,
    `${kind} connect addr ${pick(LINK_LOCAL)} port 80`,
    `${kind} connect port %[str(${own})]`,
    `${kind} connect addr 127.0.0.1 port ${own} via-socks4 ${pick(['ssl', 'linger', 'send-proxy'])}`,
    `${kind} connect addr 10.0.0.1 bogus ${own}`,
  ];
  const servers = [
    [`check addr ${sock}`],
    [`check addr 127.0.0.1 port ${own}`],
    [`check`, `addr ::1`, `port ${own}`],
    [`check addr [::ffff:127.0.0.1] port ${own}`],
    [`agent-check agent-addr ${pick(['127.0.0.1', '::1'])} agent-port ${own}`],
    [`agent-check agent-addr ${sock} agent-port 5555`],
    [`check socks4 ${pick(LINK_LOCAL)}:80 check-via-socks4`],
    [`check socks4 ${sock}`],
    [`init-addr ${pick(['0.0.0.0', sock, '169.254.169.254'])}`],
    [`check port ${own} addr 0.0.0.0`],
  ];
  if (rand() < 0.5) return service(rand, { listen: [...listenHead, pick(lines)] });
  return service(rand, { server: pick(servers) });
}

/** Ways to turn a service into a relay to any address (transparent proxying, destination from the request). */
export function hostileRelay(rand: () => number, ownPorts: readonly number[] = OWN_PORTS): string {
  const pick = picker(rand);
  const cond = pick(['', ' if TRUE', ' if { path /x }', ' unless { src 10.0.0.0/8 }']);
  const lines = [
    'option transparent',
    'transparent',
    `http-request set-dst hdr_ip(x-dst)${cond}`,
    `http-request set-dst-port hdr(x-port)${cond}`,
    `tcp-request connection set-dst ipv4(127.0.0.1)${cond}`,
    `tcp-request session set-dst-port int(${pick([22, 7000, 2181])})${cond}`,
    `tcp-request content set-dst ipv4(169.254.169.254)${cond}`,
    `http-request set-dst ipv6(::1)${cond}`,
    `source 10.0.0.1 usesrc ${pick(['clientip', 'client', '10.0.0.2', 'hdr_ip(x-forwarded-for)'])}`,
    `dispatch 127.0.0.1:${pick(ownPorts)}`,
  ];
  if (rand() < 0.8) return service(rand, { listen: ['mode http', pick(lines)] });
  return service(rand, { server: [`source 0.0.0.0 usesrc ${pick(['client', 'clientip'])}`] });
}

/** Host entries (server addresses) at ProxyMgr's own ports on loopback, the unspecified address or link-local. */
export function hostileLoopbackTarget(rand: () => number, ownPorts: readonly number[] = OWN_PORTS): string {
  const pick = picker(rand);
  const own = pick(ownPorts);
  const hosts = [
    { address: '127.0.0.1', port: own },
    { address: `127.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}.1`, port: own },
    { address: '::1', port: own },
    { address: '::ffff:127.0.0.1', port: own },
    { address: 'localhost', port: own },
    { address: '0.0.0.0', port: 1 + Math.floor(rand() * 65535) },
    { address: '::', port: 1 + Math.floor(rand() * 65535) },
    { address: '169.254.169.254', port: pick([80, 443, 8080]) },
    { address: `169.254.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}`, port: 80 },
    { address: 'fe80::1', port: 80 },
  ];
  return service(rand, { hosts: [pick(hosts)] });
}

/** Options reaching other services of the same HAProxy: backends, stick tables, proc variables, stats, services. */
export function hostileCrossService(rand: () => number): string {
  const pick = picker(rand);
  const other = pick(['other', 'payments', 'web2', 'api']);
  const lines = [
    `use_backend ${other}`,
    `use_backend ${other} if { path_beg /x }`,
    `default_backend ${other}`,
    'use_backend %[req.hdr(x-backend)]',
    `http-request track-sc${pick([0, 1, 2])} src table ${other}`,
    `tcp-request connection track-sc0 src table ${other}`,
    `stick on src table ${other}`,
    `http-request deny if { sc_http_req_rate(0,${other}) gt 1 }`,
    `http-request deny if { sc0_conn_cnt(${other}) gt 1 }`,
    `http-request set-header X %[src,table_http_req_rate(${other})]`,
    `http-request set-header X %[nbsrv(${other})]`,
    `http-request set-var(proc.${other}) str(1)`,
    `http-request set-var-fmt(proc.x) %[src]`,
    'http-request unset-var(proc.x)',
    `http-request deny if { var(proc.${other}) -m found }`,
    'http-check set-var(proc.x) int(1)',
    `tcp-request content set-var(proc.x) int(1)`,
    'stats enable',
    'stats uri /stats',
    'stats show-legends',
    `stats scope ${other}`,
    'stats auth admin:admin',
    'http-request use-service prometheus-exporter if { path /metrics }',
    'tcp-request content use-service lua.evil',
  ];
  return service(rand, { listen: ['mode http', pick(lines)] });
}

/** The four classes by the name `bench hostile` reports them under. */
export const HOSTILE_TARGET_CLASSES: Readonly<
  Record<string, (rand: () => number, ownPorts?: readonly number[]) => string>
> = {
  health_check_targets: hostileCheckTarget,
  relays: hostileRelay,
  loopback_targets: hostileLoopbackTarget,
  cross_service_references: hostileCrossService,
};
