import { spawn } from 'node:child_process';
import { HaproxyConfigError } from '../../common/errors';

/**
 * Runs `haproxy -c` on a candidate config. HAProxy checks `bind fd@N` even in check mode, so the listening fds
 * are handed over exactly as for a real start (the check process never accepts). Throws HaproxyConfigError naming
 * the services whose lines HAProxy complained about and quoting its messages.
 */
export async function checkConfig(binary: string, configFile: string, configText: string, fds: readonly number[]): Promise<void> {
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
    const child = spawn(binary, ['-c', '-f', configFile], { stdio: ['ignore', 'pipe', 'pipe', ...fds] });
    let output = '';
    child.stdout!.on('data', (c) => (output += c.toString()));
    child.stderr!.on('data', (c) => (output += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, output }));
  });
  if (code === 0) return;
  const alerts = output
    .split('\n')
    .filter((l) => /\[(ALERT|WARNING)\]/.test(l) && !/Fatal errors found|Error\(s\) found in configuration file/.test(l))
    .map((l) => l.replace(/^\[(ALERT|WARNING)\]\s+\(\d+\)\s+:\s+/, '').trim());
  const sections = sectionsByLine(configText);
  const services = new Set<string>();
  for (const a of alerts) {
    const m = /parsing \[[^\]]*:(\d+)\]/.exec(a);
    const section = m ? sections[Number(m[1]) - 1] : undefined;
    if (section) services.add(section);
  }
  const where = services.size > 0 ? `service ${[...services].join(', ')}` : 'global/defaults';
  const quoted = alerts.length > 0 ? alerts.join(' | ') : output.trim();
  throw new HaproxyConfigError(`haproxy -c rejected the configuration (${where}): ${quoted}`, output, [...services]);
}

/** For each line of a rendered config (0-based), the `listen` section it belongs to, or undefined. */
function sectionsByLine(text: string): (string | undefined)[] {
  let current: string | undefined;
  return text.split('\n').map((line) => {
    const m = /^(listen|frontend|backend)\s+(\S+)/.exec(line);
    if (m) current = m[2];
    else if (/^(global|defaults)\b/.test(line)) current = undefined;
    return current;
  });
}
