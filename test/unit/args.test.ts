import { configFlag, parseArgs, parseFlags, UsageError } from '../../common/platform/args';

const spec = { config: 'string', json: 'boolean', 'bake-ms': 'string' } as const;

describe('command-line flags (node:util parseArgs underneath)', () => {
  test('values, booleans and positionals in order', () => {
    expect(parseArgs(['rollout', '--json', 'status', '--bake-ms', '500', '--config=a.yml'], spec)).toEqual({
      flags: { json: true, 'bake-ms': '500', config: 'a.yml' },
      positional: ['rollout', 'status'],
    });
  });

  test.each([
    [['--bogus'], 'unknown option --bogus'],
    [['--config'], '--config needs a value'],
    [['--config', '--json'], '--config needs a value'],
    [['--json=yes'], '--json takes no value'],
  ])('%j is a UsageError: %s', (argv, message) => {
    expect(() => parseArgs(argv, spec)).toThrow(UsageError);
    expect(() => parseArgs(argv, spec)).toThrow(message);
  });

  test('parseFlags refuses positionals; configFlag says what is missing and returns exit code 2', () => {
    expect(() => parseFlags(['extra'], spec)).toThrow('unexpected argument "extra"');
    const errors: string[] = [];
    const spy = jest.spyOn(console, 'error').mockImplementation((m: string) => void errors.push(m));
    try {
      expect(configFlag([], 'usage: x', 'agent')).toBe(2);
      expect(configFlag(['--config', 'p.yml'], 'usage: x', 'agent')).toBe('p.yml');
    } finally {
      spy.mockRestore();
    }
    expect(errors[0]).toMatch(/^proxymgr agent: --config is required/);
  });
});
