import { attributeAlerts } from '../../agent/haproxy/config-check';

/** Issue 9 h: `haproxy -c` output (HAProxy 2.6.12, verbatim shapes) mapped back to the services' listen sections. */
describe('attributeAlerts (pure)', () => {
  const cfg = [
    'global',
    '    maxconn 100',
    '',
    'defaults',
    '    mode http',
    '',
    'listen web',
    '    bind fd@3',
    '    timeout server soon',
    '',
    'listen api',
    '    bind fd@4',
    '    server a 127.0.0.1:1 track x/y',
    '',
  ].join('\n');
  const out = (...lines: string[]) =>
    [
      '[NOTICE]   (1) : haproxy version is 2.6.12',
      ...lines,
      '[ALERT]    (1) : config : Fatal errors found in configuration.',
    ].join('\n');

  test('a parse error by file:line, a server error by file:line, a post-parse error by proxy name', () => {
    const a = attributeAlerts(
      out(
        "[ALERT]    (1) : config : parsing [/s/haproxy.cfg.candidate:9] : unexpected character 's' in 'timeout server'",
        "[ALERT]    (1) : config : [/s/haproxy.cfg.candidate:13] : 'server api/a' : unable to find required server 'y' for tracking.",
        "[ALERT]    (1) : config : Proxy 'web': unable to find required use_backend: 'nosuch'.",
        "[WARNING]  (1) : config : 'http-request' rules ignored for proxy 'api' as they require HTTP mode.",
        '[ALERT]    (1) : config : Error(s) found in configuration file : /s/haproxy.cfg.candidate',
      ),
      cfg,
    );
    expect([...a.byService.keys()]).toEqual(['web', 'api']);
    expect(a.byService.get('web')).toHaveLength(2);
    expect(a.unattributed).toEqual([]);
    expect(a.alerts).toHaveLength(4); // the warning is quoted, but blames nobody
  });

  test('an alert in global/defaults or without a location is unattributed', () => {
    expect(
      attributeAlerts(
        out("[ALERT]    (1) : config : parsing [/s/c:5] : unknown keyword 'mdoe' in 'defaults' section"),
        cfg,
      ).unattributed,
    ).toHaveLength(1);
    expect(attributeAlerts(out("[ALERT]    (1) : config : Proxy 'ghost': something"), cfg).unattributed).toHaveLength(
      1,
    );
    expect(attributeAlerts('Segmentation fault', cfg).unattributed).toEqual(['Segmentation fault']);
  });
});
