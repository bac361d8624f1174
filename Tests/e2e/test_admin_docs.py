"""Every SQL block in docs/admin.md runs with the sqlite3 CLI against a live server's
database and returns what it promises, so the cookbook stays true."""
import re
import subprocess

from conftest import ROOT

DOC = (ROOT / "docs" / "admin.md").read_text()
BLOCKS = re.findall(r"```sql\n(.*?)```", DOC, re.S)


def test_the_cookbook_has_queries():
    assert len(BLOCKS) >= 10


def test_every_cookbook_query_runs_on_a_live_database(server, sb):
    sb.ok("peer", "add", "alice", "--group", "cams", "--group", "lobby")
    sb.ok("peer", "add", "bob", "--group", "cams")
    sb.ok("peer", "add", "mallory")
    sb.ok("peer", "disable", "bob")
    sb.sql("insert into audit_log (at, actor, action, peer_id, source) "
           "values (unixepoch(), 'http', 'login.fail', 'alice', '127.0.0.1');")
    sb.sql("insert into sessions (id, caller, callee, mode, state, offer, version, created_at, updated_at, "
           "offer_expires_at) values ('s1', 'alice', 'bob', 'relay', 'expired', 'v=0', 2, unixepoch(), unixepoch(), "
           "unixepoch());")
    sb.sql("insert into events (peer_id, type, session_id, data, created_at, expires_at) "
           "values ('alice', 'expired', 's1', '{\"session\":\"s1\"}', unixepoch(), unixepoch() + 300);")
    for block in BLOCKS:
        result = subprocess.run(["sqlite3", "-bail", str(sb.db)], input=block,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0 and result.stderr == "", f"{block}\n{result.stderr}"

    assert sb.sql("SELECT peer_id, status FROM group_members WHERE group_name = 'cams' ORDER BY peer_id;") \
        == "alice|enabled\nbob|disabled\n"
    assert sb.sql("SELECT peer_id, source, failures FROM login_failures_24h;") == "alice|127.0.0.1|1\n"
    assert sb.sql("SELECT callee, count(*) AS unanswered FROM sessions WHERE state = 'expired' GROUP BY callee;") \
        == "bob|1\n"
    assert sb.sql("SELECT peer_id, events FROM events_pending;") == "alice|1\n"
    assert sb.sql("SELECT id, caller, callee, mode, state FROM sessions_overview;") == "s1|alice|bob|relay|expired\n"
    # The hand-written UPDATE in the cookbook disabled mallory.
    assert sb.sql("SELECT status FROM peers_overview WHERE id = 'mallory';") == "disabled\n"
    assert server.get("/healthz")[0] == 200


def test_the_backup_recipe_makes_a_usable_copy(server, sb, tmp_path):
    sb.ok("peer", "add", "alice")
    backup = tmp_path / "backup.db"
    subprocess.run(["sqlite3", str(sb.db), f".backup {backup}"], check=True, timeout=30)
    out = subprocess.run(["sqlite3", str(backup), "select id from peers;"],
                         capture_output=True, text=True, check=True).stdout
    assert out == "alice\n"
