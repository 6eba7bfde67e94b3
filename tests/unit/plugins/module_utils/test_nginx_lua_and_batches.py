"""nginx: the Lua mode's admin client and driver, and the reload mode's batches (one edit, one reload).

The admin API is stood in for by a small HTTP server speaking its text protocol; the real balancer
(tests/lab/nginx/rollout_balancer.lua in the lab's nginx) is tested in tests/integration/test_lb.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError
from ansible_collections.sre.rollout.plugins.module_utils._lb import Operation, Options, make_drivers
from ansible_collections.sre.rollout.plugins.module_utils._nginx import (
    LuaBalancer, NginxDriver, NginxError, NginxInstance, NginxLuaDriver, as_lua_member, find_lua_member,
    nginx_spec, parse_members,
)

LAB_STYLE = """upstream app {
    server 127.0.11.1:8080 max_fails=1 fail_timeout=2s;
    server 127.0.11.2:8080 max_fails=1 fail_timeout=2s;
    server 127.0.11.3:8080 max_fails=1 fail_timeout=2s;
}
"""


class FakeAdmin:
    """The balancer's admin API protocol: GET /<prefix>/<pool>[/<member>], POST ...?state=&weight=."""

    def __init__(self, members: int = 4) -> None:
        self.members = {f"web0{i}": {"address": f"127.0.11.{i}:8080", "state": "ready", "weight": 100,
                                     "in_flight": []} for i in range(1, members + 1)}
        self.posts: list[tuple[str, dict]] = []
        admin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def line(self, name: str) -> str:
                m = admin.members[name]
                flight = m["in_flight"].pop(0) if m["in_flight"] else 0
                return f"{name} {m['address']} {m['state']} {m['weight']} {flight}\n"

            def route(self, post: bool) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")[1:]
                if not parts or parts[0] != "app":
                    return self.reply(404, f"no pool {parts[0] if parts else ''}\n")
                if len(parts) == 1:
                    return self.reply(200, "".join(self.line(n) for n in admin.members))
                name = parts[1]
                if name not in admin.members:
                    return self.reply(404, f"pool app has no member {name}\n")
                if post:
                    args = {k: v[0] for k, v in parse_qs(url.query).items()}
                    admin.posts.append((name, args))
                    if "state" in args:
                        admin.members[name]["state"] = args["state"]
                    if "weight" in args:
                        admin.members[name]["weight"] = int(args["weight"])
                return self.reply(200, self.line(name))

            def do_GET(self):  # noqa: N802
                self.route(False)

            def do_POST(self):  # noqa: N802
                self.route(True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sre-rollout"

    def __enter__(self) -> "FakeAdmin":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def lua_params(url: str, **kw) -> dict:
    params = {"backend": "nginx", "endpoints": [url], "pool": "app", "member": "web02", "address": None,
              "timeout": 2.0, "health_uri": None, "nginx_mode": "lua", "nginx_admin_url": None}
    params.update(kw)
    return params


# --------------------------------------------------------------------------- the admin protocol


def test_parse_members_and_refuse_what_is_not_the_balancer():
    members = parse_members("web01 127.0.0.1:8080 ready 100 2\n\nweb02 127.0.0.2:8080 drain 5 0\n", "x")
    assert [(m.name, m.state, m.weight, m.in_flight) for m in members] == [
        ("web01", "ready", 100, 2), ("web02", "drain", 5, 0)]
    with pytest.raises(NginxError, match="is admin_url the sre.rollout balancer"):
        parse_members("<html>welcome to nginx</html>\n", "http://x/")
    with pytest.raises(NginxError, match="not 'name address state weight in_flight'"):
        parse_members("web01 127.0.0.1:8080 sleeping 100 0\n", "x")


def test_lua_member_as_pool_member():
    member = parse_members("web01 127.0.0.1:8080 drain 100 3\n", "x")[0]
    entry = as_lua_member(member, "UP")
    assert (entry["state"], entry["sessions"], entry["in_flight"], entry["ready"]) == ("drain", 3, 3, False)
    ready = as_lua_member(parse_members("w 1.2.3.4:80 ready 0 0\n", "x")[0], "UP")
    assert ready["ready"] is False  # weight 0 takes no traffic
    assert as_lua_member(parse_members("w 1.2.3.4:80 ready 1 0\n", "x")[0], "DOWN")["ready"] is False


def test_find_lua_member_by_name_or_address():
    members = parse_members("web01 127.0.0.1:8080 ready 1 0\nweb02 127.0.0.2:8080 ready 1 0\n", "x")
    assert find_lua_member(members, "web02", None, "here").name == "web02"
    assert find_lua_member(members, "127.0.0.1:8080", None, "here").name == "web01"
    with pytest.raises(NginxError, match=r"has no member 'web09'.*web01 \(127.0.0.1:8080\)"):
        find_lua_member(members, "web09", None, "here")


def test_admin_client_reads_and_changes_members():
    with FakeAdmin() as admin:
        client = LuaBalancer(admin.url + "/", timeout=2)
        assert [m.name for m in client.members("app")] == ["web01", "web02", "web03", "web04"]
        changed = client.set("app", "web02", state="drain", weight=7)
        assert (changed.state, changed.weight) == ("drain", 7)
        assert admin.posts == [("web02", {"state": "drain", "weight": "7"})]
        with pytest.raises(NginxError, match="answered 404: pool app has no member web09"):
            client.member("app", "web09")
        with pytest.raises(NginxError, match="answered 404: no pool other"):
            client.members("other")
        with pytest.raises(NginxError, match="state must be one of"):
            client.set("app", "web02", state="down")


def test_admin_client_errors_say_what_to_fix():
    with pytest.raises(NginxError, match="must be an http:// URL"):
        LuaBalancer("/run/nginx-admin.sock")
    with pytest.raises(NginxError, match="cannot reach the nginx admin API at http://127.0.0.1:9/sre-rollout/app"):
        LuaBalancer("http://127.0.0.1:9/sre-rollout", timeout=1).members("app")


# --------------------------------------------------------------------------- endpoints and drivers


def test_nginx_spec_modes():
    assert nginx_spec("/etc/nginx/up.conf", {})["mode"] == "reload"
    assert nginx_spec("http://127.0.0.1:8081/sre-rollout", {"mode": "lua"})["admin_url"] == \
        "http://127.0.0.1:8081/sre-rollout"
    assert nginx_spec({"mode": "lua", "admin_url": "http://a/b"}, {"mode": "reload"})["mode"] == "lua"
    with pytest.raises(RolloutError, match="needs admin_url"):
        nginx_spec({"mode": "lua"}, {})
    with pytest.raises(RolloutError, match="mode must be one of reload, lua"):
        nginx_spec({"mode": "openresty", "upstream_file": "/x"}, {})
    with pytest.raises(RolloutError, match="needs upstream_file"):
        nginx_spec({"mode": "reload"}, {})


def test_make_drivers_one_per_member_and_endpoint_sharing_the_instance(tmp_path):
    params = {"backend": "nginx", "endpoints": [str(tmp_path / "a.conf"), str(tmp_path / "b.conf")], "pool": "app",
              "members": ["web01", "web02"], "address": None, "timeout": 1.0, "health_uri": None}
    drivers = make_drivers(params)
    assert [(d.member, d.endpoint) for d in drivers] == [
        ("web01", str(tmp_path / "a.conf")), ("web01", str(tmp_path / "b.conf")),
        ("web02", str(tmp_path / "a.conf")), ("web02", str(tmp_path / "b.conf"))]
    assert all(isinstance(d, NginxDriver) for d in drivers)
    assert drivers[0].instance is drivers[2].instance and drivers[0].instance is not drivers[1].instance
    with pytest.raises(RolloutError, match="address applies to one member"):
        make_drivers({**params, "address": "1.2.3.4:80"})
    lua = make_drivers({**params, "endpoints": ["http://127.0.0.1:1/x"], "nginx_mode": "lua"})
    assert all(isinstance(d, NginxLuaDriver) for d in lua) and lua[0].balancer is lua[1].balancer


def test_lua_drain_waits_for_in_flight_then_maint():
    with FakeAdmin() as admin:
        admin.members["web02"]["in_flight"] = [3, 3, 2, 1]  # the snapshot and find read 3, then the polls
        slept = []
        op = Operation(make_drivers(lua_params(admin.url)), Options(state="drained", poll_interval=0.01),
                       sleep=slept.append)
        result = op.run()
    assert list(admin.posts) == [("web02", {"state": "drain"}), ("web02", {"state": "maint"})]
    lb = result["lbs"][0]
    assert (lb["previous_state"], lb["state"], lb["sessions_at_start"], result["reloads"]) == ("ready", "maint", 3, 0)
    assert len(slept) >= 1 and result["ready_members"] == ["web01", "web03", "web04"]


def test_lua_drain_timeout_puts_the_member_back_and_force_only_marks_maint():
    with FakeAdmin() as admin:
        admin.members["web02"]["in_flight"] = [1] * 200
        clock = iter(float(i) for i in range(1000))
        op = Operation(make_drivers(lua_params(admin.url)), Options(state="drained", drain_timeout=3),
                       clock=lambda: next(clock), sleep=lambda s: None)
        with pytest.raises(RolloutError, match="still had work in flight") as err:
            op.run()
        assert "put back" in err.value.msg and admin.members["web02"]["state"] == "ready"
        admin.posts.clear()
        clock = iter(float(i) for i in range(1000))
        forced = Operation(make_drivers(lua_params(admin.url)),
                           Options(state="drained", drain_timeout=3, on_timeout="force"),
                           clock=lambda: next(clock), sleep=lambda s: None).run()
    assert forced["lbs"][0]["forced"] and forced["lbs"][0]["state"] == "maint"
    assert admin.posts == [("web02", {"state": "drain"}), ("web02", {"state": "maint"})]


def test_lua_batch_capacity_guard_counts_every_leaving_member():
    with FakeAdmin() as admin:
        params = lua_params(admin.url, member=None, members=["web01", "web02"])
        with pytest.raises(RolloutError, match="refusing to take web01, web02 out") as err:
            Operation(make_drivers(params), Options(state="disabled", min_ready=3)).run()
        assert err.value.details["ready_members"] == ["web03", "web04"] and admin.posts == []
        result = Operation(make_drivers(params), Options(state="disabled", min_ready=2)).run()
    assert result["members"] == ["web01", "web02"] and result["member"] is None
    assert [lb["state"] for lb in result["lbs"]] == ["maint", "maint"]
    assert set(result["diff"]["after"]) == {f"{admin.url} web01", f"{admin.url} web02"}


def test_lua_enable_with_weight_and_warmup():
    with FakeAdmin() as admin:
        admin.members["web02"]["state"] = "maint"
        result = Operation(make_drivers(lua_params(admin.url)),
                           Options(state="enabled", weight=50, warmup=[{"weight": 10, "pause": 0}]),
                           sleep=lambda s: None).run()
    assert admin.posts == [("web02", {"weight": "10"}), ("web02", {"state": "ready"}), ("web02", {"weight": "50"})]
    assert (result["lbs"][0]["state"], result["lbs"][0]["weight"]) == ("ready", 50)


# --------------------------------------------------------------------------- reload mode: batches


def reload_instance(tmp_path: Path, test_ok: bool = True) -> tuple[NginxInstance, list]:
    script = tmp_path / "nginx"
    script.write_text(f"#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -t ] && {{ echo 'bad' >&2; exit "
                      f"{0 if test_ok else 1}; }}; done\nexit 0\n")
    script.chmod(0o755)
    upstream = tmp_path / "upstream_app.conf"
    upstream.write_text(LAB_STYLE)
    (tmp_path / "nginx.pid").write_text(f"{os.getpid()}\n")
    nginx = NginxInstance(upstream_file=str(upstream), pidfile=str(tmp_path / "nginx.pid"), binary=str(script),
                          timeout=0.3)
    reloads: list = []
    nginx.reload = lambda old: reloads.append(dict(old))  # the lab's real nginx proves the reload itself
    return nginx, reloads


def test_deferred_changes_are_one_edit_one_test_one_reload(tmp_path):
    nginx, reloads = reload_instance(tmp_path)
    with nginx.deferred():
        first = nginx.change("app", "127.0.11.1:8080", None, down=True)
        second = nginx.change("app", "127.0.11.2:8080", None, down=True, weight=2)
        assert Path(nginx.upstream_file).read_text() == LAB_STYLE  # nothing written inside the block
    text = Path(nginx.upstream_file).read_text()
    assert "127.0.11.1:8080 max_fails=1 fail_timeout=2s down;" in text
    assert "127.0.11.2:8080 max_fails=1 fail_timeout=2s down weight=2;" in text
    assert "127.0.11.3:8080 max_fails=1 fail_timeout=2s;" in text
    assert len(reloads) == 1 and nginx.reloads == 1
    assert first is second  # every driver of the batch waits for the same old workers


def test_deferred_batch_rejected_by_nginx_t_restores_the_file(tmp_path):
    nginx, reloads = reload_instance(tmp_path, test_ok=False)
    with pytest.raises(NginxError, match="nginx -t rejected") as err:
        with nginx.deferred():
            nginx.change("app", "127.0.11.1:8080", None, down=True)
            nginx.change("app", "127.0.11.2:8080", None, down=True)
    assert err.value.details["restored"] is True and reloads == []
    assert Path(nginx.upstream_file).read_text() == LAB_STYLE


def test_deferred_batch_with_an_unknown_member_changes_nothing(tmp_path):
    nginx, reloads = reload_instance(tmp_path)
    with pytest.raises(NginxError, match="no member 'web09'"):
        with nginx.deferred():
            nginx.change("app", "127.0.11.1:8080", None, down=True)
            nginx.change("app", "web09", None, down=True)
    assert Path(nginx.upstream_file).read_text() == LAB_STYLE and reloads == []


def test_an_error_inside_the_block_applies_nothing(tmp_path):
    nginx, reloads = reload_instance(tmp_path)
    with pytest.raises(RuntimeError):
        with nginx.deferred():
            nginx.change("app", "127.0.11.1:8080", None, down=True)
            raise RuntimeError("interrupted")
    assert Path(nginx.upstream_file).read_text() == LAB_STYLE and reloads == []
    assert nginx.change("app", "127.0.11.1:8080", None, down=True) == {} and len(reloads) == 1  # not deferred now


def test_operation_on_a_batch_reloads_once_per_step(tmp_path, monkeypatch):
    nginx, reloads = reload_instance(tmp_path)
    params = {"backend": "nginx", "endpoints": [nginx.upstream_file], "pool": "app",
              "members": ["127.0.11.1:8080", "127.0.11.2:8080"], "address": None, "timeout": 0.3,
              "health_uri": None}
    drivers = make_drivers(params)
    for d in drivers:
        d.instance = nginx
    monkeypatch.setattr(NginxInstance, "workers", lambda self: {})
    result = Operation(drivers, Options(state="disabled", min_ready=1)).run()
    assert result["reloads"] == 1 and len(reloads) == 1
    assert [lb["state"] for lb in result["lbs"]] == ["maint", "maint"]
    result = Operation(drivers, Options(state="enabled")).run()
    assert len(reloads) == 2 and Path(nginx.upstream_file).read_text() == LAB_STYLE


# --------------------------------------------------------------------------- reload mode: one reload per batch step


def _grouped_change(tmp_path: Path, member: str, window: float, out, batch_size: int = 3) -> None:
    """In its own process, as each host's lb_member task is: one change through the group commit."""
    nginx = NginxInstance(upstream_file=str(tmp_path / "upstream_app.conf"), pidfile=str(tmp_path / "nginx.pid"),
                          binary=str(tmp_path / "nginx"), timeout=0.3, batch_window=window, batch_size=batch_size)
    log = tmp_path / "reloads.log"
    nginx.reload = lambda old: log.open("a").write(f"{os.getpid()}\n")
    try:
        nginx.change("app", member, None, down=True)
        out.put((member, nginx.reloads, None))
    except NginxError as exc:
        out.put((member, nginx.reloads, exc.msg))


def test_the_changes_of_one_batch_step_from_several_processes_share_one_reload(tmp_path):
    import multiprocessing

    reload_instance(tmp_path)  # the upstream file and the fake nginx
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_grouped_change, args=(tmp_path, m, 8.0, out))
             for m in ("127.0.11.1:8080", "127.0.11.2:8080", "127.0.11.3:8080")]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    results = sorted(out.get(timeout=20) for _proc in procs)
    for proc in procs:
        proc.join(10)
    assert time.monotonic() - started < 6  # the three were there: nobody waited out the 8 s window
    text = (tmp_path / "upstream_app.conf").read_text()
    assert text.count(" down;") == 3, text
    assert len((tmp_path / "reloads.log").read_text().split()) == 1  # one reload for the three hosts
    assert sorted(r[1] for r in results) == [0, 0, 1] and all(r[2] is None for r in results)
    assert not list((tmp_path / ".sre-rollout-pending-upstream_app.conf").iterdir())  # nothing left behind


def test_group_commit_drops_the_ticket_of_a_process_that_is_gone_and_shares_an_error(tmp_path):
    nginx, reloads = reload_instance(tmp_path, test_ok=False)
    nginx.batch_window = 0.05
    spool = tmp_path / ".sre-rollout-pending-upstream_app.conf"
    spool.mkdir()
    dead = 2 ** 22 + 12345  # above pid_max's default: no such process
    (spool / f"{dead}-1.json").write_text(json.dumps({"pid": dead, "changes": [["app", "127.0.11.3:8080", None,
                                                                               True, None]]}))
    with pytest.raises(NginxError, match="nginx -t rejected"):
        nginx.change("app", "127.0.11.1:8080", None, down=True)
    assert (tmp_path / "upstream_app.conf").read_text() == LAB_STYLE and reloads == []
    assert not list(spool.iterdir())


def test_batch_window_is_an_nginx_option_and_is_checked(tmp_path):
    [driver] = make_drivers({"lbs": [{"name": "ng", "kind": "nginx", "endpoints": [str(tmp_path / "u.conf")],
                                      "pool": "app", "member": "web01", "options": {"batch_window": 0.5}}],
                             "timeout": 1.0})
    assert driver.instance.batch_window == 0.5
    with pytest.raises(RolloutError, match="batch_window must be between 0 and 10"):
        make_drivers({"lbs": [{"name": "ng", "kind": "nginx", "endpoints": [str(tmp_path / "u.conf")],
                               "pool": "app", "member": "web01", "options": {"batch_window": 60}}], "timeout": 1.0})


def test_a_batch_smaller_than_announced_waits_out_the_window_then_shares_one_reload(tmp_path):
    import multiprocessing

    reload_instance(tmp_path)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    # three announced, two come (the third host was already done): one reload after the window
    procs = [ctx.Process(target=_grouped_change, args=(tmp_path, m, 1.0, out))
             for m in ("127.0.11.1:8080", "127.0.11.2:8080")]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=20) for _proc in procs]
    for proc in procs:
        proc.join(10)
    assert len((tmp_path / "reloads.log").read_text().split()) == 1 and all(r[2] is None for r in results)
    assert (tmp_path / "upstream_app.conf").read_text().count(" down;") == 2
