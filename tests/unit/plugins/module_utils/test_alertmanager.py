"""Unit tests of the Alertmanager client: matcher parsing, identity, time, error paths.

The HTTP tests use a small fake Alertmanager (``http.server`` in a thread) for the
error paths and the decision logic; the real behaviour against Alertmanager 0.25 is
proven in tests/integration/test_alertmanager_silence.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.sre.rollout.plugins.module_utils._alertmanager import (
    AlertmanagerClient,
    AlertmanagerError,
    Matcher,
    SilenceIdentity,
    build_request,
    compose_comment,
    ensure_silence,
    format_time,
    parse_duration,
    parse_matcher,
    parse_matchers,
    parse_time,
    release_id_of,
    remove_silences,
)
from ansible_collections.sre.rollout.plugins.module_utils._common import RolloutError

NOW = datetime(2030, 1, 31, 12, 0, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- matcher parsing


@pytest.mark.parametrize("text, expected", [
    ("host=web01", Matcher("host", "web01", False, True)),
    ("host!=web01", Matcher("host", "web01", False, False)),
    ("instance=~web01.*", Matcher("instance", "web01.*", True, True)),
    ("instance!~web0[12].*", Matcher("instance", "web0[12].*", True, False)),
    (' job = "a b" ', Matcher("job", "a b", False, True)),
    ('job="say \\"hi\\" \\\\ there"', Matcher("job", 'say "hi" \\ there', False, True)),
    ("job='single'", Matcher("job", "single", False, True)),
    ("path=a=b", Matcher("path", "a=b", False, True)),
    ("empty=", Matcher("empty", "", False, True)),
    ("_x9=1", Matcher("_x9", "1", False, True)),
])
def test_parse_matcher_strings(text, expected):
    assert parse_matcher(text) == expected


@pytest.mark.parametrize("text", ["host", "9host=a", "ho st=a", "=a", "host~a", ""])
def test_parse_matcher_rejects_bad_strings(text):
    with pytest.raises(AlertmanagerError) as info:
        parse_matcher(text)
    assert "name=value" in info.value.msg


def test_parse_matcher_dicts_in_both_spellings():
    assert parse_matcher({"name": "host", "value": "web01"}) == Matcher("host", "web01")
    assert parse_matcher({"name": "sev", "value": "crit|page", "is_regex": True, "is_equal": False}) == \
        Matcher("sev", "crit|page", True, False)
    assert parse_matcher({"name": "sev", "value": "x", "isRegex": True, "isEqual": "false"}) == \
        Matcher("sev", "x", True, False)
    assert parse_matcher({"name": "port", "value": 8080}) == Matcher("port", "8080")


@pytest.mark.parametrize("item, fragment", [
    ({"name": "host"}, "value must be a string"),
    ({"value": "x"}, "name must be a label name"),
    ({"name": "bad-name", "value": "x"}, "name must be a label name"),
    ({"name": "host", "value": "x", "regex": True}, "unknown keys ['regex']"),
    ({"name": "host", "value": "x", "is_regex": "maybe"}, "is_regex must be true or false"),
    (42, "is a int"),
])
def test_parse_matcher_rejects_bad_items(item, fragment):
    with pytest.raises(AlertmanagerError) as info:
        parse_matcher(item)
    assert fragment in info.value.msg


def test_parse_matchers_keeps_order_and_drops_duplicates():
    parsed = parse_matchers(["host=web01", "instance=~web01.*", {"name": "host", "value": "web01"}])
    assert parsed == [Matcher("host", "web01"), Matcher("instance", "web01.*", True, True)]


def test_parse_matchers_needs_one():
    with pytest.raises(AlertmanagerError, match="at least one matcher"):
        parse_matchers([])
    with pytest.raises(AlertmanagerError, match="at least one matcher"):
        parse_matchers(None)


@pytest.mark.parametrize("items", [["host=~.*"], ["host="], ["host!=web01"], ["host!~web.+", "job=~.*"]])
def test_parse_matchers_refuses_to_mute_everything(items):
    with pytest.raises(AlertmanagerError, match="all match the empty string"):
        parse_matchers(items)


def test_parse_matchers_accepts_an_empty_matcher_next_to_a_real_one():
    assert len(parse_matchers(["host=web01", "canary="])) == 2


def test_parse_matchers_rejects_an_invalid_regex():
    with pytest.raises(AlertmanagerError, match="invalid regular expression"):
        parse_matchers(["host=~web(01"])


def test_matcher_api_and_filter_forms():
    m = Matcher("job", 'we"i\\rd\nx', True, False)
    assert m.to_api() == {"name": "job", "value": 'we"i\\rd\nx', "isRegex": True, "isEqual": False}
    assert m.to_filter() == 'job!~"we\\"i\\\\rd\\nx"'
    assert Matcher.from_api(m.to_api()) == m
    assert Matcher.from_api({"name": "a", "value": "b", "isRegex": False}) == Matcher("a", "b")  # pre-0.22: no isEqual
    assert str(Matcher("instance", "web01.*", True, True)) == "instance=~web01.*"


# --------------------------------------------------------------------------- durations and times


@pytest.mark.parametrize("value, seconds", [
    (90, 90), (1.5, 1.5), ("3600", 3600), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400),
    ("1d", 86400), ("1w", 604800), (" 2H ", 7200), ("0.5h", 1800),
])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value, fragment", [
    ("-5m", "must be positive"), (-1, "must be positive"), (0, "must be positive"), ("0s", "must be positive"),
    ("soon", "is not a duration"), ("5 minutes", "is not a duration"), (True, "is not a duration"),
    (None, "is not a duration"),
])
def test_parse_duration_rejects(value, fragment):
    with pytest.raises(AlertmanagerError) as info:
        parse_duration(value)
    assert fragment in info.value.msg


@pytest.mark.parametrize("text, expected", [
    ("2030-01-31T12:00:00Z", NOW),
    ("2030-01-31T12:00:00.000Z", NOW),
    ("2030-01-31T12:00:00.123456789Z", NOW + timedelta(microseconds=123456)),
    ("2030-01-31T14:00:00+02:00", NOW),
    ("2030-01-31T07:00:00-0500", NOW),
    ("2030-01-31 12:00Z", NOW),
])
def test_parse_time(text, expected):
    assert parse_time(text, "ends_at") == expected


@pytest.mark.parametrize("text, fragment", [
    ("2030-01-31T12:00:00", "has no time zone"),
    ("tomorrow", "is not an ISO 8601 time"),
    ("2030-02-31T12:00:00Z", "is not a valid time"),
])
def test_parse_time_rejects(text, fragment):
    with pytest.raises(AlertmanagerError) as info:
        parse_time(text, "ends_at")
    assert fragment in info.value.msg and "ends_at" in info.value.msg


def test_format_time_is_utc_with_milliseconds():
    moment = datetime(2030, 1, 31, 14, 0, 0, 987654, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(moment) == "2030-01-31T12:00:00.987Z"


# --------------------------------------------------------------------------- comment and identity


def test_compose_comment_and_release_id_of():
    comment = compose_comment("r-2030-01-31.1", "release app-1.1.0 onto web01")
    assert comment == "[sre.rollout release=r-2030-01-31.1] release app-1.1.0 onto web01"
    assert release_id_of(comment) == "r-2030-01-31.1"
    assert release_id_of("release app-1.1.0") is None
    assert release_id_of(None) is None
    assert compose_comment(None, None) == "silenced by sre.rollout during a release"


@pytest.mark.parametrize("release_id", ["has space", "br]acket", "[x"])
def test_compose_comment_rejects_bad_release_ids(release_id):
    with pytest.raises(AlertmanagerError, match="release_id"):
        compose_comment(release_id, "why")


def test_compose_comment_rejects_a_hand_written_tag():
    with pytest.raises(AlertmanagerError, match="give the release id as release_id"):
        compose_comment(None, "[sre.rollout release=r1] why")


def api_silence(matchers, created_by="sre.rollout", comment="[sre.rollout release=r1] why", state="active"):
    return {"id": "x", "status": {"state": state}, "createdBy": created_by, "comment": comment,
            "matchers": [parse_matcher(m).to_api() for m in matchers],
            "startsAt": "2030-01-31T12:00:00.000Z", "endsAt": "2030-01-31T13:00:00.000Z"}


def test_identity_ignores_matcher_order():
    identity = SilenceIdentity.of(parse_matchers(["instance=~web01.*", "host=web01"]), "sre.rollout", "r1")
    assert identity.matches(api_silence(["host=web01", "instance=~web01.*"]))


@pytest.mark.parametrize("silence", [
    api_silence(["host=web01"]),                                              # fewer matchers
    api_silence(["host=web01", "instance=~web01.*", "job=app"]),              # more matchers
    api_silence(["host=web01", "instance=web01.*"]),                          # equality, not regex
    api_silence(["host=web01", "instance!~web01.*"]),                         # negated
    api_silence(["host=web01", "instance=~web01.*"], created_by="alice"),     # other creator
    api_silence(["host=web01", "instance=~web01.*"], comment="[sre.rollout release=r2] why"),  # other release
    api_silence(["host=web01", "instance=~web01.*"], comment="why"),          # no release tag
])
def test_identity_rejects_different_silences(silence):
    identity = SilenceIdentity.of(parse_matchers(["instance=~web01.*", "host=web01"]), "sre.rollout", "r1")
    assert not identity.matches(silence)


def test_identity_without_release_matches_only_untagged_comments():
    identity = SilenceIdentity.of(parse_matchers(["host=web01"]), "sre.rollout", None)
    assert identity.matches(api_silence(["host=web01"], comment="maintenance"))
    assert not identity.matches(api_silence(["host=web01"]))


# --------------------------------------------------------------------------- request validation


def test_build_request_defaults_to_one_hour_from_now():
    request = build_request(["host=web01"], release_id="r1", now=NOW)
    assert (request.starts_at, request.ends_at) == (NOW, NOW + timedelta(hours=1))
    assert request.comment.startswith("[sre.rollout release=r1] ")
    assert request.to_api()["endsAt"] == "2030-01-31T13:00:00.000Z"


def test_build_request_with_start_and_duration_or_end():
    request = build_request(["host=web01"], starts_at="2030-01-31T18:00:00Z", duration="30m", now=NOW)
    assert request.ends_at == NOW + timedelta(hours=6, minutes=30)
    request = build_request(["host=web01"], ends_at="2030-01-31T12:45:00+00:00", now=NOW)
    assert request.ends_at == NOW + timedelta(minutes=45)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"duration": "1h", "ends_at": "2030-01-31T13:00:00Z"}, "either duration or ends_at"),
    ({"duration": "-30m"}, "must be positive"),
    ({"duration": "25h"}, "longer than max_duration 24h"),
    ({"duration": "2h", "max_duration": "90m"}, "longer than max_duration 1h30m"),
    ({"ends_at": "2030-02-02T12:00:00Z"}, "longer than max_duration"),
    ({"ends_at": "2030-01-31T11:00:00Z"}, "is not in the future"),
    ({"starts_at": "2030-01-31T15:00:00Z", "ends_at": "2030-01-31T14:00:00Z"}, "before it starts"),
    ({"created_by": " "}, "created_by is empty"),
    ({"tolerance": "-1m"}, "must be positive"),
])
def test_build_request_rejects(kwargs, fragment):
    with pytest.raises(AlertmanagerError) as info:
        build_request(["host=web01"], now=NOW, **kwargs)
    assert fragment in info.value.msg
    assert isinstance(info.value, RolloutError)


def test_max_duration_counts_from_a_future_start():
    request = build_request(["host=web01"], starts_at="2030-02-05T12:00:00Z", duration="23h", now=NOW)
    assert request.ends_at - request.starts_at == timedelta(hours=23)


# --------------------------------------------------------------------------- a fake Alertmanager


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the timeout test's client hangs up before the answer: expected, not worth a traceback


class FakeAlertmanager:
    """Just enough of the v2 silences API, plus scripted failures, recorded requests."""

    def __init__(self) -> None:
        self.silences: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.scripted: list[tuple[str, str, int, str]] = []  # (method, path prefix, status, body)
        self.replace_on_update = False
        self.reject_filters = False
        self.delay = 0.0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                fake.requests.append({
                    "method": self.command, "path": parts.path, "query": parse_qs(parts.query),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": json.loads(body) if body else None,
                })
                if fake.delay:
                    time.sleep(fake.delay)
                status, payload, ctype = fake.answer(self.command, parts.path, parse_qs(parts.query), body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _handle

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, method, path, query, body):
        for i, (s_method, prefix, status, text) in enumerate(self.scripted):
            if s_method == method and path.startswith(prefix):
                del self.scripted[i]
                return status, text.encode(), "text/plain"
        if method == "GET" and path == "/api/v2/silences":
            if query.get("filter") and self.reject_filters:
                return 400, b'"bad matcher format"', "application/json"
            return 200, [s for s in self.silences.values() if self._kept(s, query.get("filter", []))], \
                "application/json"
        if path.startswith("/api/v2/silence/"):
            sid = path.rsplit("/", 1)[1]
            if sid not in self.silences:
                return 404, b'"silence not found"', "application/json"
            if method == "DELETE":
                self.silences[sid].update(status={"state": "expired"}, endsAt=format_time(datetime.now(timezone.utc)))
                return 200, b"", "application/json"
            return 200, self.silences[sid], "application/json"
        if method == "POST" and path == "/api/v2/silences":
            return self._post(json.loads(body))
        return 404, b"no route", "text/plain"

    @staticmethod
    def _kept(silence, filters):
        mine = {Matcher.from_api(m).to_filter() for m in silence["matchers"]}
        return all(f in mine for f in filters)

    def _post(self, data):
        sid = data.pop("id", None)
        if sid and sid not in self.silences:
            return 404, b'"silence not found"', "application/json"
        if sid and self.replace_on_update:
            self.silences[sid]["status"] = {"state": "expired"}
            sid = None
        sid = sid or str(uuid.uuid4())
        start = parse_time(data["startsAt"], "startsAt")
        state = "pending" if start > datetime.now(timezone.utc) else "active"
        self.silences[sid] = dict(data, id=sid, status={"state": state}, updatedAt=format_time(NOW))
        return 200, {"silenceID": sid}, "application/json"

    def add(self, matchers, minutes=60, release="r1", created_by="sre.rollout", state="active", start_minutes=-1,
            comment="why"):
        now = datetime.now(timezone.utc)
        sid = str(uuid.uuid4())
        self.silences[sid] = {
            "id": sid, "status": {"state": state}, "createdBy": created_by,
            "comment": compose_comment(release, comment),
            "matchers": [m.to_api() for m in parse_matchers(matchers)],
            "startsAt": format_time(now + timedelta(minutes=start_minutes)),
            "endsAt": format_time(now + timedelta(minutes=minutes)),
        }
        return sid

    def calls(self, method):
        return [r for r in self.requests if r["method"] == method]


@pytest.fixture()
def fake():
    server = FakeAlertmanager()
    yield server
    server.close()


def client_for(fake, **kwargs):
    return AlertmanagerClient(fake.url, **kwargs)


def request(duration="30m", matchers=("instance=~web01.*", "host=web01"), **kwargs):
    return build_request(list(matchers), release_id=kwargs.pop("release_id", "r1"),
                         comment=kwargs.pop("comment", "why"), duration=duration, **kwargs)


# --------------------------------------------------------------------------- ensure / remove logic


def test_create_then_unchanged(fake):
    client = client_for(fake)
    first = ensure_silence(client, request())
    assert (first["action"], first["changed"]) == ("created", True)
    assert first["silence"]["id"] == first["silence_id"]
    assert first["silence_id"] in fake.silences
    assert first["silence"]["comment"] == "[sre.rollout release=r1] why"
    post = fake.calls("POST")[0]["body"]
    assert "id" not in post and post["createdBy"] == "sre.rollout"
    again = ensure_silence(client, request(matchers=("host=web01", "instance=~web01.*")))
    assert (again["action"], again["changed"], again["silence_id"]) == ("unchanged", False, first["silence_id"])
    assert len(fake.calls("POST")) == 1
    assert again["diff"]["before"] == again["diff"]["after"]


def test_the_list_call_filters_by_every_matcher(fake):
    ensure_silence(client_for(fake), request())
    assert fake.calls("GET")[0]["query"]["filter"] == ['instance=~"web01.*"', 'host="web01"']


def test_a_rejected_filter_falls_back_to_the_full_list(fake):
    fake.reject_filters = True
    sid = fake.add(["instance=~web01.*", "host=web01"])
    result = ensure_silence(client_for(fake), request())
    assert (result["action"], result["silence_id"]) == ("unchanged", sid)


@pytest.mark.parametrize("other", [
    {"release": "r2"}, {"created_by": "alice"}, {"state": "expired"}, {"matchers": ["host=web01"]},
])
def test_silences_of_another_identity_or_expired_are_not_reused(fake, other):
    fake.add(other.pop("matchers", ["instance=~web01.*", "host=web01"]), **other)
    result = ensure_silence(client_for(fake), request())
    assert result["action"] == "created"
    assert len(fake.silences) == 2


def test_extends_a_silence_that_ends_too_early_keeping_matchers_and_start(fake):
    sid = fake.add(["host=web01", "instance=~web01.*"], minutes=10)
    before = dict(fake.silences[sid])
    result = ensure_silence(client_for(fake), request(duration="30m"))
    assert (result["action"], result["changed"], result["silence_id"]) == ("extended", True, sid)
    body = fake.calls("POST")[0]["body"]
    assert body["id"] == sid
    assert body["matchers"] == before["matchers"]  # same order: Alertmanager only updates identical matchers
    assert body["startsAt"] == before["startsAt"]
    assert parse_time(body["endsAt"], "e") - parse_time(before["endsAt"], "e") > timedelta(minutes=19)
    assert result["diff"]["before"]["endsAt"] == before["endsAt"]
    assert result["diff"]["after"]["endsAt"] == body["endsAt"]
    assert "previous_silence_id" not in result


def test_within_tolerance_is_unchanged(fake):
    fake.add(["host=web01", "instance=~web01.*"], minutes=29)
    result = ensure_silence(client_for(fake), request(duration="30m", tolerance="2m"))
    assert (result["action"], result["changed"]) == ("unchanged", False)
    result = ensure_silence(client_for(fake), request(duration="30m", tolerance=0))
    assert result["action"] == "extended"


def test_never_shortens_and_says_so(fake):
    sid = fake.add(["host=web01", "instance=~web01.*"], minutes=120)
    result = ensure_silence(client_for(fake), request(duration="30m"))
    assert (result["action"], result["changed"], result["silence_id"]) == ("unchanged", False, sid)
    assert "never shortened" in result["warnings"][0] and sid in result["warnings"][0]
    assert not fake.calls("POST")


def test_a_new_comment_updates_in_place(fake):
    sid = fake.add(["host=web01", "instance=~web01.*"], minutes=30, comment="old reason")
    result = ensure_silence(client_for(fake), request(duration="30m", comment="new reason"))
    assert (result["action"], result["silence_id"]) == ("updated", sid)
    assert fake.silences[sid]["comment"] == "[sre.rollout release=r1] new reason"


def test_a_pending_silence_is_moved_earlier(fake):
    sid = fake.add(["host=web01", "instance=~web01.*"], minutes=90, state="pending", start_minutes=60)
    result = ensure_silence(client_for(fake), request(duration="30m"))
    assert result["action"] == "extended"
    assert parse_time(fake.silences[sid]["startsAt"], "s") <= datetime.now(timezone.utc)


def test_reports_the_replacement_when_alertmanager_does_not_update_in_place(fake):
    fake.replace_on_update = True
    old = fake.add(["host=web01", "instance=~web01.*"], minutes=5)
    result = ensure_silence(client_for(fake), request(duration="30m"))
    assert result["action"] == "extended"
    assert result["previous_silence_id"] == old != result["silence_id"]


def test_of_several_live_duplicates_the_longest_is_kept_and_reported(fake):
    short = fake.add(["host=web01", "instance=~web01.*"], minutes=40)
    long = fake.add(["host=web01", "instance=~web01.*"], minutes=50)
    result = ensure_silence(client_for(fake), request(duration="30m"))
    assert (result["action"], result["silence_id"]) == ("unchanged", long)
    assert short in result["warnings"][0]


def test_check_mode_changes_nothing(fake):
    client = client_for(fake)
    created = ensure_silence(client, request(), check_mode=True)
    assert (created["action"], created["changed"], created["silence_id"]) == ("created", True, None)
    assert created["silence"]["endsAt"] and not fake.silences
    sid = fake.add(["host=web01", "instance=~web01.*"], minutes=5)
    extended = ensure_silence(client, request(duration="30m"), check_mode=True)
    assert (extended["action"], extended["changed"]) == ("extended", True)
    gone = remove_silences(client, silence_id=sid, check_mode=True)
    assert (gone["action"], gone["changed"]) == ("expired", True)
    assert fake.silences[sid]["status"]["state"] == "active"
    assert not fake.calls("POST") and not fake.calls("DELETE")


def test_remove_by_identity_expires_every_live_copy(fake):
    a = fake.add(["host=web01", "instance=~web01.*"])
    b = fake.add(["instance=~web01.*", "host=web01"])
    other = fake.add(["host=web01", "instance=~web01.*"], release="r2")
    req = request()
    result = remove_silences(client_for(fake), identity=req.identity, matchers=req.matchers)
    assert (result["action"], result["changed"]) == ("expired", True)
    assert {s["id"] for s in result["expired"]} == {a, b}
    assert fake.silences[other]["status"]["state"] == "active"
    again = remove_silences(client_for(fake), identity=req.identity, matchers=req.matchers)
    assert (again["action"], again["changed"], again["expired"]) == ("absent", False, [])


def test_remove_by_id_twice_and_unknown_id(fake):
    sid = fake.add(["host=web01"])
    client = client_for(fake)
    first = remove_silences(client, silence_id=sid)
    assert (first["action"], first["changed"], first["silence_id"]) == ("expired", True, sid)
    assert first["expired"][0]["state"] == "active"
    second = remove_silences(client, silence_id=sid)
    assert (second["action"], second["changed"]) == ("absent", False)
    assert len(fake.calls("DELETE")) == 1
    unknown = remove_silences(client, silence_id=str(uuid.uuid4()))
    assert (unknown["action"], unknown["changed"]) == ("absent", False)
    assert "knows no silence" in unknown["warnings"][0]


def test_remove_tolerates_a_silence_that_ended_meanwhile(fake):
    sid = fake.add(["host=web01"])
    fake.scripted.append(("DELETE", "/api/v2/silence/", 500, "silence already expired"))
    original = fake.answer

    def expire_first(method, path, query, body):
        if method == "DELETE":
            fake.silences[sid]["status"] = {"state": "expired"}
        return original(method, path, query, body)

    fake.answer = expire_first
    result = remove_silences(client_for(fake), silence_id=sid)
    assert result["action"] == "expired"


def test_remove_reraises_when_the_silence_stays_live(fake):
    sid = fake.add(["host=web01"])
    fake.scripted.append(("DELETE", "/api/v2/silence/", 500, "storage broken"))
    with pytest.raises(AlertmanagerError) as info:
        remove_silences(client_for(fake), silence_id=sid)
    assert "HTTP 500" in info.value.msg and "storage broken" in info.value.msg


def test_remove_needs_an_id_or_an_identity(fake):
    with pytest.raises(AlertmanagerError, match="needs silence_id"):
        remove_silences(client_for(fake))


# --------------------------------------------------------------------------- HTTP error paths


def test_token_is_sent_as_bearer_and_never_in_errors(fake):
    fake.scripted.append(("GET", "/api/v2/silences", 401, "unauthorized"))
    client = client_for(fake, token="s3cr3t-token", headers={"X-Scope-OrgID": "team-a"})
    with pytest.raises(AlertmanagerError) as info:
        client.list_silences()
    sent = fake.requests[0]["headers"]
    assert sent["authorization"] == "Bearer s3cr3t-token" and sent["x-scope-orgid"] == "team-a"
    assert "s3cr3t-token" not in info.value.msg and "s3cr3t-token" not in json.dumps(info.value.details)
    assert "HTTP 401" in info.value.msg and "the credentials given were refused" in info.value.msg


@pytest.mark.parametrize("status, body, hint", [
    (400, '"silence invalid: start time must be before end time"', "fix what the body names"),
    (403, "forbidden", "permissions"),
    (404, "page not found", "base URL"),
    (500, "boom", "check its log"),
    (503, "unavailable", "check its log"),
    (418, "teapot", "unexpected answer"),
])
def test_http_errors_name_url_status_and_body(fake, status, body, hint):
    fake.scripted.append(("POST", "/api/v2/silences", status, body))
    with pytest.raises(AlertmanagerError) as info:
        ensure_silence(client_for(fake), request())
    err = info.value
    assert fake.url in err.msg and f"HTTP {status}" in err.msg and body in err.msg and hint in err.msg
    assert "POST" in err.msg and "/api/v2/silences" in err.msg
    assert (err.details["status"], err.details["url"], err.details["body"]) == (status, fake.url, body)


def test_a_long_error_body_is_cut(fake):
    fake.scripted.append(("GET", "/api/v2/silences", 500, "x" * 5000))
    with pytest.raises(AlertmanagerError) as info:
        client_for(fake).list_silences()
    assert len(info.value.details["body"]) == 500


def test_a_body_that_is_not_json(fake):
    fake.scripted.append(("GET", "/api/v2/silences", 200, "<html>login</html>"))
    with pytest.raises(AlertmanagerError) as info:
        client_for(fake).list_silences()
    assert "not JSON" in info.value.msg and "<html>login" in info.value.msg and fake.url in info.value.msg


def test_a_list_that_is_not_a_list(fake):
    original = fake.answer
    fake.answer = lambda m, p, q, b: (200, {"data": []}, "application/json") if m == "GET" else original(m, p, q, b)
    with pytest.raises(AlertmanagerError, match="not a list"):
        client_for(fake).list_silences()


def test_a_post_without_silence_id(fake):
    fake.scripted.append(("POST", "/api/v2/silences", 200, "{}"))
    with pytest.raises(AlertmanagerError, match="without a silenceID"):
        ensure_silence(client_for(fake), request())


def test_connection_refused_names_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nobody listens there
    client = AlertmanagerClient(f"http://127.0.0.1:{port}", token="s3cr3t-token")
    with pytest.raises(AlertmanagerError) as info:
        client.list_silences()
    assert f"cannot reach Alertmanager at http://127.0.0.1:{port}" in info.value.msg
    assert "refused" in info.value.msg.lower() and "s3cr3t-token" not in info.value.msg
    assert info.value.details["status"] is None


def test_timeout_names_the_url(fake):
    fake.delay = 1.0
    client = client_for(fake, timeout=0.2)
    with pytest.raises(AlertmanagerError) as info:
        client.list_silences()
    assert f"cannot reach Alertmanager at {fake.url}" in info.value.msg and "timed out" in info.value.msg


@pytest.mark.parametrize("url", ["", "alertmanager:9093", "ftp://x", None])
def test_bad_urls_are_refused_before_any_call(url):
    with pytest.raises(AlertmanagerError, match="not an http"):
        AlertmanagerClient(url)


def test_url_normalisation(fake):
    for url in (fake.url, fake.url + "/", fake.url + "/api/v2", fake.url + "/api/v2/"):
        assert AlertmanagerClient(url).url == fake.url
    AlertmanagerClient(fake.url + "/api/v2/").list_silences()
    assert fake.requests[-1]["path"] == "/api/v2/silences"


def test_get_silence_of_an_unknown_or_malformed_id(fake):
    client = client_for(fake)
    assert client.get_silence(str(uuid.uuid4())) is None
    fake.scripted.append(("GET", "/api/v2/silence/", 422, "silenceID in path must be of type uuid"))
    assert client.get_silence("nope") is None
