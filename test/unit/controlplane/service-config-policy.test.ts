import { DEFAULT_SERVICE_OPTIONS } from '../../../common/config/config';
import { parseServiceConfig, ServiceConfigError } from '../../../controlplane/service-config';

const raw = (doc: object, name = 'web') => ({
  name,
  text: JSON.stringify(doc),
  origin: `zookeeper /service_config/${name}`,
  format: 'json' as const,
});
const zk = { type: 'zookeeper', path: '/services/web', port: 8080 };

describe('parseServiceConfig holds listen and server options to service_options (early, precise errors)', () => {
  test('ordinary options parse', () => {
    const c = parseServiceConfig(
      raw({
        ...zk,
        listen_options: ['mode http', 'option httpchk GET /health', 'balance roundrobin'],
        server_options: ['check inter 2000 rise 2 fall 3'],
      }),
    );
    expect(c.listenOptions).toHaveLength(3);
  });

  test.each([
    [
      { listen_options: ['mode http', 'global'] },
      'zookeeper /service_config/web: listen_options[1]: "global" opens a new section',
    ],
    [
      { listen_options: ['bind 127.0.0.1:9999'] },
      /^zookeeper \/service_config\/web: listen_options\[0\]: "bind" is not allowed in a listen section/,
    ],
    [
      { listen_options: ['errorfile 503 /etc/passwd'] },
      /listen_options\[0\]: errorfile "\/etc\/passwd": file outside service_options.file_dirs \(none listed\)/,
    ],
    [{ server_options: ['check', 'crt /etc/shadow'] }, /server_options\[1\]: crt "\/etc\/shadow": file outside/],
  ])('%j is refused', (extra, message) => {
    const parse = () => parseServiceConfig(raw({ ...zk, ...extra }));
    expect(parse).toThrow(ServiceConfigError);
    expect(parse).toThrow(message);
  });

  test('static hosts carry per-host options: checked too', () => {
    const parse = () =>
      parseServiceConfig(
        raw({
          type: 'static',
          port: 8080,
          hosts: [{ address: '10.0.0.1', port: 80, options: ['check', 'namespace x'] }],
        }),
      );
    expect(parse).toThrow(/hosts\[0\] options\[1\]: "namespace" is not allowed/);
  });

  test("the operator's policy widens what parses", () => {
    const policy = { ...DEFAULT_SERVICE_OPTIONS, extraListenKeywords: ['option my-option'], fileDirs: ['/srv/errors'] };
    expect(() =>
      parseServiceConfig(
        raw({ ...zk, listen_options: ['option my-option', 'errorfile 503 /srv/errors/503.http'] }),
        policy,
      ),
    ).not.toThrow();
  });
});
