import * as grpc from '@grpc/grpc-js';
import type { PeerCertificate } from 'node:tls';
import { Counter, Registry } from 'prom-client';
import { Authorizer, CallInfo, Decision, peerAddress, requiredRole } from './auth';
import { Logger } from './log';

/** The metrics of one server's authorization: every mutating call by result, every refused call. */
export interface AuthMetrics {
  readonly mutatingCalls: Counter<'method' | 'identity' | 'result'>;
  readonly denied: Counter<'method' | 'code'>;
}

export function authMetrics(registry: Registry, prefix: string): AuthMetrics {
  return {
    mutatingCalls: new Counter({
      name: `${prefix}_mutating_calls_total`,
      help: 'Mutating gRPC calls (also written to the audit log), by method, caller identity and result',
      labelNames: ['method', 'identity', 'result'],
      registers: [registry],
    }),
    denied: new Counter({
      name: `${prefix}_auth_denied_total`,
      help: 'gRPC calls refused by authentication or authorization, by method and status',
      labelNames: ['method', 'code'],
      registers: [registry],
    }),
  };
}

/** What the authorizer needs from a call, taken from grpc-js. */
export function callInfo(
  method: string,
  call: { getPeer(): string; getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null },
  metadata: grpc.Metadata,
): CallInfo {
  return {
    method,
    peer: call.getPeer(),
    certificate: call.getAuthContext()?.sslPeerCertificate,
    authorization: metadata.get('authorization').map((v) => (typeof v === 'string' ? v : v.toString())),
  };
}

/** The caller of a running call, as the handler sees it (AgentStream checks the hello's node id with it). */
export function identifyCall(
  authorizer: Authorizer,
  method: string,
  call: {
    getPeer(): string;
    getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
    metadata: grpc.Metadata;
  },
): Decision {
  return authorizer.identify(callInfo(method, call, call.metadata));
}

const MAX_AUDIT_REQUEST = 2000;

/**
 * A server interceptor that authenticates and authorizes every call before its handler sees it, and writes every
 * mutating call to the audit log (who, what, with which request, result). Credentials are never logged.
 */
export function authInterceptor(authorizer: Authorizer, log: Logger, metrics?: AuthMetrics): grpc.ServerInterceptor {
  const audit = log.child({ component: 'audit' });
  return (descriptor, call) => {
    const method = descriptor.path;
    // Audited: every call that needs operator, including a method added later and not yet listed (fail closed).
    const mutating = requiredRole(method) === 'operator';
    let decision: Decision | undefined;
    let request: unknown;
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        decision = authorizer.check(callInfo(method, call, metadata));
        if (decision.ok) return next(metadata);
        metrics?.denied.inc({ method, code: grpc.status[decision.code] ?? String(decision.code) });
        const fields = {
          audit: mutating,
          method,
          peer: peerAddress(call.getPeer()),
          identity: decision.identity?.name ?? '',
          code: grpc.status[decision.code],
          details: decision.details,
        };
        (mutating ? audit : log).warn(fields, 'call refused');
        if (mutating)
          metrics?.mutatingCalls.inc({
            method,
            identity: decision.identity?.name ?? 'unknown',
            result: grpc.status[decision.code] ?? 'error',
          });
        call.sendStatus({ code: decision.code, details: decision.details, metadata: new grpc.Metadata() });
      })
      .withOnReceiveMessage((message, next) => {
        if (mutating && request === undefined) request = message;
        next(message);
      })
      .build();
    const responder = new grpc.ResponderBuilder()
      .withStart((next) => next(listener))
      .withSendStatus((status, next) => {
        if (mutating && decision?.ok) {
          const result = grpc.status[status.code] ?? String(status.code);
          let text = '';
          try {
            text = JSON.stringify(request ?? {});
          } catch {
            text = '(unprintable)';
          }
          audit.info(
            {
              audit: true,
              method,
              identity: decision.identity.name,
              via: decision.identity.via,
              peer: peerAddress(call.getPeer()),
              request: text.length > MAX_AUDIT_REQUEST ? text.slice(0, MAX_AUDIT_REQUEST) + '…' : text,
              result,
              details: status.details ?? '',
            },
            'mutating call',
          );
          metrics?.mutatingCalls.inc({ method, identity: decision.identity.name, result });
        }
        next(status);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, responder);
  };
}
