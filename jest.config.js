/** @type {import('jest').Config} */
module.exports = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  // Integration tests start real HAProxy/ZooKeeper processes; two cores, so keep parallelism modest.
  maxWorkers: 2,
  testTimeout: 60000,
  // A failed test must not leave CI waiting on a ZooKeeper client's reconnect timer; processes are stopped in afterAll.
  forceExit: false,
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
};
