"""The dispatcher keeps going when its store fails for a moment (a real SQLite store, made flaky)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kittiwake import provisioning
from kittiwake.carriers.simulator import SimulatedCarrier
from kittiwake.clock import SystemClock
from kittiwake.config import SimulatorSettings
from kittiwake.dispatch.dispatcher import Dispatcher
from kittiwake.domain import Direction, MessageStatus, SidPrefix, new_sid
from kittiwake.models import Message, PhoneNumber
from kittiwake.pacing import RatePolicy
from kittiwake.store.sqlite import SqliteStore

SENDER = "+14158141829"


class FlakyStore(SqliteStore):
    """Fails the first lookup of a number, as a database hiccup would."""

    failures = 0

    async def find_number(self, phone_number: str) -> PhoneNumber | None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("database hiccup")
        return await super().find_number(phone_number)


async def test_a_store_error_does_not_strand_the_sender(tmp_path: Path) -> None:
    clock = SystemClock()
    store = FlakyStore(tmp_path / "kittiwake.sqlite3", synchronous="NORMAL")
    await store.open()
    try:
        account = await provisioning.create_account(store, clock, "test")
        await provisioning.provision_number(store, clock, account.sid, SENDER)
        carrier = SimulatedCarrier(store, clock, SimulatorSettings(receipt_delay=0.01))
        dispatcher = Dispatcher(store, carrier, clock, RatePolicy({"long": 20.0}), poll_interval=0.2)
        store.add_queue_listener(dispatcher.notify)
        await dispatcher.start()
        store.failures = 1  # the first drive of the new sender looks its number up: that lookup fails
        now = clock.now_micros()
        sids = []
        for i in range(2):
            message = Message(
                sid=new_sid(SidPrefix.SMS_MESSAGE), account_sid=account.sid, from_=SENDER, to="+14159352345",
                body=f"m{i}", status=MessageStatus.QUEUED, direction=Direction.OUTBOUND_API, num_segments=1,
                date_created=now, date_updated=now, expires_at=now + 36_000_000_000,
            )  # fmt: skip
            sids.append((await store.enqueue_message(message, None)).sid)
        try:
            for _ in range(100):
                found = [await store.get_message(account.sid, sid) for sid in sids]
                if all(m is not None and m.status is MessageStatus.DELIVERED for m in found):
                    break
                await asyncio.sleep(0.05)
            assert [m.status if m else None for m in found] == [MessageStatus.DELIVERED] * 2
            assert store.failures == 0, "the failure happened"
        finally:
            await dispatcher.stop()
    finally:
        await store.close()
