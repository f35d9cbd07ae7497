import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { readStateFile } from '../../agent/sources/file';
import { tempDir } from '../../testkit/net';

describe('desired-state files (agent --state)', () => {
  const tmp = tempDir('proxymgr-state-file-');
  afterAll(() => tmp.cleanup());
  const read = (name: string, text: string) => {
    const file = path.join(tmp.dir, name);
    writeFileSync(file, text);
    return readStateFile(file);
  };

  // Found by the hostile campaign: "services: x" read as no services and dropped every listener.
  test.each([['services: x\n'], ['{}\n'], ['haproxy: {global: []}\n'], ['services: {web: 1}\n']])(
    '%j is refused, not read as "no services"',
    async (text) => {
      await expect(read('bad.yml', text)).rejects.toThrow(/services: expected a list of services/);
    },
  );

  test('an explicit empty list is a state without services', async () => {
    expect((await read('empty.yml', 'services: []\n')).services).toEqual([]);
  });
});
