// How much of a stream's output a client (the SDK, the sshmux command) lets
// sshmuxd send ahead of its reader: the window granted in Hello and grown by
// Window frames, per stream. Output from a long link arrives in bursts as
// large as the SSH window sized for it (daemon/ssh/link-window.ts); a
// client window smaller than that would hold the daemon back between
// bursts, and the daemon, its buffer full, would stop granting the server.
// So the window starts at RECEIVE_WINDOW and doubles whenever the daemon
// says it has sent all it was allowed (a Window frame with output_waits)
// while the reader had taken at least half of it (the window, not the
// reader, held the stream back), up to MAX_RECEIVE_WINDOW, which the daemon
// enforces. A slow reader never grows it: the daemon runs out while most of
// the window is still unread.

/** The window each stream starts with, bytes (Hello.window). */
export const RECEIVE_WINDOW = 1024 * 1024;
/** The most a client may let the daemon send ahead on one stream: the daemon refuses more (it holds what a client does not read). */
export const MAX_RECEIVE_WINDOW = 16 * 1024 * 1024;

export class ReceiveWindow {
  /** The window now, bytes. */
  size = RECEIVE_WINDOW;
  /** Credit given so far, the initial window included. */
  private granted = RECEIVE_WINDOW;
  private arrived = 0;
  private taken = 0;

  /** `bytes` of output arrived. */
  arrive(bytes: number): void {
    this.arrived += bytes;
  }

  /** The daemon has sent all it was granted and waits: the window doubles if the reader keeps up. */
  daemonWaits(): void {
    if (this.arrived - this.taken <= this.size / 2) this.size = Math.min(MAX_RECEIVE_WINDOW, this.size * 2);
  }

  /**
   * The reader has now taken `total` bytes of output in all: the grant to
   * send, once half a window is owed (each grant is a frame, a write and a
   * wake-up of the daemon), else 0.
   */
  take(total: number): number {
    this.taken = total;
    const owed = this.taken + this.size - this.granted;
    if (owed < this.size / 2) return 0;
    this.granted += owed;
    return owed;
  }
}
