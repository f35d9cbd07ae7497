// ESLint (flat config): typescript-eslint's recommended rules over everything we write; generated code and build
// output left out. Prettier owns the formatting (.prettierrc.json), so no stylistic rules here.
const js = require('@eslint/js');
const tseslint = require('typescript-eslint');

module.exports = tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'common/gen/**', 'agent/native/build/**', 'test-results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
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
