import { GatePolicy } from '../common/gen/proxymgr/v1/rollout';
import { UsageError } from '../common/platform/args';

/** Parsed command-line flags (common/platform/args parseArgs). */
export type Flags = Record<string, string | boolean | undefined>;

/** Flag `name` as a non-negative integer, or undefined when not given; throws UsageError otherwise. */
export function int(flags: Flags, name: string): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v))
    throw new UsageError(`--${name}: expected a non-negative integer, got "${String(v)}"`);
  return Number(v);
}

/** Flag `name` as on (true) or off (false); throws UsageError otherwise. */
export function onOff(flags: Flags, name: string): boolean {
  const v = flags[name];
  if (v !== 'on' && v !== 'off') throw new UsageError(`--${name}: expected on or off, got "${String(v)}"`);
  return v === 'on';
}

/** The gate policy `base` with the --gate* flags applied (the control plane checks the values). */
export function gateFlags(flags: Flags, base: GatePolicy): GatePolicy {
  const g: GatePolicy = {
    ...base,
    thresholds: { ...(base.thresholds ?? { http5xx: 0, errors: 0, retries: 0, serversDown: 0, queue: 0, rtime: 0 }) },
  };
  if (flags.gate !== undefined) g.enabled = onOff(flags, 'gate');
  const min = int(flags, 'gate-min-requests');
  if (min !== undefined) g.minRequests = min;
  const ins = flags['gate-on-insufficient'];
  if (ins !== undefined) {
    if (ins !== 'pass' && ins !== 'halt')
      throw new UsageError(`--gate-on-insufficient: expected pass or halt, got "${String(ins)}"`);
    g.onInsufficientTraffic = ins;
  }
  const names: Record<string, keyof NonNullable<GatePolicy['thresholds']>> = {
    http_5xx: 'http5xx',
    errors: 'errors',
    retries: 'retries',
    servers_down: 'serversDown',
    queue: 'queue',
    rtime: 'rtime',
  };
  const spec = flags['gate-threshold'];
  if (spec !== undefined) {
    for (const part of String(spec).split(',')) {
      const m = /^\s*([a-z_0-9]+)\s*=\s*([0-9.]+)\s*$/.exec(part);
      const key = m ? names[m[1]!] : undefined;
      if (!m || !key || !Number.isFinite(Number(m[2])))
        throw new UsageError(
          `--gate-threshold: expected METRIC=NUMBER with METRIC one of ${Object.keys(names).join(', ')}, got "${part}"`,
        );
      g.thresholds![key] = Number(m[2]);
    }
  }
  return g;
}
