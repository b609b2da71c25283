"""The ``cmemcache`` command (``python -m cmemcache``), run in subprocesses
against real memcached servers."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import free_port

UTF8_KEY = "ключ"


@pytest.fixture
def server(memcached):
    memcached.fresh()
    try:
        yield memcached
    finally:
        memcached.flush()  # also cancels a delayed flush a test left pending


def run(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """``python -m cmemcache ARGS`` with MEMCACHED_SERVERS unset unless
    ``env`` sets it."""
    environ = {k: v for k, v in os.environ.items() if k != "MEMCACHED_SERVERS"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cmemcache", *args],
        input=stdin, capture_output=True, timeout=timeout, env=environ,
    )


def cli(server, *args: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
    """The command with ``--servers`` set to ``server``."""
    return run("--servers", server.address, *args, **kwargs)


def assert_ok(proc: subprocess.CompletedProcess[bytes]) -> None:
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr == b""


def error_line(proc: subprocess.CompletedProcess[bytes], status: int) -> str:
    """The one error line the command wrote, after checking its status."""
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cmemcache: error: "), err
    return lines[0]


@pytest.fixture
def down_address() -> str:
    """A loopback address where nothing listens."""
    return f"127.0.0.1:{free_port()}"


# -- servers, ping, version, stats -------------------------------------------------------


def test_version_and_ping(server):
    proc = cli(server, "version")
    assert_ok(proc)
    assert re.fullmatch(rf"{re.escape(server.address)} 1\.\d+\.\d+\S*\n", proc.stdout.decode())
    proc = cli(server, "ping")
    assert_ok(proc)
    assert re.fullmatch(
        rf"{re.escape(server.address)} alive \(memcached 1\.\d+\.\d+\S*, \d+\.\d\d ms\)\n",
        proc.stdout.decode(),
    )


def test_servers_from_the_environment(server):
    proc = run("version", env={"MEMCACHED_SERVERS": server.address})
    assert_ok(proc)
    assert proc.stdout.decode().startswith(server.address + " ")


def test_ping_with_a_server_down(server, down_address):
    for command in ("ping", "version"):
        proc = run("--servers", f"{server.address},{down_address}", command)
        line = error_line(proc, 1)
        assert down_address in line and "refused" in line.lower()
        assert proc.stdout.decode().startswith(server.address + " ")


def test_every_command_with_the_server_down(down_address, tmp_path):
    path = tmp_path / "value"
    path.write_bytes(b"v")
    for args in (["get", "k"], ["set", "k", "v"], ["set", "k", "-f", str(path)], ["cp", str(path), "k"],
                 ["delete", "k"], ["flush"], ["stats"], ["dump"], ["ping"],
                 ["bench", "--ops", "10", "--no-progress"]):
        proc = run("--servers", down_address, "--timeout", "2", *args)
        line = error_line(proc, 1)
        assert down_address in line, (args, line)
        assert proc.stdout == b"", args


def test_stats_table(server):
    proc = cli(server, "stats")
    assert_ok(proc)
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == f"Server: {server.address}"
    table = dict(line.split(None, 1) for line in lines[1:])
    assert table["pid"] == str(server.pid)
    assert table["version"].startswith("1.")
    assert all(line.startswith("  ") for line in lines[1:])


def test_stats_with_arguments(server):
    proc = cli(server, "stats", "settings")
    assert_ok(proc)
    table = dict(line.split(None, 1) for line in proc.stdout.decode().splitlines()[1:])
    assert table["maxbytes"] == str(64 * 1024 * 1024)
    proc = cli(server, "stats", "no_such_group")
    line = error_line(proc, 1)
    assert "stats no_such_group" in line and server.address in line


def test_stats_of_two_servers(server, memcached_factory):
    second = memcached_factory()
    proc = run("--servers", f"{server.address},{second.address}", "stats")
    assert_ok(proc)
    blocks = {}
    for block in proc.stdout.decode().split("\n\n"):
        header, *rows = block.strip("\n").split("\n")
        blocks[header] = dict(row.split(None, 1) for row in rows)
    assert blocks[f"Server: {server.address}"]["pid"] == str(server.pid)
    assert blocks[f"Server: {second.address}"]["pid"] == str(second.pid)


# -- values ------------------------------------------------------------------------------


def test_set_from_stdin_and_get_binary(server):
    value = bytes(range(256)) + b"\r\nEND\r\n" + b"\x00" * 10
    assert_ok(cli(server, "set", "bin", stdin=value))
    assert server.raw_get(b"bin") == (value, 0)
    proc = cli(server, "get", "bin")
    assert_ok(proc)
    assert proc.stdout == value


def test_set_from_file_with_flags_and_exptime(server, tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"from a file\n")
    assert_ok(cli(server, "set", "--flags", "4294967295", "--exptime", "100", "f", "-f", str(path)))
    assert server.raw_get(b"f") == (b"from a file\n", 4294967295)
    ttl = int(re.fullmatch(rb"HD t(\d+)\r\n", server.command(b"mg f t\r\n"))[1])
    assert 95 <= ttl <= 100


def test_set_dash_f_dash_reads_stdin(server):
    assert_ok(cli(server, "set", "k", "-f", "-", stdin=b"dash"))
    assert server.raw_get(b"k") == (b"dash", 0)
    assert_ok(cli(server, "set", "k2", "--file", "-", stdin=b"long option"))
    assert server.raw_get(b"k2") == (b"long option", 0)


def test_set_stores_the_literal_value(server, tmp_path):
    assert_ok(cli(server, "set", "greeting", "hello world", stdin=b"not this"))
    assert server.raw_get(b"greeting") == (b"hello world", 0)
    proc = cli(server, "get", "greeting")
    assert_ok(proc)
    assert proc.stdout == b"hello world"  # a pipe: exactly as stored
    # a value that names a file is still the value, not the file
    path = tmp_path / "data"
    path.write_bytes(b"file contents")
    assert_ok(cli(server, "set", "p", str(path)))
    assert server.raw_get(b"p") == (str(path).encode(), 0)
    # options anywhere; "-" and option-like values after "--"
    assert_ok(cli(server, "set", "--flags", "5", "n", "42", "--exptime", "100"))
    assert server.raw_get(b"n") == (b"42", 5)
    assert_ok(cli(server, "set", "dash", "-"))
    assert server.raw_get(b"dash") == (b"-", 0)
    assert_ok(cli(server, "set", "opt", "--", "--flags"))
    assert server.raw_get(b"opt") == (b"--flags", 0)
    assert_ok(cli(server, "set", "empty", ""))
    assert server.raw_get(b"empty") == (b"", 0)
    assert_ok(cli(server, "set", UTF8_KEY, "значение"))
    assert server.raw_get(UTF8_KEY.encode()) == ("значение".encode(), 0)


def test_set_with_a_value_and_a_file_is_a_usage_error(server, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"file contents")
    proc = cli(server, "set", "k", "v", "-f", str(path))
    assert "not both" in error_line(proc, 2)
    assert server.raw_get(b"k") is None


def test_global_options_after_the_command(server, down_address):
    proc = run("set", "after", "v1", "--servers", server.address, "--timeout", "2")
    assert_ok(proc)
    assert server.raw_get(b"after") == (b"v1", 0)
    proc = run("get", "after", "--servers", server.address)
    assert_ok(proc)
    assert proc.stdout == b"v1"
    # given twice, the one after the command counts
    proc = run("--servers", down_address, "get", "after", "--servers", server.address)
    assert_ok(proc)
    assert proc.stdout == b"v1"
    proc = run("--servers", server.address, "get", "after", "--servers", down_address)
    assert down_address in error_line(proc, 1)
    # before the command still works, and the environment is the default
    proc = run("stats", "--servers", server.address)
    assert_ok(proc)
    assert proc.stdout.decode().splitlines()[0] == f"Server: {server.address}"
    proc = run("version", "--timeout", "2", env={"MEMCACHED_SERVERS": server.address})
    assert_ok(proc)
    assert proc.stdout.decode().startswith(server.address + " 1.")
    line = error_line(run("ping", "--timeout", "0", "--servers", server.address), 2)
    assert "argument --timeout" in line


def test_cp_from_file_and_stdin(server, tmp_path):
    path = tmp_path / "photo.jpg"
    data = os.urandom(300_000)
    path.write_bytes(data)
    assert_ok(cli(server, "cp", "--flags", "3", str(path), "photo"))
    assert server.raw_get(b"photo") == (data, 3)
    assert_ok(cli(server, "cp", "-", "piped", stdin=b"piped bytes"))
    assert server.raw_get(b"piped") == (b"piped bytes", 0)


def test_empty_value(server):
    assert_ok(cli(server, "set", "empty", stdin=b""))
    proc = cli(server, "cat", "empty")
    assert_ok(proc)
    assert proc.stdout == b""


def test_get_several_keys_in_order_and_a_miss(server):
    server.raw_set(b"a", b"A")
    server.raw_set(b"b", b"BB")
    proc = cli(server, "get", "b", "missing", "a", "b")
    assert proc.stdout == b"BBABB"
    line = error_line(proc, 1)
    assert line == "cmemcache: error: key not found: missing"


def test_cat_is_get(server):
    server.raw_set(b"c", b"cat value", flags=7)
    proc = cli(server, "cat", "c")
    assert_ok(proc)
    assert proc.stdout == b"cat value"
    assert error_line(cli(server, "cat", "nope"), 1).endswith("key not found: nope")


def test_utf8_key(server):
    assert_ok(cli(server, "set", UTF8_KEY, stdin=b"v"))
    assert server.raw_get(UTF8_KEY.encode()) == (b"v", 0)
    proc = cli(server, "get", UTF8_KEY)
    assert_ok(proc)
    assert proc.stdout == b"v"


def test_value_too_large_for_the_server(server):
    proc = cli(server, "set", "big", stdin=b"x" * (2 * 1024 * 1024))
    assert "too large" in error_line(proc, 1)
    assert server.raw_get(b"big") is None


def test_unreadable_file(server, tmp_path):
    for args in (["set", "k", "-f", str(tmp_path / "absent")], ["cp", str(tmp_path / "absent"), "k"]):
        line = error_line(cli(server, *args), 1)
        assert "cannot read" in line and "absent" in line
    assert server.raw_get(b"k") is None


def test_delete(server):
    server.raw_set(b"d1", b"1")
    server.raw_set(b"d2", b"2")
    assert_ok(cli(server, "delete", "d1", "d2"))
    assert server.raw_get(b"d1") is None and server.raw_get(b"d2") is None
    server.raw_set(b"d3", b"3")
    proc = cli(server, "delete", "gone", "d3")
    assert error_line(proc, 1) == "cmemcache: error: key not found: gone"
    assert server.raw_get(b"d3") is None


def test_flush_and_delayed_flush(server):
    server.raw_set(b"x", b"1")
    assert_ok(cli(server, "flush"))
    assert server.raw_get(b"x") is None
    server.raw_set(b"y", b"1")
    assert_ok(cli(server, "flush", "--delay", "60"))
    assert server.raw_get(b"y") == (b"1", 0)  # not yet


def test_flush_every_server(server, memcached_factory):
    second = memcached_factory()
    server.raw_set(b"x", b"1")
    second.raw_set(b"x", b"1")
    assert_ok(run("--servers", f"{server.address},{second.address}", "flush"))
    assert server.raw_get(b"x") is None and second.raw_get(b"x") is None


def test_keys_map_to_servers_as_the_client_does(server, memcached_factory):
    import cmemcache

    second = memcached_factory()
    servers = [server.address, second.address]
    keys = [f"key{i}" for i in range(20)]
    for key in keys:
        assert_ok(run("--servers", ",".join(servers), "set", key, stdin=key.encode()))
    client = cmemcache.Client(servers)
    try:
        assert client.get_multi(keys) == {k: k.encode() for k in keys}
    finally:
        client.disconnect_all()
    on_first = {k for k in keys if server.raw_get(k.encode())}
    on_second = {k for k in keys if second.raw_get(k.encode())}
    assert on_first and on_second and on_first | on_second == set(keys)
    proc = run("--servers", ",".join(servers), "get", *keys)
    assert_ok(proc)
    assert proc.stdout == "".join(keys).encode()


# -- a terminal, a closed pipe ----------------------------------------------------------


def run_on_a_terminal(*args: str, stdin_terminal: bool = False,
                      timeout: float = 30) -> tuple[int, bytes, bytes]:
    """``python -m cmemcache ARGS`` with stdout (and, if asked, stdin) on a
    pseudo-terminal: ``(status, what the terminal showed, stderr)``.  The
    terminal's output processing is off, so the bytes are the program's."""
    import pty
    import select
    import termios
    import time

    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    environ = {k: v for k, v in os.environ.items() if k != "MEMCACHED_SERVERS"}
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cmemcache", *args],
            stdin=slave if stdin_terminal else subprocess.DEVNULL,
            stdout=slave, stderr=subprocess.PIPE, env=environ,
        )
    finally:
        os.close(slave)
    shown = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        _, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return proc.returncode, bytes(shown), err


def test_get_on_a_terminal_ends_each_value_with_a_newline(server):
    server.raw_set(b"a", b"A")
    server.raw_set(b"nl", b"has one\n")
    status, shown, err = run_on_a_terminal("--servers", server.address, "get", "a")
    assert (status, shown, err) == (0, b"A\n", b"")
    status, shown, err = run_on_a_terminal("--servers", server.address, "get", "a", "nl", "a")
    assert (status, shown, err) == (0, b"A\nhas one\nA\n", b"")
    status, shown, err = run_on_a_terminal("--servers", server.address, "cat", "a", "nope")
    assert (status, shown) == (1, b"A\n")
    assert err == b"cmemcache: error: key not found: nope\n"
    # into a pipe the bytes stay as stored
    proc = cli(server, "get", "a", "nl")
    assert_ok(proc)
    assert proc.stdout == b"Ahas one\n"


def test_set_with_nothing_to_store_on_a_terminal_is_a_usage_error(server):
    status, shown, err = run_on_a_terminal("--servers", server.address, "set", "k",
                                           stdin_terminal=True)
    assert status == 2 and shown == b""
    assert err.decode().startswith("cmemcache: error: set: give VALUE, -f FILE")
    assert server.raw_get(b"k") is None
    status, _, err = run_on_a_terminal("--servers", server.address, "set", "k", "typed",
                                       stdin_terminal=True)
    assert (status, err) == (0, b"")
    assert server.raw_get(b"k") == (b"typed", 0)


def run_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The command with stdout on a pipe whose reader has already gone: its
    first write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    environ = {k: v for k, v in os.environ.items() if k != "MEMCACHED_SERVERS"}
    try:
        return subprocess.run([sys.executable, "-m", "cmemcache", *args], stdin=subprocess.DEVNULL,
                              stdout=write_end, stderr=subprocess.PIPE, timeout=60, env=environ)
    finally:
        os.close(write_end)


def test_a_closed_stdout_ends_the_command_quietly(server):
    server.raw_set(b"big", b"x" * 500_000)
    server.raw_set(b"small", b"s")
    for args in (["stats"], ["get", "big"], ["get", "small"], ["dump"], ["version"], ["ping"],
                 ["bench", "--ops", "10", "--no-progress"]):
        proc = run_into_a_closed_pipe("--servers", server.address, *args)
        assert (proc.returncode, proc.stderr) == (0, b""), args
    proc = run_into_a_closed_pipe("--help")
    assert (proc.returncode, proc.stderr) == (0, b"")
    # a key not found is still reported, on stderr
    proc = run_into_a_closed_pipe("--servers", server.address, "get", "small", "nope")
    assert proc.returncode == 1
    assert proc.stderr == b"cmemcache: error: key not found: nope\n"
    assert server.raw_get(b"big") == (b"x" * 500_000, 0)


def test_piped_into_head(server):
    """``cmemcache stats | head -1`` and a value larger than the pipe's
    buffer into ``head -c``: the reader stops early, the command exits 0."""
    server.raw_set(b"big", b"0123456789" * 90_000)
    for args, head, expected in (
        (["stats"], ["head", "-1"], f"Server: {server.address}\n".encode()),
        (["get", "big"], ["head", "-c", "12"], b"012345678901"),
    ):
        producer = subprocess.Popen(
            [sys.executable, "-m", "cmemcache", "--servers", server.address, *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        reader = subprocess.Popen(head, stdin=producer.stdout, stdout=subprocess.PIPE)
        producer.stdout.close()  # the reader holds the only read end
        try:
            out, _ = reader.communicate(timeout=60)
            err = producer.stderr.read()
            status = producer.wait(60)
        finally:
            producer.stderr.close()
            for p in (producer, reader):
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
        assert (reader.returncode, out) == (0, expected), args
        assert (status, err) == (0, b""), args


# -- dump --------------------------------------------------------------------------------


def test_dump(server):
    keys = [b"plain", b"with%percent", UTF8_KEY.encode(), b"\xff\xfe", b"k" * 250]
    for key in keys:
        server.raw_set(key, b"value", exptime=1000)
    proc = cli(server, "dump")
    assert_ok(proc)
    assert sorted(proc.stdout.split(b"\n")[:-1]) == sorted(keys)
    proc = cli(server, "dump", "--long")
    assert_ok(proc)
    rows = {}
    for line in proc.stdout.split(b"\n")[:-1]:
        key, *fields = line.split(b"\t")
        rows[key] = dict(f.split(b"=", 1) for f in fields)
    assert sorted(rows) == sorted(keys)
    for fields in rows.values():
        assert {b"exp", b"la", b"cas", b"cls", b"size", b"fetch"} <= set(fields)
        assert int(fields[b"exp"]) > 0


def test_dump_of_an_empty_server_and_of_several(server, memcached_factory):
    proc = cli(server, "dump")
    assert_ok(proc)
    assert proc.stdout == b""
    second = memcached_factory()
    server.raw_set(b"one", b"1")
    second.raw_set(b"two", b"2")
    proc = run("--servers", f"{server.address},{second.address}", "dump")
    assert_ok(proc)
    assert sorted(proc.stdout.split()) == [b"one", b"two"]


def test_dump_refused_by_the_server(memcached_factory):
    server = memcached_factory(["-o", "no_lru_crawler"])
    server.raw_set(b"k", b"v")
    proc = cli(server, "dump")
    line = error_line(proc, 1)
    assert server.address in line and "metadump" in line


def test_unix_socket_server(memcached_factory, tmp_socket_dir):
    server = memcached_factory(unix_path=os.path.join(tmp_socket_dir, "mc.sock"))
    assert server.address.startswith("unix:")
    assert_ok(cli(server, "set", "u", stdin=b"over unix"))
    proc = cli(server, "get", "u")
    assert_ok(proc)
    assert proc.stdout == b"over unix"
    proc = cli(server, "dump")
    assert_ok(proc)
    assert proc.stdout == b"u\n"
    assert_ok(cli(server, "ping"))


# -- bench -------------------------------------------------------------------------------


@pytest.mark.hang_timeout(120)
def test_bench(server):
    proc = cli(server, "bench", "--ops", "400", "--size", "64", "--batch", "50")
    assert proc.returncode == 0, proc.stderr.decode()
    err = proc.stderr.decode()
    assert "Traceback" not in err
    for label in ("set", "get", "get_multi"):
        assert re.search(rf"\r{label}\s*\[#{{30}}\] 100%", err), err[-300:]
    rows = {}
    for line in proc.stdout.decode().splitlines()[2:]:
        label, keys, calls, misses, *_ = line.split()
        rows[label] = (int(keys), int(calls), int(misses))
    assert rows == {"set": (400, 400, 0), "get": (400, 400, 0), "get_multi": (400, 8, 0)}
    assert "keys/s" in proc.stdout.decode()
    # the benchmark's keys are removed afterwards
    assert run("--servers", server.address, "dump").stdout == b""


def test_bench_without_progress_bar(server):
    proc = cli(server, "bench", "--ops", "20", "--no-progress")
    assert_ok(proc)
    assert "get_multi" in proc.stdout.decode()


# -- command line errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "args,fragment",
    [
        ([], "required: COMMAND"),
        (["bogus"], "invalid choice: 'bogus'"),
        (["get"], "required: KEY"),
        (["set"], "required: KEY"),
        (["set", "k", "v", "extra"], "unrecognized arguments: extra"),
        (["set", "k", "-f"], "argument -f/--file: expected one argument"),
        (["cp", "onlyfile"], "required: KEY"),
        (["set", "--flags", "-1", "k"], "argument --flags"),
        (["set", "--flags", "4294967296", "k"], "flags are 32 bits"),
        (["set", "--exptime", "soon", "k"], "argument --exptime"),
        (["--timeout", "0", "ping"], "argument --timeout"),
        (["flush", "--delay", "x"], "argument --delay"),
        (["bench", "--ops", "0"], "--ops"),
    ],
)
def test_usage_errors(server, args, fragment):
    proc = cli(server, *args)
    line = error_line(proc, 2)
    assert fragment in line


@pytest.mark.parametrize(
    "args",
    [["get", "a b"], ["get", "ok", "bad\tkey"], ["set", "x" * 251], ["delete", "ok", "ctl\x01"],
     ["cat", "k" * 300]],
)
def test_bad_keys(server, args):
    server.raw_set(b"ok", b"still here")
    proc = cli(server, *args, stdin=b"v")
    line = error_line(proc, 2)
    assert "key" in line
    assert proc.stdout == b""
    assert server.raw_get(b"ok") == (b"still here", 0)  # nothing done before the check


@pytest.mark.parametrize("servers", ["bad:host:port", "[::1", " , "])
def test_bad_server_strings(servers):
    proc = run("--servers", servers, "ping")
    line = error_line(proc, 2)
    assert "server" in line


def test_tool_version():
    import cmemcache

    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"cmemcache {cmemcache.__version__}"


def test_help_lists_every_command():
    proc = run("--help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    for command in ("stats", "get", "cat", "set", "cp", "delete", "flush", "dump", "ping",
                    "version", "bench"):
        assert command in out


def test_main_in_process(server, tmp_path, capsysbinary):
    from cmemcache.cli import main

    path = tmp_path / "v"
    path.write_bytes(b"value")
    assert main(["--servers", server.address, "cp", str(path), "inproc"]) == 0
    assert server.raw_get(b"inproc") == (b"value", 0)
    assert main(["--servers", server.address, "get", "inproc"]) == 0
    out, err = capsysbinary.readouterr()
    assert (out, err) == (b"value", b"")
    assert main(["--servers", server.address, "get", "nope"]) == 1
    assert main(["--servers", server.address, "bogus"]) == 2
    assert main(["--version"]) == 0
    out, err = capsysbinary.readouterr()
    assert err.count(b"\n") == 2 and err.startswith(b"cmemcache: error: key not found: nope\n")
