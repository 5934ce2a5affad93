"""Two Python clients chat 1:1 through the real relay: messages arrive via
the listener, and the sender sees ✓ sent, ✓✓ delivered, then read."""

import asyncio

import tern
from conftest import Person, is_message, status_is


def test_two_python_clients_chat_and_statuses_move(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")

        contact = await alice.client.add_contact("bob")
        assert contact.user_name == "bob"
        assert contact.trust == tern.Trust.UNVERIFIED
        chat = alice.client.direct_chat(contact.user_id)

        sent = alice.client.send_text(chat, "hello bob")
        assert sent.outgoing and sent.text == "hello bob"
        await alice.events.until(status_is(sent.id, tern.DeliveryState.SENT))

        got = await bob.events.until(is_message("hello bob"))
        assert got.message.sender == alice.user_id
        assert got.message.chat_id == chat
        await alice.events.until(status_is(sent.id, tern.DeliveryState.DELIVERED))

        # Bob's chat list knows the chat, with one unread message.
        [bob_chat] = [c for c in bob.client.chats() if c.chat_id == chat]
        assert bob_chat.unread == 1 and bob_chat.kind == tern.ChatKind.DIRECT

        bob.client.mark_read(chat, got.message.seq)
        await alice.events.until(status_is(sent.id, tern.DeliveryState.READ))
        assert [s.state for s in alice.client.message_status(sent.id)] == [tern.DeliveryState.READ]
        assert [c.unread for c in bob.client.chats() if c.chat_id == chat] == [0]

        # Bob answers; both histories hold both messages in the same order.
        await bob.client.add_contact("alice")
        bob.client.send_text(chat, "hi alice")
        await alice.events.until(is_message("hi alice"))
        await bob.client.flush_outbox(10000)
        for person in (alice, bob):
            texts = [m.text for m in person.client.messages(chat, None, 50)]
            assert texts == ["hello bob", "hi alice"]

        # Search and safety numbers work through the bindings too.
        hits = alice.client.search(
            tern.SearchOptions(text="alice", prefix=False, chat_id=None,
                               since_ms=None, until_ms=None, limit=10))
        assert [h.snippet for h in hits] == ["hi [alice]"]
        assert (alice.client.safety_number(bob.user_id).digits
                == bob.client.safety_number(alice.user_id).digits)

        for person in (alice, bob):
            await person.client.shutdown()

    asyncio.run(run())
