import * as grpc from '@grpc/grpc-js';
import { UsageError } from '../../common/platform/args';
import { ConfigError, ProxyMgrError } from '../../common/platform/errors';
import { toStatus } from '../../common/platform/grpc';
import { RolloutCommandError } from '../../controlplane/rollout/engine';
import { HostError } from '../../controlplane/host';

describe('errors become gRPC statuses in one place (common/platform/grpc.ts toStatus)', () => {
  test.each([
    [new ConfigError('waves[0]: bad'), grpc.status.INVALID_ARGUMENT, 'CONFIG_INVALID: waves[0]: bad'],
    [new UsageError('--x: unknown flag'), grpc.status.INVALID_ARGUMENT, 'USAGE: --x: unknown flag'],
    [new HostError('port: bad'), grpc.status.INVALID_ARGUMENT, 'HOST_INVALID: port: bad'],
    [
      new RolloutCommandError('rollout r1 is already running', 'ROLLOUT_BAD_STATE'),
      grpc.status.FAILED_PRECONDITION,
      'ROLLOUT_BAD_STATE: rollout r1 is already running',
    ],
    [
      new ProxyMgrError('ZK_DISCONNECTED', 'ZooKeeper is not connected'),
      grpc.status.UNAVAILABLE,
      'ZK_DISCONNECTED: ZooKeeper is not connected',
    ],
    [new Error('ECONNRESET'), grpc.status.UNAVAILABLE, 'ECONNRESET'],
  ])('%s', (err, code, details) => {
    expect(toStatus(err)).toEqual({ code, details });
  });

  test('every error the code raises on purpose is a ProxyMgrError with its code', () => {
    expect(new RolloutCommandError('x', 'ROLLOUT_NONE')).toBeInstanceOf(ProxyMgrError);
    expect(new UsageError('x').code).toBe('USAGE');
    expect(new HostError('x').code).toBe('HOST_INVALID');
  });
});
