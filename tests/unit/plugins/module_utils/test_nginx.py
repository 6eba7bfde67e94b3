"""nginx upstream client: parsing and rewriting the upstream file, processes, connections, failure paths."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._nginx import (
    NginxError, NginxInstance, _decode_addr, as_member, children, connection_counts, find_server, find_upstreams,
    parse_upstream, probe, replace_server, still_running,
)

LAB_STYLE = """upstream app {
    server 127.0.11.1:8080 max_fails=1 fail_timeout=2s;
    server 127.0.11.2:8080 max_fails=1 fail_timeout=2s;
    server 127.0.11.3:8080 max_fails=1 fail_timeout=2s;
}
"""

NAMED = """# managed by sre.rollout
upstream api {
    least_conn;
    keepalive 16;
    server 10.0.0.1:9000 weight=3; # api01
    server 10.0.0.2:9000 down;  # api02 taken out for the release
    server 10.0.0.3:9000 backup;
}

upstream app {
    server 10.0.1.1:8080;   # web01
    server 10.0.1.2:8080 weight=2 max_fails=2;   # web02
}
"""


# --------------------------------------------------------------------------- parsing


def test_lab_style_upstream_is_named_by_address():
    servers = parse_upstream(LAB_STYLE, "app")
    assert [s.name for s in servers] == ["127.0.11.1:8080", "127.0.11.2:8080", "127.0.11.3:8080"]
    assert servers[0].params == ["max_fails=1", "fail_timeout=2s"]
    assert not any(s.down for s in servers) and all(s.weight == 1 for s in servers)


def test_named_members_params_and_other_directives():
    servers = parse_upstream(NAMED, "api")
    assert [s.name for s in servers] == ["api01", "api02", "10.0.0.3:9000"]
    assert servers[0].weight == 3 and servers[1].down and servers[2].backup
    assert [s.name for s in parse_upstream(NAMED, "app")] == ["web01", "web02"]
    assert find_upstreams(NAMED).keys() == {"api", "app"}


def test_unknown_upstream_lists_the_upstreams():
    with pytest.raises(NginxError) as err:
        parse_upstream(NAMED, "web", "/etc/nginx/conf.d/up.conf")
    assert "upstream web" in err.value.msg and "api, app" in err.value.msg
    assert err.value.details["upstreams"] == ["api", "app"]


def test_multi_line_server_directive_is_refused():
    text = "upstream app {\n    server 10.0.0.1:80\n        weight=2;\n}\n"
    with pytest.raises(NginxError, match="must fit on one line"):
        parse_upstream(text, "app")


def test_unclosed_upstream_is_refused():
    with pytest.raises(NginxError, match="no closing brace"):
        parse_upstream("upstream app {\n    server 10.0.0.1:80;\n", "app")


# --------------------------------------------------------------------------- rewriting


def test_down_round_trip_is_byte_exact():
    server = parse_upstream(LAB_STYLE, "app")[1]
    down = replace_server(LAB_STYLE, server.with_changes(down=True))
    assert "    server 127.0.11.2:8080 max_fails=1 fail_timeout=2s down;\n" in down
    assert down.count("down") == 1
    again = parse_upstream(down, "app")[1]
    assert again.down
    assert replace_server(down, again.with_changes(down=False)) == LAB_STYLE


def test_marking_down_twice_changes_nothing():
    server = parse_upstream(NAMED, "api")[1]
    assert replace_server(NAMED, server.with_changes(down=True)) == NAMED


def test_comment_and_weight_are_kept_or_replaced_in_place():
    server = parse_upstream(NAMED, "app")[1]
    text = replace_server(NAMED, server.with_changes(weight=5, down=True))
    assert "    server 10.0.1.2:8080 weight=5 max_fails=2 down;   # web02\n" in text
    first = parse_upstream(NAMED, "app")[0]
    text = replace_server(NAMED, first.with_changes(weight=4))
    assert "    server 10.0.1.1:8080 weight=4;   # web01\n" in text


def test_find_server_by_name_address_or_address_option():
    servers = parse_upstream(NAMED, "app")
    assert find_server(servers, "web02", None, "x").address == "10.0.1.2:8080"
    assert find_server(servers, "10.0.1.1:8080", None, "x").name == "web01"
    assert find_server(servers, "web-new-name", "10.0.1.2:8080", "x").name == "web02"


def test_unknown_member_lists_the_members():
    with pytest.raises(NginxError) as err:
        find_server(parse_upstream(NAMED, "app"), "web09", None, "up.conf upstream 'app'")
    assert "web09" in err.value.msg and "web01 (10.0.1.1:8080), web02 (10.0.1.2:8080)" in err.value.msg


def test_ambiguous_member_is_refused():
    text = "upstream app {\n    server 10.0.0.1:80; # web\n    server 10.0.0.2:80; # web\n}\n"
    with pytest.raises(NginxError, match="matches 2 server lines"):
        find_server(parse_upstream(text, "app"), "web", None, "x")


def test_as_member_states():
    up, down, backup = parse_upstream(NAMED, "api")
    assert as_member(up, "UNKNOWN", None)["ready"] is True
    assert as_member(up, "DOWN", 0)["ready"] is False
    assert as_member(down, "UP", 0)["state"] == "maint" and not as_member(down, "UP", 0)["ready"]
    assert not as_member(backup, "UP", 0)["ready"]


# --------------------------------------------------------------------------- processes and sockets


def test_children_and_still_running():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        kids = children(os.getpid())
        assert child.pid in kids
        mine = {child.pid: kids[child.pid]}
        assert still_running(mine) == mine
        assert still_running({child.pid: "1"}) == {}, "same pid, other start time: a reused pid"
    finally:
        child.kill()
        child.wait()
    assert still_running(mine) == {}


def test_decode_proc_net_addresses():
    assert _decode_addr("0100007F:1F90") == ("127.0.0.1", 8080)
    assert _decode_addr("00000000000000000000000001000000:0050") == ("::1", 80)
    assert _decode_addr("0000000000000000FFFF00000100007F:0050") == ("127.0.0.1", 80)


def test_connection_counts_counts_this_process_connections():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as one, socket.create_connection(("127.0.0.1", port)):
            accepted = [listener.accept()[0] for _unused in range(2)]
            assert connection_counts([os.getpid()], [f"127.0.0.1:{port}"])[f"127.0.0.1:{port}"] >= 2
            other = f"127.0.0.1:{port + 1 if port < 65535 else 1}"
            assert connection_counts([os.getpid()], [other])[other] == 0
            one.close()
            for conn in accepted:
                conn.close()
    assert connection_counts([os.getpid()], ["unix:/run/app.sock"])["unix:/run/app.sock"] is None


# --------------------------------------------------------------------------- instance failure paths


def fake_nginx(tmp_path: Path, test_rc: int, message: str = "") -> str:
    """An executable standing in for nginx: ``-t`` exits ``test_rc`` printing ``message``; reload succeeds."""
    script = tmp_path / "nginx"
    script.write_text(f"""#!/bin/sh
for a in "$@"; do
  if [ "$a" = "-t" ]; then echo '{message}' >&2; exit {test_rc}; fi
done
exit 0
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def instance(tmp_path: Path, binary: str, pid: int | None = None) -> NginxInstance:
    upstream = tmp_path / "upstream_app.conf"
    upstream.write_text(LAB_STYLE)
    pidfile = tmp_path / "nginx.pid"
    pidfile.write_text(f"{pid or os.getpid()}\n")
    return NginxInstance(upstream_file=str(upstream), conf=str(tmp_path / "nginx.conf"), prefix=str(tmp_path),
                         pidfile=str(pidfile), binary=binary, timeout=0.3)


def test_failed_config_test_restores_the_file_and_shows_nginx_message(tmp_path):
    message = 'nginx: [emerg] invalid parameter "bogus" in /x/upstream_app.conf:3'
    nginx = instance(tmp_path, fake_nginx(tmp_path, 1, message))
    with pytest.raises(NginxError) as err:
        nginx.change("app", "127.0.11.2:8080", None, down=True)
    assert message in err.value.msg and err.value.details["restored"] is True
    assert Path(nginx.upstream_file).read_text() == LAB_STYLE
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".sre-rollout-")]


def test_reload_without_new_workers_restores_the_file(tmp_path):
    """The master did not start new workers: the new file is not in effect, so it is put back."""
    nginx = instance(tmp_path, fake_nginx(tmp_path, 0))
    with pytest.raises(NginxError, match="started no new worker processes") as err:
        nginx.change("app", "127.0.11.2:8080", None, down=True)
    assert err.value.details["restored"] is True
    assert Path(nginx.upstream_file).read_text() == LAB_STYLE


def test_no_change_needed_touches_nothing(tmp_path):
    nginx = instance(tmp_path, str(tmp_path / "no-such-nginx"))
    before = os.stat(nginx.upstream_file).st_mtime_ns
    assert nginx.change("app", "127.0.11.2:8080", None, down=False) == {}
    assert os.stat(nginx.upstream_file).st_mtime_ns == before


def test_missing_binary(tmp_path):
    nginx = instance(tmp_path, str(tmp_path / "no-such-nginx"))
    with pytest.raises(NginxError, match="nginx_binary") as err:
        nginx.change("app", "127.0.11.2:8080", None, down=True)
    assert err.value.details["restored"] is True


def test_nginx_not_running(tmp_path):
    nginx = instance(tmp_path, "/usr/sbin/nginx")
    Path(nginx.pidfile).unlink()
    with pytest.raises(NginxError, match="nginx is not running"):
        nginx.master_pid()
    dead = subprocess.Popen(["true"])
    dead.wait()
    Path(nginx.pidfile).write_text(f"{dead.pid}\n")
    with pytest.raises(NginxError, match=f"pid {dead.pid}"):
        nginx.master_pid()


def test_missing_upstream_file(tmp_path):
    nginx = NginxInstance(upstream_file=str(tmp_path / "missing.conf"))
    with pytest.raises(NginxError, match="does not exist"):
        nginx.servers("app")


def test_unwritable_directory_is_reported(tmp_path, monkeypatch):
    nginx = instance(tmp_path, "/usr/sbin/nginx")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(NginxError, match="permission denied"):
        nginx.check_writable()


def test_terminate_only_signals_processes_still_the_same(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = children(os.getpid())[child.pid]
    assert NginxInstance.terminate({child.pid: "1"}) == []
    assert NginxInstance.terminate({child.pid: started}) == [child.pid]
    assert child.wait(timeout=5) == -15


def test_probe_of_a_closed_port_is_down():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert probe(f"127.0.0.1:{port}", "/health", timeout=0.5) == "DOWN"
    assert probe("unix:/run/app.sock", "/health") == "UNKNOWN"


def test_locked_serialises(tmp_path):
    nginx = instance(tmp_path, "/usr/sbin/nginx")
    with nginx.locked():
        code = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY);"
                "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)")
        blocked = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, check=False)
        assert blocked.returncode != 0 and b"BlockingIOError" in blocked.stderr
    free = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, check=False)
    assert free.returncode == 0
