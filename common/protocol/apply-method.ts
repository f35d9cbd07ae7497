import { ApplyMethod as WireApplyMethod } from '../gen/proxymgr/v1/stream';

/** How a state is (or would be) applied: nothing to change, runtime API commands, or a seamless reload. */
export type ApplyMethod = 'nothing' | 'runtime' | 'reload';

/** An apply method as an agent reported it: one of ApplyMethod, or 'unspecified' (a rejection, an old agent). */
export type ReportedMethod = ApplyMethod | 'unspecified';

const TO_WIRE: Record<ReportedMethod, WireApplyMethod> = {
  nothing: WireApplyMethod.APPLY_METHOD_NOTHING,
  runtime: WireApplyMethod.APPLY_METHOD_RUNTIME,
  reload: WireApplyMethod.APPLY_METHOD_RELOAD,
  unspecified: WireApplyMethod.APPLY_METHOD_UNSPECIFIED,
};

/** The one mapping to the wire (ACKs, preflight answers): anything but an apply method is UNSPECIFIED. */
export function applyMethodToWire(method: string): WireApplyMethod {
  return TO_WIRE[method as ReportedMethod] ?? WireApplyMethod.APPLY_METHOD_UNSPECIFIED;
}

/** The one mapping from the wire: what logs, metric labels, the registry and the CLI show ('reload', …). */
export function applyMethodFromWire(method: WireApplyMethod): ReportedMethod {
  switch (method) {
    case WireApplyMethod.APPLY_METHOD_NOTHING:
      return 'nothing';
    case WireApplyMethod.APPLY_METHOD_RUNTIME:
      return 'runtime';
    case WireApplyMethod.APPLY_METHOD_RELOAD:
      return 'reload';
    default:
      return 'unspecified';
  }
}
