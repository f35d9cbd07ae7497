/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Integration tests start real HAProxy/ZooKeeper processes; two cores, so keep parallelism modest.
  maxWorkers: 2,
  testTimeout: 60000,
  // No forceExit: every test closes what it opened. And no test may leave a process behind (checked at the end).
  globalSetup: '<rootDir>/test/global-setup.js',
  globalTeardown: '<rootDir>/test/global-teardown.js',
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
};
