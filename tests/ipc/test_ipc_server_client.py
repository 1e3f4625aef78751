"""Server and client in one process over a real Unix socket: validation, errors, subscriptions, access."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent.errors import (
    ConfigurationError,
    NegativeResponseError,
    OtaTimeoutError,
    ProtocolError,
    TransportError,
    VehicleStateError,
    VerificationError,
)
from agent.ipc import (
    AccessDeniedError,
    AccessPolicy,
    Call,
    Event,
    Group,
    IpcClient,
    IpcServer,
    Method,
    MethodNotFoundError,
    RpcError,
    SchemaError,
    SyncClient,
)
from agent.ipc.protocol import PROTOCOL
from agent.ipc.schema import Int, Opt, Record, Str

T = Group(
    "t",
    Method("t.say", params=Record(text=Str(max_len=100_000)), result=Record(text=Str())),
    Method("t.gate", params=Record(key=Str()), result=Record(key=Str())),
    Method("t.raise", params=Record(kind=Str())),
    Method("t.bad_result", result=Record(n=Int())),
    Method("t.big_result", params=Record(size=Int()), result=Record(text=Str())),
    Event("t.tick", params=Record(n=Int(), note=Opt(Str()))),
    Event("t.other", params=Record(n=Int())),
)
TP = PROTOCOL.with_groups(T).for_daemon("t")


class Handlers:
    """The test daemon's handlers; gates are opened by the test."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.entered: dict[str, asyncio.Event] = {}
        self.said: list[str] = []

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def entered_gate(self, key: str) -> asyncio.Event:
        return self.entered.setdefault(key, asyncio.Event())

    def table(self) -> dict[str, Any]:
        return {"t.say": self.say, "t.gate": self.wait_gate, "t.raise": self.raise_, "t.bad_result": self.bad,
                "t.big_result": self.big}

    async def say(self, call: Call) -> dict[str, Any]:
        self.said.append(call.params["text"])
        return {"text": call.params["text"]}

    async def wait_gate(self, call: Call) -> dict[str, Any]:
        self.entered_gate(call.params["key"]).set()
        await self.gate(call.params["key"]).wait()
        return {"key": call.params["key"]}

    async def raise_(self, call: Call) -> None:
        errors: dict[str, Exception] = {
            "verification": VerificationError("engine.bin: sha256 mismatch"),
            "timeout": OtaTimeoutError("backend did not answer within 30 s"),
            "nrc": NegativeResponseError("requestOutOfRange", service=0x34, nrc=0x31),
            "config": ConfigurationError("must be > 0", source="/etc/a.yaml", key="dmclient.limit"),
            "vehicle": VehicleStateError("ignition is off"),
            "schema": SchemaError("targets[1].url duplicates targets[0].url"),
            "crash": KeyError("boom"),
        }
        raise errors[call.params["kind"]]

    async def bad(self, call: Call) -> dict[str, Any]:
        return {"n": "not an int"}

    async def big(self, call: Call) -> dict[str, Any]:
        return {"text": "x" * call.params["size"]}


@contextlib.asynccontextmanager
async def serving(rundir: Path, handlers: Handlers | None = None, **kwargs: Any) -> AsyncIterator[IpcServer]:
    server = IpcServer(rundir / "t.sock", (handlers or Handlers()).table(), TP, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.close(timeout=2)


def client(rundir: Path, **kwargs: Any) -> IpcClient:
    kwargs.setdefault("connect_timeout", 5)
    kwargs.setdefault("call_timeout", 10)
    return IpcClient(rundir / "t.sock", TP, **kwargs)


class Raw:
    """A hand-driven connection: sends any bytes, reads answers as JSON."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        reader, writer = await asyncio.open_unix_connection(str(path))
        raw = cls(reader, writer)
        hello = await raw.read()
        assert hello["method"] == "daemon.hello", hello
        return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read(self) -> dict[str, Any]:
        line = await asyncio.wait_for(self.reader.readline(), 10)
        assert line, "daemon closed the connection"
        message: dict[str, Any] = json.loads(line)
        return message

    async def call(self, method: str, params: Any = None, msg_id: int = 99) -> dict[str, Any]:
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": msg_id}
        if params is not None:
            request["params"] = params
        await self.send(json.dumps(request).encode() + b"\n")
        return await self.read()

    def close(self) -> None:
        self.writer.close()


# -- round trip, validation on both ends ---------------------------------------------------------

async def test_call_round_trip_and_common_methods(rundir: Path) -> None:
    async with serving(rundir), client(rundir) as c:
        assert await c.call("t.say", {"text": "hi"}) == {"text": "hi"}
        assert await c.call("daemon.ping") == {"daemon": "t", "pid": os.getpid()}
        status = await c.call("daemon.status")
        assert status["daemon"] == "t" and status["state"] == "ready" and status["connections"] == 1
        assert c.hello["daemon"] == "t" and c.hello["protocol"] == TP.fingerprint


async def test_client_refuses_to_send_invalid_params(rundir: Path) -> None:
    received: list[bytes] = []
    got_line = asyncio.Event()

    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello = {"daemon": "t", "pid": os.getpid(), "version": "0", "protocol": TP.fingerprint}
        writer.write(json.dumps({"jsonrpc": "2.0", "method": "daemon.hello", "params": hello}).encode() + b"\n")
        while line := await reader.readline():
            received.append(line)
            got_line.set()
        writer.close()

    server = await asyncio.start_unix_server(fake, str(rundir / "t.sock"))
    async with server, client(rundir) as c:
        with pytest.raises(SchemaError, match=r"t.say: params.text: expected a string of 0 to 100000 "
                                              r"characters, got a string of 100001"):
            await c.call("t.say", {"text": "x" * 100_001})
        with pytest.raises(SchemaError, match=r"t.say: params: missing required field 'text'"):
            await c.call("t.say", {})
        with pytest.raises(MethodNotFoundError, match=r"unknown method 't.nope'"):
            await c.call("t.nope")
        with pytest.raises(SchemaError, match=r"unknown event 't.nope'"):
            await c.subscribe("t.nope")
        await c.notify("t.say", {"text": "valid"})
        await asyncio.wait_for(got_line.wait(), 5)
    assert [json.loads(line)["params"] for line in received] == [{"text": "valid"}]


async def test_server_rejects_invalid_params_sent_raw(rundir: Path) -> None:
    handlers = Handlers()
    async with serving(rundir, handlers):
        raw = await Raw.open(rundir / "t.sock")
        answer = await raw.call("t.say", {"text": 5}, msg_id=3)
        assert answer["id"] == 3 and answer["error"]["code"] == -32602
        assert answer["error"]["message"] == "t.say: params.text: expected a string of 0 to 100000 " \
                                             "characters, got an integer 5"
        answer = await raw.call("t.say", ["positional"], msg_id=4)
        assert answer["error"]["code"] == -32602 and "expected an object, got a list" in answer["error"]["message"]
        answer = await raw.call("t.say", {"text": "a", "extra": 1}, msg_id=5)
        assert "unknown field 'extra'" in answer["error"]["message"]
        assert handlers.said == []  # the handler never ran on invalid params
        assert (await raw.call("t.say", {"text": "ok"}))["result"] == {"text": "ok"}
        raw.close()


async def test_server_validates_its_own_results(rundir: Path) -> None:
    async with serving(rundir), client(rundir) as c:
        with pytest.raises(RpcError) as info:
            await c.call("t.bad_result")
        assert info.value.code == -32603
        assert "t produced an invalid result for t.bad_result" in str(info.value)
        assert await c.call("t.say", {"text": "still serving"}) == {"text": "still serving"}


async def test_client_validates_results_and_events_it_receives(rundir: Path) -> None:
    async def fake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(obj: dict[str, Any]) -> None:
            writer.write(json.dumps({"jsonrpc": "2.0", **obj}).encode() + b"\n")

        send({"method": "daemon.hello", "params": {"daemon": "t", "pid": 1, "version": "0",
                                                   "protocol": TP.fingerprint}})
        while line := await reader.readline():
            request = json.loads(line)
            if request["method"] == "subscribe":
                send({"id": request["id"], "result": {"events": ["t.tick"]}})
                send({"method": "t.tick", "params": {"n": "not an int"}})  # dropped by the client
                send({"method": "t.tick", "params": {"n": 2}})
            else:
                send({"id": request["id"], "result": {"text": 42}})
        writer.close()

    server = await asyncio.start_unix_server(fake, str(rundir / "t.sock"))
    async with server, client(rundir) as c:
        with pytest.raises(SchemaError, match=r"^t.say: result.text: expected a string, got an integer 42$"):
            await c.call("t.say", {"text": "x"})
        sub = await c.subscribe("t.tick")
        assert (await sub.get(5)).params == {"n": 2}


# -- bad messages: clear error, the daemon keeps serving ---------------------------------------------

async def test_malformed_messages_get_clear_errors_and_the_connection_keeps_serving(rundir: Path) -> None:
    async with serving(rundir, max_message_bytes=4096):
        raw = await Raw.open(rundir / "t.sock")
        cases: list[tuple[bytes, int, str, Any]] = [
            (b"{not json\n", -32700, "parse error", None),
            (b"\xc3\x28\n", -32700, "not UTF-8", None),
            (b"42\n", -32600, "expected a JSON-RPC object", None),
            (b'[{"jsonrpc":"2.0","method":"daemon.ping","id":1}]\n', -32600, "batches are not supported", None),
            (b"[]\n", -32600, "empty batch", None),
            (b'{"jsonrpc":"1.0","method":"daemon.ping","id":7}\n', -32600, '"jsonrpc" must be "2.0"', 7),
            (b'{"jsonrpc":"2.0","method":"t.nope","id":8}\n', -32601, "unknown method 't.nope'", 8),
            (b'{"jsonrpc":"2.0","result":1,"id":9}\n', -32600, "not responses", 9),
            (b'{"jsonrpc":"2.0","method":"daemon.ping","id":10,' + b'"p":"' + b"x" * 10_000 + b'"}\n',
             -32600, "message larger than 4096 bytes", None),
        ]
        for line, code, words, msg_id in cases:
            await raw.send(line)
            answer = await raw.read()
            assert answer["error"]["code"] == code, (line[:60], answer)
            assert words in answer["error"]["message"], (line[:60], answer)
            assert answer["id"] == msg_id
        # an oversized message arriving in pieces, then a valid request right behind it
        await raw.send(b'{"jsonrpc":"2.0","method":"t.say","params":{"text":"' + b"y" * 3000)
        await raw.send(b"y" * 3000)
        await raw.send(b'"},"id":11}\n{"jsonrpc":"2.0","method":"daemon.ping","id":12}\n')
        assert "larger than 4096" in (await raw.read())["error"]["message"]
        assert (await raw.read()) == {"jsonrpc": "2.0", "result": {"daemon": "t", "pid": os.getpid()}, "id": 12}
        # a notification for an unknown method is not answered (JSON-RPC): the next answer is the ping's
        await raw.send(b'{"jsonrpc":"2.0","method":"t.nope"}\n')
        assert (await raw.call("daemon.ping", msg_id=13))["id"] == 13
        raw.close()


async def test_results_over_the_size_cap_are_an_internal_error_not_a_huge_line(rundir: Path) -> None:
    async with serving(rundir, max_message_bytes=4096), client(rundir) as c:
        with pytest.raises(RpcError, match=r"larger than 4096 bytes") as info:
            await c.call("t.big_result", {"size": 5000})
        assert info.value.code == -32603
        assert await c.call("t.big_result", {"size": 10}) == {"text": "x" * 10}


# -- errors travel as the daemon raised them -----------------------------------------------------------

async def test_daemon_errors_are_reraised_as_the_same_branch_with_the_daemons_message(rundir: Path) -> None:
    async with serving(rundir), client(rundir) as c:
        with pytest.raises(VerificationError, match=r"^engine.bin: sha256 mismatch$") as v:
            await c.call("t.raise", {"kind": "verification"})
        assert v.value.exit_code == 5
        # the daemon's own timeout is not mistaken for the call timing out
        with pytest.raises(OtaTimeoutError, match=r"^backend did not answer within 30 s$"):
            await c.call("t.raise", {"kind": "timeout"})
        with pytest.raises(NegativeResponseError) as nrc:
            await c.call("t.raise", {"kind": "nrc"})
        assert (nrc.value.service, nrc.value.nrc, str(nrc.value)) == (0x34, 0x31, "requestOutOfRange")
        with pytest.raises(ConfigurationError) as cfg:
            await c.call("t.raise", {"kind": "config"})
        assert (cfg.value.source, cfg.value.key, cfg.value.reason) == ("/etc/a.yaml", "dmclient.limit", "must be > 0")
        with pytest.raises(VehicleStateError, match=r"ignition is off"):
            await c.call("t.raise", {"kind": "vehicle"})
        with pytest.raises(SchemaError, match=r"t.raise: targets.1..url duplicates"):
            await c.call("t.raise", {"kind": "schema"})
        with pytest.raises(RpcError, match=r"internal error in t.raise: KeyError: 'boom'") as crash:
            await c.call("t.raise", {"kind": "crash"})
        assert crash.value.code == -32603 and isinstance(crash.value, ProtocolError)
        assert await c.call("daemon.ping")


# -- concurrency, timeouts, shutdown ----------------------------------------------------------------------

async def test_requests_on_one_connection_run_concurrently(rundir: Path) -> None:
    handlers = Handlers()
    async with serving(rundir, handlers), client(rundir) as c:
        held = asyncio.create_task(c.call("t.gate", {"key": "a"}))
        await asyncio.wait_for(handlers.entered_gate("a").wait(), 5)
        # the held request does not block the next one on the same connection
        assert await c.call("t.say", {"text": "meanwhile"}) == {"text": "meanwhile"}
        assert not held.done()
        handlers.gate("a").set()
        assert await held == {"key": "a"}


async def test_a_call_times_out_with_a_clear_error_and_the_late_answer_is_ignored(rundir: Path) -> None:
    handlers = Handlers()
    async with serving(rundir, handlers), client(rundir) as c:
        with pytest.raises(OtaTimeoutError, match=r"t did not answer t.gate within 0.05 s"):
            await c.call("t.gate", {"key": "slow"}, timeout=0.05)
        handlers.gate("slow").set()
        assert await c.call("t.say", {"text": "next"}) == {"text": "next"}


async def test_close_lets_in_flight_requests_finish_and_refuses_new_ones(rundir: Path) -> None:
    handlers = Handlers()
    server = IpcServer(rundir / "t.sock", handlers.table(), TP)
    await server.start()
    async with client(rundir, reconnect=False) as c:
        held = asyncio.create_task(c.call("t.gate", {"key": "k"}))
        await asyncio.wait_for(handlers.entered_gate("k").wait(), 5)
        closing = asyncio.create_task(server.close(timeout=10))
        await asyncio.sleep(0)  # let close() begin: it stops accepting and marks the server closing
        with pytest.raises(TransportError, match=r"t is shutting down"):
            await c.call("daemon.ping")
        handlers.gate("k").set()
        assert await held == {"key": "k"}  # the in-flight request still got its answer
        await closing
    assert not (rundir / "t.sock").exists()


async def test_pending_calls_fail_with_transport_error_when_the_daemon_goes_away(rundir: Path) -> None:
    handlers = Handlers()
    server = IpcServer(rundir / "t.sock", handlers.table(), TP)
    await server.start()
    async with client(rundir, reconnect=False) as c:
        held = asyncio.create_task(c.call("t.gate", {"key": "never"}))
        await asyncio.wait_for(handlers.entered_gate("never").wait(), 5)
        await server.close(timeout=0.01)
        with pytest.raises(TransportError, match=r"lost before the answer came; the daemon may or may not"):
            await held
        with pytest.raises(TransportError, match=r"t is not running"):
            await c.call("daemon.ping")


# -- subscriptions ---------------------------------------------------------------------------------------

async def test_events_reach_their_subscribers_only(rundir: Path) -> None:
    async with serving(rundir) as server, client(rundir) as a, client(rundir) as b:
        ticks = await a.subscribe("t.tick")
        others = await b.subscribe("t.other")
        assert server.publish("t.tick", {"n": 1, "note": "first"}) == 1
        assert server.publish("t.other", {"n": 2}) == 1
        assert (await ticks.get(5)).params == {"n": 1, "note": "first"}
        # b's first event is t.other: the t.tick published before it never went to b
        first_b = await others.get(5)
        assert (first_b.event, first_b.params) == ("t.other", {"n": 2})
        await ticks.close()
        assert server.publish("t.tick", {"n": 3}) == 0
        with pytest.raises(SchemaError, match=r"t.tick: params.n: expected an integer"):
            server.publish("t.tick", {"n": "x"})


async def test_subscribe_validation_on_the_daemon(rundir: Path) -> None:
    async with serving(rundir):
        raw = await Raw.open(rundir / "t.sock")
        answer = await raw.call("subscribe", {"events": ["t.nope"]})
        assert answer["error"]["code"] == -32602
        assert answer["error"]["message"] == "unknown event 't.nope'; t publishes: daemon.state, t.tick, t.other"
        answer = await raw.call("subscribe", {"events": ["daemon.hello"]})
        assert "needs no subscription" in answer["error"]["message"]
        assert (await raw.call("subscribe", {"events": ["t.tick", "t.other"]}))["result"] == \
            {"events": ["t.other", "t.tick"]}
        assert (await raw.call("unsubscribe", {"events": ["t.tick"]}))["result"] == {"events": ["t.other"]}
        assert (await raw.call("unsubscribe", {}))["result"] == {"events": []}
        raw.close()


async def test_callback_subscription_and_two_subscriptions_sharing_an_event(rundir: Path) -> None:
    seen: list[int] = []
    got = asyncio.Event()

    def on_tick(event: Any) -> None:
        seen.append(event.params["n"])
        got.set()

    async with serving(rundir) as server, client(rundir) as c:
        await c.subscribe("t.tick", callback=on_tick)
        iterated = await c.subscribe("t.tick")
        server.publish("t.tick", {"n": 5})
        assert (await iterated.get(5)).params["n"] == 5
        await asyncio.wait_for(got.wait(), 5)
        assert seen == [5]
        await iterated.close()  # the callback subscription still wants t.tick: no unsubscribe on the wire
        got.clear()
        assert server.publish("t.tick", {"n": 6}) == 1
        await asyncio.wait_for(got.wait(), 5)
        assert seen == [5, 6]


async def test_a_subscriber_that_stops_reading_is_dropped_and_the_daemon_carries_on(rundir: Path) -> None:
    async with serving(rundir, max_backlog=64 * 1024) as server:
        raw = await Raw.open(rundir / "t.sock")
        assert (await raw.call("subscribe", {"events": ["t.tick"]}))["result"] == {"events": ["t.tick"]}
        # raw never reads again; the kernel buffers fill, then the server's backlog passes the cap
        note = "z" * 1000
        sent = [server.publish("t.tick", {"n": 0, "note": note})]
        while sent[-1] == 1 and len(sent) < 20_000:
            sent.append(server.publish("t.tick", {"n": len(sent), "note": note}))
        assert sent[0] == 1 and sent[-1] == 0, "the lagging subscriber was never dropped"
        assert server.publish("t.tick", {"n": 0}) == 0  # and it stays dropped
        async with client(rundir) as c:
            assert await c.call("daemon.ping")
        raw.close()


async def test_events_missed_by_a_slow_iterator_are_counted(rundir: Path) -> None:
    async with serving(rundir) as server, client(rundir) as c:
        sub = await c.subscribe("t.tick", queue_size=2)
        for n in range(5):
            server.publish("t.tick", {"n": n})
        marker = await c.subscribe("t.other")
        server.publish("t.other", {"n": 0})
        await marker.get(5)  # everything published before it has been delivered
        assert [(await sub.get(5)).params["n"] for _ in range(2)] == [3, 4]
        assert sub.dropped == 3


# -- access: SO_PEERCRED, socket mode, one daemon per socket ----------------------------------------------

async def test_a_peer_the_policy_does_not_allow_is_refused_and_the_daemon_keeps_running(rundir: Path) -> None:
    other_uid = 54321 if os.getuid() != 54321 else 54322
    async with serving(rundir, policy=AccessPolicy(uids=frozenset({other_uid}))) as server:
        with pytest.raises(AccessDeniedError) as info:
            async with client(rundir):
                pass
        message = str(info.value)
        assert f"uid {os.getuid()}" in message and f"allowed uids: {other_uid}" in message
        assert info.value.exit_code == 2
        # refused before anything was read; the server still accepts (and refuses) the next one
        raw_reader, raw_writer = await asyncio.open_unix_connection(str(server.path))
        answer = json.loads(await asyncio.wait_for(raw_reader.readline(), 5))
        assert answer["error"]["code"] == -32001 and answer["id"] is None
        assert await raw_reader.read() == b""
        raw_writer.close()


async def test_a_peer_in_an_allowed_group_is_served(rundir: Path) -> None:
    policy = AccessPolicy(uids=frozenset({54321}), gids=frozenset({os.getgid()}))
    async with serving(rundir, policy=policy), client(rundir) as c:
        assert await c.call("daemon.ping")


async def test_the_client_refuses_a_daemon_run_by_an_untrusted_uid(rundir: Path) -> None:
    async with serving(rundir):
        c = client(rundir, policy=AccessPolicy(uids=frozenset({54321})))
        with pytest.raises(AccessDeniedError, match=r"which this client does not trust"):
            await c.connect()
        await c.close()


async def test_the_client_refuses_a_socket_served_by_another_daemon(rundir: Path) -> None:
    async with serving(rundir):
        c = IpcClient(rundir / "t.sock", PROTOCOL.with_groups(T), daemon="dmclient", connect_timeout=5)
        with pytest.raises(ConfigurationError, match=r"t.sock is served by t, not dmclient"):
            await c.connect()
        await c.close()


@pytest.mark.parametrize("mode", [0o660, 0o600, 0o666])
async def test_the_socket_file_has_the_configured_mode(rundir: Path, mode: int) -> None:
    async with serving(rundir, mode=mode) as server:
        st = os.stat(server.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == mode
    assert not server.path.exists()


async def test_a_stale_socket_is_replaced_but_a_live_one_or_a_regular_file_is_not(rundir: Path) -> None:
    path = rundir / "t.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays: a daemon killed with SIGKILL leaves exactly this
    async with serving(rundir), client(rundir) as c:
        assert await c.call("daemon.ping")
        second = IpcServer(path, Handlers().table(), TP)
        with pytest.raises(ConfigurationError, match=rf"another daemon \(pid {os.getpid()}\) is already serving"):
            await second.start()
        assert await c.call("daemon.ping")  # the first one is untouched
    path.write_text("not a socket")
    with pytest.raises(ConfigurationError, match=r"exists and is not a socket; refusing to replace it"):
        await IpcServer(path, Handlers().table(), TP).start()
    assert path.read_text() == "not a socket"


def test_server_handlers_must_match_the_declarations(rundir: Path) -> None:
    table = Handlers().table()
    with pytest.raises(ConfigurationError, match=r"no handler for declared methods: t.say"):
        IpcServer(rundir / "t.sock", {k: v for k, v in table.items() if k != "t.say"}, TP)
    with pytest.raises(ConfigurationError, match=r"handlers for undeclared methods: t.extra"):
        IpcServer(rundir / "t.sock", {**table, "t.extra": table["t.say"]}, TP)


def test_socket_paths_too_long_for_the_kernel_are_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match=r"more than the 107 bytes a Unix socket address holds"):
        IpcClient("/tmp/" + "d" * 120 + "/t.sock", TP)


# -- the blocking wrapper ------------------------------------------------------------------------------

def test_sync_client_calls_and_iterates_events(rundir: Path) -> None:
    import threading

    ready = threading.Event()
    published = threading.Event()
    holder: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            async with serving(rundir) as server:
                holder.update(server=server, loop=asyncio.get_running_loop(), stop=stop)
                ready.set()
                await stop.wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert ready.wait(10)
        with SyncClient(rundir / "t.sock", TP) as c:
            assert c.call("t.say", {"text": "sync"}) == {"text": "sync"}
            with pytest.raises(VerificationError):
                c.call("t.raise", {"kind": "verification"})
            with c.subscribe("t.tick") as sub:
                def publish() -> None:
                    holder["server"].publish("t.tick", {"n": 1})
                    published.set()

                holder["loop"].call_soon_threadsafe(publish)
                assert published.wait(10)
                assert sub.get(5).params == {"n": 1}
    finally:
        if "loop" in holder:
            holder["loop"].call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
    with pytest.raises(TransportError, match=r"t is not running: no socket at"), SyncClient(rundir / "t.sock", TP):
        pass


# -- reconnection --------------------------------------------------------------------------------------

async def test_a_client_started_before_its_daemon_connects_once_it_is_up(rundir: Path) -> None:
    c = client(rundir, retry_delay=0.01, max_retry_delay=0.05, connect_timeout=30)
    connecting = asyncio.create_task(c.connect())
    attempts = 0
    while c._last_error is None:  # the client has tried and found no socket yet
        attempts += 1
        assert attempts < 10_000
        await asyncio.sleep(0)
    assert "t is not running: no socket at" in str(c._last_error)
    async with serving(rundir):
        await connecting
        assert await c.call("daemon.ping")
    await c.close()


async def test_subscriptions_a_restarted_daemon_refuses_end_instead_of_a_reconnect_loop(rundir: Path) -> None:
    older = PROTOCOL.with_groups(Group("t", Method("t.say", params=Record(text=Str()),
                                                   result=Record(text=Str())))).for_daemon("t")
    c = client(rundir, retry_delay=0.01, max_retry_delay=0.05)
    connections: asyncio.Queue[int] = asyncio.Queue()
    c.on_connect(lambda: connections.put_nowait(c.generation))
    async with serving(rundir):
        await c.connect()
        assert await connections.get() == 1
        ticks = await c.subscribe("t.tick")
    # the daemon comes back as a version that no longer publishes t.tick
    server = IpcServer(rundir / "t.sock", {"t.say": Handlers().say}, older)
    await server.start()
    try:
        assert await asyncio.wait_for(connections.get(), 10) == 2
        with pytest.raises(SchemaError, match=r"unknown event 't.tick'; t publishes: daemon.state$"):
            await ticks.get(5)
        assert await c.call("t.say", {"text": "connected"}) == {"text": "connected"}
        assert c.generation == 2
    finally:
        await c.close()
        await server.close()


async def test_without_reconnect_a_lost_connection_ends_subscriptions(rundir: Path) -> None:
    async with serving(rundir) as server:
        c = client(rundir, reconnect=False)
        sub = await c.subscribe("t.tick")
        server.publish("t.tick", {"n": 1})
        assert (await sub.get(5)).params == {"n": 1}
    # the daemon went away: iteration ends; get() says why
    assert [event async for event in sub] == []
    with pytest.raises(TransportError, match=r"connection to t lost: the daemon closed the connection"):
        await sub.get(5)
    await c.close()
