"""Real Python SSH clients (Debian's paramiko and asyncssh) for the gateway
tests and bench: each mode connects as an application would, prints one JSON
object on stdout, and leaves judging to the caller.

usage: ssh_clients.py MODE --port P --key KEY --known-hosts FILE --user DEST [mode options]
Run with /usr/bin/python3 (Debian's packages).
"""
import argparse
import base64
import hashlib
import json
import logging
import os
import sys
import threading
import time


def paramiko_client(args, user=None):
    import paramiko
    client = paramiko.SSHClient()
    client.load_host_keys(args.known_hosts)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = None
    if args.nodelay:
        # paramiko leaves Nagle's algorithm on; with it off, a warm exec shows the server's own latency.
        import socket
        sock = socket.create_connection((args.host, args.port), timeout=60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.unix:
        # paramiko takes an open socket: the gateway's Unix socket, known under its alias.
        import socket
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(args.unix)
    client.connect(args.host, args.port, username=user or args.user, key_filename=None if args.password else args.key,
                   password=args.password, sock=sock,
                   look_for_keys=False, allow_agent=False, timeout=60, banner_timeout=60, auth_timeout=60)
    return client


def run_exec(client, command, stdin_data=None):
    stdin, stdout, stderr = client.exec_command(command)
    if stdin_data is not None:
        stdin.write(stdin_data)
    stdin.channel.shutdown_write()
    out = stdout.read()
    err = stderr.read()
    return {'status': stdout.channel.recv_exit_status(), 'stdout': base64.b64encode(out).decode(), 'stderr': err.decode('utf-8', 'replace')}


def mode_exec(args):
    """One connection, one command; an exception is reported, not raised."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logging.getLogger('paramiko').addHandler(handler)
    try:
        client = paramiko_client(args)
    except Exception as e:
        return {'error': type(e).__name__, 'message': str(e), 'log': records}
    try:
        data = open(args.stdin, 'rb').read() if args.stdin else None
        return run_exec(client, args.command, data)
    except Exception as e:
        return {'error': type(e).__name__, 'message': str(e), 'log': records}
    finally:
        client.close()


def mode_fanout(args):
    """N threads at once, each with a new connection per command (Airflow's old pattern)."""
    results = [None] * args.n

    def one(i):
        try:
            client = paramiko_client(args)
            try:
                r = run_exec(client, args.command.replace('{i}', str(i)))
            finally:
                client.close()
            out = base64.b64decode(r['stdout']).decode()
            results[i] = 'ok' if r['status'] == 0 and out == '%d\n' % i else 'bad: %r' % r
        except Exception as e:
            results[i] = '%s: %s' % (type(e).__name__, e)

    started = time.time()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {'ok': results.count('ok'), 'failures': [r for r in results if r != 'ok'], 'seconds': time.time() - started}


def mode_channels(args):
    """N channels at once on one paramiko Transport."""
    client = paramiko_client(args)
    results = [None] * args.n

    def one(i):
        try:
            r = run_exec(client, args.command.replace('{i}', str(i)))
            out = base64.b64decode(r['stdout']).decode()
            results[i] = 'ok' if r['status'] == 0 and out == '%d\n' % i else 'bad: %r' % r
        except Exception as e:
            results[i] = '%s: %s' % (type(e).__name__, e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(args.n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client.close()
    return {'ok': results.count('ok'), 'failures': [r for r in results if r != 'ok']}


def mode_sftp(args):
    """Upload --local to --remote, download it back to --local2, with paramiko's SFTPClient."""
    client = paramiko_client(args)
    sftp = client.open_sftp()
    sftp.put(args.local, args.remote)
    sftp.get(args.remote, args.local2)
    size = sftp.stat(args.remote).st_size
    sftp.close()
    client.close()
    return {'size': size}


def mode_tcpip(args):
    """direct-tcpip (paramiko's open_channel): an HTTP GET through the destination."""
    client = paramiko_client(args)
    results = []
    for i in range(args.n):
        chan = client.get_transport().open_channel('direct-tcpip', (args.target_host, args.target_port), ('127.0.0.1', 0))
        chan.sendall(('GET /%d HTTP/1.0\r\nHost: x\r\n\r\n' % args.size).encode())
        data = b''
        while True:
            d = chan.recv(65536)
            if not d:
                break
            data += d
        chan.close()
        head, _, body = data.partition(b'\r\n\r\n')
        want = [l.split(b': ')[1].decode() for l in head.split(b'\r\n') if l.lower().startswith(b'x-sha256')]
        results.append('ok' if want and hashlib.sha256(body).hexdigest() == want[0] and len(body) == args.size else 'bad body: %d bytes' % len(body))
    client.close()
    return {'ok': results.count('ok'), 'failures': [r for r in results if r != 'ok']}


def mode_slow(args):
    """Reads a large output slowly: small reads with pauses; reports size and sha256."""
    client = paramiko_client(args)
    chan = client.get_transport().open_session()
    chan.exec_command(args.command)
    h = hashlib.sha256()
    total = 0
    while True:
        d = chan.recv(args.read_size)
        if not d:
            break
        h.update(d)
        total += len(d)
        time.sleep(args.delay)
    status = chan.recv_exit_status()
    client.close()
    return {'bytes': total, 'sha256': h.hexdigest(), 'status': status}


def mode_hold(args):
    """Starts N commands on one connection, says so, and waits to be killed."""
    client = paramiko_client(args)
    chans = []
    for i in range(args.n):
        c = client.get_transport().open_session()
        c.exec_command(args.command)
        chans.append(c)
    print(json.dumps({'started': args.n}), flush=True)
    time.sleep(3600)


def mode_close(args):
    """Starts a command, closes its channel when a line arrives on stdin, and keeps the connection open."""
    client = paramiko_client(args)
    chan = client.get_transport().open_session()
    chan.exec_command(args.command)
    print(json.dumps({'started': 1}), flush=True)
    sys.stdin.readline()
    chan.close()
    print(json.dumps({'closed': 1}), flush=True)
    time.sleep(3600)


def mode_asyncssh(args):
    """N concurrent asyncssh connections, each running a command with stdout, stderr and an exit code."""
    import asyncio
    import asyncssh

    async def one(i):
        try:
            async with asyncssh.connect(args.host, args.port, username=args.user, client_keys=[args.key],
                                        known_hosts=args.known_hosts, agent_path=None) as conn:
                r = await conn.run(args.command.replace('{i}', str(i)), check=False)
                want = ('out%d\n' % i, 'err%d\n' % i, i % 7)
                got = (r.stdout, r.stderr, r.exit_status)
                return 'ok' if got == want else 'bad: %r' % (got,)
        except Exception as e:
            return '%s: %s' % (type(e).__name__, e)

    async def main():
        return await asyncio.gather(*(one(i) for i in range(args.n)))

    results = asyncio.run(main())
    return {'ok': results.count('ok'), 'failures': [r for r in results if r != 'ok']}


def mode_asyncssh_signal(args):
    """A signal sent to a running command, and a command killed by one: asyncssh's exit_signal for each."""
    import asyncio
    import asyncssh

    async def main():
        async with asyncssh.connect(args.host, args.port, username=args.user, client_keys=[args.key],
                                    known_hosts=args.known_hosts, agent_path=None) as conn:
            proc = await conn.create_process(args.command)
            await proc.stdout.readline()  # it has started
            proc.send_signal('TERM')
            sent = await proc.wait(check=False)
            killed = await conn.run('kill -KILL $$', check=False)
            return {'sent': [sent.exit_status, sent.exit_signal and sent.exit_signal[0]],
                    'killed': [killed.exit_status, killed.exit_signal and killed.exit_signal[0]]}

    return asyncio.run(main())


def mode_asyncssh_error(args):
    """One asyncssh command whose channel the gateway refuses: the exception as asyncssh raises it."""
    import asyncio
    import asyncssh

    async def main():
        async with asyncssh.connect(args.host, args.port, username=args.user, client_keys=[args.key],
                                    known_hosts=args.known_hosts, agent_path=None) as conn:
            try:
                r = await conn.run(args.command, check=False)
                return {'status': r.exit_status, 'stderr': r.stderr}
            except Exception as e:
                return {'error': type(e).__name__, 'message': str(e)}

    return asyncio.run(main())


def mode_bench(args):
    """Times N sequential commands, either each on a new connection or all on one warm connection."""
    times = []
    failures = []
    cpu0 = time.process_time()
    warm = None if args.fresh else paramiko_client(args)
    for i in range(args.n):
        t0 = time.perf_counter()
        try:
            client = paramiko_client(args) if args.fresh else warm
            r = run_exec(client, args.command)
            if args.fresh:
                client.close()
            if r['status'] != 0:
                failures.append('exit %d' % r['status'])
        except Exception as e:
            failures.append('%s: %s' % (type(e).__name__, e))
        times.append(time.perf_counter() - t0)
    if warm:
        warm.close()
    return {'times': times, 'failures': failures, 'cpu': time.process_time() - cpu0}


def main():
    p = argparse.ArgumentParser()
    p.add_argument('mode')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=22)
    p.add_argument('--unix')
    p.add_argument('--key', required=True)
    p.add_argument('--known-hosts', required=True)
    p.add_argument('--user', required=True)
    p.add_argument('--command', default='true')
    p.add_argument('--stdin')
    p.add_argument('--password')
    p.add_argument('--n', type=int, default=1)
    p.add_argument('--local')
    p.add_argument('--local2')
    p.add_argument('--remote')
    p.add_argument('--target-host')
    p.add_argument('--target-port', type=int)
    p.add_argument('--size', type=int, default=1024)
    p.add_argument('--read-size', type=int, default=4096)
    p.add_argument('--delay', type=float, default=0.001)
    p.add_argument('--fresh', action='store_true')
    p.add_argument('--nodelay', action='store_true')
    args = p.parse_args()
    fn = globals().get('mode_' + args.mode.replace('-', '_'))
    if not fn:
        sys.exit('unknown mode ' + args.mode)
    print(json.dumps(fn(args)), flush=True)
    # Threads or sockets paramiko left behind must not keep us alive.
    os._exit(0)


if __name__ == '__main__':
    main()
