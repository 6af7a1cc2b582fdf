// sshmux -G: the configuration as ssh -G prints it (lower-case "key value"
// lines, in ssh's order), resolved by the daemon itself (ControlRequest
// RESOLVE): the daemon may run as another user, with its own -F file and
// home, so resolving here would print a configuration the daemon does not
// use. git runs `$GIT_SSH_COMMAND -G host` to learn whether the program
// speaks OpenSSH's options (-p, -o SendEnv); scripts read the host name and
// port from it.
import type { sshmux } from '../proto/gen/sshmux';
import { enumValue } from '../proto/wire';
import type { Invocation } from './ssh-args';

type Resolved = sshmux.v1.IResolvedHost;

const yesNo = (v: boolean | null | undefined): string => (v ? 'yes' : 'no');
/** ssh -G's words for RequestTTY and StrictHostKeyChecking. */
const TTY_WORDS: Record<string, string> = { no: 'false', yes: 'true', force: 'force', auto: 'auto' };
const STRICT_WORDS: Record<string, string> = { yes: 'true', no: 'false', 'accept-new': 'accept-new' };

/** The RESOLVE request for an invocation. */
export function resolveRequest(inv: Invocation): { controlRequest: sshmux.v1.IControlRequest } {
  return { controlRequest: { action: enumValue('ControlRequest.Action', 'RESOLVE'), host: inv.destination, options: inv.options } };
}

/** The lines ssh -G would print for what the daemon resolved and what this command line asks. */
export function configLines(inv: Invocation, r: Resolved): string[] {
  const lines = [
    `host ${r.host ?? inv.destination}`,
    `user ${r.user ?? ''}`,
    `hostname ${r.hostname ?? ''}`,
    `port ${r.port ?? 22}`,
    `batchmode ${yesNo(r.batchMode)}`,
    `gatewayports ${yesNo(inv.localForwards.some((f) => f.bindAddress === '0.0.0.0'))}`,
    `identitiesonly ${yesNo(r.identitiesOnly)}`,
    `requesttty ${TTY_WORDS[inv.requestTty ?? 'auto']}`,
    `sessiontype ${inv.sessionType}`,
    `stdinnull ${yesNo(inv.stdinNull)}`,
    `forkafterauthentication ${yesNo(inv.fork)}`,
    `stricthostkeychecking ${STRICT_WORDS[r.strictHostKeyChecking ?? 'yes'] ?? r.strictHostKeyChecking}`,
    `serveralivecountmax ${r.serverAliveCountMax ?? 0}`,
    `serveraliveinterval ${r.serverAliveIntervalS ?? 0}`,
  ];
  if (r.hostKeyAlias) lines.push(`hostkeyalias ${r.hostKeyAlias}`);
  if (r.identityAgent) lines.push(`identityagent ${r.identityAgent}`);
  for (const f of inv.localForwards) lines.push(`localforward [${f.bindAddress}]:${f.port} [${f.host}]:${f.hostPort}`);
  for (const file of r.identityFiles ?? []) lines.push(`identityfile ${file}`);
  for (const file of r.certificateFiles ?? []) lines.push(`certificatefile ${file}`);
  if (r.globalKnownHostsFiles?.length) lines.push(`globalknownhostsfile ${r.globalKnownHostsFiles.join(' ')}`);
  if (r.userKnownHostsFiles?.length) lines.push(`userknownhostsfile ${r.userKnownHostsFiles.join(' ')}`);
  for (const name of r.sendEnv ?? []) lines.push(`sendenv ${name}`);
  for (const [name, value] of Object.entries(r.setEnv ?? {})) lines.push(`setenv ${name}=${value}`);
  lines.push(`connecttimeout ${r.connectTimeoutS ?? 0}`);
  if (r.proxyJump) lines.push(`proxyjump ${r.proxyJump}`);
  return lines;
}
