"""``DevServer``: the dev server run by uvicorn in a background thread of this process."""

from __future__ import annotations

import asyncio
import http.client
import math
import socket
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from ._app import AppState, create_app
from ._clock import Clock
from ._connections import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT, guarded_protocol
from ._credits import link_meter, start_cycle
from ._errors import APIError
from ._faults import FaultInjector
from ._stats import Stats
from ._store import Store
from ._webhooks import DEFAULT_RETRY_DELAYS

__all__ = ["DevServer"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class DevServer:
    """A local stand-in of the billing API's usage-billing part, served over real HTTP.

    ``api_key=None`` accepts any non-empty Bearer token; a string accepts only that token
    (others get 401). ``db`` is ``":memory:"`` or a SQLite file path (WAL; data survives a
    restart on the same path). ``port=0`` picks a free port. ``faults`` is ``None`` or a spec
    such as ``"5xx=0.1,429=0.05,reset=0.05,lost_ack=0.05,slow=0.02"`` (probabilities per
    ``POST /events/ingest`` request, reproducible with ``seed``); 429 answers carry
    ``Retry-After: retry_after`` and ``slow`` answers wait ``slow_delay`` seconds. A bad spec
    raises :class:`ValueError` naming the part.

    ``deduction_lag`` (seconds, default 0) makes credit balances count an event only once it
    arrived at least that long ago (by the server's clock), as the real API deducts usage
    asynchronously: a credit gate can be tested against it. 0 counts usage at once.

    ``read_timeout`` (seconds) is how long a client has to send a whole request once the
    server waits for one; a connection that stalls longer is closed. ``max_connections``
    bounds the connections served at once: one more is closed as soon as it is accepted.

    Credit events are delivered to the endpoints registered at ``/webhooks``, signed;
    ``webhook_retry_delays`` are the seconds (by the server's clock) before each retry of a
    failed delivery (default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).

    ``start()`` raises :class:`DatabaseError` when ``db`` is not a SQLite database it can
    use (the file is left untouched).

    Several servers may run at once in one process::

        with DevServer() as server:
            client = DodoClient(api_key="dev", base_url=server.base_url)
    """

    def __init__(
        self,
        api_key: str | None = None,
        db: str | Path = ":memory:",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: str | None = None,
        retry_after: float = 1.0,
        seed: int | None = None,
        *,
        slow_delay: float = 1.0,
        deduction_lag: float = 0.0,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        webhook_retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        if api_key is not None and not api_key.strip():
            raise ValueError("api_key must be None (accept any token) or a non-empty string")
        self._deduction_lag = _check_lag(deduction_lag)
        if (
            isinstance(read_timeout, bool)
            or not isinstance(read_timeout, (int, float))
            or not math.isfinite(read_timeout)
            or read_timeout <= 0
        ):
            raise ValueError(
                f"read_timeout must be a finite number of seconds > 0, got {read_timeout!r}"
            )
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(f"max_connections must be an integer >= 1, got {max_connections!r}")
        delays = tuple(webhook_retry_delays)
        if any(
            isinstance(d, bool) or not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0
            for d in delays
        ):
            raise ValueError(
                f"webhook_retry_delays must be finite numbers of seconds >= 0, got {delays!r}"
            )
        self._retry_delays = tuple(float(d) for d in delays)
        self._read_timeout = float(read_timeout)
        self._max_connections = max_connections
        self._api_key = api_key
        self._db = db
        self._host = host
        self._port = port
        self._faults = FaultInjector.create(
            faults, retry_after=retry_after, seed=seed, slow_delay=slow_delay
        )
        self._stats = Stats()
        self._clock = Clock()
        self._state: AppState | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._bound_port: int | None = None
        self._error: BaseException | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> DevServer:
        """Open the database, start serving and return once the server answers HTTP.

        Raises :class:`RuntimeError` if it is already running or does not come up within
        10 seconds, :class:`OSError` if the port is taken, :class:`DatabaseError` if ``db``
        is not a SQLite database it can use.
        """
        if self._thread is not None:
            raise RuntimeError("the dev server is already running")
        store = Store(self._db, self._clock)
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        # IPPROTO_TCP (not 0) makes asyncio set TCP_NODELAY on accepted connections; without
        # it every answer waits for the client's delayed ACK (about 40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self._host, self._port))
        except OSError:
            sock.close()
            store.close()
            raise
        self._bound_port = int(sock.getsockname()[1])
        self._state = AppState(
            store,
            self._api_key,
            self._faults,
            self._stats,
            self._deduction_lag,
            retry_delays=self._retry_delays,
        )
        config = uvicorn.Config(
            create_app(self._state),
            http=guarded_protocol(self._read_timeout, self._max_connections),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self._uvicorn = uvicorn.Server(config)
        self._error = None
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"dodo-devserver-{self._bound_port}", daemon=True
        )
        self._clock.on_change(self._state.clock_moved)
        self._state.webhooks.start(name=f"dodo-devserver-{self._bound_port}-webhooks")
        self._thread.start()
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self, sock: socket.socket) -> None:
        assert self._uvicorn is not None
        try:
            asyncio.run(self._uvicorn.serve(sockets=[sock]))
        except BaseException as error:
            self._error = error
        finally:
            sock.close()

    def _wait_until_up(self) -> None:
        assert self._uvicorn is not None and self._thread is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the dev server failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("the dev server did not start within 10 seconds")
            time.sleep(0.005)
        connection = http.client.HTTPConnection(self._connect_host, self.port, timeout=5)
        try:
            connection.request("GET", "/_dev/health")
            status = connection.getresponse().status
        finally:
            connection.close()
        if status != 200:
            raise RuntimeError(f"the dev server's health check answered {status}")

    def stop(self) -> None:
        """Stop serving (in-flight requests get about a second to finish), join the thread
        and close the database. Does nothing when not running."""
        if self._thread is None:
            return
        assert self._uvicorn is not None
        self._uvicorn.should_exit = True
        self._thread.join(STOP_TIMEOUT)
        if self._thread.is_alive():
            self._uvicorn.force_exit = True
            self._thread.join(STOP_TIMEOUT)
        self._thread = None
        self._uvicorn = None
        self._clock.on_change(None)
        if self._state is not None:
            self._state.webhooks.stop()
            self._state.store.close()
            self._state = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- properties and controls ---------------------------------------------------------

    @property
    def _connect_host(self) -> str:
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._host, self._host)

    @property
    def port(self) -> int:
        """The port served (the free port chosen when ``port=0``); known once started."""
        if self._bound_port is None:
            raise RuntimeError("the dev server has not been started")
        return self._bound_port

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, to pass as a client's ``base_url``."""
        host = self._connect_host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def api_key(self) -> str | None:
        """The only Bearer token accepted, or ``None`` when any non-empty token is."""
        return self._api_key

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters since this object was made: ``requests`` (answers by
        status code, as strings; ``/_dev`` not counted), ``events_ingested``,
        ``duplicates_ignored``, ``faults_injected`` (by kind)."""
        return self._stats.snapshot()

    def set_faults(
        self,
        faults: str | None,
        retry_after: float | None = None,
        seed: int | None = None,
        *,
        slow_delay: float | None = None,
    ) -> None:
        """Replace the fault spec (``None`` turns faults off) for the next requests.

        ``retry_after`` and ``slow_delay`` keep their values when not given; ``seed`` restarts
        the random sequence. Raises :class:`ValueError` for a bad spec.
        """
        current = self._faults
        self._faults = FaultInjector.create(
            faults,
            retry_after=current.retry_after if retry_after is None else retry_after,
            seed=seed,
            slow_delay=current.slow_delay if slow_delay is None else slow_delay,
        )
        if self._state is not None:
            self._state.faults = self._faults

    @property
    def clock(self) -> Clock:
        """The server's test clock: ``server.clock.advance(days=30)``, ``server.clock.set(...)``,
        ``server.clock.now()``. It runs with the system clock until moved forward; what the
        server does at the new time happens before ``advance``/``set`` return. The same clock
        is served at ``/_dev/clock``; a file database keeps its offset across restarts."""
        return self._clock

    @property
    def deduction_lag(self) -> float:
        """Seconds an event waits after its arrival before credit balances count it."""
        return self._deduction_lag

    def set_deduction_lag(self, seconds: float) -> None:
        """Change the deduction lag for the next balance reads (running or not).

        It applies to every stored event by its arrival time, so a shorter lag at once counts
        the events that arrived long enough ago. Raises :class:`ValueError` for a value that
        is not a finite number of seconds >= 0.
        """
        self._deduction_lag = _check_lag(seconds)
        if self._state is not None:
            self._state.deduction_lag = self._deduction_lag

    def _running_store(self) -> Store:
        if self._state is None:
            raise RuntimeError("the dev server is not running")
        return self._state.store

    def event_ids(self) -> list[str]:
        """Every stored event id, in arrival order (each id once). Needs a running server."""
        return self._running_store().event_ids()

    def link_meter_to_credits(
        self,
        meter_id: str,
        credit_entitlement_id: str,
        meter_units_per_credit: Decimal | str | int,
    ) -> None:
        """Let a meter's usage draw on a credit entitlement: ``meter_units_per_credit`` meter
        units use one credit. Raises :class:`LookupError` for an unknown meter or entitlement,
        :class:`ValueError` for a units value that is not a positive decimal."""
        link_meter(self._running_store(), meter_id, credit_entitlement_id, meter_units_per_credit)

    def start_credit_cycle(
        self,
        credit_entitlement_id: str,
        customer_id: str,
        amount: Decimal | str | int,
        *,
        cycle_days: int = 30,
        daily_amount: Decimal | str | int | None = None,
        low_balance_percent: int | None = None,
    ) -> dict[str, Any]:
        """Attach a recurring grant to a customer (a stand-in for a subscription): ``amount``
        now and at every reset, ``cycle_days`` apart, plus ``daily_amount`` every day if
        given; return the cycle as ``GET /_dev/credit-cycles`` shows it. At each reset the
        cycle's credits roll over or expire and the overage is handled as the entitlement
        says. ``credit.balance_low`` fires below ``low_balance_percent`` % of ``amount``
        (default 10). Raises :class:`LookupError` for an unknown entitlement and
        :class:`ValueError` for a bad amount, cycle length or percentage."""
        self._running_store()  # RuntimeError when not running
        body = {
            "credit_entitlement_id": credit_entitlement_id,
            "customer_id": customer_id,
            "amount": str(amount),
            "cycle_days": cycle_days,
            "daily_amount": None if daily_amount is None else str(daily_amount),
            "low_balance_percent": low_balance_percent,
        }
        assert self._state is not None
        try:
            return start_cycle(self._state.ledger, body)
        except APIError as error:
            if error.status == 404:
                raise LookupError(error.message) from None
            raise ValueError(error.message) from None


def _check_lag(seconds: object) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or seconds < 0
    ):
        raise ValueError(f"deduction_lag must be a finite number of seconds >= 0, got {seconds!r}")
    return float(seconds)
