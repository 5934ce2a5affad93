"""Fixtures for the Python tests of the `tern` package.

They run the real `tern-relay` binary (and the `tern` CLI) from the cargo
target directory over QUIC on 127.0.0.1. `TERN_BIN_DIR` names the directory
holding both binaries (default: `target/debug` of this workspace).
"""

import asyncio
import os
import pathlib
import subprocess
import threading

import pytest

import tern

WORKSPACE = pathlib.Path(__file__).resolve().parents[2]
BIN_DIR = pathlib.Path(os.environ.get("TERN_BIN_DIR", WORKSPACE / "target" / "debug"))


def binary(name: str) -> pathlib.Path:
    path = BIN_DIR / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `cargo build -p tern-relay -p tern-cli` first")
    return path


class Relay:
    """A `tern-relay serve` process on an ephemeral port with its own data dir."""

    def __init__(self, data_dir: pathlib.Path):
        self.proc = subprocess.Popen(
            [binary("tern-relay"), "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        self.addr = None
        self.fingerprint = None
        for line in self.proc.stdout:
            if line.startswith("tern-relay listening on "):
                self.addr = line.split("on ", 1)[1].strip()
            elif line.startswith("certificate sha256 fingerprint: "):
                self.fingerprint = line.split(": ", 1)[1].strip()
            if self.addr and self.fingerprint:
                break
        if not (self.addr and self.fingerprint):
            raise RuntimeError("the relay exited before printing its address")
        # Keep reading so the relay never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def options(self, store_path) -> tern.ClientOptions:
        return tern.ClientOptions(
            store_path=str(store_path),
            relay=self.addr,
            server_name=None,
            fingerprint=self.fingerprint,
        )

    def stop(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def relay(tmp_path):
    relay = Relay(tmp_path / "relay")
    yield relay
    relay.stop()


def raw_key() -> tern.StoreKey:
    return tern.StoreKey.RAW(key=os.urandom(32))


class Recorder(tern.TernListener):
    """A listener that keeps every event and lets a test wait for one."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def on_event(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout=15.0):
        """Waits (blocking) for an event matching `predicate` and returns it."""
        with self.cond:
            found = self.cond.wait_for(
                lambda: next((e for e in self.events if predicate(e)), None), timeout
            )
        if not found:
            raise AssertionError(f"no matching event within {timeout}s; saw {self.events!r}")
        return found

    async def until(self, predicate, timeout=15.0):
        """`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, predicate, timeout)


class Person:
    """A Python client with its store directory, key and event recorder."""

    def __init__(self, client, options, key_bytes, recorder):
        self.client = client
        self.options = options
        self.key_bytes = key_bytes
        self.events = recorder

    @classmethod
    async def create(cls, relay: Relay, tmp_path, name: str):
        key = os.urandom(32)
        options = relay.options(tmp_path / name / "tern.db")
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
        client = await tern.TernClient.create(options, tern.StoreKey.RAW(key=key), name, None)
        recorder = Recorder()
        client.add_listener(recorder)
        await client.wait_online(15000)
        return cls(client, options, key, recorder)

    @property
    def user_id(self) -> str:
        return self.client.account().user_id


def is_message(text):
    return lambda e: isinstance(e, tern.TernEvent.MESSAGE_RECEIVED) and e.message.text == text


def status_is(message_id, state):
    return lambda e: (
        isinstance(e, tern.TernEvent.STATUS_CHANGED)
        and e.message_id == message_id
        and e.state == state
    )
