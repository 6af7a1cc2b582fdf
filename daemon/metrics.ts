// Prometheus metrics (prom-client): counters bumped where things happen,
// gauges read from the pools at scrape time. Host labels are the names
// clients asked for, and endpoint labels host:port; both are capped so a
// client cannot grow the label set without bound. One Metrics per daemon,
// passed to what counts (the pools, the calls, the front door) as the narrow
// interface each needs (pool/pool-metrics.ts, call/call.ts's CallMetrics),
// never reached as a global.
import client from 'prom-client';

const MAX_HOST_LABELS = 500;
/** Exec durations held for the histogram at most; then they are folded in at once. */
const PENDING_DURATIONS = 1024;

export class Metrics {
  readonly registry = new client.Registry();
  private readonly hosts = new Set<string>();

  readonly handshakes = new client.Counter({
    name: 'sshmux_handshakes_total', help: 'SSH handshakes by outcome (ok, or the error code)',
    labelNames: ['host', 'result'] as const, registers: [this.registry],
  });

  // Every call ends with a count and an exec with a duration: on that path they
  // go into a map and a list, which prom-client takes in when it is scraped
  // (collect), instead of its label checks and hashing per call. Bounded:
  // host labels are capped and codes are an enum; durations are folded in
  // every PENDING_DURATIONS.
  private readonly pendingRequests = new Map<string, { host: string; code: string; n: number }>();
  private pendingDurations: number[] = [];

  readonly requests = new client.Counter({
    name: 'sshmux_requests_total', help: 'Finished calls by outcome (OK, or the error code)',
    labelNames: ['host', 'code'] as const, registers: [this.registry],
    collect: () => this.foldRequests(),
  });

  readonly execDuration = new client.Histogram({
    name: 'sshmux_exec_duration_seconds', help: 'Whole exec calls, from request to exit: queueing, opening and running',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300], registers: [this.registry],
    collect: () => this.foldDurations(),
  });

  readonly breakerTransitions = new client.Counter({
    name: 'sshmux_breaker_transitions_total', help: 'Circuit breaker transitions per endpoint (host:port), by the state entered: open, half-open, closed',
    labelNames: ['endpoint', 'to'] as const, registers: [this.registry],
  });

  readonly reachabilityChecks = new client.Counter({
    name: 'sshmux_reachability_checks_total',
    help: 'Bare TCP connects to an endpoint marked down, between probe handshakes, to notice at once when it listens again',
    labelNames: ['endpoint', 'result'] as const, registers: [this.registry],
  });

  readonly gatewayAuthFailures = new client.Counter({
    name: 'sshmux_gateway_auth_failures_total', help: 'Authentications the SSH front door refused, by reason',
    labelNames: ['reason'] as const, registers: [this.registry],
  });

  constructor() {
    // The event-loop lag histogram samples on a timer: prom-client's 10 ms woke
    // an idle daemon 100 times a second (0.4 % CPU) and a busy one between
    // every few execs; 100 ms still shows lag that matters.
    client.collectDefaultMetrics({ register: this.registry, prefix: 'sshmux_', eventLoopMonitoringPrecision: 100 });
  }

  /** Gauges of the pools, their endpoints' breakers and the jobs, read at scrape time. */
  watchPools(sample: () => PoolSample[], breakers: () => BreakerSample[], sampleJobs: () => JobSample[]): void {
    const registry = this.registry;
    new client.Gauge({
      name: 'sshmux_sessions_open', help: 'Sessions per host, opening or open', labelNames: ['host'] as const, registers: [registry],
      collect() {
        this.reset();
        for (const p of sample()) this.inc({ host: p.host }, p.sessions);
      },
    });
    new client.Gauge({
      name: 'sshmux_connections', help: 'SSH connections per host and state', labelNames: ['host', 'state'] as const, registers: [registry],
      collect() {
        this.reset();
        for (const p of sample()) for (const [state, n] of Object.entries(p.connections)) this.inc({ host: p.host, state }, n);
      },
    });
    new client.Gauge({
      name: 'sshmux_breaker_open', help: 'Endpoints whose circuit breaker is open or half-open: 1 while marked down',
      labelNames: ['endpoint'] as const, registers: [registry],
      collect() {
        this.reset();
        for (const b of breakers()) this.set({ endpoint: b.endpoint }, b.state === 'closed' ? 0 : 1);
      },
    });
    new client.Gauge({
      name: 'sshmux_jobs', help: 'Remote jobs per host and state, as last seen by a poll or sweep', labelNames: ['host', 'state'] as const, registers: [registry],
      collect() {
        this.reset();
        for (const j of sampleJobs()) for (const [state, n] of Object.entries(j.states)) this.inc({ host: j.host, state }, n);
      },
    });
    new client.Gauge({
      name: 'sshmux_queue_depth', help: 'Requests waiting for a session per host', labelNames: ['host'] as const, registers: [registry],
      collect() {
        this.reset();
        for (const p of sample()) this.inc({ host: p.host }, p.queued);
      },
    });
  }

  /** Gauges for the SSH front door, read from it at scrape time. */
  watchGateway(sample: () => { connections: number; sessions: number }): void {
    new client.Gauge({
      name: 'sshmux_gateway_connections', help: 'Client connections to the SSH front door', registers: [this.registry],
      collect() {
        this.set(sample().connections);
      },
    });
    new client.Gauge({
      name: 'sshmux_gateway_sessions', help: 'Channels (sessions and TCP streams) open on the SSH front door', registers: [this.registry],
      collect() {
        this.set(sample().sessions);
      },
    });
  }

  countHandshake(host: string, result: string): void {
    this.handshakes.inc({ host: this.host(host), result });
  }

  countBreakerTransition(endpoint: string, to: string): void {
    this.breakerTransitions.inc({ endpoint: this.host(endpoint), to });
  }

  countReachabilityCheck(endpoint: string, result: string): void {
    this.reachabilityChecks.inc({ endpoint: this.host(endpoint), result });
  }

  countGatewayAuthFailure(reason: string): void {
    this.gatewayAuthFailures.inc({ reason });
  }

  countRequest(host: string, code: string): void {
    const label = this.host(host);
    const key = `${label}\0${code}`;
    const pending = this.pendingRequests.get(key);
    if (pending) pending.n++;
    else this.pendingRequests.set(key, { host: label, code, n: 1 });
  }

  observeExec(seconds: number): void {
    this.pendingDurations.push(seconds);
    if (this.pendingDurations.length >= PENDING_DURATIONS) this.foldDurations();
  }

  private foldRequests(): void {
    for (const { host, code, n } of this.pendingRequests.values()) this.requests.inc({ host, code }, n);
    this.pendingRequests.clear();
  }

  private foldDurations(): void {
    const durations = this.pendingDurations;
    this.pendingDurations = [];
    for (const seconds of durations) this.execDuration.observe(seconds);
  }

  /** A bounded label value for a host name. */
  host(name: string): string {
    if (this.hosts.has(name)) return name;
    if (this.hosts.size >= MAX_HOST_LABELS) return '_other';
    this.hosts.add(name);
    return name;
  }
}

export interface PoolSample { host: string; sessions: number; queued: number; connections: Record<string, number> }
export interface BreakerSample { endpoint: string; state: string }
export interface JobSample { host: string; states: Record<string, number> }
