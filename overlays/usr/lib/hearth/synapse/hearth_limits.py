"""hearth_limits: a Synapse module that holds a member's media uploads to the budget their
household chose, by asking the hearth supervisor.

Synapse asks the module for a user's upload limits before it stores an upload
(``get_media_upload_limits_for_user``; the Synapse the appliance pins, 1.163, also carries a
limit's ``info_uri`` into the refusal). The module asks the supervisor over its UNIX socket,
``GET /v1/limits/<user id, percent-encoded>``, and turns the answer into Synapse's
``MediaUploadLimit``s. Synapse then sums the user's own uploads over each limit's trailing
period (its ``local_media_repository`` table, the upload at hand not counted) and refuses an
upload that would pass a limit with 403 ``M_USER_LIMIT_EXCEEDED`` and the limit's
``info_uri``, the page that explains the member's budget.

The supervisor's answer (200, JSON)::

    {"user_id": "@anna:example.org",
     "month_start_ms": 1764543600000,        # UTC ms: the budget month's start
     "uploaded_max_bytes": 1073741824,       # may upload this much per month; null: no cap
     "stored_remaining_bytes": 52428800,     # may store this much more; null: no cap
     "blocked": false,                       # true: the energy or money budget is used up
     "info_uri": "https://example.org/budget"}  # may be null

A 404 means the user has no budget: Synapse's configured defaults apply. Keys the module
does not know are ignored, so that the supervisor can add some without breaking it.

How the answer becomes limits (largest period first, the order Synapse's check expects):

- ``uploaded_max_bytes``: that many bytes over the time since ``month_start_ms``. The period
  is computed at every call, so a cached answer stays right as the month goes on.
- ``stored_remaining_bytes``: that many bytes (0 when the storage is over budget) in the last
  millisecond. Nothing else was uploaded in that millisecond, so this refuses exactly an
  upload larger than what is left.
- ``blocked``: 0 bytes in the last millisecond, which refuses every upload that has content.

Failing open. The budgets are the family's own cap on what the appliance costs them, not a
security boundary: nobody gains anything by uploading past them that the family would need to
be protected from. The supervisor, on the other hand, may crash; systemd restarts it within
seconds, and the LED and the status page say so. A crashed supervisor must never break the
family's photos, so when it cannot be reached (no socket, connection refused, no answer within
``timeout_s``, an answer that is not the one above) the module falls back to the last good
answer for that user while it is younger than ``stale_s`` (an hour by default: a member who is
over budget stays limited through a restart), and after that to Synapse's configured defaults.
Nothing raises out of the callbacks: an error in the module counts as "unreachable" too.

Threads. The socket IO is blocking and runs in Synapse's thread pool
(``ModuleApi.defer_to_thread``), never on the reactor. The cache and the reachability state
are only touched on the reactor thread, between awaits, so they need no lock. While the
supervisor is unreachable the module asks it at most every ``RETRY_S`` seconds (a hanging
supervisor would otherwise hold a pool thread for ``timeout_s`` at every upload, and the pool
also serves Synapse's DNS look-ups), and logs one warning a minute at most; it logs one info
line when the supervisor answers again.

Configuration (homeserver.yaml, ``modules:``)::

    - module: hearth_limits.HearthLimits
      config:
        socket: /run/hearth-limits/limits.sock   # required, an absolute path
        cache_s: 30      # how long a good answer is reused, 0 to 3600 s
        stale_s: 3600    # how long it stands in for an unreachable supervisor, 0 to 7 days
        timeout_s: 2.0   # the whole request, 0.05 to 30 s
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from synapse.config.repository import MediaUploadLimit
from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

logger = logging.getLogger(__name__)

# Users whose answers are kept; the oldest answer goes first. A family has a few dozen.
MAX_USERS = 1000
# An answer is a few hundred bytes; anything much longer is not the supervisor's.
MAX_ANSWER_BYTES = 64 * 1024
# At most one warning this often while the supervisor cannot be reached.
WARN_EVERY_S = 60.0
# While it cannot be reached, the supervisor is asked again at most this often.
RETRY_S = 5.0
# sun_path holds 108 bytes on Linux, the terminating NUL included.
MAX_SOCKET_PATH_BYTES = 107


@dataclass(frozen=True)
class Config:
    socket: str
    cache_s: float
    stale_s: float
    timeout_s: float


@dataclass(frozen=True)
class Budget:
    """One user's budget as the supervisor answered it, checked."""

    month_start_ms: int
    uploaded_max_bytes: int | None
    stored_remaining_bytes: int | None
    blocked: bool
    info_uri: str | None

    def limits(self, now_ms: int) -> list[MediaUploadLimit] | None:
        """The limits Synapse checks an upload against at `now_ms` (UTC ms); None when the
        budget limits nothing, so that Synapse's configured defaults apply."""
        out = []
        if self.uploaded_max_bytes is not None:
            out.append(
                MediaUploadLimit(
                    max_bytes=self.uploaded_max_bytes,
                    time_period_ms=max(1, now_ms - self.month_start_ms),
                    info_uri=self.info_uri,
                )
            )
        if self.stored_remaining_bytes is not None:
            out.append(
                MediaUploadLimit(
                    max_bytes=max(0, self.stored_remaining_bytes),
                    time_period_ms=1,
                    info_uri=self.info_uri,
                )
            )
        if self.blocked:
            out.append(
                MediaUploadLimit(max_bytes=0, time_period_ms=1, info_uri=self.info_uri)
            )
        return out or None


class Unreachable(Exception):
    """The supervisor gave no usable answer; the message says why."""


def _number(config: dict, key: str, default: float, low: float, high: float) -> float:
    value = config.get(key, default)
    # bool is an int in Python; `cache_s: true` is a mistake, not 1 second.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(
            f"hearth_limits: {key} must be a number of seconds from {low:g} to {high:g},"
            f" not {value!r}",
            (key,),
        )
    return float(value)


def _int_or_null(answer: dict, key: str) -> int | None:
    value = answer.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Unreachable(f"{key} is {value!r}, not an integer or null")
    return value


def parse_answer(user_id: str, body: bytes) -> Budget:
    """The 200 answer's body, checked; Unreachable when it is not the documented one."""
    try:
        answer = json.loads(body)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError both are
        raise Unreachable(f"the answer is not JSON: {e}") from None
    if not isinstance(answer, dict):
        raise Unreachable("the answer is not a JSON object")
    # An answer about someone else would apply their budget to this user.
    if answer.get("user_id") != user_id:
        raise Unreachable(f"the answer is about {answer.get('user_id')!r}, not {user_id!r}")
    month_start_ms = _int_or_null(answer, "month_start_ms")
    uploaded_max_bytes = _int_or_null(answer, "uploaded_max_bytes")
    stored_remaining_bytes = _int_or_null(answer, "stored_remaining_bytes")
    if month_start_ms is None or month_start_ms < 0:
        raise Unreachable(f"month_start_ms is {month_start_ms!r}")
    if uploaded_max_bytes is not None and uploaded_max_bytes < 0:
        raise Unreachable(f"uploaded_max_bytes is negative ({uploaded_max_bytes})")
    blocked = answer.get("blocked")
    if not isinstance(blocked, bool):
        raise Unreachable(f"blocked is {blocked!r}, not true or false")
    info_uri = answer.get("info_uri")
    if info_uri is not None and not isinstance(info_uri, str):
        raise Unreachable(f"info_uri is {info_uri!r}, not a string or null")
    return Budget(
        month_start_ms=month_start_ms,
        uploaded_max_bytes=uploaded_max_bytes,
        stored_remaining_bytes=stored_remaining_bytes,
        blocked=blocked,
        info_uri=info_uri or None,
    )


def _dechunk(body: bytes) -> bytes:
    """A chunked HTTP/1.1 body (RFC 9112 §7.1), trailers ignored."""
    out = bytearray()
    while True:
        line, sep, body = body.partition(b"\r\n")
        if not sep:
            raise Unreachable("the chunked answer ends early")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise Unreachable(f"bad chunk size {line[:20]!r}") from None
        if size == 0:
            return bytes(out)
        if len(body) < size + 2:
            raise Unreachable("the chunked answer ends early")
        out += body[:size]
        body = body[size + 2 :]


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """An HTTP/1.x response read to its end: (status, body)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise Unreachable("the answer has no end of headers")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise Unreachable(f"bad status line {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    elif b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError:
            raise Unreachable("bad Content-Length") from None
        if len(body) < length:
            raise Unreachable(f"the answer ends after {len(body)} of {length} bytes")
        body = body[:length]
    return int(parts[1]), body


def request(path: str, user_id: str, timeout_s: float) -> Budget | None:
    """Asks the supervisor on the UNIX socket `path` about `user_id`, blocking for at most
    `timeout_s` in all: the budget, None for "no budget" (404), or Unreachable.

    Runs in a thread of Synapse's pool, never on the reactor."""
    deadline = time.monotonic() + timeout_s

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Unreachable(f"no answer within {timeout_s:g} s")
        return left

    target = "/v1/limits/" + urllib.parse.quote(user_id, safe="")
    req = f"GET {target} HTTP/1.1\r\nHost: hearth\r\nConnection: close\r\n\r\n".encode()
    raw = bytearray()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(remaining())
            s.connect(path)
            s.settimeout(remaining())
            s.sendall(req)
            while True:
                s.settimeout(remaining())
                chunk = s.recv(8192)
                if not chunk:
                    break
                raw += chunk
                if len(raw) > MAX_ANSWER_BYTES:
                    raise Unreachable(f"the answer is longer than {MAX_ANSWER_BYTES} bytes")
    except socket.timeout:
        raise Unreachable(f"no answer within {timeout_s:g} s") from None
    except OSError as e:
        raise Unreachable(f"{path}: {e.strerror or e}") from None
    status, body = parse_response(bytes(raw))
    if status == 404:
        return None
    if status != 200:
        raise Unreachable(f"HTTP {status}")
    return parse_answer(user_id, body)


@dataclass
class _Entry:
    fetched: float  # monotonic seconds
    budget: Budget | None  # None: the supervisor said "no budget" (404)


class HearthLimits:
    def __init__(
        self,
        config: Config,
        api: ModuleApi,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        # Ages of answers and warnings are measured on the monotonic clock (the Pi has no
        # real-time clock and jumps when NTP syncs); the wall clock is read only to place "now"
        # in the budget month, as Synapse's own clock does for its sums.
        self._config = config
        self._api = api
        self._monotonic = monotonic
        self._wall_ms = wall_ms
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._unreachable_since: float | None = None
        self._last_attempt: float | None = None
        self._last_warning: float | None = None
        api.register_media_repository_callbacks(
            get_media_upload_limits_for_user=self.get_media_upload_limits_for_user,
            on_media_upload_limit_exceeded=self.on_media_upload_limit_exceeded,
        )

    @staticmethod
    def parse_config(config: Any) -> Config:
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise ConfigError("hearth_limits: the module's config must be a mapping", ())
        known = {"socket", "cache_s", "stale_s", "timeout_s"}
        for key in config:
            if key not in known:
                raise ConfigError(
                    f"hearth_limits: unknown key {key!r} (known: {', '.join(sorted(known))})",
                    (str(key),),
                )
        path = config.get("socket")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise ConfigError(
                "hearth_limits: socket must be the absolute path of the supervisor's UNIX"
                f" socket, not {path!r}",
                ("socket",),
            )
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise ConfigError(
                f"hearth_limits: socket is longer than the {MAX_SOCKET_PATH_BYTES} bytes a UNIX"
                f" socket's path may have: {path!r}",
                ("socket",),
            )
        return Config(
            socket=path,
            cache_s=_number(config, "cache_s", 30, 0, 3600),
            stale_s=_number(config, "stale_s", 3600, 0, 7 * 86400),
            timeout_s=_number(config, "timeout_s", 2.0, 0.05, 30),
        )

    async def get_media_upload_limits_for_user(
        self, user_id: str
    ) -> list[MediaUploadLimit] | None:
        try:
            budget = await self._budget(user_id)
            return budget.limits(self._wall_ms()) if budget is not None else None
        except Exception:
            # A bug here must not fail the upload: fail open as when the supervisor is away.
            logger.exception(
                "hearth_limits: could not work out %s's upload limits; Synapse's defaults apply",
                user_id,
            )
            return None

    async def _budget(self, user_id: str) -> Budget | None:
        now = self._monotonic()
        entry = self._cache.get(user_id)
        if entry is not None and now - entry.fetched < self._config.cache_s:
            return entry.budget
        if self._unreachable_since is not None and now - self._last_attempt < RETRY_S:
            return self._fallback(user_id, entry, now, None)
        self._last_attempt = now
        try:
            budget = await self._api.defer_to_thread(
                request, self._config.socket, user_id, self._config.timeout_s
            )
        except Unreachable as e:
            now = self._monotonic()
            if self._unreachable_since is None:
                self._unreachable_since = now
            return self._fallback(user_id, entry, now, str(e))
        now = self._monotonic()
        if self._unreachable_since is not None:
            logger.info(
                "hearth_limits: the supervisor answers again on %s (after %.0f s)",
                self._config.socket,
                now - self._unreachable_since,
            )
            self._unreachable_since = None
            self._last_warning = None
        self._cache[user_id] = _Entry(fetched=now, budget=budget)
        self._cache.move_to_end(user_id)
        while len(self._cache) > MAX_USERS:
            self._cache.popitem(last=False)
        return budget

    def _fallback(
        self, user_id: str, entry: _Entry | None, now: float, reason: str | None
    ) -> Budget | None:
        """The last good answer while it is younger than stale_s, else Synapse's defaults.
        `reason` is None when the supervisor was not asked (RETRY_S): nothing new to warn of."""
        stale = entry is not None and now - entry.fetched < self._config.stale_s
        warn_due = self._last_warning is None or now - self._last_warning >= WARN_EVERY_S
        if reason is not None and warn_due:
            self._last_warning = now
            logger.warning(
                "hearth_limits: cannot ask the supervisor (%s); %s",
                reason,
                f"{user_id}'s last answer stands in for it"
                if stale
                else f"Synapse's configured defaults apply to {user_id}",
            )
        return entry.budget if stale else None

    async def on_media_upload_limit_exceeded(
        self, user_id: str, limit: MediaUploadLimit, sent_bytes: int, attempted_bytes: int
    ) -> None:
        # Sizes only: no file name, no content type, nothing about what was sent. (logging
        # reports its own formatting errors and does not raise them.)
        logger.info(
            "hearth_limits: refused an upload of %d bytes by %s: %d bytes uploaded in the last"
            " %d ms, limit %d bytes",
            attempted_bytes,
            user_id,
            sent_bytes,
            limit.time_period_ms,
            limit.max_bytes,
        )
