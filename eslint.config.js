// ESLint (flat config): typescript-eslint's recommended rules over everything we write, and its type-checked set
// over the TypeScript (promises that nobody awaits or catches, promises where a callback is expected, `any` leaking
// out of JSON); generated code and build output left out. Prettier owns the formatting (.prettierrc.json), so no
// stylistic rules here.
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');

module.exports = tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'common/gen/**', 'agent/native/build/**', 'test-results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked.map((c) => ({ ...c, files: ['**/*.ts'] })),
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: __dirname } },
    rules: {
      // The exceptions to the type-checked set, each for a reason:
      // - `async` states a function's contract (it returns a promise; a throw becomes a rejection): a fake, or a
      //   stop() with nothing to wait for, implements an async seam without awaiting anything.
      '@typescript-eslint/require-await': 'off',
      // - Timer (common/platform/clock.ts) is opaque on purpose (`unknown`: Node's handle or a fake clock's number), and
      //   `Timer | undefined` says that there may be none; the union is redundant only to the compiler.
      '@typescript-eslint/no-redundant-type-constituents': 'off',
    },
  },
  {
    // Tests, benchmarks and the test kit read JSON (CLI output, HTTP bodies, logs) and check its shape with
    // expect() or a target; an `any` from JSON.parse there fails an assertion, not a fleet.
    files: ['test/**/*.ts', 'testkit/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    languageOptions: {
      globals: {
        require: 'readonly',
        module: 'writable',
        process: 'readonly',
        __dirname: 'readonly',
        console: 'readonly',
      },
    },
    rules: {
      // `const { dropped: _dropped, ...rest } = x` leaves a property out on purpose.
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Plain CommonJS files (jest config and setup, this file).
    files: ['**/*.js'],
    languageOptions: { globals: { setTimeout: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
