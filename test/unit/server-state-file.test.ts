import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { writeFileAtomic } from '../../common/platform/fs';
import { saveServerState } from '../../agent/haproxy/server-state-file';
import { errno } from '../../testkit/fake-agent';

const STATE =
  '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n3 web 1 b 127.0.0.1 2 0 1 9002\n';
const STALE =
  '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_port\n3 web 1 b 127.0.0.1 2 8 1 9002\n';

describe('saving the server-state file before a reload', () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'proxymgr-ssf-'));
    file = path.join(dir, 'server-state');
    writeFileSync(file, STALE); // an earlier reload's save
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('saved: the file holds what HAProxy said', async () => {
    expect(await saveServerState(file, async () => STATE, writeFileAtomic)).toEqual({ saved: true });
    expect(readFileSync(file, 'utf8')).toBe(STATE);
  });

  test('a write that fails removes the earlier save, so that it is not loaded as the truth', async () => {
    const r = await saveServerState(
      file,
      async () => STATE,
      async () => {
        throw errno('ENOSPC', 'no space left on device');
      },
    );
    expect(r).toEqual({ saved: false, error: 'ENOSPC: no space left on device', removed: true });
    expect(existsSync(file)).toBe(false);
  });

  test('an answer that is not a server-state file (an error, a cut reply) is not written, and the earlier save goes', async () => {
    const writes: string[] = [];
    const r = await saveServerState(
      file,
      async () => 'Unknown command.\n',
      async (_f, c) => {
        writes.push(c);
        return true;
      },
    );
    expect(r).toMatchObject({ saved: false, removed: true });
    expect(r.saved === false && r.error).toMatch(
      /show servers state answered "Unknown command\.\\n", not a server-state file/,
    );
    expect(writes).toEqual([]);
    expect(existsSync(file)).toBe(false);
  });

  test('a runtime API that does not answer, and an earlier save that cannot be removed: said so (the caller trusts no override from it)', async () => {
    const down = async () => {
      throw new Error('connect ENOENT haproxy.sock');
    };
    const r = await saveServerState(file, down, writeFileAtomic, async () => {
      throw errno('EROFS', 'read-only file system');
    });
    expect(r).toEqual({ saved: false, error: 'connect ENOENT haproxy.sock', removed: false });
    expect(readFileSync(file, 'utf8')).toBe(STALE);
  });
});
