import { copyFileSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { binaryIdentity, findHaproxies } from '../../agent/haproxy/orphan';

/**
 * How the previous HAProxy is found in /proc, on a fake /proc tree: the configured binary (haproxy.path) is known
 * by its file identity under any name, not by the name `haproxy` in argv[0].
 */
describe('finding the HAProxy a previous agent left running', () => {
  let dir: string;
  let proc: string;
  let lb: string;
  const cfg = '/var/lib/proxymgr/haproxy.cfg';
  /** A fake /proc/PID: its argv, its exe link (what the kernel shows), its start time. */
  const fake = (pid: number, argv: string[], exe: string, start = pid) => {
    const d = path.join(proc, String(pid));
    mkdirSync(d);
    writeFileSync(path.join(d, 'cmdline'), argv.join('\0') + '\0');
    symlinkSync(exe, path.join(d, 'exe'));
    writeFileSync(
      path.join(d, 'stat'),
      `${pid} (x) S ${Array.from({ length: 19 }, (_, i) => (i === 18 ? start : 0)).join(' ')}`,
    );
  };
  const find = (binary?: string) => findHaproxies(cfg, binary, { root: proc, alive: () => true });

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'proxymgr-proc-'));
    proc = path.join(dir, 'proc');
    mkdirSync(proc);
    mkdirSync(path.join(dir, 'bin'));
    lb = path.join(dir, 'bin', 'lb-2.6');
    writeFileSync(lb, '#!/bin/true\n', { mode: 0o755 });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('the configured binary under another name, through a hard link, and replaced by an upgrade (deleted) is found', () => {
    const hard = path.join(dir, 'bin', 'hapee-lb');
    linkSync(lb, hard);
    fake(100, [lb, '-db', '-f', cfg, '-sf', '99'], lb, 30);
    fake(101, ['hapee-lb', '-f', cfg], hard, 10); // the same file (inode), another name
    fake(102, [lb, '-f', cfg], `${lb} (deleted)`, 20); // started before the package replaced the file
    expect(find(lb)).toEqual([101, 102, 100]); // oldest first
    expect(find()).toEqual([]); // none of them is named haproxy
  });

  test('argv[0] is not trusted: a program that only calls itself haproxy is not taken for one', () => {
    const vim = path.join(dir, 'bin', 'vim');
    writeFileSync(vim, 'not haproxy', { mode: 0o755 });
    fake(200, ['haproxy', '-f', cfg], vim);
    fake(201, ['/usr/sbin/haproxy', '-f', cfg], vim);
    expect(find(lb)).toEqual([]);
    expect(find()).toEqual([]);
  });

  test('a binary named haproxy (a previous agent with another haproxy.path) is still found; a check, another config and a copy of another file are not', () => {
    mkdirSync(path.join(dir, 'old'));
    const old = path.join(dir, 'old', 'haproxy');
    writeFileSync(old, 'an older haproxy', { mode: 0o755 });
    const copy = path.join(dir, 'bin', 'copy-of-lb');
    copyFileSync(lb, copy); // same bytes, another file
    fake(300, [old, '-f', cfg], old);
    fake(301, [lb, '-c', '-f', cfg], lb);
    fake(302, [lb, '-f', '/etc/other.cfg'], lb);
    fake(303, [copy, '-f', cfg], copy);
    fake(304, [lb, '-f'], lb);
    expect(find(lb)).toEqual([300]);
  });

  test('the binary is resolved through PATH when haproxy.path is a bare name; one not found matches by name only', () => {
    const id = binaryIdentity('lb-2.6', `/nonexistent:${path.join(dir, 'bin')}`);
    expect(id?.path).toBe(lb);
    expect(binaryIdentity('no-such-haproxy', path.join(dir, 'bin'))).toBeUndefined();
    fake(400, [lb, '-f', cfg], lb);
    expect(find('/nonexistent/haproxy')).toEqual([]);
  });
});
