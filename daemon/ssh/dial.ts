// Dials one SSH connection: TCP, banner, key exchange, host-key check and
// authentication, all bounded together by ConnectTimeout (a server under
// memory pressure accepts TCP and then never sends its banner). Each
// failure is classified, because the pool treats them differently: a
// throttled server is retried with backoff, a bad host key never is.
import type { Duplex } from 'node:stream';
import { Code } from '../../proto';
import { coalesceWrites } from '../coalesce-writes';
import { connectBorrowing } from './read-buffer';
import { MuxError } from '../errors';
import type { ResolvedHost } from './ssh-config';
import { credentialsFor, describeCertificate, type AuthMethod, type Credentials } from './auth';
import { describeValidity, validityProblem } from './certificates';
import { fingerprint, hostKeyAlgorithms, keyName, lookupName, verifyHostKey, type HostKeyCheck, type HostKeyVerdict } from './known-hosts';
import { serverHostKeyAlgorithms } from './ssh2/certificates';
import { Client, type ClientChannel, type ConnectConfig } from './ssh2';
import { sizeReceiveWindow } from './link-window';

type Stage = 'tcp' | 'banner' | 'kex' | 'auth';

/** TCP keepalive probes start after this much silence; SSH keepalive does the real work. */
const TCP_KEEPALIVE_MS = 15_000;

/**
 * At most this long our reply to the server's close of a channel waits for
 * the next channel open or keepalive to go out with, in the same write
 * (ssh2's closeReplyHoldMs, daemon/ssh/ssh2/).
 */
const CLOSE_REPLY_HOLD_MS = 100;

export interface Dialed {
  client: Client;
  /** The TCP socket, or the forwarding channel through a jump host. */
  socket: Duplex;
  /** What OpenSSH would print about the host key: a changed key accepted under StrictHostKeyChecking no, a key newly added. */
  hostKeyWarning?: HostKeyWarning;
}

export interface HostKeyWarning {
  message: string;
  /** A changed key: every session on the connection is told, as ssh says it on every connection. A newly added one: the first. */
  everySession: boolean;
}

/** A jump host's pool, which carries the connection as a forwarding channel. */
export interface Tunneler {
  readonly name: string;
  /** Opens a channel to host:port through a pooled connection; cancel() gives up waiting. */
  tunnel(host: string, port: number): { stream: Promise<Duplex>; cancel(): void };
  /** How long ago the jump host last sent anything on a ready connection, ms; undefined: it has none. */
  heardAgoMs(): number | undefined;
  /** Sends a keepalive on its ready connections: a connection through it went silent, and whether the jump host still answers tells which hop failed. */
  probe(): void;
}

export async function dial(host: ResolvedHost, via?: Tunneler): Promise<Dialed> {
  const creds = await credentialsFor(host);
  const { methods, skipped } = creds;
  // Every user certificate is outside its window and nothing else is left:
  // say so before sshd sees a login it would refuse.
  if (methods.length === 0 && creds.outOfWindow.length > 0) throw certificateError(host, creds);
  const hostKeyCheck: HostKeyCheck = {
    hostname: host.hostname, port: host.port, hostKeyAlias: host.hostKeyAlias,
    userFiles: host.userKnownHostsFiles, globalFiles: host.globalKnownHostsFiles,
    strict: host.strictHostKeyChecking, hashKnownHosts: host.hashKnownHosts,
  };
  const serverHostKey = await hostKeyAlgorithms(hostKeyCheck);

  return new Promise<Dialed>((resolve, reject) => {
    let stage: Stage = 'tcp';
    let settled = false;
    let hostKeyFailure: MuxError | undefined;
    let hostKeyWarning: HostKeyWarning | undefined;
    const client = new Client();
    let socket: Duplex | undefined;
    let cancelTunnel: (() => void) | undefined;

    const fail = (err: MuxError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cancelTunnel?.();
      socket?.destroy();
      client.end();
      reject(err);
    };
    const timer = setTimeout(() => fail(timeoutError(host, stage, via)), host.connectTimeoutMs);

    const start = (stream: Duplex): void => {
      if (settled) {
        stream.destroy();
        return;
      }
      socket = stream;
      // Checked once the host is known to exist, as ssh does: a typo in the
      // host name should say so, not complain about keys.
      if (methods.length === 0) {
        return fail(new MuxError(Code.AUTH_FAILED,
          `no usable identity for ${host.user}@${host.hostname}: ${skipped.length ? skipped.join('; ') : `none of ${host.identityFiles.join(', ')} exists and no agent is set`}. ` +
          'Set IdentityFile in the daemon\'s ssh_config, or IdentityAgent/SSH_AUTH_SOCK for the daemon', 'handshaking'));
      }
      stage = 'banner';
      const config: ConnectConfig = {
        sock: stream as ConnectConfig['sock'],
        username: host.user,
        readyTimeout: 0, // our own timer covers every stage
        // The pool keeps ServerAliveInterval and ServerAliveCountMax itself, within their product (daemon/ssh/liveness.ts).
        keepaliveInterval: 0,
        closeReplyHoldMs: CLOSE_REPLY_HOLD_MS,
        authHandler: methods.slice(),
        algorithms: { serverHostKey: serverHostKeyAlgorithms(serverHostKey) },
        // With the 040 patch, a host certificate arrives here whole.
        hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
          verifyHostKey(hostKeyCheck, key).then((verdict: HostKeyVerdict) => {
            if (!verdict.ok) hostKeyFailure = new MuxError(Code[verdict.code], verdict.message, 'handshaking');
            else if (verdict.warning) hostKeyWarning = { message: verdict.warning, everySession: !verdict.added };
            verify(verdict.ok);
          }, (err: Error) => {
            hostKeyFailure = new MuxError(Code.HOST_KEY_UNKNOWN,
              `cannot check the host key of ${keyName(hostKeyCheck)} (${fingerprint(key)}): ${err.message}`, 'handshaking');
            verify(false);
          });
        },
      };
      client.connect(config);
      // Watch the bytes before the server's SSH ident: sshd past MaxStartups
      // writes "Exceeded MaxStartups" and closes, which is throttling, not a
      // failed key exchange. Only the ident line moves us on to kex.
      let preamble = '';
      const watch = (d: Buffer): void => {
        preamble += d.toString('latin1', 0, Math.min(d.length, 512));
        if (/(^|\n)SSH-/.test(preamble)) {
          if (stage === 'banner') stage = 'kex';
          stream.off('data', watch);
        } else if (preamble.length > 8192) {
          stream.off('data', watch);
        }
      };
      stream.on('data', watch);
      // Through a jump host: the forwarding channel carries the whole connection, its window sized to the jump host's link.
      if (via) sizeReceiveWindow(stream as ClientChannel);
    };

    if (via) {
      const t = via.tunnel(host.hostname, host.port);
      cancelTunnel = t.cancel;
      t.stream.then(start, (err: MuxError) => fail(err));
    } else {
      const borrowing = connectBorrowing({ host: host.hostname, port: host.port });
      const tcp = borrowing.socket;
      socket = tcp;
      // Once logged in, reads go to ssh2 from one reused buffer (see read-buffer.ts).
      client.once('ready', () => borrowing.lendTo(client));
      tcp.once('error', (err: NodeJS.ErrnoException) => {
        if (stage === 'tcp') fail(socketError(host, err));
      });
      tcp.once('connect', () => {
        // ssh2 sets neither: without NODELAY a warm exec waits on Nagle against
        // delayed ACK (44 ms instead of 1.3 ms); keepalive finds dead peers.
        tcp.setNoDelay(true);
        tcp.setKeepAlive(true, TCP_KEEPALIVE_MS);
        coalesceWrites(tcp);
        start(tcp);
      });
    }

    client.once('handshake', () => {
      stage = 'auth';
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (hostKeyFailure) return fail(hostKeyFailure);
      if (err.level === 'client-authentication') return fail(authError(host, creds));
      if (stage === 'banner') return fail(throttled(host, err.message));
      fail(new MuxError(Code.HANDSHAKE_FAILED,
        `SSH handshake with ${lookupName(host.hostname, host.port)} failed during ${stage === 'kex' ? 'key exchange' : 'authentication'}: ${err.message}`,
        'handshaking'));
    });
    client.once('close', () => {
      if (hostKeyFailure) return fail(hostKeyFailure);
      if (stage === 'banner') return fail(throttled(host, 'connection closed'));
      fail(new MuxError(Code.HANDSHAKE_FAILED,
        `${lookupName(host.hostname, host.port)} closed the connection during ${stage === 'kex' ? 'key exchange' : 'authentication'}`,
        'handshaking'));
    });
    client.once('ready', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ client, socket: socket!, hostKeyWarning });
    });
  });
}

function describeMethods(methods: AuthMethod[]): string {
  return methods.map((m) => (m.type === 'agent' ? 'agent' : 'certificate' in m ? 'certificate and key file' : 'key file')).join(', ');
}

/**
 * Every user certificate is outside its validity window: CERTIFICATE_INVALID
 * naming each window, decided without a login when nothing else is left.
 */
function certificateError(host: ResolvedHost, creds: Credentials, afterRefusal = ''): MuxError {
  const now = Math.floor(Date.now() / 1000);
  const lines = creds.outOfWindow.map((c) =>
    `${describeCertificate(c)} is ${validityProblem(c.cert, now) ?? 'outside its window'} (valid ${describeValidity(c.cert)})`);
  return new MuxError(Code.CERTIFICATE_INVALID,
    `cannot log in as ${host.user}@${lookupName(host.hostname, host.port)} with a certificate: ${lines.join('; ')}${afterRefusal}. ` +
    'Renew the certificate (ssh-keygen -s CA ..., or your CA\'s client); a new connection reads it from disk, no restart needed; ' +
    'if it is not yet valid, check this machine\'s clock', 'handshaking');
}

/**
 * sshd refused every key offered. When a certificate was in play, say which
 * and why it is the likely cause: one outside its window was held back, or
 * one offered does not name the login user among its principals (sshd
 * requires it unless AuthorizedPrincipalsFile maps the principals).
 */
function authError(host: ResolvedHost, creds: Credentials): MuxError {
  const where = `${host.user}@${lookupName(host.hostname, host.port)}`;
  const skipped = creds.skipped.length ? `; skipped: ${creds.skipped.join('; ')}` : '';
  if (creds.outOfWindow.length > 0) {
    return certificateError(host, creds, `, and the server refused the other keys offered (${describeMethods(creds.methods)})${skipped}`);
  }
  const foreign = creds.offered.filter((c) => !c.cert.principals.includes(host.user));
  if (foreign.length > 0) {
    return new MuxError(Code.CERTIFICATE_INVALID,
      `${where} refused every key offered, and ${foreign.map(describeCertificate).join('; ')} does not list ${host.user} among its principals${skipped}. ` +
      `Have the CA sign a certificate for principal ${host.user} (ssh-keygen -s CA -n ${host.user} ...), log in as one of its principals, ` +
      'or map the principal in the server\'s AuthorizedPrincipalsFile', 'handshaking');
  }
  const certs = creds.offered.length
    ? `; certificates offered: ${creds.offered.map(describeCertificate).join('; ')}. The server may not trust their CA (TrustedUserCAKeys), ` +
      'or may have revoked it or them (RevokedKeys)'
    : '';
  return new MuxError(Code.AUTH_FAILED,
    `${where} refused every key offered (${describeMethods(creds.methods)})${skipped}${certs}. ` +
    'Check the user name and that the public key is in the server\'s authorized_keys, or that the server trusts the certificate\'s CA',
    'handshaking');
}

function timeoutError(host: ResolvedHost, stage: Stage, via?: Tunneler): MuxError {
  const limit = `ConnectTimeout ${host.connectTimeoutMs / 1000} s`;
  if (via) return hopTimeoutError(host, stage, via, limit);
  const where = lookupName(host.hostname, host.port);
  if (stage === 'tcp') {
    return new MuxError(Code.CONNECT_TIMEOUT,
      `connection to ${where} timed out (${limit}): no TCP answer. Check the address, the route and firewalls`, 'handshaking');
  }
  if (stage === 'banner') {
    return new MuxError(Code.HANDSHAKE_TIMEOUT,
      `connection timed out during banner exchange with ${where} (${limit}): TCP was accepted but sshd never sent its banner, ` +
      'as when the server is out of memory or CPU. sshmux retries with backoff', 'handshaking');
  }
  return new MuxError(Code.HANDSHAKE_TIMEOUT,
    `SSH ${stage === 'kex' ? 'key exchange' : 'authentication'} with ${where} did not finish within ${limit}: the server is overloaded or the link is stalling`,
    'handshaking');
}

/**
 * A connection through a jump host timed out: say which hop failed. With
 * the jump host's own connection up, the hop behind it is what failed (a
 * partition between the two, or the node down), not the jump host; without
 * one, the jump host is the one that did not answer.
 */
function hopTimeoutError(host: ResolvedHost, stage: Stage, via: Tunneler, limit: string): MuxError {
  const node = lookupName(host.hostname, host.port);
  const heard = via.heardAgoMs();
  if (heard === undefined) {
    return new MuxError(Code.JUMP_FAILED,
      `jump host ${via.name} failed: no connection to it within ${limit} (of ${host.alias}), so ${node} behind it was not reached; see ${via.name}'s own error`, 'handshaking');
  }
  const up = `jump host ${via.name} is up`;
  const answered = `${via.name} answered ${(heard / 1000).toFixed(1)} s ago`;
  if (stage === 'tcp') {
    return new MuxError(Code.CONNECT_TIMEOUT,
      `${up}, but its TCP connection to ${node} got no answer within ${limit} (${answered}): the network between ${via.name} and ${host.hostname} is cut, ` +
      `or ${host.hostname} is down. Check from ${via.name} that ${host.hostname} port ${host.port} answers`, 'handshaking');
  }
  if (stage === 'banner') {
    return new MuxError(Code.HANDSHAKE_TIMEOUT,
      `${up}, but ${node} behind it sent no SSH banner within ${limit} (${answered} and opened TCP to it): the link between ${via.name} and ${host.hostname} ` +
      `stopped carrying data, or ${host.hostname} is out of memory or CPU. sshmux retries with backoff`, 'handshaking');
  }
  return new MuxError(Code.HANDSHAKE_TIMEOUT,
    `${up}, but SSH ${stage === 'kex' ? 'key exchange' : 'authentication'} with ${node} behind it did not finish within ${limit} (${answered}): ` +
    `${host.hostname} is overloaded or the link between ${via.name} and ${host.hostname} is stalling`, 'handshaking');
}

function throttled(host: ResolvedHost, detail: string): MuxError {
  return new MuxError(Code.THROTTLED,
    `${lookupName(host.hostname, host.port)} closed the connection before its SSH banner (${detail}): sshd's MaxStartups is dropping ` +
    'unauthenticated connections because too many handshakes reach it at once. sshmux backs off and retries; ' +
    'if other programs flood this server too, route them through sshmux or raise MaxStartups', 'handshaking');
}

function socketError(host: ResolvedHost, err: NodeJS.ErrnoException): MuxError {
  const where = lookupName(host.hostname, host.port);
  switch (err.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_FAIL':
      return new MuxError(Code.DNS,
        `could not resolve hostname ${host.hostname}: ${err.code === 'EAI_AGAIN' ? 'temporary DNS failure' : 'name not known'}. ` +
        `Check the host name, or add a Host ${host.alias} entry with HostName to the daemon's ssh_config`, 'handshaking');
    case 'ECONNREFUSED':
      return new MuxError(Code.REFUSED,
        `connection to ${where} refused: is sshd running and listening on port ${host.port}?`, 'handshaking');
    default:
      return new MuxError(Code.CONNECT_TIMEOUT,
        `cannot connect to ${where}: ${err.message}`, 'handshaking');
  }
}
