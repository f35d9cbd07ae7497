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
    ['ctl', 'agent'],
    ['ctl', 'controlplane'],
    ['agent', 'ctl'],
    ['controlplane', 'ctl'],
    ['common', 'ctl'],
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

  test('shipped code (bin, common, agent, controlplane, ctl) imports no test, test-kit or benchmark code', () => {
    const offending = ['bin', 'common', 'agent', 'controlplane', 'ctl'].flatMap((d) =>
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
    const files = ['bin', 'common', 'agent', 'controlplane', 'ctl', 'test', 'testkit', 'bench', 'deploy'].flatMap((d) =>
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
        'dist/ctl/ctl.js',
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
    const files = ['bin', 'common', 'agent', 'controlplane', 'ctl'].flatMap((d) => sources(d));
    const offending = files.flatMap((f) =>
      [...readFileSync(path.join(REPO, f), 'utf8').matchAll(/class (\w+) extends (\w+)/g)]
        .filter((m) => m[1]!.endsWith('Error') && m[2] === 'Error' && m[1] !== 'ProxyMgrError')
        .map((m) => `${f}: ${m[1]} extends Error`),
    );
    expect(offending).toEqual([]);
  });
});

/** The .ts file a relative import of `file` names (a file or a folder's index), or undefined (not ours). */
function resolveImport(file: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(path.join(REPO, file)), spec);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts')]) {
    try {
      if (statSync(candidate).isFile()) return path.relative(REPO, candidate);
    } catch {
      // not this one (missing, or a JSON file where a folder would be)
    }
  }
  return undefined;
}

/** Every import of `file` that names a file of ours, type-only ones, re-exports and import() types included. */
function importsOf(file: string): string[] {
  const text = readFileSync(path.join(REPO, file), 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom|\bimport|\brequire\(|\bimport\()\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map(
    (m) => m[1]!,
  );
  return specs.map((s) => resolveImport(file, s)).filter((f): f is string => f !== undefined);
}

/** The import circles among `files`: each strongly connected group of more than one file (Tarjan). */
function importCircles(files: readonly string[]): string[][] {
  const graph = new Map(files.map((f) => [f, importsOf(f)]));
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      group.push(w);
    } while (w !== v);
    if (group.length > 1 || graph.get(v)!.includes(v)) circles.push(group.sort());
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return circles;
}

describe('no import circles', () => {
  test('none among the files we write, type-only imports included (a seam’s types live in the seam’s module)', () => {
    const files = ['bin', 'common', 'agent', 'controlplane', 'ctl', 'testkit', 'bench', 'deploy'].flatMap((d) =>
      sources(d),
    );
    expect(files.length).toBeGreaterThan(150);
    expect(importCircles(files)).toEqual([]);
  });

  test('the check finds a circle, a type-only one included', () => {
    const dir = path.join('test', 'unit', 'fixtures', 'circle');
    expect(importCircles(sources(dir))).toEqual([[path.join(dir, 'a.ts'), path.join(dir, 'b.ts')]]);
  });
});

describe('files stay small enough to read', () => {
  /** Lines of `text` from `start` (a line index) to the line that closes the block opened there (a `}` at column 0). */
  function blockLength(lines: readonly string[], start: number): number {
    const end = lines.findIndex((l, i) => i > start && l === '}');
    return end - start + 1;
  }

  test('no product file (agent, controlplane, common, bin, ctl) passes 500 lines; generated ones aside', () => {
    const long = ['agent', 'controlplane', 'common', 'bin', 'ctl']
      .flatMap((d) => sources(d))
      .filter((f) => !readFileSync(path.join(REPO, f), 'utf8').startsWith('// GENERATED'))
      .map((f) => ({ f, n: readFileSync(path.join(REPO, f), 'utf8').split('\n').length - 1 }))
      .filter((x) => x.n > 500)
      .map((x) => `${x.f}: ${x.n} lines`);
    expect(long).toEqual([]);
  });

  test('class Agent keeps serialization, lifecycle and the public API: under 400 lines (the apply steps are agent/apply/)', () => {
    const lines = readFileSync(path.join(REPO, 'agent', 'agent.ts'), 'utf8').split('\n');
    const start = lines.findIndex((l) => l.startsWith('export class Agent '));
    expect(start).toBeGreaterThan(0);
    expect(blockLength(lines, start)).toBeLessThan(400);
  });
});
