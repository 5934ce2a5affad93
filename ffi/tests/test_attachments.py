"""Attachments from bytes and files, both ways, with progress."""

import asyncio
import os
import threading

import tern
from conftest import Person


class Progress(tern.ProgressListener):
    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()

    def on_progress(self, done, total):
        with self.lock:
            self.seen.append((done, total))


def assert_complete(progress: Progress):
    assert progress.seen, "no progress reported"
    dones = [d for d, _ in progress.seen]
    assert dones == sorted(dones), "progress went backwards"
    done, total = progress.seen[-1]
    assert done == total and total > 0


def test_attachment_round_trip_with_progress(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        bob = await Person.create(relay, tmp_path, "bob")
        contact = await alice.client.add_contact("bob")
        chat = alice.client.direct_chat(contact.user_id)

        data = os.urandom(300_000)  # five chunks
        up = Progress()
        sent = await alice.client.send_bytes(chat, "photo.jpg", data, "image/jpeg", up)
        assert sent.text == "photo.jpg"
        assert_complete(up)
        assert len(up.seen) >= 5

        got = await bob.events.until(
            lambda e: isinstance(e, tern.TernEvent.MESSAGE_RECEIVED) and e.message.text == "photo.jpg")
        [attachment] = bob.client.attachments(got.message.id)
        assert (attachment.file_name, attachment.content_type, attachment.size) == (
            "photo.jpg", "image/jpeg", len(data))

        down = Progress()
        assert await bob.client.download_bytes(got.message.id, down) == data
        assert_complete(down)
        [attachment] = bob.client.attachments(got.message.id)
        assert attachment.state == tern.TransferState.DOWNLOADED

        # From a file and to a file, without a progress listener.
        source = tmp_path / "notes.txt"
        source.write_bytes(b"file contents\n" * 1000)
        sent = await alice.client.send_file(chat, str(source), "text/plain", None)
        got = await bob.events.until(
            lambda e: isinstance(e, tern.TernEvent.MESSAGE_RECEIVED) and e.message.text == "notes.txt")
        dest = tmp_path / "received.txt"
        await bob.client.download_file(got.message.id, str(dest), None)
        assert dest.read_bytes() == source.read_bytes()
        for person in (alice, bob):
            await person.client.shutdown()

    asyncio.run(run())
