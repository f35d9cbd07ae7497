import { ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { freePort, sleep, tempDir, killAndWait } from './net';

export interface ZooKeeper {
  readonly port: number;
  /** "127.0.0.1:PORT", for node-zookeeper-client and proxymgr.yml. */
  readonly connectString: string;
  /** Kills the server (SIGKILL), keeping its data dir. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir. */
  restart(): Promise<void>;
  /** Kills it and removes its data dir. */
  stop(): Promise<void>;
}

/** Sends a four-letter word with a timeout (a probe during start-up once hung). */
export function fourLetter(port: number, word: string, timeoutMs = 1000): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => sock.destroy(new Error('timeout')), timeoutMs);
    sock.on('connect', () => sock.end(word));
    sock.on('data', (c) => (data += c.toString()));
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

/** Starts a real ZooKeeper 3.8 (Debian's jar) on loopback with a free port and a temp data dir. */
export async function startZooKeeper(): Promise<ZooKeeper> {
  const port = await freePort();
  const tmp = tempDir('proxymgr-zk-');
  const cfg = path.join(tmp.dir, 'zoo.cfg');
  writeFileSync(
    cfg,
    [
      'tickTime=500',
      `dataDir=${path.join(tmp.dir, 'data')}`,
      `clientPort=${port}`,
      'clientPortAddress=127.0.0.1',
      'admin.enableServer=false',
      '4lw.commands.whitelist=ruok,srvr,stat',
      'maxClientCnxns=0',
    ].join('\n') + '\n',
  );
  let proc: ChildProcess | undefined;
  const launch = async () => {
    proc = spawn(
      'java',
      [
        '-Xmx256m',
        '-XX:+UseSerialGC',
        '-XX:TieredStopAtLevel=1',
        '-Dzookeeper.log.dir=' + tmp.dir,
        '-cp',
        '/usr/share/java/zookeeper.jar',
        'org.apache.zookeeper.server.ZooKeeperServerMain',
        cfg,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr?.on('data', (c) => (stderr = (stderr + c.toString()).slice(-4000)));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`ZooKeeper exited with ${proc.exitCode}: ${stderr}`);
      try {
        // Not `ruok`: ZooKeeper answers "imok" as soon as it accepts connections, before its server runs (sessions
        // are refused until then, for seconds on a loaded machine). `srvr` says "Mode:" only once it serves.
        if ((await fourLetter(port, 'srvr', 500)).includes('Mode: standalone')) return;
      } catch {
        // not up yet
      }
      await sleep(100);
    }
    throw new Error(`ZooKeeper on port ${port} not ready after 30 s: ${stderr}`);
  };
  const kill = () => killAndWait(proc);
  // Safety net: a test process that ends without reaching stop() (a hook timed out, jest forced an exit) must not
  // leave a JVM behind.
  const onExit = () => proc?.kill('SIGKILL');
  process.once('exit', onExit);
  await launch();
  return {
    port,
    connectString: `127.0.0.1:${port}`,
    kill,
    restart: launch,
    stop: async () => {
      process.off('exit', onExit);
      await kill();
      tmp.cleanup();
    },
  };
}
