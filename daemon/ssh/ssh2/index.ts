// The one module that loads ssh2. ssh2 is pinned in package.json and changed
// only by the patch files in ./patches (see ./README.md), applied at
// install; this module types what they add, so the rest of the daemon uses
// them as ordinary methods and options, and reads nothing private of ssh2.
// Each addition names its patch; ./capabilities.ts checks what each does.
/* eslint-disable @typescript-eslint/no-require-imports */
import type { Socket } from 'node:net';
import type { RejectConnection } from 'ssh2';
import ssh2 = require('ssh2');

declare module 'ssh2' {
  interface Client {
    /** A keepalive request; `cb` runs once the server has answered it, so after it processed all we sent before (patch 010). */
    ping(cb: () => void): this;
    /**
     * Opens a session channel ahead of need; the next session (exec, shell,
     * subsys, sftp) takes it instead of opening one (patch 015). False when
     * a spare is already there or no channel number is free.
     */
    openSpareSession(onReady: () => void, onLost: (err: Error & { reason?: unknown }, wasReady: boolean) => void): boolean;
    /** The spare's state: sent and unconfirmed, confirmed, or none (patch 015). */
    readonly spareSession: 'none' | 'opening' | 'ready';
    /**
     * Bytes from the connection's socket in memory the caller uses again once
     * this returns, instead of the socket's 'data': ssh2 copies what it keeps,
     * and lends channel data to channels that ask for it (patch 017).
     */
    readBorrowed(chunk: Buffer): void;
  }
  interface ClientChannel {
    /**
     * This channel's (and its stderr's) 'data' listeners take what they need
     * before they return: under readBorrowed(), data that would go straight
     * to them is lent as it is, a view valid only until they return (patch 017).
     */
    lendData?: boolean;
    /** Under readBorrowed(), how data that must be kept (a paused stream) is copied; default a new Buffer (patch 017). */
    keepData?: (data: Buffer, isStderr: boolean) => Buffer;
  }
  interface ExecOptions {
    /** The command has no stdin: its EOF goes out right behind the exec request, in the same write (patch 013). */
    closeStdin?: boolean;
  }
  interface ConnectConfig {
    /** Our close in reply to the server's waits up to this long for the next channel open or keepalive to go with (patch 014). */
    closeReplyHoldMs?: number;
  }
  interface AuthContextBase {
    /** Sends text the client shows while it authenticates (patch 031). */
    banner(message: string): void;
  }
  interface ClientInfo {
    /** The socket the connection came on (patch 033). */
    socket: Socket;
  }
  interface ServerConfig {
    /**
     * Lines a client may send before its identification string (default 0,
     * as RFC 4253 has it); they arrive as the connection's header.greeting
     * (patch 035).
     */
    clientGreetingLines?: number;
  }
}

export const { BaseAgent, Client, createAgent, Server, utils } = ssh2;
export type {
  AcceptConnection, AgentAuthMethod, AuthContext, ClientCallback, ClientChannel, ClientInfo, ConnectConfig, Connection,
  ExecOptions, ParsedKey, PseudoTtyOptions, PublicKeyAuthMethod, RejectConnection, ServerChannel, ServerHostKeyAlgorithm, Session,
  SFTPWrapper,
  TcpipRequestInfo,
} from 'ssh2';
export type Client = ssh2.Client;
export type Server = ssh2.Server;
export type BaseAgent = ssh2.BaseAgent;

/** reject() of a channel open, with the reason code and the text a client shows (patch 030). */
export function rejectChannel(reject: RejectConnection, reasonCode: number, description: string): void {
  (reject as (reasonCode?: number, description?: string) => void)(reasonCode, description);
}

interface CipherModule {
  bindingAvailable?: boolean;
  paddingBlockFills?: () => number;
}

function cipherModule(): CipherModule {
  return require('ssh2/lib/protocol/crypto.js') as CipherModule;
}

/**
 * Whether ssh2 runs its ciphers through its C++ binding, built at install
 * (scripts/postinstall.js). Without it AES-GCM creates a Node Decipher per
 * packet and ChaCha20-Poly1305 runs in JavaScript: the same bytes, more CPU.
 */
export function ssh2NativeCrypto(): boolean {
  return cipherModule().bindingAvailable === true;
}

/** Blocks of random bytes drawn for packet padding so far (patch 016); undefined without the patch. */
export function paddingBlockFills(): number | undefined {
  return cipherModule().paddingBlockFills?.();
}
