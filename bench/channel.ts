// npm run bench:channel [--lifecycles N] [--repetitions N] [--json] [--out FILE]:
// what ssh2's session channel object costs an exec, against the least any
// channel object could cost. It answers whether exec channels that do not go
// through Node streams would pay: a profile of the daemon points at the
// streams (a Duplex and a Readable per exec), but a profile does not say how
// much would be left without them.
//
// One lifecycle is an exec's channel as the daemon sees it, settled (after
// 50,000 of the same): made as ssh2 makes it at the open's confirmation, the
// daemon's listeners on (data, stderr's data, exit, end, stderr's end,
// close), stdin ended, then the server's exit status, EOF and close, as ssh2
// handles them, and the listeners off once it has closed. "ssh2" drives
// ssh2's own Channel (lib/Channel.js) and its close (lib/utils.js) over a
// client that writes nothing; "events only" is a plain EventEmitter with another
// for stderr that emits the same events in the same order, and nothing else.
// The difference is the most a channel without streams could save per exec.
// CPU from process.cpuUsage() over each repetition, per lifecycle.
import { EventEmitter } from 'node:events';
import { parseArgs } from 'node:util';
import { wholeNumber } from './options';
import { loadAverage, measuredOn, writeResult } from './results';
import { quantile, round } from './stats';
import { table } from './table';

// ssh2's own channel and close, not through the daemon's seam (daemon/ssh/ssh2): they are what is measured.
const { Channel } = require('ssh2/lib/Channel.js') as { Channel: new (client: unknown, info: ChannelInfo) => ExecChannel };
const { onCHANNEL_CLOSE } = require('ssh2/lib/utils.js') as { onCHANNEL_CLOSE: (client: unknown, id: number, channel: ExecChannel) => void };

interface ChannelInfo {
  type: 'session';
  incoming: { id: number; window: number; packetSize: number; state: string };
  outgoing: { id: number; window: number; packetSize: number; state: string };
}

/** What the daemon and ssh2's handlers use of a session channel. */
interface ExecChannel extends EventEmitter {
  subtype?: string;
  incoming: ChannelInfo['incoming'];
  readable?: boolean;
  stderr: EventEmitter & { readable?: boolean; push?(chunk: null): boolean };
  _exit: { code: number | null | undefined };
  push?(chunk: null): boolean;
  end(): void;
}

/** A client that writes nothing: what ssh2's channel and close call on theirs. */
const quietClient = {
  _protocol: { channelEOF(): void {}, channelClose(): void {}, channelData(): void {}, channelWindowAdjust(): void {} },
  _chanMgr: { remove(): void {} },
  // As patch 014 has it: the reply to the server's close waits for the next write.
  _holdCloseReply(channel: ExecChannel & { outgoing: ChannelInfo['outgoing'] }): void {
    channel.outgoing.state = 'closing';
  },
};

/** The least a channel could be: its events, and nothing else. */
class EventsOnlyChannel extends EventEmitter implements ExecChannel {
  subtype?: string;
  readonly stderr = new EventEmitter();
  readonly _exit = { code: undefined as number | null | undefined };
  constructor(_client: unknown, readonly info: ChannelInfo, readonly incoming = info.incoming) {
    super();
  }

  end(): void {}
}

function channelInfo(): ChannelInfo {
  // Stdin is closed at the exec (patch 013): our side has sent its EOF.
  return {
    type: 'session',
    incoming: { id: 0, window: 2 << 20, packetSize: 32 << 10, state: 'open' },
    outgoing: { id: 0, window: 2 << 20, packetSize: 32 << 10, state: 'eof' },
  };
}

const ignore = (): void => {};

/** One exec's channel from its open to its close, as the daemon and ssh2 see it. */
async function lifecycle(make: new (client: unknown, info: ChannelInfo) => ExecChannel, isSsh2: boolean): Promise<void> {
  const channel = new make(quietClient, channelInfo());
  channel.subtype = 'exec';
  let open = 2;
  let outputs = 2;
  let closed!: () => void;
  const done = new Promise<void>((resolve) => (closed = resolve));
  // The daemon's six listeners (ChannelCall.opened), on and off one by one
  // as it does: a loop over a table of them would add its own cost.
  const closedOne = (): void => {
    if (--open > 0) return;
    channel.off('data', ignore);
    channel.stderr.off('data', ignore);
    channel.off('exit', ignore);
    channel.off('end', outputEnded);
    channel.stderr.off('end', outputEnded);
    channel.off('close', closedOne);
    closed();
  };
  const outputEnded = (): void => {
    if (--outputs === 0) closedOne();
  };
  channel.on('data', ignore);
  channel.stderr.on('data', ignore);
  channel.on('exit', ignore);
  channel.on('end', outputEnded);
  channel.stderr.on('end', outputEnded);
  channel.on('close', closedOne);
  channel.end();
  await undefined; // the server's answer comes in a later read
  channel.emit('exit', (channel._exit.code = 0));
  channel.incoming.state = 'eof';
  if (isSsh2) {
    // ssh2's CHANNEL_EOF handler (lib/client.js), then its close.
    if (channel.readable) channel.push!(null);
    if (channel.stderr.readable) channel.stderr.push!(null);
    onCHANNEL_CLOSE(quietClient, 0, channel);
  } else {
    channel.emit('end');
    channel.stderr.emit('end');
    channel.incoming.state = 'closed';
    channel.emit('close', 0);
    channel.stderr.emit('close');
  }
  await done;
}

async function cpuPerLifecycle(kind: 'ssh2' | 'events', lifecycles: number): Promise<number> {
  const make = kind === 'ssh2' ? Channel : EventsOnlyChannel;
  // A channel that never closes would leave nothing for the event loop, and the bench would end without a word.
  const watchdog = setTimeout(() => {
    console.error(`bench:channel: ${kind}'s channel did not close within 60 s of starting ${lifecycles} lifecycles; has ssh2 changed how it closes a channel?`);
    process.exit(1);
  }, 60_000);
  const start = process.cpuUsage();
  for (let i = 0; i < lifecycles; i++) await lifecycle(make, kind === 'ssh2');
  const used = process.cpuUsage(start);
  clearTimeout(watchdog);
  return (used.user + used.system) / lifecycles;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { lifecycles: { type: 'string', default: '100000' }, repetitions: { type: 'string', default: '5' },
    json: { type: 'boolean' }, out: { type: 'string' } } });
  const lifecycles = wholeNumber('lifecycles', values.lifecycles);
  const repetitions = wholeNumber('repetitions', values.repetitions);
  const loadStart = loadAverage();
  for (const kind of ['ssh2', 'events'] as const) await cpuPerLifecycle(kind, 50_000);
  const samples = { ssh2: [] as number[], events: [] as number[] };
  for (let r = 0; r < repetitions; r++) {
    // Alternating, so a machine whose speed drifts weighs on both.
    for (const kind of ['ssh2', 'events'] as const) samples[kind].push(await cpuPerLifecycle(kind, lifecycles));
  }
  const summary = (xs: number[]): { median_us: number; lowest_us: number; highest_us: number } => {
    const sorted = [...xs].sort((a, b) => a - b);
    return { median_us: round(quantile(sorted, 0.5)), lowest_us: round(sorted[0]), highest_us: round(sorted[sorted.length - 1]) };
  };
  const ssh2 = summary(samples.ssh2);
  const eventsOnly = summary(samples.events);
  const result = {
    ...measuredOn(loadStart), lifecycles, repetitions, ssh2, events_only: eventsOnly, saved_us: round(ssh2.median_us - eventsOnly.median_us),
  };
  console.log(`An exec's channel, CPU per lifecycle (µs), Node ${process.version}: ${repetitions} repetitions of ${lifecycles} after 50,000`);
  console.log(table(['channel', 'median', 'lowest', 'highest'], [
    ['ssh2 (a Duplex and a Readable)', String(ssh2.median_us), String(ssh2.lowest_us), String(ssh2.highest_us)],
    ['events only (two EventEmitters)', String(eventsOnly.median_us), String(eventsOnly.lowest_us), String(eventsOnly.highest_us)],
  ]));
  console.log(`at most ${result.saved_us} µs per exec to save by a channel without streams`);
  console.log(`\nwrote ${writeResult(result, { prefix: 'channel-', out: values.out })}`);
  if (values.json) console.log(JSON.stringify(result));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
