import { inMaint, parseServersState } from '../../agent/haproxy/servers-state';
import { backoffDelay } from '../../agent/haproxy/process';

// Captured from HAProxy 2.6.12 `show servers state`.
const SAMPLE = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 a 127.0.0.1 2 0 3 1 12 1 0 0 0 0 0 0 - 9001 - 0 0 - - 0
3 web 2 b ::1 0 1 1 1 12 1 0 0 0 0 0 0 - 9002 - 0 0 - - 0

`;

test('parseServersState reads servers by column name', () => {
  const s = parseServersState(SAMPLE);
  const a = s.get('web')?.get('a');
  expect(a).toEqual({
    backend: 'web',
    name: 'a',
    address: '127.0.0.1',
    port: 9001,
    weight: 3,
    adminState: 0,
    operState: 2,
  });
  const b = s.get('web')?.get('b');
  expect(b?.address).toBe('::1');
  expect(inMaint(b!)).toBe(true);
  expect(inMaint(a!)).toBe(false);
});

test('parseServersState rejects a reply without a header', () => {
  expect(() => parseServersState('Unknown command.\n')).toThrow(/no header line/);
});

test('restart backoff doubles from the base and is capped', () => {
  expect([1, 2, 3, 4, 10].map((n) => backoffDelay(n, 100, 1000))).toEqual([100, 200, 400, 800, 1000]);
});
