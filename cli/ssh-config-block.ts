// `sshmuxctl ssh-config`: the ssh_config block after which plain `ssh`
// (and scp, sftp, rsync, git, Ansible, scripts: whatever runs ssh) reaches
// hosts through sshmuxd's pooled connections at ControlMaster speed.
//
// How: every matching destination gets an OpenSSH ControlMaster whose one
// connection goes to sshmuxd's SSH front door, through gateway-dial.ts (a
// ProxyCommand that names the destination and hands ssh the socket). Each
// later `ssh HOST CMD` is a ControlMaster client (a few ms, no handshake);
// its session becomes a channel on the master's connection, which the door
// queues for a slot on the host's pooled connections instead of refusing it
// past MaxSessions, as sshd refuses a master's 11th session. ssh checks the
// door's host key (gateway_known_hosts, under the name in it); the
// destination's host key is the daemon's to check, as for any door client.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CLIENT_BLOCK_BEGIN, CLIENT_BLOCK_END } from '../daemon/ssh/ssh-config';

/** The first line's requirement, also the message when the daemon lacks it. */
export const NEEDS_GATEWAY = 'needs sshmuxd --gateway 127.0.0.1:PORT (or "gateway" in its config)';

/** Where masters listen: ssh's own directory (0700, the user's), one socket per host, port and user. */
export const CONTROL_PATH = '~/.ssh/sshmux-%C';
/** An idle master keeps its door connection this long; it holds nothing upstream. */
export const CONTROL_PERSIST = '10m';

export interface BlockInput {
  /** The door's address as the daemon reports it: host:port or a Unix socket path. */
  address: string;
  /** Its known_hosts lines (the daemon's status), one per host key. */
  knownHosts: string;
  /** The file holding them (gateway_known_hosts). */
  knownHostsFile: string;
  /** The key ssh logs in to the door with; undefined: ssh's own choice of keys. */
  identity?: string;
  /** Host patterns the block applies to (ssh's Host syntax, !negation included). */
  hosts: string[];
  /** Node and the dialer, as absolute paths: ssh runs them without our PATH. */
  node: string;
  dialer: string;
  /** When it was made, for its first line. */
  now: Date;
}

/** The block, ready to Include. */
export function sshConfigBlock(input: BlockInput): string {
  const name = input.knownHosts.split('\n')[0]?.split(/\s+/)[0];
  if (!name) throw new Error('the daemon reported no known_hosts line for its front door');
  const hosts = input.hosts.length ? input.hosts : ['*'];
  const dial = ['/usr/bin/env', 'NODE_CHANNEL_FD=1', input.node, input.dialer, input.address].map((w) => shellWord(literal(w)))
    .concat("'%r'", "'%n'", "'%p'").join(' ');
  const lines = [
    `${CLIENT_BLOCK_BEGIN}: ${NEEDS_GATEWAY}; this one is at ${input.address}. Made by \`sshmuxctl ssh-config\` ${input.now.toISOString().slice(0, 10)}.`,
    '# ssh, scp, sftp, rsync, git and Ansible reach the hosts below on sshmuxd\'s pooled connections: each',
    '# destination gets a ControlMaster whose one connection goes to sshmuxd\'s front door, which queues',
    '# sessions for the host\'s MaxSessions instead of refusing them. Include this file at the top of',
    '# ~/.ssh/config (or drop it into /etc/ssh/ssh_config.d/): ssh keeps the first value it reads, so these',
    '# must come before the hosts\' own settings. sshmuxd reads the same files and skips this block.',
    ...(hosts.includes('*') ? ['# Every host: exclude those sshmuxd cannot reach (a ProxyCommand host) with !NAME below.'] : []),
    `Host ${hosts.join(' ')}`,
    `    ProxyCommand ${dial}`,
    '    ProxyUseFdpass yes',
    // The door is one known identity, whatever the destination: its keys, under the name the file gives them.
    `    HostKeyAlias ${name}`,
    `    UserKnownHostsFile ${configWord(input.knownHostsFile)}`,
    '    StrictHostKeyChecking yes',
    '    UpdateHostKeys no',
    '    CheckHostIP no',
    ...(input.identity ? [`    IdentityFile ${configWord(input.identity)}`, '    IdentitiesOnly yes'] : []),
    // The door refuses them (a pooled connection is shared); asking would only log a refusal per session.
    '    ForwardAgent no',
    '    ForwardX11 no',
    '    ControlMaster auto',
    `    ControlPath ${CONTROL_PATH}`,
    `    ControlPersist ${CONTROL_PERSIST}`,
    // What follows this block (pasted rather than Included) applies to every host again.
    'Host *',
    CLIENT_BLOCK_END,
    '',
  ];
  return lines.join('\n');
}

/** The directory of CONTROL_PATH for this user: ~/.ssh, where ~ is the home in the passwd entry, as ssh expands it. */
export function controlDir(): string {
  return path.join(os.userInfo().homedir, '.ssh');
}

/** The dialer shipped beside this file. */
export function dialerPath(): string {
  return path.join(__dirname, 'gateway-dial.js');
}

/**
 * The key ssh should log in to the door with, or why there is none to use:
 * the daemon's generated client key if this user can read it, else the one
 * given, which must be listed in the daemon's gatewayAuthorizedKeys.
 */
export function doorIdentity(given: string | undefined, clientKey: string, authorizedKeys: string): { identity: string } | { error: string } {
  // "~/..." stays as it is, for ssh to expand per user: a block in /etc/ssh/ssh_config.d/ serves every user.
  if (given?.startsWith('~/')) return { identity: given };
  if (given) {
    const file = path.resolve(given);
    if (!isReadable(file)) return { error: `cannot read the key ${file} given with --identity` };
    return { identity: file };
  }
  if (clientKey) {
    if (isReadable(clientKey)) return { identity: clientKey };
    return {
      error: `the front door's generated client key ${clientKey} is readable by sshmuxd's user only, and you are another user: ` +
        'list your public key in a file the daemon\'s "gatewayAuthorizedKeys" names, and pass that key here with --identity FILE',
    };
  }
  return { error: `this sshmuxd lets in the keys listed in ${authorizedKeys || 'its gatewayAuthorizedKeys'}: name yours with --identity FILE` };
}

function isReadable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.R_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** `s` with ssh's token character escaped, so that ssh expands nothing in it. */
function literal(s: string): string {
  return s.replace(/%/g, '%%');
}

/** A path as an ssh_config argument: tokens escaped (a leading ~ is ssh's to expand), quoted if it has spaces. */
function configWord(s: string): string {
  const v = literal(s);
  return /\s/.test(v) ? `"${v}"` : v;
}

/** A word the shell that ssh runs the ProxyCommand with reads back as it is. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
