import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

const REPO = path.join(__dirname, '..', '..');

/** Every .ts file under `dir` (relative to the repository), recursively; generated code left out. */
function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(REPO, dir))) {
    const rel = path.join(dir, name);
    if (name === 'gen' || name === 'node_modules' || name === 'build') continue;
    if (statSync(path.join(REPO, rel)).isDirectory()) out.push(...sources(rel));
    else if (name.endsWith('.ts')) out.push(rel);
  }
  return out;
}

/** The repository-relative top-level directory each relative import of `file` resolves into. */
function importedTops(file: string): { spec: string; top: string }[] {
  const text = readFileSync(path.join(REPO, file), 'utf8');
  const out: { spec: string; top: string }[] = [];
  for (const m of text.matchAll(/(?:from|import|require\()\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    const target = path.relative(REPO, path.resolve(path.dirname(path.join(REPO, file)), m[1]!));
    out.push({ spec: m[1]!, top: target.split(path.sep)[0]! });
  }
  return out;
}

describe('the codebase keeps its layers apart', () => {
  test.each([
    ['controlplane', 'agent'],
    ['agent', 'controlplane'],
    ['common', 'agent'],
    ['common', 'controlplane'],
  ])('nothing in %s/ imports from %s/ (bin/ is where processes are assembled)', (from, forbidden) => {
    const offending = sources(from).flatMap((f) =>
      importedTops(f)
        .filter((i) => i.top === forbidden)
        .map((i) => `${f} imports ${i.spec}`),
    );
    expect(offending).toEqual([]);
  });

  test('the rollout logic talks to agents through controlplane/ports.ts, never through the gRPC code', () => {
    const offending = sources('controlplane/rollout').flatMap((f) =>
      importedTops(f)
        .filter((i) => path.relative(REPO, path.resolve(REPO, path.dirname(f), i.spec)).startsWith('controlplane/grpc'))
        .map((i) => `${f} imports ${i.spec}`),
    );
    expect(sources('controlplane/rollout').length).toBeGreaterThan(5);
    expect(offending).toEqual([]);
  });

  test('shipped code (bin, common, agent, controlplane) imports no test, test-kit or benchmark code', () => {
    const offending = ['bin', 'common', 'agent', 'controlplane'].flatMap((d) =>
      sources(d).flatMap((f) =>
        importedTops(f)
          .filter((i) => i.top === 'test' || i.top === 'bench' || i.top === 'testkit')
          .map((i) => `${f} imports ${i.spec}`),
      ),
    );
    expect(offending).toEqual([]);
  });

  test('the check itself sees imports (a known one is found)', () => {
    expect(importedTops('bin/standalone.ts').map((i) => i.top)).toEqual(
      expect.arrayContaining(['agent', 'controlplane', 'common']),
    );
  });
});

describe('lint', () => {
  test('every eslint-disable says why (`-- reason`), outside generated code', () => {
    const files = ['bin', 'common', 'agent', 'controlplane', 'test', 'testkit', 'bench', 'deploy'].flatMap((d) =>
      sources(d),
    );
    const bare = files.flatMap((f) =>
      readFileSync(path.join(REPO, f), 'utf8')
        .split('\n')
        .flatMap((line, i) =>
          /(\/\/|\/\*)\s*eslint-disable/.test(line) && !/eslint-disable\S*\s+\S+\s+--\s+\S/.test(line)
            ? [`${f}:${i + 1}: ${line.trim()}`]
            : [],
        ),
    );
    expect(files.length).toBeGreaterThan(100);
    expect(bare).toEqual([]);
  });
});

describe('npm pack ships what runs, not tests or benchmarks', () => {
  test('npm pack --dry-run lists no test, benchmark or demo file, and does list the CLI, the agent and the protos', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: REPO,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const files = (JSON.parse(out) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files.filter((f) => /(^|\/)(test|testkit|bench)\/|\.test\.|(^|\/)deploy\/demo\./.test(f))).toEqual([]);
    expect(files).toEqual(
      expect.arrayContaining([
        'dist/bin/proxymgr.js',
        'dist/agent/agent-process.js',
        'dist/controlplane/control-plane-process.js',
        'proto/proxymgr/v1/stream.proto',
        'agent/native/listenfd.c',
        'package.json',
        'README.md',
      ]),
    );
  });
});

describe('one error hierarchy', () => {
  test('every error class the code defines is a ProxyMgrError (a stable code; one mapping to gRPC status)', () => {
    const files = ['bin', 'common', 'agent', 'controlplane'].flatMap((d) => sources(d));
    const offending = files.flatMap((f) =>
      [...readFileSync(path.join(REPO, f), 'utf8').matchAll(/class (\w+) extends (\w+)/g)]
        .filter((m) => m[1]!.endsWith('Error') && m[2] === 'Error' && m[1] !== 'ProxyMgrError')
        .map((m) => `${f}: ${m[1]} extends Error`),
    );
    expect(offending).toEqual([]);
  });
});
