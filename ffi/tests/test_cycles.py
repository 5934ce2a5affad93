"""1,000 open/shutdown cycles leave neither file descriptors nor memory
behind (measured from /proc, with a bound).

Half the cycles shut down while the client is still connecting. All clients
of the process share one QUIC endpoint, so such abandoned connections cost
only their state while they drain (a few seconds); descriptors are counted
once the count is steady."""

import asyncio
import os

import tern
from conftest import Person

CYCLES = 1000
WARM_UP = 100
# Longest wait for the descriptor count to settle.
DRAIN_SECONDS = 20
# Allowed growth over the measured cycles: a leak of one descriptor or of
# 18 KiB per cycle would exceed these (measured: +0 fds, about +2 MiB).
MAX_FD_GROWTH = 5
MAX_RSS_GROWTH_KIB = 16 * 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def test_a_thousand_open_shutdown_cycles_do_not_leak(relay, tmp_path):
    async def run():
        alice = await Person.create(relay, tmp_path, "alice")
        await alice.client.shutdown()
        key = tern.StoreKey.RAW(key=alice.key_bytes)

        async def cycle(i):
            client = await tern.TernClient.open(alice.options, key)
            client.account()
            if i % 2:
                await client.wait_online(10000)
            await client.shutdown()

        async def settled_fds():
            """The descriptor count once it stopped changing for a second."""
            last = open_fds()
            for _ in range(DRAIN_SECONDS):
                await asyncio.sleep(1)
                now = open_fds()
                if now == last:
                    break
                last = now
            return last

        for i in range(WARM_UP):
            await cycle(i)
        fds = await settled_fds()
        rss = rss_kib()
        for i in range(CYCLES - WARM_UP):
            await cycle(i)
        fd_growth, rss_growth = await settled_fds() - fds, rss_kib() - rss
        print(f"after {CYCLES} cycles: fds {fd_growth:+}, rss {rss_growth:+} KiB")
        assert fd_growth <= MAX_FD_GROWTH, f"file descriptors grew by {fd_growth}"
        assert rss_growth <= MAX_RSS_GROWTH_KIB, f"RSS grew by {rss_growth} KiB"

    asyncio.run(run())
