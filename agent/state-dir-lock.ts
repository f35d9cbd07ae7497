import { ftruncateSync, readFileSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, errorMessage } from '../common/errors';
import { nativeAddon } from './haproxy/native';

/**
 * One agent per `agent.state_dir`: two agents started at once would both take the running HAProxy over and both
 * reload it. The lock is an flock on `<state_dir>/agent.lock` (which also records the holder's pid): the kernel
 * releases it when the holder exits, a kill -9 included, so a stale lock never blocks the next agent.
 */
export class StateDirLock {
  private constructor(private fd: number | undefined) {}

  /** Takes the lock, or throws a ConfigError naming the directory and the agent that holds it. */
  static take(stateDir: string, configFile: string): StateDirLock {
    const lockPath = path.join(stateDir, 'agent.lock');
    let fd: number;
    try {
      fd = nativeAddon().lockFile(lockPath);
    } catch (err) {
      if ((err as { code?: string }).code === 'ELOCKED') {
        let holder = '';
        try {
          holder = readFileSync(lockPath, 'utf8').trim();
        } catch {
          // unreadable: the message goes without the pid
        }
        throw new ConfigError(
          `${configFile}: agent.state_dir ${stateDir} is in use by another agent${/^\d+$/.test(holder) ? ` (pid ${holder})` : ''}: one agent per state_dir (two would both take the running HAProxy over and reload it)`,
        );
      }
      throw new ConfigError(`${configFile}: agent.state_dir: cannot lock ${lockPath}: ${errorMessage(err)}`, {
        cause: err,
      });
    }
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return new StateDirLock(fd);
  }

  /** Lets the next agent in (stop, hand-over); the process's exit does the same. */
  release(): void {
    if (this.fd === undefined) return;
    nativeAddon().closeFd(this.fd);
    this.fd = undefined;
  }
}
