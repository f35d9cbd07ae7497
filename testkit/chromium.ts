import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { tempDir } from './net';

export const CHROMIUM = '/usr/bin/chromium';

interface Message {
  id?: number;
  method?: string;
  sessionId?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
}

/**
 * A real headless Chromium driven over the DevTools protocol on its pipe (`--remote-debugging-pipe`: fd 3 in, fd 4
 * out, messages ended by NUL), so that one element of a page can be photographed: `--screenshot` takes only the top
 * of the window, and a URL fragment does not scroll it there.
 */
class DevTools {
  private seq = 0;
  private buffer = '';
  private readonly waiting = new Map<
    number,
    { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();
  private readonly listeners: ((m: Message) => void)[] = [];

  constructor(
    private readonly out: Writable,
    input: Readable,
  ) {
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf('\0'); end !== -1; end = this.buffer.indexOf('\0')) {
        const m = JSON.parse(this.buffer.slice(0, end)) as Message;
        this.buffer = this.buffer.slice(end + 1);
        const w = m.id === undefined ? undefined : this.waiting.get(m.id);
        if (w) {
          this.waiting.delete(m.id!);
          if (m.error) w.reject(new Error(`DevTools: ${m.error.message}`));
          else w.resolve(m.result ?? {});
        } else for (const l of this.listeners) l(m);
      }
    });
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.out.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    });
  }

  on(listener: (m: Message) => void): void {
    this.listeners.push(listener);
  }

  failAll(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }
}

/**
 * Loads `url` in a real headless Chromium and saves a PNG of the element `selector` (its whole box, scrolled to or
 * not) to `file`; returns the DOM after load. A page that reloads itself (meta refresh) between measuring the
 * element and photographing it is photographed again.
 */
export async function screenshotElement(
  url: string,
  selector: string,
  file: string,
  opts: { width?: number; height?: number; timeoutMs?: number } = {},
): Promise<{ dom: string; width: number; height: number }> {
  const profile = tempDir('proxymgr-chromium-');
  const proc = spawn(
    CHROMIUM,
    [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--no-first-run',
      `--user-data-dir=${profile.dir}`,
      '--remote-debugging-pipe',
      `--window-size=${opts.width ?? 1280},${opts.height ?? 1000}`,
      'about:blank',
    ],
    { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const dt = new DevTools(proc.stdio[3] as Writable, proc.stdio[4] as Readable);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  void exited.then(() => dt.failAll(new Error(`chromium exited: ${stderr}`)));
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  try {
    const { targetId } = await dt.send('Target.createTarget', { url: 'about:blank' });
    const { sessionId } = (await dt.send('Target.attachToTarget', { targetId, flatten: true })) as {
      sessionId: string;
    };
    const page = (method: string, params: Record<string, unknown> = {}) => dt.send(method, params, sessionId);
    let loads = 0;
    let navigations = 0;
    const loaded: (() => void)[] = [];
    dt.on((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === 'Page.frameStartedLoading') navigations++;
      if (m.method === 'Page.loadEventFired') {
        loads++;
        loaded.splice(0).forEach((f) => f());
      }
    });
    const nextLoad = () => new Promise<void>((resolve) => loaded.push(resolve));
    await page('Page.enable');
    const first = nextLoad();
    await page('Page.navigate', { url });
    await first;
    for (let attempt = 0; ; attempt++) {
      if (navigations > loads) await nextLoad();
      const before = navigations;
      const { result } = (await page('Runtime.evaluate', {
        expression: `(() => {
          const e = document.querySelector(${JSON.stringify(selector)});
          if (!e) return JSON.stringify({ missing: true, dom: document.documentElement.outerHTML });
          const r = e.getBoundingClientRect();
          return JSON.stringify({ x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height,
            dom: document.documentElement.outerHTML });
        })()`,
        returnByValue: true,
      })) as { result: { value: string } };
      const box = JSON.parse(result.value) as {
        missing?: boolean;
        x: number;
        y: number;
        width: number;
        height: number;
        dom: string;
      };
      if (box.missing) throw new Error(`no element ${selector} on ${url}: ${box.dom.slice(0, 2000)}`);
      const shot = (await page('Page.captureScreenshot', {
        format: 'png',
        clip: { x: box.x, y: box.y, width: box.width, height: box.height, scale: 1 },
        captureBeyondViewport: true,
      })) as { data: string };
      if (navigations !== before && attempt < 3) continue;
      mkdirSync(path.dirname(file), { recursive: true });
      writeFileSync(file, Buffer.from(shot.data, 'base64'));
      return { dom: box.dom, width: box.width, height: box.height };
    }
  } finally {
    clearTimeout(timer);
    await dt.send('Browser.close').catch(() => undefined);
    const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
    profile.cleanup();
  }
}
