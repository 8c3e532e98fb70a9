"""Probes for half-open circuit breakers, sent by the gateway itself rather than by the next request.

Once an open breaker has cooled down (``server.breaker.cooldown_s``) it is half-open and no request
goes to the expert. This loop notices within a tenth of the cooldown (at most 1 s) and sends the
expert one tiny request of the breaker's mode (``max_tokens: 1``; a stream for the stream breaker)
through the normal forwarding path, which records the outcome: an answer closes the breaker, a
failure opens it for another cooldown. Probing from requests instead let an expert that was not
ranked first stay half-open forever (rankings reserved its probe without ever calling it), and
turned away a whole burst while one request probed. A probe is not a client request: it is not in
the request log and its few tokens are not charged to any key.
"""
from __future__ import annotations

import asyncio
import logging
import time

from router_gateway.domain.errors import GatewayError
from router_gateway.task_stop import stop_tasks

log = logging.getLogger("router_gateway.breaker")

PROBE_MESSAGES = [{"role": "user", "content": "ping"}]


class BreakerProber:
    """Runs beside the health checks for the gateway's whole life (``Gateway.start``)."""

    def __init__(self, gateway):
        self.gateway = gateway
        self._probes: set[asyncio.Task] = set()

    async def run(self) -> None:
        try:
            while True:
                self.start_due_probes()
                await asyncio.sleep(self.tick_s())
        finally:
            await stop_tasks(self._probes, "breaker probes")

    def tick_s(self) -> float:
        return min(1.0, max(0.05, self.gateway.state.settings.cooldown_s / 10))

    def start_due_probes(self) -> None:
        runtime, state = self.gateway.runtime, self.gateway.state
        if runtime is None:
            return
        for name in runtime.config.experts:
            for stream in (False, True):
                if state.claim_probe(name, stream):
                    task = asyncio.get_running_loop().create_task(self.probe(name, stream))
                    self._probes.add(task)
                    task.add_done_callback(self._probes.discard)

    async def probe(self, name: str, stream: bool) -> None:
        """One probe; forwarding records its success or failure on the breaker of its mode."""
        runtime = self.gateway.acquire()  # the forwarder stays open for the probe even across a reload
        state, mode = self.gateway.state, "stream" if stream else "plain"
        try:
            expert = runtime.config.experts.get(name)
            if expert is None:
                return
            body = {"model": name, "messages": PROBE_MESSAGES, "max_tokens": 1, "stream": stream}
            try:
                async with asyncio.timeout(expert.timeout.first_byte + expert.timeout.total):
                    result = await runtime.forwarder.forward([name], body, stream,
                                                             time.monotonic() + expert.timeout.first_byte)
                    if result.stream is not None:
                        async for _ in result.stream:  # the relay records the outcome when it ends
                            pass
            except TimeoutError:
                state.record_failure(name, "probe_timeout", stream=stream)
            except GatewayError as exc:  # already recorded (a 4xx counts as an answer: closed)
                log.info("circuit probe of %s (%s): %s", name, mode, exc.message)
            except Exception:  # noqa: BLE001 - a probe that cannot run waits a cooldown, not a tick
                log.exception("circuit probe of %s (%s) could not run", name, mode)
                state.record_failure(name, "probe_error", stream=stream)
            log.info("circuit of %s (%s) after its probe: %s", name, mode, state.circuit(name, stream))
        finally:
            state.end_probe(name, stream)
            self.gateway.release(runtime)
