"""A group of three: one member is a Python client, the two others use the
`tern` command line. Everyone sees everyone's messages."""

import asyncio
import json
import os
import subprocess

import tern
from conftest import Person, binary, is_message


class CliUser:
    def __init__(self, relay, home, name):
        self.home = home
        self.name = name
        self.run("init", "--relay", relay.addr, "--fingerprint", relay.fingerprint,
                 "--name", name, "--kdf-memory-mib", "8", "--kdf-iterations", "1")

    def run(self, *args):
        done = subprocess.run(
            [binary("tern"), "--home", self.home, "--json", *args],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "TERN_PASSPHRASE": "pw"},
        )
        assert done.returncode == 0, f"tern {args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def received(self):
        return [r for r in self.run("recv", "--timeout", "10") if r["type"] == "message"]


def test_group_of_python_and_cli_members(relay, tmp_path):
    dave = CliUser(relay, tmp_path / "dave", "dave")
    erin = CliUser(relay, tmp_path / "erin", "erin")

    async def run():
        carol = await Person.create(relay, tmp_path, "carol")
        members = [(await carol.client.add_contact(n)).user_id for n in ("dave", "erin")]
        chat = await carol.client.create_group("trio", members)
        [info] = [c for c in carol.client.chats() if c.chat_id == chat]
        assert info.kind == tern.ChatKind.GROUP and len(info.members) == 3

        carol.client.send_text(chat, "hello from python")
        await carol.client.flush_outbox(10000)
        for cli in (dave, erin):
            got = cli.received()
            assert [(m["from"], m["text"], m["chat_id"]) for m in got] == [
                ("carol", "hello from python", chat)]

        await asyncio.to_thread(dave.run, "send", "--group", "trio", "hello from dave")
        await carol.events.until(is_message("hello from dave"))
        assert [m["text"] for m in erin.received()] == ["hello from dave"]

        # A member removed from Python stops receiving; the rest continue.
        await carol.client.remove_members(chat, [members[1]])
        carol.client.send_text(chat, "without erin")
        await carol.client.flush_outbox(10000)
        assert [m["text"] for m in dave.received()] == ["without erin"]
        assert [m["text"] for m in erin.received()] == []
        texts = [m.text for m in carol.client.messages(chat, None, 10)]
        assert texts == ["hello from python", "hello from dave", "without erin"]
        await carol.client.shutdown()

    asyncio.run(run())
