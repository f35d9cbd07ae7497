/** @type {import('jest').Config} */
const project = (name) => ({
  displayName: name,
  preset: 'ts-jest',
  testEnvironment: 'node',
  roots: [`<rootDir>/test/${name}`],
  testMatch: ['**/*.test.ts'],
  // Transpile only: the types are checked in their own step, `npm run build` (tsc over test/ and testkit/ too),
  // which `npm test` runs first.
  transform: { '^.+\\.ts$': ['ts-jest', { diagnostics: false }] },
});

module.exports = {
  // Three tiers (README, "Testing"): `npm run test:unit` (pure logic, fakes), `test:integration` (one real HAProxy,
  // ZooKeeper, dnsmasq or gRPC server at a time), `test:e2e` (the built CLI, whole fleets); `npm test` runs all.
  projects: [project('unit'), project('integration'), project('e2e')],
  // Integration tests start real HAProxy/ZooKeeper processes; two cores, so keep parallelism modest.
  maxWorkers: 2,
  testTimeout: 60000,
  // No forceExit: every test closes what it opened. And no test may leave a process behind (checked at the end).
  // Longest files first, whatever their size (see the file).
  testSequencer: '<rootDir>/test/sequencer.js',
  globalSetup: '<rootDir>/test/global-setup.js',
  globalTeardown: '<rootDir>/test/global-teardown.js',
};
