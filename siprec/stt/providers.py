"""The running provider objects: one per configured provider, started once, in the order of the plan.

`start()` starts the main provider; if it fails, the fallbacks in order until one runs (each failure logged once).
The first provider that runs is the one new legs use (`active`). Fallbacks not needed at start are started on
demand (`acquire`), the first time a leg fails over to them or a job needs them, so an unused fallback costs no
memory. A provider whose start failed is not tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from siprec.stt.provider import SttProvider
from siprec.stt.registry import ProviderChoice, SttPlan

__all__ = ["ProviderPool", "ProviderSlot"]

log = logging.getLogger("siprec.stt")

IDLE, STARTING, READY, FAILED, CLOSED = "idle", "starting", "ready", "failed", "closed"


@dataclass(eq=False)
class ProviderSlot:
    choice: ProviderChoice
    state: str = IDLE
    error: str | None = None
    instance: SttProvider | None = None
    _start: asyncio.Task[SttProvider | None] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.choice.name


class ProviderPool:
    def __init__(self, plan: SttPlan) -> None:
        self.slots = [ProviderSlot(choice) for choice in plan.providers]
        self._by_name = {slot.name: slot for slot in self.slots}

    @property
    def names(self) -> list[str]:
        return [slot.name for slot in self.slots]

    @property
    def active(self) -> str | None:
        """The provider new legs start on: the first one that runs."""
        return next((s.name for s in self.slots if s.state == READY), None)

    def states(self) -> dict[str, dict[str, str | None]]:
        return {s.name: {"state": s.state, "error": s.error} for s in self.slots}

    def instance(self, name: str) -> SttProvider | None:
        slot = self._by_name.get(name)
        return slot.instance if slot is not None and slot.state == READY else None

    def after(self, name: str) -> list[str]:
        """The providers tried after `name`, in order, skipping those that failed to start."""
        names = self.names
        rest = names[names.index(name) + 1 :] if name in names else names
        return [n for n in rest if self._by_name[n].state != FAILED]

    async def start(self) -> str | None:
        for slot in self.slots:
            if await self.acquire(slot.name) is not None:
                if slot is not self.slots[0]:
                    log.warning(
                        "STT runs on fallback provider %s (main provider %s failed to start)",
                        slot.name,
                        self.slots[0].name,
                    )
                return slot.name
        if self.slots:
            log.error(
                "no STT provider could start (%s); calls are recorded without transcription",
                "; ".join(f"{s.name}: {s.error}" for s in self.slots),
            )
        return None

    async def acquire(self, name: str) -> SttProvider | None:
        """The running provider `name`, started now if it never was; None if it cannot run."""
        slot = self._by_name.get(name)
        if slot is None or slot.state in (FAILED, CLOSED):
            return None
        if slot.state == READY:
            return slot.instance
        if slot._start is None:
            slot.state = STARTING
            slot._start = asyncio.create_task(self._start_slot(slot), name=f"stt-start-{name}")
        # shield: a leg or job giving up (cancelled) must not abort a start others wait for
        return await asyncio.shield(slot._start)

    async def _start_slot(self, slot: ProviderSlot) -> SttProvider | None:
        instance: SttProvider | None = None
        try:
            instance = slot.choice.provider_class(slot.choice.options)  # type: ignore[call-arg]
            await instance.start()
        except asyncio.CancelledError:  # the service closed during the start: waiters get None, not a cancel
            slot.state, slot.error = FAILED, "start cancelled (service closing)"
            if instance is not None:
                with contextlib.suppress(Exception):
                    await instance.close()
            return None
        except Exception as exc:
            slot.state, slot.error = FAILED, f"{type(exc).__name__}: {exc}"
            log.error("STT provider %s failed to start: %s", slot.name, slot.error)
            return None
        slot.instance, slot.state = instance, READY
        log.info("STT provider %s started", slot.name)
        return instance

    async def close(self) -> None:
        """Stop every started provider (streams are closed before this); abort starts still running."""
        for slot in self.slots:
            if slot._start is not None and not slot._start.done():
                slot._start.cancel()
                await asyncio.gather(slot._start, return_exceptions=True)
            if slot.instance is not None and slot.state == READY:
                try:
                    await slot.instance.close()
                except Exception as exc:
                    log.warning(
                        "STT provider %s did not close cleanly: %s: %s", slot.name, type(exc).__name__, exc
                    )
            slot.state = CLOSED if slot.state == READY else slot.state
            slot.instance = None
