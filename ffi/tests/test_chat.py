"""Two Python clients chat 1:1 through the real relay: messages arrive via
the listener, and the sender sees ✓ sent, ✓✓ delivered, then read. Three
clients share a group whose admins alone remove others and promote."""

import asyncio

import pytest

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


async def chat_where(person, chat_id, predicate, timeout=15.0):
    """`person`'s chat `chat_id` once `predicate` holds for it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [c for c in person.client.chats() if c.chat_id == chat_id and predicate(c)]
        if found:
            return found[0]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"chat {chat_id} never matched: {person.client.chats()!r}")
        await asyncio.sleep(0.1)


def test_only_group_admins_remove_others_and_promote(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")
        carol = await Person.create(relay, tmp_path, "carol")
        members = [(await alice.client.add_contact(n)).user_id for n in ("bob", "carol")]
        chat = await alice.client.create_group("team", members)

        # The creator is the only admin, on every member's device.
        [info] = [c for c in alice.client.chats() if c.chat_id == chat]
        assert info.admins == [alice.user_id]
        await chat_where(bob, chat, lambda c: c.admins == [alice.user_id])

        # A member who is not an admin may not remove others.
        with pytest.raises(tern.TernError.Refused, match="only group admins"):
            await bob.client.remove_members(chat, [carol.user_id])
        with pytest.raises(tern.TernError.Refused, match="only group admins"):
            await bob.client.promote_members(chat, [bob.user_id])
        [info] = [c for c in alice.client.chats() if c.chat_id == chat]
        assert sorted(info.members) == sorted([alice.user_id, bob.user_id, carol.user_id])

        # Once promoted, Bob may.
        await alice.client.promote_members(chat, [bob.user_id])
        await bob.events.until(lambda e: isinstance(e, tern.TernEvent.MEMBERS_CHANGED)
                               and e.chat_id == chat and e.promoted == [bob.user_id])
        await bob.client.remove_members(chat, [carol.user_id])
        both = sorted([alice.user_id, bob.user_id])
        for person in (alice, bob):
            await chat_where(person, chat, lambda c: sorted(c.members) == both
                             and sorted(c.admins) == both)

        for person in (alice, bob, carol):
            await person.client.shutdown()

    asyncio.run(run())
