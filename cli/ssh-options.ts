// Every ssh_config keyword OpenSSH 9's ssh takes as `-o Keyword=Value`, and
// what sshmux does with it: pass it to the daemon for this call, handle it
// here (ssh-args.ts), ignore it because it only shapes something the daemon
// owns (the connection, its authentication, its host-key checks), or refuse
// it with the reason. As data, so that the README's table and -v's reasons
// come from one place. Keywords are ssh's (readconf.c), lower-case.
import { CLIENT_OPTIONS } from '../proto/client-options';

// Reasons said more than once.
const NO_PKCS11 = 'the daemon does not use PKCS#11 tokens; use ssh for them';
const NO_UNIX_FORWARDING = 'Unix-socket forwarding is not done';
const NO_ESCAPE_CHAR = 'sshmux has no escape character';
const TAG_IN_DAEMON_CONFIG = "Match tag is evaluated in the daemon's ssh_config, not per call";
const CONFIG_ONLY_DIRECTIVE = 'Host directive not supported as a command-line option';

export type OptionRule =
  /** Sent to the daemon in the call's options (first value wins, as in ssh). */
  | { kind: 'daemon'; list?: true }
  /** Handled by the parser itself. */
  | { kind: 'local' }
  | { kind: 'ignored'; why: string }
  /** Refused with `why`, unless `off(value)`: the value switches the feature off. */
  | { kind: 'refused'; why: string; off?: (v: string) => boolean }
  /** ssh's own classes: a warning (unsupported) or nothing (deprecated, ignore), then on. */
  | { kind: 'unsupported' | 'deprecated' | 'ignore' }
  /** Not allowed on ssh's command line at all; `why` is ssh's message. */
  | { kind: 'config-only'; why: string };

const MASTER = 'the daemon is the master: every session already rides its pooled connections';
const CONNECTION = 'it shapes the SSH connection, which the daemon opens from its own ssh_config and shares';
const AUTH = "authentication is the daemon's, from its ssh_config (per call only IdentityFile, CertificateFile and IdentitiesOnly)";
const HOST_KEYS = 'the daemon checks host keys against its known_hosts (per call only UserKnownHostsFile, StrictHostKeyChecking, HostKeyAlias)';
const CANONICAL = 'the daemon resolves host names without canonicalising them';
const X11 = 'X11 forwarding is not done';
const AGENT = "agent forwarding is not done: it would forward the daemon's agent, not yours";
const LOCAL_COMMAND = "sshmuxd never runs a command a client sends; set it in the daemon's ssh_config if the daemon should use it";
const BIND = "sessions ride the daemon's pooled connections, which it opens from its own address; use ssh for a connection from a chosen address or interface";
const REMOTE_LISTEN = 'remote forwarding is not done: a listener on a pooled connection would outlive this process and be shared by every client of the daemon; use ssh -R';
const SOCKS = 'a SOCKS proxy (dynamic forwarding) is not done: use -L for fixed destinations, or ssh -D';
const TUN = 'tun device forwarding (-w) needs a connection of its own; use ssh -w';

const none = (v: string): boolean => v.toLowerCase() === 'none';
const no = (v: string): boolean => ['no', 'false'].includes(v.toLowerCase());

export const OPTION_RULES: Record<string, OptionRule> = {
  // Per call, to the daemon: its allow-list (ConfigFile is ssh's -F, not a keyword).
  ...Object.fromEntries(Object.keys(CLIENT_OPTIONS).filter((k) => k !== 'configfile')
    .map((k): [string, OptionRule] => [k, k === 'userknownhostsfile' ? { kind: 'daemon', list: true } : { kind: 'daemon' }])),

  // Handled here.
  sendenv: { kind: 'local' },
  setenv: { kind: 'local' },
  requesttty: { kind: 'local' },
  sessiontype: { kind: 'local' },
  stdinnull: { kind: 'local' },
  forkafterauthentication: { kind: 'local' },
  localforward: { kind: 'local' },
  gatewayports: { kind: 'local' },
  clearallforwardings: { kind: 'local' },
  remotecommand: { kind: 'local' },
  loglevel: { kind: 'local' },
  escapechar: { kind: 'local' },
  ignoreunknown: { kind: 'local' },

  // Refused: they would run a local command or open something sshmux does not.
  proxycommand: { kind: 'refused', why: LOCAL_COMMAND, off: none },
  localcommand: { kind: 'refused', why: LOCAL_COMMAND, off: (v) => v === '' || none(v) },
  permitlocalcommand: { kind: 'refused', why: LOCAL_COMMAND, off: no },
  knownhostscommand: { kind: 'refused', why: LOCAL_COMMAND, off: none },
  proxyusefdpass: { kind: 'refused', why: LOCAL_COMMAND, off: no },
  remoteforward: { kind: 'refused', why: REMOTE_LISTEN },
  dynamicforward: { kind: 'refused', why: SOCKS },
  tunnel: { kind: 'refused', why: TUN, off: no },
  bindaddress: { kind: 'refused', why: BIND, off: none },
  bindinterface: { kind: 'refused', why: BIND, off: none },
  pkcs11provider: { kind: 'refused', why: NO_PKCS11, off: none },
  smartcarddevice: { kind: 'refused', why: NO_PKCS11, off: none },

  // Ignored: they only concern what the daemon owns, or the local ssh process.
  controlmaster: { kind: 'ignored', why: MASTER },
  controlpath: { kind: 'ignored', why: MASTER },
  controlpersist: { kind: 'ignored', why: MASTER },
  addressfamily: { kind: 'ignored', why: CONNECTION },
  ciphers: { kind: 'ignored', why: CONNECTION },
  macs: { kind: 'ignored', why: CONNECTION },
  kexalgorithms: { kind: 'ignored', why: CONNECTION },
  hostkeyalgorithms: { kind: 'ignored', why: CONNECTION },
  casignaturealgorithms: { kind: 'ignored', why: CONNECTION },
  pubkeyacceptedalgorithms: { kind: 'ignored', why: CONNECTION },
  pubkeyacceptedkeytypes: { kind: 'ignored', why: CONNECTION },
  hostbasedacceptedalgorithms: { kind: 'ignored', why: CONNECTION },
  hostbasedkeytypes: { kind: 'ignored', why: CONNECTION },
  compression: { kind: 'ignored', why: CONNECTION },
  rekeylimit: { kind: 'ignored', why: CONNECTION },
  ipqos: { kind: 'ignored', why: CONNECTION },
  tcpkeepalive: { kind: 'ignored', why: CONNECTION },
  keepalive: { kind: 'ignored', why: CONNECTION },
  connectionattempts: { kind: 'ignored', why: CONNECTION },
  requiredrsasize: { kind: 'ignored', why: CONNECTION },
  channeltimeout: { kind: 'ignored', why: CONNECTION },
  obscurekeystroketiming: { kind: 'ignored', why: CONNECTION },
  warnweakcrypto: { kind: 'ignored', why: CONNECTION },
  preferredauthentications: { kind: 'ignored', why: AUTH },
  passwordauthentication: { kind: 'ignored', why: AUTH },
  kbdinteractiveauthentication: { kind: 'ignored', why: AUTH },
  challengeresponseauthentication: { kind: 'ignored', why: AUTH },
  skeyauthentication: { kind: 'ignored', why: AUTH },
  tisauthentication: { kind: 'ignored', why: AUTH },
  kbdinteractivedevices: { kind: 'ignored', why: AUTH },
  pubkeyauthentication: { kind: 'ignored', why: AUTH },
  dsaauthentication: { kind: 'ignored', why: AUTH },
  hostbasedauthentication: { kind: 'ignored', why: AUTH },
  enablesshkeysign: { kind: 'ignored', why: AUTH },
  numberofpasswordprompts: { kind: 'ignored', why: AUTH },
  identityagent: { kind: 'ignored', why: AUTH },
  addkeystoagent: { kind: 'ignored', why: AUTH },
  securitykeyprovider: { kind: 'ignored', why: AUTH },
  gssapiauthentication: { kind: 'ignored', why: AUTH },
  gssapidelegatecredentials: { kind: 'ignored', why: AUTH },
  gssapikeyexchange: { kind: 'ignored', why: AUTH },
  gssapiclientidentity: { kind: 'ignored', why: AUTH },
  gssapiserveridentity: { kind: 'ignored', why: AUTH },
  gssapirenewalforcesrekey: { kind: 'ignored', why: AUTH },
  gssapitrustdns: { kind: 'ignored', why: AUTH },
  gssapikexalgorithms: { kind: 'ignored', why: AUTH },
  globalknownhostsfile: { kind: 'ignored', why: HOST_KEYS },
  checkhostip: { kind: 'ignored', why: HOST_KEYS },
  verifyhostkeydns: { kind: 'ignored', why: HOST_KEYS },
  revokedhostkeys: { kind: 'ignored', why: HOST_KEYS },
  updatehostkeys: { kind: 'ignored', why: HOST_KEYS },
  hashknownhosts: { kind: 'ignored', why: HOST_KEYS },
  fingerprinthash: { kind: 'ignored', why: HOST_KEYS },
  visualhostkey: { kind: 'ignored', why: HOST_KEYS },
  nohostauthenticationforlocalhost: { kind: 'ignored', why: HOST_KEYS },
  canonicaldomains: { kind: 'ignored', why: CANONICAL },
  canonicalizefallbacklocal: { kind: 'ignored', why: CANONICAL },
  canonicalizehostname: { kind: 'ignored', why: CANONICAL },
  canonicalizemaxdots: { kind: 'ignored', why: CANONICAL },
  canonicalizepermittedcnames: { kind: 'ignored', why: CANONICAL },
  forwardagent: { kind: 'ignored', why: AGENT },
  forwardx11: { kind: 'ignored', why: X11 },
  forwardx11trusted: { kind: 'ignored', why: X11 },
  forwardx11timeout: { kind: 'ignored', why: X11 },
  xauthlocation: { kind: 'ignored', why: X11 },
  permitremoteopen: { kind: 'ignored', why: 'it only concerns remote forwarding, which sshmux does not do' },
  streamlocalbindmask: { kind: 'ignored', why: NO_UNIX_FORWARDING },
  streamlocalbindunlink: { kind: 'ignored', why: NO_UNIX_FORWARDING },
  tunneldevice: { kind: 'ignored', why: TUN },
  exitonforwardfailure: { kind: 'ignored', why: 'sshmux always exits when a local forward cannot listen' },
  enableescapecommandline: { kind: 'ignored', why: NO_ESCAPE_CHAR },
  syslogfacility: { kind: 'ignored', why: "sshmux's diagnostics go to stderr, to -E's file or, with -y, to syslog's user facility" },
  logverbose: { kind: 'ignored', why: "it selects ssh's own debug messages" },
  tag: { kind: 'ignored', why: TAG_IN_DAEMON_CONFIG },

  // ssh's own classes (readconf.c): oIgnore, oDeprecated, oUnsupported.
  protocol: { kind: 'ignore' },
  cipher: { kind: 'deprecated' },
  fallbacktorsh: { kind: 'deprecated' },
  globalknownhostsfile2: { kind: 'deprecated' },
  rhostsauthentication: { kind: 'deprecated' },
  userknownhostsfile2: { kind: 'deprecated' },
  useroaming: { kind: 'deprecated' },
  usersh: { kind: 'deprecated' },
  useprivilegedport: { kind: 'deprecated' },
  afstokenpassing: { kind: 'unsupported' },
  kerberosauthentication: { kind: 'unsupported' },
  kerberostgtpassing: { kind: 'unsupported' },
  rsaauthentication: { kind: 'unsupported' },
  rhostsrsaauthentication: { kind: 'unsupported' },
  compressionlevel: { kind: 'unsupported' },

  // ssh's messages for these on the command line (Match gets Host's, as in ssh).
  host: { kind: 'config-only', why: CONFIG_ONLY_DIRECTIVE },
  match: { kind: 'config-only', why: CONFIG_ONLY_DIRECTIVE },
  include: { kind: 'config-only', why: 'Include directive not supported as a command-line option' },
};

/** Why a flag without a value is accepted and ignored (shown with -v). */
export const IGNORED_FLAGS: Record<string, string> = {
  2: 'protocol 2 is the only one',
  4: CONNECTION,
  6: CONNECTION,
  A: AGENT,
  a: 'agent forwarding is never done',
  C: CONNECTION,
  K: AUTH,
  k: 'no GSSAPI credentials are delegated',
  M: MASTER,
  X: X11,
  x: X11,
  Y: X11,
};

/** Why a flag with a value is accepted and ignored. */
export const IGNORED_VALUE_FLAGS: Record<string, string> = {
  S: MASTER,
  c: CONNECTION,
  m: CONNECTION,
  e: NO_ESCAPE_CHAR,
  P: TAG_IN_DAEMON_CONFIG,
};

/** Why a flag is refused (ssh-args.ts lists the same letters). */
export const REFUSED_FLAGS: Record<string, string> = {
  b: BIND,
  B: BIND,
  D: SOCKS,
  R: REMOTE_LISTEN,
  w: TUN,
  I: NO_PKCS11,
};
