// What the pools count for /metrics: handshakes by outcome, breaker
// transitions and reachability checks per endpoint. daemon/metrics.ts
// implements it; the Agent passes it to its pools, and pools made without
// one (unit tests) count nothing.

export interface PoolMetrics {
  countHandshake(host: string, result: string): void;
  countBreakerTransition(endpoint: string, to: string): void;
  countReachabilityCheck(endpoint: string, result: string): void;
}

export const NO_POOL_METRICS: PoolMetrics = {
  countHandshake() {},
  countBreakerTransition() {},
  countReachabilityCheck() {},
};
