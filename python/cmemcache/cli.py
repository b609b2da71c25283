"""The ``cmemcache`` command: memcached from the shell (``python -m cmemcache``).

    cmemcache [--servers S1,S2] [--timeout SECONDS] COMMAND ...

    stats [ARGS...]           statistics, one table per server
    get KEY... / cat KEY...   values to stdout (raw bytes)
    set KEY VALUE             store VALUE under KEY
    set KEY -f FILE           store FILE (``-f -``: stdin) under KEY
    cp FILE KEY               the same, file first
    delete KEY...             remove keys
    flush [--delay N]         invalidate every item
    dump [--long]             list the keys (lru_crawler metadump)
    ping / version            check each server, print its version
    bench                     a short set/get benchmark

Servers come from ``--servers``, else the ``MEMCACHED_SERVERS`` environment
variable, else ``127.0.0.1:11211``; several are separated by commas and
keys are mapped to them as ``cmemcache.Client`` maps them.  ``--servers``
and ``--timeout`` may also follow the command.

``get`` writes the values exactly as stored into a pipe or file; on a
terminal each value ends with a newline.  ``set KEY`` with neither VALUE
nor ``-f`` reads the value from stdin when stdin is not a terminal.  When
the reader of stdout goes away (``cmemcache stats | head -1``) the command
stops quietly with status 0.

Exit status: 0 success; 1 a key not found, a value not stored, a server
down or failing; 2 a wrong command line (options, key, server address).
Every error is one line on stderr starting with ``cmemcache: error:``.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, NoReturn

import cmemcache

PROG = "cmemcache"
DEFAULT_SERVERS = "127.0.0.1:11211"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: the largest value the tool sends or accepts (the server may allow less)
MAX_VALUE_SIZE = 1 << 30
#: how often ``dump`` asks again while the server's crawler is busy
DUMP_BUSY_RETRIES = 50


class CliError(Exception):
    """A failure reported as one line on stderr, ending the command with
    ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# -- output -----------------------------------------------------------------------------


def _warn(message: str) -> None:
    """Writes one error line to stderr."""
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()


def _describe(exc: BaseException) -> str:
    """A one-line description of a client error (no ``[Errno n]`` noise)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _server_error(server: str, exc: BaseException) -> str:
    """``exc`` described, prefixed with the server unless it names it."""
    text = _describe(exc)
    return text if server in text else f"{server}: {text}"


def _drop_stdout() -> None:
    """After the reader of stdout went away: stdout goes to /dev/null, so
    that what is still buffered (the interpreter's last flush) cannot fail
    again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _key_bytes(key: str) -> bytes:
    """A key from the command line as the bytes sent (undecodable bytes of
    the original argument kept)."""
    return os.fsencode(key)


# -- connections ------------------------------------------------------------------------


def _parse_servers(text: str) -> list[str]:
    """The comma-separated server list; a usage error when empty."""
    servers = [s.strip() for s in text.split(",") if s.strip()]
    if not servers:
        raise CliError("no server given", EXIT_USAGE)
    return servers


def _client(servers: list[str], timeout: float) -> cmemcache.StringClient:
    """A client for ``servers`` that tries every server on every call (no
    hold-down after a failure)."""
    specs: list[str | tuple[str, int]] = list(servers)
    try:
        return cmemcache.StringClient(
            specs,
            timeout=timeout,
            connect_timeout=timeout,
            dead_retry=0,
            max_value_size=MAX_VALUE_SIZE,
            pool_size=1,
        )
    except cmemcache.InvalidServerError as e:
        raise CliError(_describe(e), EXIT_USAGE) from None


def _per_server(args: argparse.Namespace) -> Iterator[tuple[str, cmemcache.StringClient]]:
    """``(server, client of that server alone)`` for every server."""
    for server in args.servers:
        yield server, _client([server], args.timeout)


def _address(server: str) -> str | tuple[str, int]:
    """A server string as a socket address: a path for ``unix:``, else
    ``(host, port)``."""
    if server.startswith("unix:"):
        return server[5:]
    spec = server.removeprefix("inet:").removeprefix("inet6:")
    m = re.fullmatch(r"\[([^\[\]]+)\](?::([0-9]+))?", spec) or re.fullmatch(
        r"([^:\[\]]+)(?::([0-9]+))?", spec
    )
    if m is None:
        raise CliError(f"malformed server: {server!r}", EXIT_USAGE)
    return m[1], int(m[2] or 11211)


def _connect(server: str, timeout: float) -> socket.socket:
    """A connected socket to ``server`` (every wait bounded by ``timeout``)."""
    address = _address(server)
    try:
        if isinstance(address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(address)
            except BaseException:
                sock.close()
                raise
            return sock
        return socket.create_connection(address, timeout=timeout)
    except OSError as e:
        raise CliError(f"{server}: {_describe(e)}") from None


# -- commands ---------------------------------------------------------------------------


def cmd_stats(args: argparse.Namespace) -> int:
    """Prints each server's ``stats [ARGS]`` as a two-column table."""
    stat_args = " ".join(args.args) or None
    status = EXIT_OK
    first = True
    for server, client in _per_server(args):
        try:
            rows = client.get_stats(stat_args)
        except cmemcache.Error as e:
            what = f"stats {stat_args}: " if stat_args else ""
            _warn(f"{server}: {what}{_describe(e).removeprefix(server + ': ')}")
            status = EXIT_FAILED
            continue
        for _, stats in rows:
            if not first:
                sys.stdout.write("\n")
            first = False
            sys.stdout.write(f"Server: {server}\n")
            width = max((len(name) for name in stats), default=0)
            for name, value in stats.items():
                sys.stdout.write(f"  {name:<{width}}  {value}\n")
    sys.stdout.flush()
    return status


def cmd_get(args: argparse.Namespace) -> int:
    """Writes the values of the keys to stdout, in order, as stored; a
    missing key is reported on stderr and makes the status 1."""
    client = _client(args.servers, args.timeout)
    keys = [_key_bytes(k) for k in args.keys]
    found = client.get_multi(keys)
    out = sys.stdout.buffer
    terminal = out.isatty()
    status = EXIT_OK
    reader_gone = False
    for name, key in zip(args.keys, keys, strict=True):
        value = found.get(key)
        if value is None:
            _warn(f"key not found: {name}")
            status = EXIT_FAILED
        elif not reader_gone:
            if terminal and not value.endswith(b"\n"):
                value += b"\n"  # the prompt starts on a line of its own
            try:
                out.write(value)
                out.flush()  # in order with the errors on stderr
            except BrokenPipeError:
                reader_gone = True  # still report the keys not found
    if reader_gone:
        _drop_stdout()
    return status


def _read_input(path: str | None) -> bytes:
    """The bytes of ``path``; of stdin when it is None or ``-``."""
    if path is None or path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {_describe(e)}") from None


def _store(args: argparse.Namespace, key: str, data: bytes) -> int:
    client = _client(args.servers, args.timeout)
    if not client.set(_key_bytes(key), data, args.exptime, args.flags):
        raise CliError(f"not stored: {key}")
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    """Stores VALUE (as given), or FILE (``-f -``: stdin), under KEY; with
    neither, stdin unless it is a terminal."""
    if args.value is not None and args.file is not None:
        raise CliError("set: give VALUE or -f FILE, not both", EXIT_USAGE)
    if args.value is not None:
        data = os.fsencode(args.value)
    elif args.file is None and sys.stdin.isatty():
        raise CliError("set: give VALUE, -f FILE, or the value on stdin", EXIT_USAGE)
    else:
        data = _read_input(args.file)
    return _store(args, args.key, data)


def cmd_cp(args: argparse.Namespace) -> int:
    """Stores FILE (``-`` for stdin) under KEY."""
    return _store(args, args.key, _read_input(args.file))


def cmd_delete(args: argparse.Namespace) -> int:
    """Deletes the keys; a key that was not there makes the status 1."""
    client = _client(args.servers, args.timeout)
    keys = [_key_bytes(k) for k in args.keys]
    for key in keys:
        client.server_index(key)  # every key checked before anything is deleted
    status = EXIT_OK
    for name, key in zip(args.keys, keys, strict=True):
        if not client.delete(key):
            _warn(f"key not found: {name}")
            status = EXIT_FAILED
    return status


def cmd_flush(args: argparse.Namespace) -> int:
    """Sends ``flush_all [delay]`` to every server."""
    status = EXIT_OK
    for server, client in _per_server(args):
        try:
            client.flush_all(args.delay)
        except cmemcache.Error as e:
            _warn(_server_error(server, e))
            status = EXIT_FAILED
    return status


def metadump(server: str, timeout: float) -> Iterator[dict[str, bytes]]:
    """The items of one server from ``lru_crawler metadump all``: one dict
    per item with the fields the server sends (``key`` url-decoded to
    bytes, the others as sent).  Raises CliError when the server refuses or
    the reply ends early; waits at most ``timeout`` for each read."""
    with _connect(server, timeout) as sock, sock.makefile("rb") as reader:
        for _ in range(DUMP_BUSY_RETRIES):
            try:
                sock.sendall(b"lru_crawler metadump all\r\n")
            except OSError as e:  # not to be taken for a closed stdout
                raise CliError(f"{server}: {_describe(e)}") from None
            line = _read_line(reader, server)
            if not line.startswith(b"BUSY"):
                break
            time.sleep(0.1)
        while line != b"END":
            if not line.startswith(b"key="):
                raise CliError(f"{server}: metadump refused: {line.decode(errors='replace')}")
            item = dict(field.partition(b"=")[::2] for field in line.split(b" "))
            item[b"key"] = urllib.parse.unquote_to_bytes(item[b"key"])
            yield {name.decode(): value for name, value in item.items()}
            line = _read_line(reader, server)


def _read_line(reader: BinaryIO, server: str) -> bytes:
    try:
        line = reader.readline()
    except OSError as e:
        raise CliError(f"{server}: {_describe(e) or 'timed out'}") from None
    if not line.endswith(b"\n"):
        raise CliError(f"{server}: connection closed during metadump")
    return line.rstrip(b"\r\n")


def cmd_dump(args: argparse.Namespace) -> int:
    """Prints every key of every server, one a line (with ``--long``
    followed by the item's metadata)."""
    out = sys.stdout.buffer
    status = EXIT_OK
    for server in args.servers:
        try:
            for item in metadump(server, args.timeout):
                out.write(item["key"])
                if args.long:
                    for name, value in item.items():
                        if name != "key":
                            out.write(b"\t%s=%s" % (name.encode(), value))
                out.write(b"\n")
        except CliError as e:
            out.flush()
            _warn(str(e))
            status = EXIT_FAILED
    out.flush()
    return status


def cmd_version(args: argparse.Namespace) -> int:
    """Prints ``server version`` per server; a server down makes the status 1."""
    return _check_servers(args, ping=False)


def cmd_ping(args: argparse.Namespace) -> int:
    """Prints ``server alive (version, round trip)`` per server; a server
    down makes the status 1."""
    return _check_servers(args, ping=True)


def _check_servers(args: argparse.Namespace, ping: bool) -> int:
    status = EXIT_OK
    for server, client in _per_server(args):
        start = time.perf_counter()
        try:
            version = client.version()[client.servers[0]]
        except cmemcache.Error as e:
            _warn(_server_error(server, e))
            status = EXIT_FAILED
            continue
        if ping:
            ms = (time.perf_counter() - start) * 1000
            print(f"{server} alive (memcached {version}, {ms:.2f} ms)")
        else:
            print(f"{server} {version}")
    sys.stdout.flush()
    return status


# -- bench ------------------------------------------------------------------------------


class _Progress:
    """A text progress bar on stderr, redrawn at most ``width`` times."""

    def __init__(self, label: str, total: int, enabled: bool, width: int = 30) -> None:
        self.label = label
        self.total = max(total, 1)
        self.enabled = enabled
        self.width = width
        self._shown = -1

    def update(self, done: int) -> None:
        """Shows ``done`` of ``total``."""
        if not self.enabled:
            return
        filled = self.width * done // self.total
        if filled == self._shown:
            return
        self._shown = filled
        pct = 100 * done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(f"\r{self.label:<10}[{bar}] {pct:3d}%")
        sys.stderr.flush()

    def finish(self, complete: bool = True) -> None:
        """Ends the line (an error message then starts on its own line),
        first showing 100 % when ``complete``."""
        if self.enabled and self._shown >= 0:
            if complete:
                self.update(self.total)
            sys.stderr.write("\n")
            sys.stderr.flush()


def _timed(
    label: str, count: int, step: int, call: Callable[[int], int], progress: bool
) -> tuple[int, float, list[int]]:
    """Runs ``call(i)`` for i in range(0, count, step); returns the sum of
    what it returned, the seconds taken and each call's nanoseconds."""
    bar = _Progress(label, count, progress)
    latencies: list[int] = []
    total = 0
    clock = time.perf_counter_ns
    bar.update(0)
    start = clock()
    try:
        for i in range(0, count, step):
            t0 = clock()
            total += call(i)
            latencies.append(clock() - t0)
            bar.update(i + step)
    except BaseException:
        bar.finish(complete=False)
        raise
    seconds = (clock() - start) / 1e9
    bar.finish()
    return total, seconds, latencies


def _percentile(sorted_ns: list[int], fraction: float) -> float:
    """The value (in microseconds) below which ``fraction`` of them lie."""
    if not sorted_ns:
        return 0.0
    index = min(len(sorted_ns) - 1, int(fraction * len(sorted_ns)))
    return sorted_ns[index] / 1000


def cmd_bench(args: argparse.Namespace) -> int:
    """Times ``--ops`` sets, gets and multi-gets (in batches of
    ``--batch``) of ``--size``-byte values, checks every value read, prints
    a table, and deletes the keys it wrote."""
    client = _client(args.servers, args.timeout)
    client.version()  # every server answers before anything is timed
    payload = os.urandom(args.size)
    keys = [b"cmemcache-bench:%d:%d" % (os.getpid(), i) for i in range(args.ops)]
    progress = not args.no_progress
    wrong: list[bytes] = []

    def do_set(i: int) -> int:
        client.set(keys[i], payload)
        return 0

    def do_get(i: int) -> int:
        value = client.get(keys[i])
        if value is None:
            return 1
        if value != payload:
            wrong.append(keys[i])
        return 0

    def do_get_multi(i: int) -> int:
        batch = keys[i : i + args.batch]
        found = client.get_multi(batch)
        wrong.extend(k for k, v in found.items() if v != payload)
        return len(batch) - len(found)

    rows = []
    try:
        for label, step, call in (
            ("set", 1, do_set),
            ("get", 1, do_get),
            ("get_multi", args.batch, do_get_multi),
        ):
            misses, seconds, latencies = _timed(label, args.ops, step, call, progress)
            latencies.sort()
            rows.append((
                label,
                args.ops,
                len(latencies),
                misses,
                seconds,
                args.ops / seconds if seconds else float("inf"),
                sum(latencies) / len(latencies) / 1000,
                _percentile(latencies, 0.5),
                _percentile(latencies, 0.99),
            ))
    finally:
        for i in range(0, len(keys), 500):
            try:
                client.delete_multi(keys[i : i + 500])
            except cmemcache.Error:
                break
    print(f"server(s): {','.join(args.servers)}   value size: {args.size} bytes"
          f"   multi-get batch: {args.batch} keys   latency: per call")
    print(f"{'op':<10}{'keys':>8}{'calls':>8}{'misses':>8}{'seconds':>10}{'keys/s':>11}"
          f"{'mean us':>10}{'p50 us':>10}{'p99 us':>10}")
    for label, nkeys, calls, misses, seconds, rate, mean, p50, p99 in rows:
        print(f"{label:<10}{nkeys:>8}{calls:>8}{misses:>8}{seconds:>10.3f}{rate:>11.0f}"
              f"{mean:>10.1f}{p50:>10.1f}{p99:>10.1f}")
    sys.stdout.flush()
    if wrong:
        raise CliError(f"bench: {len(wrong)} value(s) read back differ from what was set")
    return EXIT_OK


# -- command line -----------------------------------------------------------------------


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _flags(text: str) -> int:
    value = _non_negative_int(text)
    if value > 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"flags are 32 bits: {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, servers: str | None,
                    timeout: float | None) -> None:
    """``--servers`` and ``--timeout`` with these defaults (None: none, so
    that a value given before the command stays)."""
    parser.add_argument(
        "--servers",
        default=argparse.SUPPRESS if servers is None else servers,
        help="comma-separated servers: host[:port], [v6addr][:port], unix:/path "
        f"(default: $MEMCACHED_SERVERS or {DEFAULT_SERVERS})",
    )
    parser.add_argument(
        "--timeout", type=_positive_float,
        default=argparse.SUPPRESS if timeout is None else timeout,
        help="seconds allowed to connect and for each request (default: 3.0)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cmemcache`` command."""
    parser = _Parser(
        prog=PROG,
        description="memcached from the command line, on the cmemcache client.",
        epilog="Exit status: 0 ok, 1 not found / not stored / server failure, 2 usage.",
    )
    _global_options(parser, os.environ.get("MEMCACHED_SERVERS") or DEFAULT_SERVERS, 3.0)
    parser.add_argument("--version", action="version", version=f"%(prog)s {cmemcache.__version__}")
    # the same options after the command: `cmemcache get KEY --servers HOST`
    common = _Parser(add_help=False)
    _global_options(common, None, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, parents=[common])

    p = command("stats", "server statistics, one table per server")
    p.add_argument("args", nargs="*", metavar="ARGS", help="e.g. settings, slabs, items")
    p.set_defaults(func=cmd_stats)

    for name, text in (("get", "write the values of keys to stdout"), ("cat", "the same as get")):
        p = command(name, text)
        p.add_argument("keys", nargs="+", metavar="KEY")
        p.set_defaults(func=cmd_get)

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--exptime", type=_non_negative_int, default=0,
                       help="seconds to live, or a Unix time (default: 0, never)")
        p.add_argument("--flags", type=_flags, default=0, help="32-bit client flags (default: 0)")

    p = command("set", "store a value (or a file, or stdin) under a key")
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", nargs="?", metavar="VALUE", help="the value, stored as given")
    p.add_argument("-f", "--file", metavar="FILE",
                   help="store this file's bytes instead (- for stdin)")
    store_options(p)
    p.set_defaults(func=cmd_set)

    p = command("cp", "store a file under a key")
    p.add_argument("file", metavar="FILE", help="- for stdin")
    p.add_argument("key", metavar="KEY")
    store_options(p)
    p.set_defaults(func=cmd_cp)

    p = command("delete", "delete keys")
    p.add_argument("keys", nargs="+", metavar="KEY")
    p.set_defaults(func=cmd_delete)

    p = command("flush", "invalidate every item on every server")
    p.add_argument("--delay", type=_non_negative_int, default=0, help="seconds from now")
    p.set_defaults(func=cmd_flush)

    p = command("dump", "list the keys (lru_crawler metadump all)")
    p.add_argument("-l", "--long", action="store_true", help="with each item's metadata")
    p.set_defaults(func=cmd_dump)

    p = command("ping", "check that every server answers")
    p.set_defaults(func=cmd_ping)
    p = command("version", "the version of every server")
    p.set_defaults(func=cmd_version)

    p = command("bench", "a short set/get benchmark")
    p.add_argument("--ops", type=_positive_int, default=10000,
                   help="keys per phase (default: %(default)s)")
    p.add_argument("--size", type=_non_negative_int, default=100,
                   help="value bytes (default: %(default)s)")
    p.add_argument("--batch", type=_positive_int, default=100,
                   help="keys per multi-get (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line ``argv`` (default ``sys.argv[1:]``) and returns
    the exit status; errors are reported as one line on stderr."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader of stdout went away (`cmemcache stats | head -1`): it
        # has what it wanted, so stop quietly.
        _drop_stdout()
        return EXIT_OK


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage error, --help, --version: already reported
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    try:
        args.servers = _parse_servers(args.servers)
        status: int = args.func(args)
        return status
    except CliError as e:
        _warn(str(e))
        return e.status
    except (cmemcache.InvalidKeyError, cmemcache.InvalidServerError) as e:
        _warn(_describe(e))
        return EXIT_USAGE
    except cmemcache.Error as e:
        _warn(_describe(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        _warn("interrupted")
        return 130
    except BrokenPipeError:
        raise  # stdout closed: main() ends quietly
    except OSError as e:
        _warn(_describe(e))
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
