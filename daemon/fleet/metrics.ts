// The fleet's Prometheus metrics, read from the fleet at scrape time: the
// whole fleet's handshakes and connections per endpoint (from Redis) beside
// this daemon's own, its share, and Redis's health as this daemon sees it.
// Endpoints are host:port from the daemon's own ssh_config (the label is
// named target, as users know it), so the
// label set is bounded by the config, not by clients.
import client from 'prom-client';
import type { FleetStatus } from './fleet';

export function registerFleetMetrics(registry: client.Registry, sample: () => FleetStatus): void {
  const registers = [registry];
  new client.Gauge({
    name: 'sshmux_fleet_redis_up', help: '1 while the fleet\'s Redis answers and the fleet limits apply; 0 while this daemon runs on its local limits',
    registers,
    collect() {
      this.set(sample().redisUp ? 1 : 0);
    },
  });
  new client.Counter({
    name: 'sshmux_fleet_redis_outages_total', help: 'Times this daemon lost Redis (or did not reach it at start) and fell back to its local limits',
    registers,
    collect() {
      this.reset();
      this.inc(sample().outages);
    },
  });
  new client.Counter({
    name: 'sshmux_fleet_redis_errors_total', help: 'Redis commands that failed or timed out',
    registers,
    collect() {
      this.reset();
      this.inc(sample().redisErrors);
    },
  });
  new client.Gauge({
    name: 'sshmux_fleet_handshakes', help: 'Handshakes in flight per target: scope="fleet" the whole fleet (from Redis), scope="daemon" this daemon',
    labelNames: ['target', 'scope'] as const, registers,
    collect() {
      this.reset();
      for (const t of sample().targets) {
        this.set({ target: t.endpoint, scope: 'fleet' }, t.fleetHandshakes);
        this.set({ target: t.endpoint, scope: 'daemon' }, t.handshakes);
      }
    },
  });
  new client.Gauge({
    name: 'sshmux_fleet_connections', help: 'Connections per target: scope="fleet" held by the whole fleet (from Redis), scope="daemon" this daemon\'s, scope="untracked" this daemon\'s opened while Redis was away',
    labelNames: ['target', 'scope'] as const, registers,
    collect() {
      this.reset();
      for (const t of sample().targets) {
        this.set({ target: t.endpoint, scope: 'fleet' }, t.fleetConnections);
        this.set({ target: t.endpoint, scope: 'daemon' }, t.connections);
        this.set({ target: t.endpoint, scope: 'untracked' }, t.untracked);
      }
    },
  });
  new client.Gauge({
    name: 'sshmux_fleet_daemons', help: 'Daemons that want connections to the target now',
    labelNames: ['target'] as const, registers,
    collect() {
      this.reset();
      for (const t of sample().targets) this.set({ target: t.endpoint }, t.daemons);
    },
  });
  new client.Gauge({
    name: 'sshmux_fleet_share', help: 'This daemon\'s fair share of the target\'s fleet connection cap',
    labelNames: ['target'] as const, registers,
    collect() {
      this.reset();
      for (const t of sample().targets) this.set({ target: t.endpoint }, t.share);
    },
  });
  new client.Counter({
    name: 'sshmux_fleet_hand_backs_total', help: 'Connections this daemon handed back to the fleet (above its share while others waited, or over the cap after an outage)',
    labelNames: ['target'] as const, registers,
    collect() {
      this.reset();
      for (const t of sample().targets) this.inc({ target: t.endpoint }, t.handBacks);
    },
  });
}
