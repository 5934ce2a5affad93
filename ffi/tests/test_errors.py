"""Failures reach Python as typed exceptions, never as crashes."""

import asyncio
import os
import socket

import pytest

import tern
from conftest import Person


def test_wrong_passphrase_raises_wrong_passphrase(relay, tmp_path):
    async def run():
        options = relay.options(tmp_path / "store.db")
        key = tern.StoreKey.PASSPHRASE(passphrase="correct horse")
        client = await tern.TernClient.create(options, key, "alice", None)
        await client.shutdown()
        with pytest.raises(tern.TernError.WrongPassphrase):
            await tern.TernClient.open(options, tern.StoreKey.PASSPHRASE(passphrase="wrong"))
        client = await tern.TernClient.open(options, key)
        assert client.account().user_name == "alice"
        await client.shutdown()

    asyncio.run(run())


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_relay_unreachable_raises_relay_unreachable(tmp_path):
    async def run():
        options = tern.ClientOptions(
            store_path=str(tmp_path / "store.db"),
            relay=f"127.0.0.1:{free_udp_port()}",
            server_name=None,
            fingerprint="00" * 32,
        )
        with pytest.raises(tern.TernError.RelayUnreachable):
            await tern.TernClient.create(options, tern.StoreKey.RAW(key=os.urandom(32)), "x", None)

    asyncio.run(run())


def test_unknown_contact_and_bad_arguments_are_typed(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        with pytest.raises(tern.TernError.UnknownContact):
            await alice.client.add_contact("nobody")
        with pytest.raises(tern.TernError.UnknownContact):
            alice.client.direct_chat("ab" * 16)
        with pytest.raises(tern.TernError.InvalidArgument):
            alice.client.direct_chat("not hex")
        with pytest.raises(tern.TernError.UnknownChat):
            alice.client.send_text("cd" * 16, "to nowhere")
        with pytest.raises(tern.TernError.InvalidArgument):
            await tern.TernClient.open(alice.options, tern.StoreKey.RAW(key=b"short"))
        await alice.client.shutdown()
        with pytest.raises(tern.TernError.Closed):
            alice.client.contacts()

    asyncio.run(run())


def test_cancelling_an_async_call_leaves_the_client_working(tmp_path, relay):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        await alice.client.shutdown()
        # Reopen against a port where nothing answers: waiting to get online
        # would take the full minute.
        dead = tern.ClientOptions(
            store_path=alice.options.store_path, relay=f"127.0.0.1:{free_udp_port()}",
            server_name=None, fingerprint=relay.fingerprint)
        client = await tern.TernClient.open(dead, tern.StoreKey.RAW(key=alice.key_bytes))
        task = asyncio.ensure_future(client.wait_online(60000))
        await asyncio.sleep(0.3)
        task.cancel()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop.time() - started < 2
        # The client still answers.
        assert client.account().user_name == "alice"
        assert client.contacts() == []
        await client.shutdown()

    asyncio.run(run())
