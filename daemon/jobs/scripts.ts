// What the daemon sends a host for its jobs: POSIX sh, read by `sh -s` from
// stdin (never a command line built from user data), and what comes back.
// One "round" script carries every queued operation for a host (submits,
// status checks, cancels, removes, a scan), so watching or starting any
// number of jobs costs one short session. The whole script is one `{ ... }`
// block: the shell parses all of it before running any, so a script cut
// short by a dropped connection runs nothing.
//
// On the host (README: Long-running jobs):
//   ~/.sshmux/jobs/OWNER/.runner-HASH   the runner below, written once per version
//   ~/.sshmux/jobs/OWNER/KEY/           one directory per job (mode 0700):
//     command name env meta id.KEY      written at submit (meta: version, submit time, byte lengths)
//     claim/                            made by whoever decides the job's fate first: its runner, or a
//                                       submit that gave up waiting for it (then it never runs)
//     runner                            the runner's pid
//     started                           start time and the job's pid (= its process group)
//     stdout stderr                     the job's output
//     cancel                            when a cancel was asked for
//     exit                              the record: "exited CODE|signaled SIG|lost - ENDED CANCELLED"
import { createHash } from 'node:crypto';
import { KEY_LENGTH } from './job-id';

/** Seconds between TERM and KILL when a job is cancelled. */
export const CANCEL_GRACE_S = 10;
/** How long a submit waits for its runners to record their start. */
export const START_WAIT_S = 30;
/** A job directory whose runner never wrote its pid this long after submit will never start: lost. */
const ORPHAN_S = 120;

/**
 * The runner: runs one job and records how it ended. Started as
 * `setsid sh RUNNER DIR` (its own session: nothing that happens to the SSH
 * session that started it reaches it). The job gets a session and process
 * group of its own too, so cancel can signal everything it started and
 * nothing else; the runner stays outside it to write the record. A shell
 * reports a child killed by signal N as status 128+N, so that is what a
 * status above 128 is taken for.
 */
const RUNNER = `# sshmux job runner: see README, Long-running jobs.
dir=$1
cd "$dir" || exit 1
mkdir claim 2>/dev/null || exit 0
echo "$$" > runner
if [ -f cancel ]; then
  echo "signaled TERM $(date +%s) 1" > exit.$$ && mv -f exit.$$ exit
  exit 0
fi
cmd=$(cat command) || exit 1
(
  cd "$HOME" 2>/dev/null || cd /
  . "$dir/env"
  exec setsid "\${SHELL:-/bin/sh}" -c "$cmd"
) </dev/null >"$dir/stdout" 2>"$dir/stderr" &
job=$!
echo "$(date +%s) $job" > started.$$ && mv -f started.$$ started
wait "$job"
rc=$?
kind=exited value=$rc
if [ "$rc" -gt 128 ]; then
  n=$((rc > 256 ? rc - 256 : rc - 128))
  if s=$(kill -l "$n" 2>/dev/null) && [ -n "$s" ]; then kind=signaled value=\${s#SIG}; fi
fi
c=0
[ -f cancel ] && c=1
echo "$kind $value $(date +%s) $c" > exit.$$ && mv -f exit.$$ exit
`;
const RUNNER_FILE = `.runner-${createHash('sha256').update(RUNNER).digest('hex').slice(0, 12)}`;

/**
 * Shell functions every script starts with. settle() finds a job's state,
 * writing the "lost" record when its runner is gone without one; alive()
 * tells a live runner from a reused pid: on Linux its working directory
 * must be the job's (which alone holds id.KEY), elsewhere its arguments
 * must name the job's directory. discard() renames a job's directory away
 * before deleting it: a runner writing its record meanwhile (a forced
 * remove) writes into the renamed one, which a sweep deletes if rm lost the
 * race, and the job never reappears.
 */
const LIB = `set -u
alive() {
  r=
  read -r r 2>/dev/null < "$1/runner"
  case $r in '' | *[!0-9]*) return 1 ;; esac
  kill -0 "$r" 2>/dev/null || return 1
  if [ -d /proc/self ]; then
    [ -e "/proc/$r/cwd/id.$2" ]
    return
  fi
  case $(ps -o args= -p "$r" 2>/dev/null) in *"$1"*) return 0 ;; esac
  return 1
}
num() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
}
settle() {
  d=$1 k=$2 st=gone v=- t0=- t1=- c=0 j= so=- se=-
  [ -d "$d" ] || return 0
  if [ ! -f "$d/exit" ] && ! alive "$d" "$k" && [ ! -f "$d/exit" ]; then
    sub=
    read -r _ sub _ 2>/dev/null < "$d/meta"
    num "$sub" || sub=0
    if [ -f "$d/runner" ] || [ $((now - sub)) -ge ${ORPHAN_S} ]; then
      mkdir "$d/claim" 2>/dev/null
      echo "lost - $now 0" > "$d/exit.$$" && mv -f "$d/exit.$$" "$d/exit"
    fi
  fi
  read -r t0 j 2>/dev/null < "$d/started"
  num "$t0" || t0=-
  if [ -f "$d/exit" ]; then
    read -r st v t1 c < "$d/exit"
    case $st in exited | signaled | lost) ;; *) st=lost ;; esac
    [ -n "$v" ] || v=-
    num "$t1" || t1=-
    [ "$c" = 1 ] || c=0
  else
    st=running
  fi
}
say() {
  echo "$1 job $k $st $v $t0 $t1 $c $so $se"
}
gone() {
  for o in "$HOME"/.sshmux/jobs/*/"$k"; do
    [ -d "$o" ] || continue
    o=\${o%/*}
    echo "$1 gone $k \${o##*/}"
    return 0
  done
  echo "$1 gone $k -"
}
sizes() {
  so=0 se=0
  if [ -f "$d/stdout" ]; then set -- $(ls -ln "$d/stdout"); so=\${5:-0}; fi
  if [ -f "$d/stderr" ]; then set -- $(ls -ln "$d/stderr"); se=\${5:-0}; fi
}
detail() {
  cl= nl=
  read -r _ _ cl nl 2>/dev/null < "$d/meta"
  num "$cl" && num "$nl" || { cl=0 nl=0; }
  echo "$1 detail $k $cl $nl"
  cat "$d/command" "$d/name" 2>/dev/null
  echo
}
discard() {
  t="$root/.trash-$k-$$"
  mv "$d" "$t" 2>/dev/null && rm -rf "$t" 2>/dev/null
  :
}
stop_job() {
  [ -f "$d/cancel" ] || echo "$now" > "$d/cancel"
  c=1
  num "$j" || return 0
  kill -TERM "-$j" 2>/dev/null
  (setsid sh -c 'i=0; while [ "$i" -lt ${CANCEL_GRACE_S} ] && kill -0 "-$1" 2>/dev/null; do sleep 1; i=$((i + 1)); done; kill -KILL "-$1" 2>/dev/null' sshmux-cancel "$j" </dev/null >/dev/null 2>&1 &)
}
`;

export type Op =
  | { kind: 'submit'; key: string; command: string; name: string; env: Record<string, string> }
  | { kind: 'status'; keys: string[]; detail: boolean; sizes: boolean }
  | { kind: 'cancel'; key: string }
  | { kind: 'remove'; key: string; force: boolean }
  /** Every job of the owner; with reapAfterS, finished ones that ended that long ago are deleted. */
  | { kind: 'scan'; detail: boolean; reapAfterS?: number };

export type JobStateName = 'running' | 'exited' | 'signaled' | 'lost';

export type Reply =
  | { type: 'job'; key: string; state: JobStateName; exitCode: number | null; signal: string | null;
      startedS: number | null; endedS: number | null; cancelled: boolean; stdoutSize: number | null; stderrSize: number | null }
  | { type: 'detail'; key: string; command: string; name: string }
  | { type: 'gone'; key: string; owner: string | null }
  | { type: 'removed'; key: string }
  | { type: 'reaped'; key: string }
  /** A submit that failed on the host: "setsid", "mkdir", "runner", "create" or "start". */
  | { type: 'error'; reason: string };

/** POSIX sh single quoting: any bytes but NUL, taken literally. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function prelude(owner: string): string {
  return `{\n${LIB}root="$HOME"/.sshmux/jobs/${shQuote(owner)}\nnow=$(date +%s)\nnum "$now" || { echo "! date"; exit 0; }\n`;
}

/** One script for a batch of operations; answers come back as lines prefixed with the operation's index. */
export function roundScript(owner: string, ops: Op[]): string {
  const parts = [prelude(owner)];
  if (ops.some((op) => op.kind === 'submit')) {
    parts.push(`why=
command -v setsid >/dev/null 2>&1 || why=setsid
[ -n "$why" ] || (umask 077 && mkdir -p "$root") 2>/dev/null || why=mkdir
runner="$root"/${RUNNER_FILE}
[ -n "$why" ] || [ -f "$runner" ] || { printf '%s' ${shQuote(RUNNER)} > "$runner.$$" && mv -f "$runner.$$" "$runner"; } || why=runner
pending=
`);
  }
  ops.forEach((op, i) => parts.push(segment(op, i)));
  if (ops.some((op) => op.kind === 'submit')) parts.push(awaitStarts());
  parts.push('} </dev/null\n');
  return parts.join('');
}

function segment(op: Op, i: number): string {
  switch (op.kind) {
    case 'submit': {
      const env = Object.entries(op.env).map(([k, v]) => `export ${k}=${shQuote(v)}\n`).join('');
      const meta = `1 $now ${Buffer.byteLength(op.command)} ${Buffer.byteLength(op.name)}`;
      return `k=${op.key}; d="$root/$k"
if [ -n "$why" ]; then echo "${i} error $why"
elif [ -d "$d" ] || { mkdir -m 700 "$d" && printf '' > "$d/id.$k" && printf %s ${shQuote(op.command)} > "$d/command" && printf %s ${shQuote(op.name)} > "$d/name" && printf %s ${shQuote(env)} > "$d/env" && echo "${meta}" > "$d/meta"; } 2>/dev/null; then
  [ -d "$d/claim" ] || (setsid sh "$runner" "$d" </dev/null >/dev/null 2>&1 &)
  pending="$pending ${i}:$k"
else
  rm -rf "$d"; echo "${i} error create"
fi
`;
    }
    case 'status':
      return `for k in ${op.keys.join(' ')}; do
  settle "$root/$k" "$k"
  if [ "$st" = gone ]; then gone ${i}; continue; fi
  ${op.sizes ? 'sizes' : ':'}
  say ${i}
  ${op.detail ? `detail ${i}` : ':'}
done
`;
    case 'cancel':
      return `settle "$root/${op.key}" ${op.key}
if [ "$st" = gone ]; then gone ${i}; else
  [ "$st" != running ] || stop_job
  say ${i}
fi
`;
    case 'remove':
      return `settle "$root/${op.key}" ${op.key}
case $st in
  gone) gone ${i} ;;
  running) if ${op.force}; then stop_job; discard; echo "${i} removed $k"; else say ${i}; fi ;;
  *) discard; echo "${i} removed $k" ;;
esac
`;
    case 'scan': {
      const reap = op.reapAfterS === undefined ? '' : `  if [ "$st" != running ] && num "$t1" && [ $((now - t1)) -ge ${Math.floor(op.reapAfterS)} ]; then
    discard; echo "${i} reaped $k"; continue
  fi
`;
      const trash = op.reapAfterS === undefined ? '' : `for t in "$root"/.trash-*; do [ ! -d "$t" ] || rm -rf "$t"; done
`;
      return `${trash}for d in "$root"/*; do
  k=\${d##*/}
  case $k in '' | *[!0-9a-z]*) continue ;; esac
  [ \${#k} -eq ${KEY_LENGTH} ] && [ -d "$d" ] || continue
  settle "$d" "$k"
${reap}  say ${i}
  ${op.detail ? `detail ${i}` : ':'}
done
`;
    }
  }
}

/** After the submits: wait until every new runner has recorded its start; give up on (and never run) the ones that do not. */
function awaitStarts(): string {
  return `while [ -n "$pending" ]; do
  left=
  for p in $pending; do
    k=\${p#*:}
    if [ -f "$root/$k/started" ] || [ -f "$root/$k/exit" ]; then settle "$root/$k" "$k"; say "\${p%%:*}"; else left="$left $p"; fi
  done
  pending=$left
  [ -n "$pending" ] || break
  if [ $(( $(date +%s) - now )) -ge ${START_WAIT_S} ]; then
    for p in $pending; do
      k=\${p#*:}
      if mkdir "$root/$k/claim" 2>/dev/null; then rm -rf "$root/$k"; echo "\${p%%:*} error start"
      else settle "$root/$k" "$k"; say "\${p%%:*}"; fi
    done
    break
  fi
  sleep 0.05 2>/dev/null || sleep 1
done
`;
}

/** Reads `length` bytes of a job's log from `offset`; dd's blocks start at a 4 KiB boundary, so `skip` bytes lead the data. */
export function logScript(owner: string, key: string, log: 'stdout' | 'stderr', offset: number, length: number): { script: string; skip: number } {
  const block = 4096;
  const first = Math.floor(offset / block);
  const count = Math.ceil((offset + length) / block) - first;
  const script = `${prelude(owner)}settle "$root/${key}" ${key}
if [ "$st" = gone ]; then gone 0; exit 0; fi
f="$d/${log}" s=0
if [ -f "$f" ]; then set -- $(ls -ln "$f"); s=\${5:-0}; fi
echo "0 log $k $st $s"
[ ! -f "$f" ] || [ ${count} -eq 0 ] || dd if="$f" bs=${block} skip=${first} count=${count} 2>/dev/null
} </dev/null
`;
  return { script, skip: offset - first * block };
}

export class ReplyError extends Error {
  override readonly name = 'ReplyError';
}

function unexpected(words: string[]): ReplyError {
  return new ReplyError(`an unexpected line: ${JSON.stringify(words.join(' ').slice(0, 80))}`);
}

/** Splits a round's stdout into each operation's replies. */
export function parseReplies(out: Buffer, ops: number): Reply[][] {
  const replies: Reply[][] = Array.from({ length: ops }, () => []);
  let at = 0;
  while (at < out.length) {
    const nl = out.indexOf(10, at);
    if (nl < 0) throw new ReplyError(`an unterminated line: ${JSON.stringify(out.toString('utf8', at, at + 80))}`);
    const w = out.toString('utf8', at, nl).split(' ');
    at = nl + 1;
    if (w[0] === '!') throw new ReplyError(w[1] === 'date' ? 'date +%s does not print the time on this host' : `the script stopped: ${w[1]}`);
    const op = Number(w[0]);
    if (!Number.isInteger(op) || op < 0 || op >= ops) throw unexpected(w);
    if (w[1] === 'detail') {
      const cl = Number(w[3]);
      const nameLength = Number(w[4]);
      const end = at + cl + nameLength;
      if (!(end < out.length) || out[end] !== 10) throw new ReplyError(`job ${w[2]}: its command and name do not match their recorded lengths`);
      replies[op].push({ type: 'detail', key: w[2], command: out.toString('utf8', at, at + cl), name: out.toString('utf8', at + cl, end) });
      at = end + 1;
      continue;
    }
    replies[op].push(parseLine(w));
  }
  return replies;
}

function parseLine(w: string[]): Reply {
  switch (w[1]) {
    case 'job': {
      const [, , key, state, value, started, ended, cancelled, outSize, errSize] = w;
      if (!['running', 'exited', 'signaled', 'lost'].includes(state)) throw new ReplyError(`job ${key}: unknown state ${state}`);
      const num = (s: string): number | null => (/^\d+$/.test(s ?? '') ? Number(s) : null);
      return {
        type: 'job', key, state: state as JobStateName,
        exitCode: state === 'exited' ? num(value) : null,
        signal: state === 'signaled' ? value : null,
        startedS: num(started), endedS: num(ended), cancelled: cancelled === '1',
        stdoutSize: num(outSize), stderrSize: num(errSize),
      };
    }
    case 'gone': return { type: 'gone', key: w[2], owner: w[3] && w[3] !== '-' ? w[3] : null };
    case 'removed': return { type: 'removed', key: w[2] };
    case 'reaped': return { type: 'reaped', key: w[2] };
    case 'error': return { type: 'error', reason: w[2] ?? '' };
    default: throw unexpected(w);
  }
}

/** The answer to logScript: the job's state and the log's size when it was read, and the bytes from the offset. */
export function parseLog(out: Buffer, skip: number, length: number):
  { type: 'gone'; owner: string | null } | { type: 'log'; state: JobStateName; size: number; data: Buffer } {
  const nl = out.indexOf(10);
  if (nl < 0) throw new ReplyError('no answer line');
  const w = out.toString('utf8', 0, nl).split(' ');
  if (w[1] === 'gone') return { type: 'gone', owner: w[3] && w[3] !== '-' ? w[3] : null };
  if (w[1] !== 'log') throw unexpected(w);
  const body = out.subarray(nl + 1);
  return { type: 'log', state: w[3] as JobStateName, size: Number(w[4]), data: body.subarray(Math.min(skip, body.length), skip + length) };
}
