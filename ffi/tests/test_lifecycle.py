"""The mobile lifecycle: pause, push wake-ups, resume, and a process killed
without warning."""

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import tern
from conftest import Person, is_message


def test_push_wakeup_drains_what_arrived_while_paused(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")
        contact = await alice.client.add_contact("bob")
        chat = alice.client.direct_chat(contact.user_id)

        bob.client.pause()
        assert bob.client.is_paused()
        await bob.events.until(lambda e: isinstance(e, tern.TernEvent.DISCONNECTED))
        texts = [f"while away {i}" for i in range(3)]
        for text in texts:
            alice.client.send_text(chat, text)
        await alice.client.flush_outbox(10000)
        await asyncio.sleep(0.3)
        assert not any(isinstance(e, tern.TernEvent.MESSAGE_RECEIVED) for e in bob.events.events)

        loop = asyncio.get_running_loop()
        started = loop.time()
        report = await bob.client.handle_push_wakeup(10000)
        assert loop.time() - started < 10
        assert report.complete
        assert [m.text for m in report.messages] == texts
        assert bob.client.is_paused(), "a paused client is paused again after the wake-up"

        # Nothing more arrives while paused; resume brings the connection back.
        alice.client.send_text(chat, "after the wake-up")
        await alice.client.flush_outbox(10000)
        bob.client.resume()
        await bob.events.until(is_message("after the wake-up"))
        assert [m.text for m in bob.client.messages(chat, None, 10)] == texts + ["after the wake-up"]
        for person in (alice, bob):
            await person.client.shutdown()

    asyncio.run(run())


CHILD = textwrap.dedent("""
    import asyncio, sys, time
    import tern

    async def main():
        store, relay, fingerprint, key_hex, chat = sys.argv[1:6]
        options = tern.ClientOptions(store_path=store, relay=relay, server_name=None,
                                     fingerprint=fingerprint)
        client = await tern.TernClient.open(options, tern.StoreKey.RAW(key=bytes.fromhex(key_hex)))
        client.pause()  # stay offline: the message must survive in the outbox
        for i in range(5):
            client.send_text(chat, f"queued {i}")
        print("queued", flush=True)
        time.sleep(60)

    asyncio.run(main())
""")


def test_a_killed_process_loses_nothing_it_reported(relay, tmp_path):
    async def setup():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")
        contact = await alice.client.add_contact("bob")
        chat = alice.client.direct_chat(contact.user_id)
        await alice.client.shutdown()
        return alice, bob, chat

    async def after(alice, bob, chat):
        client = await tern.TernClient.open(alice.options, tern.StoreKey.RAW(key=alice.key_bytes))
        texts = [f"queued {i}" for i in range(5)]
        assert [m.text for m in client.messages(chat, None, 10)] == texts
        await client.flush_outbox(15000)
        await bob.events.until(is_message("queued 4"))
        got = [e.message.text for e in bob.events.events if isinstance(e, tern.TernEvent.MESSAGE_RECEIVED)]
        assert got == texts
        await client.shutdown()
        await bob.client.shutdown()

    alice, bob, chat = asyncio.run(setup())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, alice.options.store_path, relay.addr, relay.fingerprint,
         alice.key_bytes.hex(), chat],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout.readline().strip() == "queued"
    child.send_signal(signal.SIGKILL)
    child.wait()
    asyncio.run(after(alice, bob, chat))
