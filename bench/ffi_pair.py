"""The Python side of the bindings benchmark (`bench/ffi-vs-rust.sh`): the
same pair, messages and measurements as `ffi/benches/pair.rs`, through the
`tern` package. Reads TERN_RELAY and TERN_FINGERPRINT; prints one JSON line.
"""

import asyncio
import json
import os
import queue
import tempfile
import time

import tern

LATENCY_MESSAGES = 300
BURST_MESSAGES = 3000
TRIVIAL_CALLS = 100_000
WAIT = 60


class Inbox(tern.TernListener):
    """Received message texts, in arrival order."""

    def __init__(self):
        self.texts = queue.SimpleQueue()

    def on_event(self, event):
        if isinstance(event, tern.TernEvent.MESSAGE_RECEIVED):
            self.texts.put(event.message.text)


async def person(directory, name):
    options = tern.ClientOptions(
        store_path=os.path.join(directory, f"{name}.db"),
        relay=os.environ["TERN_RELAY"],
        server_name=None,
        fingerprint=os.environ["TERN_FINGERPRINT"],
    )
    client = await tern.TernClient.create(options, tern.StoreKey.RAW(key=os.urandom(32)), name, None)
    await client.wait_online(WAIT * 1000)
    return client


def percentile(sorted_values, p):
    return sorted_values[round((len(sorted_values) - 1) * p)]


async def main():
    with tempfile.TemporaryDirectory() as directory:
        tag = os.getpid()
        alice = await person(directory, f"pa{tag}")
        bob = await person(directory, f"pb{tag}")
        inbox = Inbox()
        bob.add_listener(inbox)
        contact = await alice.add_contact(bob.account().user_name)
        chat = alice.direct_chat(contact.user_id)
        alice.send_text(chat, "warm-up")
        inbox.texts.get(timeout=WAIT)

        micros = []
        for i in range(LATENCY_MESSAGES):
            started = time.perf_counter()
            alice.send_text(chat, f"ping {i}")
            inbox.texts.get(timeout=WAIT)
            micros.append((time.perf_counter() - started) * 1e6)
        micros.sort()

        started = time.perf_counter()
        for i in range(BURST_MESSAGES):
            alice.send_text(chat, f"burst {i}")
        for _ in range(BURST_MESSAGES):
            inbox.texts.get(timeout=WAIT)
        rate = BURST_MESSAGES / (time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(TRIVIAL_CALLS):
            alice.account()
        call_ns = (time.perf_counter() - started) * 1e9 / TRIVIAL_CALLS

        print(json.dumps({
            "side": "python",
            "p50_us": round(percentile(micros, 0.5)),
            "p99_us": round(percentile(micros, 0.99)),
            "msgs_per_s": round(rate),
            "call_ns": round(call_ns),
        }))
        await alice.shutdown()
        await bob.shutdown()


asyncio.run(main())
