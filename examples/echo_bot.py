"""A Tern bot that answers every message with its echo.

    pip install ./ffi
    python examples/echo_bot.py --relay 127.0.0.1:4433 --fingerprint SHA256 \
        --store ./echo-bot/tern.db --name echo-bot

The first run creates the account `--name` (a new store, its key in
`--store` + `.key`, readable by the owner only); later runs open it. Send
it a message from `tern` (`tern contact add echo-bot && tern send echo-bot
hi`) and it answers "echo: hi". Ctrl-C stops it; messages that arrive while
it is stopped are answered at the next start.
"""

import argparse
import asyncio
import os
import pathlib
import signal

import tern


class Inbox(tern.TernListener):
    """Hands received messages from the listener thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue()

    def on_event(self, event):
        if isinstance(event, tern.TernEvent.MESSAGE_RECEIVED) and not event.message.outgoing:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event.message)


def store_key(store: pathlib.Path) -> tuple[tern.StoreKey, bool]:
    """The raw store key kept beside the store; whether it is new."""
    key_file = store.with_name(store.name + ".key")
    if key_file.exists():
        return tern.StoreKey.RAW(key=key_file.read_bytes()), False
    key = os.urandom(32)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return tern.StoreKey.RAW(key=key), True


async def open_bot(args) -> tern.TernClient:
    store = pathlib.Path(args.store)
    store.parent.mkdir(parents=True, exist_ok=True)
    options = tern.ClientOptions(
        store_path=str(store), relay=args.relay, server_name=None, fingerprint=args.fingerprint)
    key, new = store_key(store)
    if new:
        return await tern.TernClient.create(options, key, args.name, args.invite)
    return await tern.TernClient.open(options, key)


def answer(client: tern.TernClient, message: tern.ChatMessage):
    client.send_text(message.chat_id, f"echo: {message.text}")
    if message.seq is not None:
        client.mark_read(message.chat_id, message.seq)


def unanswered(client: tern.TernClient) -> list:
    """Messages stored while no listener ran: the unread ones."""
    waiting = []
    for chat in client.chats():
        if chat.unread:
            recent = client.messages(chat.chat_id, None, min(chat.unread, 100))
            waiting += [m for m in recent if not m.outgoing]
    return waiting


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relay", required=True, help="relay HOST:PORT")
    parser.add_argument("--fingerprint", help="the relay certificate's SHA-256 (self-signed relays)")
    parser.add_argument("--store", default="echo-bot/tern.db", help="path of the bot's store")
    parser.add_argument("--name", default="echo-bot", help="user name to register on first run")
    parser.add_argument("--invite", help="invite token, if the relay requires one")
    args = parser.parse_args()

    client = await open_bot(args)
    inbox = Inbox(asyncio.get_running_loop())
    handle = client.add_listener(inbox)
    print(f"{client.account().user_name} is listening", flush=True)

    # Answer what arrived while the bot was stopped, then what arrives now
    # (an id answered once is not answered again).
    answered = set()
    for message in unanswered(client):
        inbox.queue.put_nowait(message)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        get = asyncio.ensure_future(inbox.queue.get())
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait({get, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if get not in done:
            get.cancel()
            continue
        stopped.cancel()
        message = get.result()
        if message.id in answered:
            continue
        answered.add(message.id)
        try:
            answer(client, message)
            print(f"answered {message.text!r}", flush=True)
        except tern.TernError as e:
            print(f"cannot answer: {e!r}", flush=True)
    handle.cancel()
    await client.flush_outbox(5_000)
    await client.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
