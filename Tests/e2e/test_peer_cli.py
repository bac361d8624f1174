"""The peer registry CLI: every command, every error path, and what reaches the database."""
import json
import re
import signal
import subprocess

import pytest

from conftest import BIN, MIGRATIONS, clean_env

KEY = re.compile(r"^[A-Za-z0-9_-]{43}$")


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {result.stderr!r}"
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_add_prints_the_key_once_and_stores_only_a_hash(sb):
    result = sb.ok("peer", "add", "alice", "--group", "cams", "--group", "lobby")
    key = result.stdout.strip()
    assert KEY.match(key), result.stdout
    assert "shown" in result.stderr or "printed once" in result.stderr
    assert sb.sql("select id, disabled from peers;") == "alice|0\n"
    assert sb.sql("select group_name from peer_groups order by 1;") == "cams\nlobby\n"
    stored = sb.sql("select key_hash from peers;")
    assert key not in stored and stored.startswith("hmac-sha256$")
    # Nowhere in any byte SQLite wrote: main file, WAL, or a dump of every table.
    for path in sb.data_dir.iterdir():
        assert key.encode() not in path.read_bytes(), path
    assert key not in sb.dump()
    # Never shown again.
    assert key not in sb.ok("peer", "show", "alice").stdout
    assert key not in sb.ok("peer", "list", "--json").stdout


def test_add_json_prints_id_and_key(sb):
    out = json.loads(sb.ok("peer", "add", "cam-01.front_door", "--json").stdout)
    assert out["id"] == "cam-01.front_door" and KEY.match(out["key"])
    assert set(out) == {"id", "key"}


def test_list_show_disable_enable_rotate_remove(sb):
    sb.ok("peer", "add", "alice", "--group", "cams")
    sb.ok("peer", "add", "bob")
    table = sb.ok("peer", "list").stdout.splitlines()
    assert table[0].split()[:3] == ["ID", "STATUS", "GROUPS"]
    assert [line.split()[0] for line in table[1:]] == ["alice", "bob"]
    assert table[1].split()[1:3] == ["enabled", "cams"]

    listed = json.loads(sb.ok("peer", "list", "--json").stdout)
    assert [p["id"] for p in listed] == ["alice", "bob"]
    assert listed[0]["groups"] == ["cams"] and listed[0]["last_login_at"] is None

    shown = json.loads(sb.ok("peer", "show", "alice", "--json").stdout)
    assert shown["id"] == "alice" and shown["status"] == "enabled"
    assert "groups:" in sb.ok("peer", "show", "alice").stdout

    assert "disabled" in sb.ok("peer", "disable", "alice").stdout
    assert "already disabled" in sb.ok("peer", "disable", "alice").stdout
    assert sb.sql("select status from peers_overview where id='alice';") == "disabled\n"
    assert "enabled" in sb.ok("peer", "enable", "alice").stdout
    assert sb.sql("select disabled from peers where id='alice';") == "0\n"

    before = sb.sql("select key_hash from peers where id='alice';")
    new_key = sb.ok("peer", "rotate-key", "alice").stdout.strip()
    assert KEY.match(new_key)
    assert sb.sql("select key_hash from peers where id='alice';") != before
    rotated = json.loads(sb.ok("peer", "rotate-key", "alice", "--json").stdout)
    assert rotated["id"] == "alice" and rotated["key"] != new_key

    sb.ok("peer", "remove", "alice")
    assert sb.sql("select id from peers;") == "bob\n"
    assert sb.sql("select count(*) from peer_groups;") == "0\n"
    actions = sb.sql("select action from audit_log where peer_id='alice' order by id;").split()
    assert actions == ["peer.add", "peer.disable", "peer.enable", "peer.rotate-key",
                       "peer.rotate-key", "peer.remove"]


def test_duplicate_id_is_refused_and_the_original_kept(sb):
    sb.ok("peer", "add", "alice", "--group", "one")
    before = sb.dump()
    assert_one_line_error(sb.run("peer", "add", "alice", "--group", "two"), "alice", "already exists")
    assert sb.dump() == before


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "ali/ce", "ali\u00e9", "a:b", "semi;colon",
                                 "' OR 1=1 --", "tab\there", "new\nline"])
def test_bad_ids_are_refused_before_anything_is_written(sb, bad):
    sb.ok("peer", "add", "keeper")
    before = sb.dump()
    for command in (["peer", "add"], ["peer", "show"], ["peer", "disable"], ["peer", "enable"],
                    ["peer", "rotate-key"], ["peer", "remove"]):
        assert_one_line_error(sb.run(*command, bad), "invalid peer ID")
    assert sb.dump() == before


@pytest.mark.parametrize("bad", ["", "has space", "g" * 65, "ünï"])
def test_bad_group_names_are_refused(sb, bad):
    sb.ok("peer", "add", "keeper")
    before = sb.dump()
    assert_one_line_error(sb.run("peer", "add", "newbie", "--group", "ok", "--group", bad), "invalid group name")
    assert sb.dump() == before


@pytest.mark.parametrize("command", ["show", "disable", "enable", "rotate-key", "remove"])
def test_unknown_ids_are_reported(sb, command):
    sb.ok("peer", "add", "alice")
    before = sb.dump()
    assert_one_line_error(sb.run("peer", command, "ghost"), "no peer", "ghost")
    assert sb.dump() == before


def test_a_missing_argument_or_unknown_command_fails(sb):
    result = sb.run("peer", "add")
    assert result.returncode != 0 and "Missing expected argument" in result.stderr
    result = sb.run("peer", "frobnicate", "x")
    assert result.returncode != 0


def test_an_unusable_data_dir_is_a_one_line_error(sb, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = sb.run("peer", "list", "--data-dir", str(blocker / "sub"), data_dir=False)
    assert_one_line_error(result, "cannot")


def test_a_corrupt_database_file_is_a_one_line_error(sb):
    sb.data_dir.mkdir(parents=True)
    sb.db.write_bytes(b"this is not an SQLite database, just bytes " * 200)
    result = sb.run("peer", "list")
    assert_one_line_error(result)
    assert sb.db.read_bytes().startswith(b"this is not an SQLite database")


def test_commands_work_from_any_working_directory(sb, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    sb.ok("peer", "add", "alice", cwd="/")
    sb.ok("migrate", cwd=elsewhere)
    assert sb.sql("select file_name from schema_migrations order by version;").split() == MIGRATIONS
    assert sb.sql("select id from peers;") == "alice\n"
    assert not (elsewhere / "switchboard-data").exists()


def test_default_data_dir_is_relative_to_the_working_directory(tmp_path):
    from conftest import Switchboard
    here = Switchboard(tmp_path / "switchboard-data")
    result = here.run("peer", "add", "alice", cwd=tmp_path, data_dir=False)
    assert result.returncode == 0, result.stderr
    assert here.sql("select id from peers;") == "alice\n"


def test_acl_rules_from_the_cli(sb):
    sb.ok("peer", "add", "cam1", "--group", "cams")
    out = sb.ok("acl", "allow", "group:family", "group:cams").stdout
    assert out.startswith("rule 1: allow")
    sb.ok("acl", "deny", "peer:guest", "peer:cam1")
    listed = json.loads(sb.ok("acl", "list", "--json").stdout)
    assert [(r["action"], r["from"], r["to"]) for r in listed] == [
        ("allow", "group:family", "group:cams"), ("deny", "peer:guest", "peer:cam1")]
    assert sb.sql('select action, "from", "to" from acl_overview order by id;') == \
        "allow|group:family|group:cams\ndeny|peer:guest|peer:cam1\n"
    before = sb.dump()
    assert_one_line_error(sb.run("acl", "allow", "cams", "peer:cam1"), "invalid ACL subject")
    assert_one_line_error(sb.run("acl", "deny", "group:bad name", "peer:cam1"), "invalid group name")
    assert_one_line_error(sb.run("acl", "remove", "99"), "no ACL rule 99")
    assert sb.dump() == before
    sb.ok("acl", "remove", "1")
    assert sb.sql("select count(*) from acl_rules;") == "1\n"


def test_a_reader_that_goes_away_ends_the_listing_quietly(sb):
    # `switchboard peer list | head -1` under a shell that ignores SIGPIPE (as some
    # supervisors and CI runners do): the write fails with EPIPE, and the CLI stops with
    # status 0 and no crash report, as a C tool dying of SIGPIPE would.
    for index in range(3):
        sb.ok("peer", "add", f"cam-{index}")
    process = subprocess.Popen([str(BIN), "peer", "list", "--data-dir", str(sb.data_dir)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(None),
                               preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_IGN))
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=30) == 0, stderr
    assert "crashed" not in stderr and "Fatal error" not in stderr
