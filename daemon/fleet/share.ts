// Fair shares of a fleet's connection cap for one endpoint: max-min fairness
// (water-filling). Every daemon that wants connections gets the same share
// unless it wants fewer, and what those leave goes to the rest; the units a
// division leaves over go to the daemons that have wanted the endpoint
// longest, so that shares do not move between equals from one second to the
// next (each move would cost a login). Every daemon computes the same answer
// from the same presence records (fleet-endpoint.ts), so nobody has to hand shares
// out: a daemon opens connections only below its own share.

export interface Wanter {
  id: string;
  /** Connections it could use now. */
  demand: number;
  /** Since when it has wanted this endpoint (ms): the earlier, the sooner it gets a leftover unit. */
  since: number;
}

/** Each wanter's share; the shares add up to at most `cap`, and none exceeds its demand. */
export function fairShares(cap: number, wanters: readonly Wanter[]): Map<string, number> {
  const shares = new Map<string, number>();
  // Smallest demands first: what they leave raises everyone else's level.
  const byDemand = [...wanters].sort((a, b) => a.demand - b.demand || a.since - b.since || cmp(a.id, b.id));
  let left = cap;
  for (let i = 0; i < byDemand.length; i++) {
    const level = Math.floor(left / (byDemand.length - i));
    if (byDemand[i].demand <= level) {
      shares.set(byDemand[i].id, byDemand[i].demand);
      left -= byDemand[i].demand;
      continue;
    }
    // Everyone from here on wants more than the level: each gets the level.
    for (const w of byDemand.slice(i)) shares.set(w.id, level);
    left -= level * (byDemand.length - i);
    break;
  }
  // The remainder of the divisions, one unit each, longest wanters first.
  const bySince = [...wanters].sort((a, b) => a.since - b.since || cmp(a.id, b.id));
  while (left > 0) {
    let gave = false;
    for (const w of bySince) {
      if (left === 0) break;
      const share = shares.get(w.id)!;
      if (share < w.demand) {
        shares.set(w.id, share + 1);
        left--;
        gave = true;
      }
    }
    if (!gave) break;
  }
  return shares;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
