"""Tests of hearth_limits against a real UNIX-socket HTTP server in a thread.

Run with the Synapse venv's Python (the module imports Synapse's MediaUploadLimit), from this
directory: ``python -m unittest -v test_hearth_limits``. supervisor/tests/it/limits_module.rs
runs it in ``make test``.

The ModuleApi is a fake that records the registered callbacks and runs ``defer_to_thread`` in
a real thread, joined at once. So a callback's coroutine finishes in one step, without a
reactor, and every request the server sees has gone through ``defer_to_thread``. Ages (cache,
stale answers, warnings) run on a clock the test moves; only the hanging-supervisor test
waits, for a 0.2 s timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
import time
import unittest
from urllib.parse import unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hearth_limits  # noqa: E402
from hearth_limits import HearthLimits  # noqa: E402
from synapse.config.repository import MediaUploadLimit  # noqa: E402
from synapse.module_api.errors import ConfigError  # noqa: E402

ANNA = "@anna:example.org"
BEN = "@ben:example.org"
INFO = "https://example.org/budget"
NOW_MS = 1_764_600_000_000
MONTH_START_MS = 1_764_543_600_000


def answer(user_id=ANNA, **fields):
    body = {
        "user_id": user_id,
        "month_start_ms": MONTH_START_MS,
        "uploaded_max_bytes": None,
        "stored_remaining_bytes": None,
        "blocked": False,
        "info_uri": INFO,
    }
    body.update(fields)
    return 200, json.dumps(body).encode()


class FakeSupervisor:
    """The supervisor's side of the socket: answers each request from `answers` (user id ->
    (status, body bytes); 404 for anyone else) and records the request heads. With `hang`, it
    accepts and reads but never answers."""

    def __init__(self, path):
        self.path = path
        self.answers = {}
        self.requests = []
        self.hang = False
        self._release = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                outer.requests.append(head.decode())
                if outer.hang:
                    outer._release.wait(10)
                    return
                target = head.split(b" ")[1].decode()
                user = target.rsplit("/", 1)[1]
                status, body = outer.answers.get(unquote(user), (404, b'{"errcode":"none"}'))
                reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
                self.request.sendall(
                    f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
                    + body
                )

        self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        os.unlink(self.path)


class FakeApi:
    def __init__(self):
        self.callbacks = {}
        self.threaded_calls = 0

    def register_media_repository_callbacks(self, **callbacks):
        self.callbacks.update(callbacks)

    async def defer_to_thread(self, f, *args, **kwargs):
        out = {}

        def run():
            try:
                out["value"] = f(*args, **kwargs)
            except BaseException as e:  # handed back to the caller below
                out["error"] = e

        self.threaded_calls += 1
        t = threading.Thread(target=run)
        t.start()
        t.join(30)
        assert not t.is_alive(), "the request did not end within 30 s"
        if "error" in out:
            raise out["error"]
        return out["value"]


class Clock:
    def __init__(self):
        self.mono = 1000.0
        self.wall_ms = NOW_MS


def run(coro):
    """Drives a callback's coroutine, which must finish without waiting on a reactor."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the callback waited on something other than defer_to_thread")


class Case(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="hearth-limits-")
        self.path = os.path.join(self.dir, "limits.sock")
        self.supervisor = FakeSupervisor(self.path)
        self.clock = Clock()

    def tearDown(self):
        if self.supervisor is not None:
            self.supervisor.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def module(self, **config):
        self.api = FakeApi()
        parsed = HearthLimits.parse_config({"socket": self.path, **config})
        return HearthLimits(
            parsed,
            self.api,
            monotonic=lambda: self.clock.mono,
            wall_ms=lambda: self.clock.wall_ms,
        )

    def limits(self, m, user=ANNA):
        return run(m.get_media_upload_limits_for_user(user))

    def supervisor_gone(self):
        self.supervisor.stop()
        self.supervisor = None


class Mapping(Case):
    def test_every_field_becomes_a_limit_largest_period_first(self):
        self.supervisor.answers[ANNA] = answer(
            uploaded_max_bytes=1_073_741_824, stored_remaining_bytes=52_428_800, blocked=True
        )
        got = self.limits(self.module())
        month_ms = NOW_MS - MONTH_START_MS
        self.assertEqual(
            got,
            [
                MediaUploadLimit(max_bytes=1_073_741_824, time_period_ms=month_ms, info_uri=INFO),
                MediaUploadLimit(max_bytes=52_428_800, time_period_ms=1, info_uri=INFO),
                MediaUploadLimit(max_bytes=0, time_period_ms=1, info_uri=INFO),
            ],
        )
        periods = [limit.time_period_ms for limit in got]
        self.assertEqual(periods, sorted(periods, reverse=True))

    def test_each_field_alone(self):
        cases = [
            (
                {"uploaded_max_bytes": 1000},
                [MediaUploadLimit(1000, NOW_MS - MONTH_START_MS, info_uri=INFO)],
            ),
            ({"stored_remaining_bytes": 500}, [MediaUploadLimit(500, 1, info_uri=INFO)]),
            # Over the storage budget already: nothing more may be stored.
            ({"stored_remaining_bytes": -20}, [MediaUploadLimit(0, 1, info_uri=INFO)]),
            ({"blocked": True}, [MediaUploadLimit(0, 1, info_uri=INFO)]),
            ({"blocked": True, "info_uri": None}, [MediaUploadLimit(0, 1, info_uri=None)]),
            # No budget of any kind: Synapse's configured defaults.
            ({}, None),
        ]
        for fields, want in cases:
            with self.subTest(fields=fields):
                self.supervisor.answers[ANNA] = answer(**fields)
                self.assertEqual(self.limits(self.module()), want)

    def test_the_month_grows_while_an_answer_is_cached(self):
        self.supervisor.answers[ANNA] = answer(uploaded_max_bytes=1000)
        m = self.module()
        self.assertEqual(self.limits(m)[0].time_period_ms, NOW_MS - MONTH_START_MS)
        self.clock.wall_ms += 5000
        self.clock.mono += 5
        self.assertEqual(self.limits(m)[0].time_period_ms, NOW_MS - MONTH_START_MS + 5000)
        self.assertEqual(len(self.supervisor.requests), 1)

    def test_a_month_that_starts_in_the_future_is_one_millisecond(self):
        # The wall clock behind the supervisor's (NTP not synced yet): the period stays valid.
        self.supervisor.answers[ANNA] = answer(uploaded_max_bytes=1000, month_start_ms=NOW_MS + 9)
        self.assertEqual(self.limits(self.module())[0].time_period_ms, 1)

    def test_the_request_is_plain_http_with_the_user_id_encoded(self):
        self.supervisor.answers[ANNA] = answer(blocked=True)
        m = self.module()
        self.limits(m)
        [head] = self.supervisor.requests
        lines = head.split("\r\n")
        self.assertEqual(lines[0], "GET /v1/limits/%40anna%3Aexample.org HTTP/1.1")
        self.assertIn("Host: hearth", lines)
        self.assertIn("Connection: close", lines)
        self.assertEqual(self.api.threaded_calls, 1, "the socket IO ran in defer_to_thread")

    def test_unknown_keys_in_the_answer_are_ignored(self):
        status, body = answer(blocked=True)
        body = json.dumps({**json.loads(body), "energy_wh": 12.5}).encode()
        self.supervisor.answers[ANNA] = (status, body)
        self.assertEqual(self.limits(self.module()), [MediaUploadLimit(0, 1, info_uri=INFO)])

    def test_no_budget_404_is_none_and_cached(self):
        m = self.module()
        self.assertIsNone(self.limits(m, BEN))
        self.assertIsNone(self.limits(m, BEN))
        self.assertEqual(len(self.supervisor.requests), 1)

    def test_both_callbacks_are_registered(self):
        m = self.module()
        self.assertEqual(
            self.api.callbacks,
            {
                "get_media_upload_limits_for_user": m.get_media_upload_limits_for_user,
                "on_media_upload_limit_exceeded": m.on_media_upload_limit_exceeded,
            },
        )

    def test_a_refusal_is_logged_with_sizes_only(self):
        m = self.module()
        with self.assertLogs("hearth_limits", "INFO") as logs:
            run(m.on_media_upload_limit_exceeded(ANNA, MediaUploadLimit(0, 1), 0, 2048))
        self.assertEqual(len(logs.records), 1)
        self.assertIn(ANNA, logs.output[0])
        self.assertIn("2048", logs.output[0])


class Caching(Case):
    def test_an_answer_is_reused_for_cache_s(self):
        self.supervisor.answers[ANNA] = answer(blocked=True)
        m = self.module(cache_s=30)
        self.limits(m)
        self.clock.mono += 29.9
        self.limits(m)
        self.assertEqual(len(self.supervisor.requests), 1)
        # Past cache_s the supervisor is asked again, and its new answer counts.
        self.supervisor.answers[ANNA] = answer()
        self.clock.mono += 0.2
        self.assertIsNone(self.limits(m))
        self.assertEqual(len(self.supervisor.requests), 2)

    def test_users_are_cached_apart(self):
        self.supervisor.answers[ANNA] = answer(blocked=True)
        m = self.module()
        self.assertIsNotNone(self.limits(m, ANNA))
        self.assertIsNone(self.limits(m, BEN))
        self.assertEqual(len(self.supervisor.requests), 2)

    def test_the_cache_keeps_the_newest_users(self):
        old, hearth_limits.MAX_USERS = hearth_limits.MAX_USERS, 3
        self.addCleanup(setattr, hearth_limits, "MAX_USERS", old)
        m = self.module()
        users = [f"@u{i}:example.org" for i in range(5)]
        for u in users:
            self.limits(m, u)
        self.assertEqual(list(m._cache), users[2:])


class Unreachability(Case):
    def test_gone_supervisor_last_answer_then_defaults(self):
        self.supervisor.answers[ANNA] = answer(stored_remaining_bytes=10)
        m = self.module(cache_s=30, stale_s=3600)
        want = [MediaUploadLimit(10, 1, info_uri=INFO)]
        self.assertEqual(self.limits(m), want)
        self.supervisor_gone()
        with self.assertLogs("hearth_limits", "WARNING") as logs:
            self.clock.mono += 60
            self.assertEqual(self.limits(m), want, "the last answer stands in")
            # A member never asked about gets Synapse's defaults at once.
            self.assertIsNone(self.limits(m, BEN))
            self.clock.mono += 3600 - 60 - 1
            self.assertEqual(self.limits(m), want, "still younger than stale_s")
            self.clock.mono += 2
            self.assertIsNone(self.limits(m), "older than stale_s: Synapse's defaults")
            self.clock.mono += 60
            self.assertIsNone(self.limits(m))
        # One warning a minute at most (the module asks again at most every RETRY_S).
        self.assertEqual(len(logs.records), 3, logs.output)
        self.assertIn("last answer stands in", logs.output[0])
        self.assertIn("last answer stands in", logs.output[1])
        self.assertIn("defaults apply", logs.output[2])

    def test_no_socket_at_all_is_the_defaults(self):
        self.supervisor_gone()
        with self.assertLogs("hearth_limits", "WARNING"):
            self.assertIsNone(self.limits(self.module()))

    def test_asks_again_after_retry_s_and_says_so_once_back(self):
        self.supervisor.answers[ANNA] = answer(blocked=True)
        m = self.module(cache_s=0)
        self.limits(m)
        self.supervisor_gone()
        with self.assertLogs("hearth_limits", "WARNING"):
            self.limits(m)
        self.supervisor = FakeSupervisor(self.path)
        self.supervisor.answers[ANNA] = answer()
        # Within RETRY_S of the failure the supervisor is not asked: the last answer holds.
        self.clock.mono += hearth_limits.RETRY_S - 1
        self.assertEqual(self.limits(m), [MediaUploadLimit(0, 1, info_uri=INFO)])
        self.assertEqual(self.supervisor.requests, [])
        self.clock.mono += 1
        with self.assertLogs("hearth_limits", "INFO") as logs:
            self.assertIsNone(self.limits(m))
        self.assertEqual(len(logs.records), 1)
        self.assertIn("answers again", logs.output[0])

    def test_a_hanging_supervisor_times_out(self):
        self.supervisor.hang = True
        m = self.module(timeout_s=0.2)
        t0 = time.monotonic()
        with self.assertLogs("hearth_limits", "WARNING") as logs:
            self.assertIsNone(self.limits(m))
        elapsed = time.monotonic() - t0
        self.assertLess(elapsed, 2.0)
        self.assertGreaterEqual(elapsed, 0.2)
        self.assertIn("no answer within 0.2 s", logs.output[0])

    def test_bad_answers_count_as_unreachable(self):
        good = answer(blocked=True)
        bad = {
            "not json": (200, b"{not json"),
            "not an object": (200, b"[]"),
            "someone else": answer(user_id=BEN, blocked=True),
            "blocked as a string": answer(blocked="yes"),
            "bytes as a float": answer(uploaded_max_bytes=1.5),
            "no month start": answer(month_start_ms=None),
            "server error": (500, b"{}"),
            "bad gateway": (502, b""),
        }
        for name, reply in bad.items():
            with self.subTest(name):
                self.supervisor.answers[ANNA] = good
                m = self.module(cache_s=0)
                self.assertIsNotNone(self.limits(m))
                self.supervisor.answers[ANNA] = reply
                self.clock.mono += 60
                with self.assertLogs("hearth_limits", "WARNING"):
                    # The last good answer stands in, as for a supervisor that is away...
                    self.assertEqual(self.limits(m), [MediaUploadLimit(0, 1, info_uri=INFO)])
                # ...and without one, Synapse's defaults apply.
                with self.assertLogs("hearth_limits", "WARNING"):
                    self.assertIsNone(self.limits(self.module()))

    def test_an_error_inside_the_module_never_reaches_synapse(self):
        m = self.module()

        async def broken(*args, **kwargs):
            raise RuntimeError("thread pool gone")

        self.api.defer_to_thread = broken
        with self.assertLogs("hearth_limits", "ERROR"):
            self.assertIsNone(self.limits(m))


class Responses(unittest.TestCase):
    def test_chunked_and_length_delimited_bodies(self):
        parse = hearth_limits.parse_response
        chunked = b'3\r\n{"a\r\n2;x=y\r\n"}\r\n0\r\n\r\n'
        self.assertEqual(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked),
            (200, b'{"a"}'),
        )
        self.assertEqual(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"), (200, b"{}"))
        self.assertEqual(parse(b"HTTP/1.0 404 Not Found\r\n\r\n"), (404, b""))
        for raw in [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{}",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2",
        ]:
            with self.subTest(raw=raw), self.assertRaises(hearth_limits.Unreachable):
                parse(raw)


class Configuration(unittest.TestCase):
    def test_defaults(self):
        c = HearthLimits.parse_config({"socket": "/run/hearth-limits/limits.sock"})
        self.assertEqual(
            (c.socket, c.cache_s, c.stale_s, c.timeout_s),
            ("/run/hearth-limits/limits.sock", 30, 3600, 2.0),
        )

    def test_bad_config_names_the_key(self):
        ok = {"socket": "/run/hearth-limits/limits.sock"}
        cases = [
            ("socket", {}),
            ("socket", {"socket": "run/limits.sock"}),
            ("socket", {"socket": 7}),
            ("socket", {"socket": "/" + "x" * 200}),
            ("cache_s", {**ok, "cache_s": -1}),
            ("cache_s", {**ok, "cache_s": True}),
            ("stale_s", {**ok, "stale_s": "an hour"}),
            ("timeout_s", {**ok, "timeout_s": 0}),
            ("timeout_s", {**ok, "timeout_s": 600}),
            ("sock", {**ok, "sock": "/x"}),
        ]
        for key, config in cases:
            with self.subTest(config=config), self.assertRaises(ConfigError) as e:
                HearthLimits.parse_config(config)
            self.assertEqual(e.exception.path, (key,))
            self.assertIn(key, e.exception.msg)


if __name__ == "__main__":
    unittest.main()
