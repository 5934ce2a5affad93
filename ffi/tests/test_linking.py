"""Linking a second device from Python: the existing device shows a code,
the new one enters it, history and contacts follow, messages reach both."""

import asyncio
import os

import tern
from conftest import Person, Recorder, is_message


def test_link_a_second_device(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")
        contact = await alice.client.add_contact("bob")
        chat = alice.client.direct_chat(contact.user_id)
        alice.client.send_text(chat, "before linking")
        await alice.client.flush_outbox(10000)

        offer = await alice.client.offer_link()
        assert offer.code() and len(offer.qr_payload()) > 0

        async def approve():
            request = await offer.wait_request(30000)
            assert len(request.device_identity()) == 32
            return await request.approve()

        (tmp_path / "alice2").mkdir()
        options = relay.options(tmp_path / "alice2" / "tern.db")
        approved, tablet = await asyncio.gather(
            approve(),
            tern.TernClient.link(options, tern.StoreKey.RAW(key=os.urandom(32)), offer.code(), 30000),
        )
        assert approved == 2
        assert tablet.account().user_id == alice.user_id
        assert tablet.account().device_id == 2
        assert [c.user_name for c in tablet.contacts()] == ["bob"]
        assert [m.text for m in tablet.messages(chat, None, 10)] == ["before linking"]

        steps = [e.step for e in alice.events.events if isinstance(e, tern.TernEvent.LINK_PROGRESS)]
        assert isinstance(steps[0], tern.LinkStep.CODE_SHOWN)
        assert isinstance(steps[1], tern.LinkStep.REQUEST_RECEIVED)
        assert steps[2] == tern.LinkStep.APPROVED(device_id=2)

        devices = await alice.client.devices()
        assert sorted(d.device_id for d in devices) == [1, 2]

        tablet_events = Recorder()
        tablet.add_listener(tablet_events)
        await tablet.wait_online(15000)
        await bob.client.add_contact("alice")
        bob.client.send_text(chat, "to both devices")
        await alice.events.until(is_message("to both devices"))
        await tablet_events.until(is_message("to both devices"))

        await alice.client.remove_device(2)
        assert [d.device_id for d in await alice.client.devices()] == [1]
        for client in (alice.client, bob.client, tablet):
            await client.shutdown()

    asyncio.run(run())
