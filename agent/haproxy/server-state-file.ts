import { promises as fsp } from 'node:fs';
import { errorMessage } from '../../common/platform/errors';
import { clipText } from '../../common/platform/text';
import { FileWriter } from '../ports';

export type ServerStateSave =
  | { readonly saved: true }
  | {
      readonly saved: false;
      /** Why the save failed (the runtime API's answer, or the write's error). */
      readonly error: string;
      /** Whether the file of an earlier save was removed (false: it could not be, and the next HAProxy loads it). */
      readonly removed: boolean;
    };

/**
 * Saves `show servers state` to the server-state file HAProxy loads at its next start (`server-state-file`,
 * `load-server-state-from-file global`), so that health and admin states survive a reload.
 *
 * A save that fails (the runtime API does not answer, or answers something else; the disk is full) must not leave the
 * file of an earlier save behind: the new HAProxy would load states since changed as the truth — a server the agent
 * drained, then readied again, would come back drained, and read as an operator's drain. So the old file is removed;
 * the new HAProxy then starts from the config (the agent's runtime pass after the reload puts back what it knows).
 * `removed` is false when even that failed: the caller must then not trust the next observation (see
 * OverrideTracker.restarted).
 */
export async function saveServerState(
  file: string,
  showServersState: () => Promise<string>,
  write: FileWriter,
  remove: (file: string) => Promise<void> = (f) => fsp.rm(f, { force: true }),
): Promise<ServerStateSave> {
  let error: string;
  try {
    const text = await showServersState();
    // Version 1, then the `#` header naming the columns: anything else (an error message, a cut answer) is not a
    // state file HAProxy could load.
    if (!/^1\n# be_id /.test(text))
      throw new Error(`show servers state answered ${JSON.stringify(clipText(text, 120))}, not a server-state file`);
    await write(file, text);
    return { saved: true };
  } catch (err) {
    error = errorMessage(err);
  }
  const removed = await remove(file).then(
    () => true,
    () => false,
  );
  return { saved: false, error, removed };
}
