"""Listeners: one that raises does not break the client or the others;
cancelling a handle stops its events."""

import asyncio

import tern
from conftest import Person, Recorder, is_message


class Raising(tern.TernListener):
    def __init__(self):
        self.calls = 0

    def on_event(self, event):
        self.calls += 1
        raise RuntimeError("listener bug")


def test_a_raising_listener_does_not_break_the_client(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")
        raising = Raising()
        bob.client.add_listener(raising)
        cancelled = Recorder()
        handle = bob.client.add_listener(cancelled)
        handle.cancel()

        contact = await alice.client.add_contact("bob")
        chat = alice.client.direct_chat(contact.user_id)
        for text in ("one", "two", "three"):
            alice.client.send_text(chat, text)
        # The recorder registered first still gets every message, in order.
        await bob.events.until(is_message("three"))
        received = [e.message.text for e in bob.events.events
                    if isinstance(e, tern.TernEvent.MESSAGE_RECEIVED)]
        assert received == ["one", "two", "three"]
        assert raising.calls >= 3
        # The cancelled listener saw nothing.
        assert cancelled.events == []
        # And the client keeps working after the listener's exceptions.
        await bob.client.add_contact("alice")
        bob.client.send_text(chat, "still here")
        await alice.events.until(is_message("still here"))
        for person in (alice, bob):
            await person.client.shutdown()

    asyncio.run(run())
