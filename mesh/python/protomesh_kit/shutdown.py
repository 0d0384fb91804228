"""Draining on SIGTERM and SIGINT (mesh/shutdown.ts)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from .logger import Logger

#: Signals that start a drain: SIGTERM from orchestrators, SIGINT from Ctrl-C.
SHUTDOWN_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: A second Ctrl-C sooner than this after the first is the same request (one keypress can arrive
#: twice: directly and through a parent that forwards it); later, it exits at once.
REPEAT_SIGNAL_WINDOW_S = 1.0


def drain_on_signals(drain: Callable[[], Awaitable[None]], logger: Logger) -> asyncio.Future[int]:
    """Runs ``drain`` once on the first SIGTERM or SIGINT. Returns a future of the exit code
    (0 when the drain succeeded, 1 otherwise); a deliberate second Ctrl-C exits at once with 130."""
    loop = asyncio.get_running_loop()
    exit_code: asyncio.Future[int] = loop.create_future()
    first_at: list[float] = []

    async def run_drain() -> None:
        try:
            await drain()
        except Exception as error:  # noqa: BLE001 - the drain's failure is the exit code's business
            logger.error("drain failed", err={"type": type(error).__name__, "message": str(error)})
            exit_code.set_result(1)
        else:
            exit_code.set_result(0)

    def on_signal(sig: signal.Signals) -> None:
        if first_at:
            if sig == signal.SIGINT and loop.time() - first_at[0] >= REPEAT_SIGNAL_WINDOW_S:
                logger.warn("second signal; exiting without waiting for the drain", signal=sig.name)
                sys.stdout.flush()
                raise SystemExit(130)
            logger.info("already draining (a second Ctrl-C exits at once)", signal=sig.name)
            return
        first_at.append(loop.time())
        logger.info("shutdown requested", signal=sig.name)
        loop.create_task(run_drain())

    for sig in SHUTDOWN_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    return exit_code
