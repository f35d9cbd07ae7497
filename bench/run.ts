/**
 * `npm run bench -- NAME [args]`: runs bench/NAME.ts's `main(args)`, which prints its figures as it goes and
 * returns one result object; that object is printed as the last line of output, as JSON.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

async function run(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const available = fs
    .readdirSync(__dirname)
    .filter((f) => f.endsWith('.js') && f !== 'run.js' && !f.startsWith('lib-'))
    .map((f) => f.slice(0, -3));
  if (!name || !available.includes(name)) {
    console.error(`usage: npm run bench -- NAME   (NAME one of: ${available.join(', ')})`);
    process.exit(2);
  }
  const mod = (await import(path.join(__dirname, name))) as { main: (args: string[]) => Promise<object> };
  const result = await mod.main(args);
  console.log(JSON.stringify(result));
  process.exit(0);
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
