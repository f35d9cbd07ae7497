import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { DEFAULT_SERVICE_OPTIONS } from '../../common/config/config';
import { listenOptionProblem, serverOptionsProblems } from '../../common/haproxy/option-policy';
import { tempDir } from '../../testkit/net';
import {
  CHECK_CONNECT_OPTIONS,
  ORDINARY_LISTEN_OPTIONS,
  ORDINARY_SERVER_OPTIONS,
  TCP_CHECK_CONNECT_OPTIONS,
} from '../../testkit/service-options';

/**
 * The allow list is only useful if what it lets through is real HAProxy 2.6 configuration: the ordinary options the
 * unit tests pass must also pass `haproxy -c` (the real binary), in a listen section and on server lines.
 */
test('every ordinary listen and server option the policy allows is accepted by haproxy -c', async () => {
  const tmp = tempDir('proxymgr-policy-');
  try {
    const listen = ORDINARY_LISTEN_OPTIONS.filter((l) => l !== 'mode tcp'); // one mode (http) for the whole section
    for (const l of CHECK_CONNECT_OPTIONS)
      expect(listenOptionProblem(l, DEFAULT_SERVICE_OPTIONS, 'checks')).toBeUndefined();
    for (const l of TCP_CHECK_CONNECT_OPTIONS)
      expect(listenOptionProblem(l, DEFAULT_SERVICE_OPTIONS, 'tcpchecks')).toBeUndefined();
    for (const l of listen) expect(listenOptionProblem(l, DEFAULT_SERVICE_OPTIONS, 'web')).toBeUndefined();
    for (const o of ORDINARY_SERVER_OPTIONS)
      expect(serverOptionsProblems(o, DEFAULT_SERVICE_OPTIONS, 'web')).toEqual([]);
    const cfg = [
      'global',
      '    log stdout format raw local0',
      'defaults',
      '    mode http',
      '    timeout connect 1s',
      '    timeout client 1s',
      '    timeout server 1s',
      'listen web',
      '    bind 127.0.0.1:65001', // haproxy -c does not bind
      ...listen.map((l) => `    ${l}`),
      ...ORDINARY_SERVER_OPTIONS.map((o, i) => `    server s${i} 127.0.0.1:${9000 + i} weight 1 ${o.join(' ')}`),
      // typed health-check targets, each sequence in a section of its own (HAProxy wants connect rules first)
      'listen checks',
      '    bind 127.0.0.1:65002',
      ...CHECK_CONNECT_OPTIONS.map((l) => `    ${l}`),
      '    server a 127.0.0.1:9100 check verify none socks4 10.0.0.9:1080',
      'listen tcpchecks',
      '    bind 127.0.0.1:65003',
      ...TCP_CHECK_CONNECT_OPTIONS.map((l) => `    ${l}`),
      '    server a 127.0.0.1:9101 check verify none',
      'resolvers dns',
      '    nameserver ns 127.0.0.1:53',
      '',
    ].join('\n');
    const file = path.join(tmp.dir, 'haproxy.cfg');
    writeFileSync(file, cfg);
    const { code, output } = await new Promise<{ code: number; output: string }>((resolve) =>
      execFile('haproxy', ['-c', '-f', file], (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, output: stdout + stderr }),
      ),
    );
    expect({ code, alerts: output.split('\n').filter((l) => /ALERT/.test(l)) }).toEqual({ code: 0, alerts: [] });
  } finally {
    tmp.cleanup();
  }
});
