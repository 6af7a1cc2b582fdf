// The V8 flags sshmuxd runs with, wherever it is started: its #! line,
// `npm start`, the systemd units, the sshmux command's autostart and the
// tests' helper (test/v8-flags.test.ts holds them together).
//
// Streaming output allocates a Buffer per socket read and per decrypted SSH
// packet. They die young, but until the next scavenge frees them they count
// as external memory, and V8 starts a full mark-compact once the old
// generation plus the external memory since the last one nears the old
// generation's allocation limit, which V8 keeps at about twice the live heap
// (~20 MB for the daemon's ~9 MB). A bare ssh2 client escapes this only
// because its heap is under V8's 8 MB threshold for starting one. The profile
// of the daemon streaming 1 GiB: 88 mark-compacts, a third of its CPU.
// A floor of 64 MB under that limit leaves room for the short-lived buffers
// (none then); the heap itself stays at its live size.
export const DAEMON_V8_FLAGS: readonly string[] = ['--initial-old-space-size=64'];

/** The flags missing from this process's command line and NODE_OPTIONS. */
export function missingV8Flags(): string[] {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return DAEMON_V8_FLAGS.filter((flag) => !given.includes(flag));
}
