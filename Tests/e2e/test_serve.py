"""`switchboard serve`: health, metrics, shutdown, and admins working on the live database."""
import concurrent.futures
import json
import resource
import signal
import socket
import subprocess
import time

import pytest

from conftest import BIN, MIGRATIONS, clean_env, start_server


def test_healthz_and_metrics(server):
    status, headers, body = server.get("/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers["Content-Type"] == "application/json"
    # The request just made is counted in Prometheus text format. Hummingbird counts it after
    # the response is written (a post-write closure), so the count may trail the answer: a
    # clean-clone run on a busy machine read /metrics before it.
    deadline = time.monotonic() + 5
    while True:
        status, headers, body = server.get("/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        if 'http_route="/healthz"' in body or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert '# TYPE hb_requests counter' in body
    assert 'http_route="/healthz"' in body


def test_unknown_routes_get_a_problem_document(server):
    status, headers, body = server.get("/v0/nothing-here")
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(body)
    assert problem["status"] == 404 and problem["title"] == "Not Found"


def test_the_banner_says_what_listens_where(server, sb):
    banner = "".join(server.output)
    assert str(sb.db) in banner and MIGRATIONS[-1] in banner
    assert server.base_url.replace("http://", "") in banner


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_shut_down_gracefully_with_exit_0(sb, sig):
    server = start_server(sb)
    assert server.get("/healthz")[0] == 200
    assert server.stop(sig) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1])), timeout=2)


def test_peer_add_while_serving_is_visible_to_sqlite3_and_the_key_is_not(server, sb):
    result = sb.ok("peer", "add", "alice")
    key = result.stdout.strip()
    # The admin's one-liner from the issue, against the live file.
    out = subprocess.run(["sqlite3", str(sb.db), "select id from peers"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "alice\n"
    for path in sb.data_dir.iterdir():
        assert key.encode() not in path.read_bytes(), f"key found in {path.name}"
    assert server.get("/healthz")[0] == 200


def test_many_cli_writers_and_sqlite3_readers_beside_a_running_server(server, sb):
    def add(index):
        return sb.run("peer", "add", f"peer{index:02d}", "--group", f"g{index % 3}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        adds = [pool.submit(add, i) for i in range(24)]
        reads = [pool.submit(sb.sql, "select count(*) from peers_overview;") for _ in range(8)]
        results = [f.result() for f in adds]
        for read in reads:
            assert int(read.result()) <= 24
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    assert sb.sql("select count(*) from peers;") == "24\n"
    assert sb.sql("select count(*) from audit_log where action='peer.add';") == "24\n"
    assert sb.sql("select group_name, count(*) from peer_groups group by 1 order by 1;") == "g0|8\ng1|8\ng2|8\n"
    assert server.get("/healthz")[0] == 200


def test_an_admin_update_in_sqlite3_is_seen_by_the_cli_and_revokes_tokens(server, sb):
    sb.ok("peer", "add", "alice")
    sb.sql("insert into login_tokens (token_hash, peer_id, created_at, expires_at) "
           "values ('abc', 'alice', unixepoch(), unixepoch() + 3600);")
    assert sb.sql("select live_tokens from peers_overview;") == "1\n"
    sb.sql("update peers set disabled = 1 where id = 'alice';")
    assert json.loads(sb.ok("peer", "show", "alice", "--json").stdout)["status"] == "disabled"
    assert sb.sql("select count(*) from login_tokens;") == "0\n"


def test_serve_runs_from_any_working_directory(sb, tmp_path):
    server = start_server(sb, cwd="/")
    try:
        assert server.get("/healthz")[0] == 200
        assert sb.sql("select file_name from schema_migrations order by version;").split() == MIGRATIONS
    finally:
        assert server.stop() == 0


def test_serve_raises_its_open_file_limit_to_the_hard_one(sb):
    # Each relayed port takes two descriptors: a server started with a low soft limit
    # (a shell's 1024) raises it itself, as coturn does.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"hard open-file limit {hard}: nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        server = start_server(sb)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        with open(f"/proc/{server.process.pid}/limits") as limits:
            line = next(line for line in limits if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)]
    finally:
        assert server.stop() == 0


def test_a_taken_port_is_a_clear_error(sb):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN), "serve", "--data-dir", str(sb.data_dir), "--http-listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, env=clean_env(), timeout=30)
    assert result.returncode != 0
    assert "Address already in use" in result.stderr or "in use" in result.stderr.lower()


def test_a_bad_listen_address_is_refused_before_anything_starts(sb):
    result = sb.run("serve", "--http-listen", "not-an-address")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        'Error: http-listen: invalid listen address "not-an-address": missing :PORT '
        "(expected HOST:PORT or [IPv6]:PORT)"]
    assert not sb.data_dir.exists()


def test_a_broken_migration_stops_startup_naming_the_file(sb):
    """A database whose schema conflicts with 0001 (a table created by hand) makes the
    migration fail: start-up stops, names the file, and leaves the database as it was."""
    sb.data_dir.mkdir(parents=True)
    subprocess.run(["sqlite3", str(sb.db), "create table peers (x); insert into peers values (7);"], check=True)
    result = sb.run("serve", "--http-listen", "127.0.0.1:0")
    assert result.returncode != 0
    assert "0001_initial.sql" in result.stderr and "already exists" in result.stderr
    assert sb.sql("select * from peers;") == "7\n"
    assert sb.sql("select name from sqlite_master order by name;") == "peers\n"
