// Which credentials a connection offers, from the resolved ssh_config:
// the agent (unless IdentitiesOnly), then each IdentityFile, as ssh does.
// The daemon never prompts: encrypted keys without an agent are skipped.
import * as fs from 'node:fs/promises';
import { utils, type AgentAuthMethod, type PublicKeyAuthMethod } from './ssh2';
import type { ResolvedHost } from './ssh-config';

export interface Credentials {
  methods: Array<AgentAuthMethod | PublicKeyAuthMethod>;
  /** Why some identities were not offered; goes into AUTH_FAILED messages. */
  skipped: string[];
}

export async function credentialsFor(host: ResolvedHost): Promise<Credentials> {
  const methods: Credentials['methods'] = [];
  const skipped: string[] = [];
  if (host.identityAgent && !host.identitiesOnly) {
    methods.push({ type: 'agent', username: host.user, agent: host.identityAgent });
  }
  for (const file of host.identityFiles) {
    let text: Buffer;
    try {
      text = await fs.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') skipped.push(`${file}: ${(err as Error).message}`);
      continue;
    }
    const parsed = utils.parseKey(text);
    if (parsed instanceof Error) {
      skipped.push(`${file}: ${parsed.message}`);
      continue;
    }
    methods.push({ type: 'publickey', username: host.user, key: text });
  }
  return { methods, skipped };
}
