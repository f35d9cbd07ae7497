/**
 * `npm run docs:config`: writes the README's configuration reference from common/config/config.schema.json (the table
 * between the config-reference markers). test/unit/config-schema.test.ts fails while the two differ.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { withConfigReference } from '../common/config/config-schema';

const readme = path.join(__dirname, '..', '..', 'README.md');
const before = readFileSync(readme, 'utf8');
const after = withConfigReference(before);
if (after !== before) writeFileSync(readme, after);
console.log(
  after === before
    ? 'README.md: the configuration reference is up to date'
    : 'README.md: configuration reference rewritten from the schema',
);
