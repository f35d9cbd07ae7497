import { FSWatcher, watch } from 'node:fs';

/**
 * Calls `onChange` shortly after anything in `dir` changes (fs events; the directory is watched rather than the
 * file so atomic rename-into-place is seen) and every `pollMs` regardless, because fs events are lost on some
 * filesystems (NFS, some container mounts) and when the directory itself is replaced. Returns the stop function.
 */
export function followDir(dir: string, onChange: () => void, pollMs: number, settleMs = 10): () => void {
  let pending: NodeJS.Timeout | undefined;
  let stopped = false;
  const trigger = () => {
    if (stopped || pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      if (!stopped) onChange();
    }, settleMs);
  };
  let watcher: FSWatcher | undefined;
  const arm = () => {
    if (watcher || stopped) return;
    try {
      watcher = watch(dir, { persistent: false }, trigger);
      watcher.on('error', () => {
        watcher?.close();
        watcher = undefined; // re-armed by the next poll
      });
    } catch {
      watcher = undefined; // the directory does not exist (yet); polling covers it
    }
  };
  arm();
  const poll = setInterval(() => {
    arm();
    onChange();
  }, pollMs);
  poll.unref?.();
  return () => {
    stopped = true;
    clearInterval(poll);
    if (pending) clearTimeout(pending);
    watcher?.close();
  };
}
