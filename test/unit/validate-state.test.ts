import { sanitizeState } from '../../common/validate-state';
import { StateError } from '../../common/errors';
import { server, service, state } from '../helpers/agent';

describe('sanitizeState (pure)', () => {
  test('a clean state passes unchanged, services sorted by name', () => {
    const s = state([service('web', 80, [server('a', 1)]), service('api', 81, [])]);
    const r = sanitizeState(s);
    expect(r.problems).toEqual([]);
    expect(r.state.services.map((x) => x.name)).toEqual(['api', 'web']);
  });

  test('duplicate port: the service already running keeps it', () => {
    const prev = state([service('web', 80, [])]);
    const r = sanitizeState(state([service('aaa', 80, []), service('web', 80, [])]), prev);
    expect(r.state.services.map((x) => x.name)).toEqual(['web']);
    expect(r.problems).toEqual([{ service: 'aaa', where: 'service aaa', message: 'port 80 is already used by service web' }]);
  });

  test('a rejected service falls back to its previous version', () => {
    const prev = state([service('web', 80, [server('a', 1)])]);
    const r = sanitizeState(state([service('web', 80, [server('a', 1), server('bad name', 2)])]), prev);
    expect(r.state.services).toEqual(prev.services);
    expect(r.problems[0]).toEqual({ service: 'web', where: 'service "web" server "bad name"', message: 'name must match [A-Za-z0-9_.:-]+' });
  });

  test('weights, addresses, bind address and duplicate names are checked', () => {
    const r = sanitizeState(
      state([
        service('w1', 1, [server('a', 1, { weight: 300 })]),
        service('w2', 2, [server('a', 1, { address: 'not an address!' })]),
        service('w3', 3, [], { bindAddress: 'localhost' }),
        service('w4', 4, [server('a', 1), server('a', 2)]),
      ]),
    );
    expect(r.state.services).toEqual([]);
    expect(r.problems.map((p) => p.message)).toEqual([
      'weight 300 is outside 0-256',
      'address "not an address!" is neither an IP literal nor a hostname',
      'bind address "localhost" is not an IP literal',
      'duplicate server name',
    ]);
  });

  test('a control character in defaults rejects the whole state', () => {
    const s = state([]);
    expect(() => sanitizeState({ ...s, haproxy: { global: [], defaults: ['mode http\r'] } })).toThrow(StateError);
  });
});
