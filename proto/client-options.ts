// The ssh -o options a client may set per call (SessionRequest.options):
// part of the contract between the daemon, which enforces it, and its
// clients, which refuse the rest before sending (the sshmux command).
// 'owner': only while the daemon's socket is owner-only; on a group-shared
// daemon these would let one user weaken host-key checking or borrow keys
// on connections others share. Everything else is refused, above all
// whatever would run a local command. Keys are lower-case, as ssh reads them.
export const CLIENT_OPTIONS: Readonly<Record<string, 'any' | 'owner'>> = Object.freeze({
  port: 'any',
  user: 'any',
  // ssh -o HostName: another address for the same configuration (and so the same keys).
  hostname: 'owner',
  connecttimeout: 'any',
  serveraliveinterval: 'any',
  serveralivecountmax: 'any',
  batchmode: 'any',
  stricthostkeychecking: 'owner',
  userknownhostsfile: 'owner',
  hostkeyalias: 'owner',
  identityfile: 'owner',
  // A user certificate for the call's key, as ssh -o CertificateFile=...
  certificatefile: 'owner',
  identitiesonly: 'owner',
  // ssh -F: resolve through another ssh_config file (ProxyCommand in it is still refused).
  configfile: 'owner',
  // ssh -J: which hosts this connection goes through (and so whose keys it uses).
  proxyjump: 'owner',
});
