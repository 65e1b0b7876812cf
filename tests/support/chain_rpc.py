"""An in-process EVM chain (eth-tester on py-evm) served over HTTP JSON-RPC on 127.0.0.1, so worker
processes reach the same chain the test mines, snapshots and reverts.

Requests go through web3's EthereumTesterProvider (which maps JSON-RPC methods onto eth-tester) with
web3's own eth-tester request and result formatters applied as its middleware would; the answers are
then turned into the wire form (camelCase keys, hex quantities) that a real node sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from eth_tester import EthereumTester
from web3 import EthereumTesterProvider, Web3
from web3.providers.eth_tester.middleware import request_formatters, result_formatters

from tests.support.local_http import JsonHandler, serving


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_wire(value: Any) -> Any:
    """eth-tester's Python values as JSON-RPC wire values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {_camel(str(key)): to_wire(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_wire(item) for item in value]
    return value


class Chain:
    """The chain: `w3` for the test's own transactions, `tester` to mine, snapshot and revert."""

    def __init__(self) -> None:
        self.tester = EthereumTester()
        self.provider = EthereumTesterProvider(self.tester)
        self.w3 = Web3(self.provider)
        self.lock = threading.Lock()  # py-evm is not thread-safe

    def call(self, method: str, params: list[Any]) -> dict[str, Any]:
        formatter = request_formatters.get(method)  # type: ignore[call-overload]
        with self.lock:
            answer = self.provider.make_request(method, formatter(params) if formatter else params)  # type: ignore[arg-type]
        shaper = (result_formatters or {}).get(method)  # type: ignore[call-overload]
        if shaper is not None and "result" in answer:
            answer = {**answer, "result": shaper(answer["result"])}
        out: dict[str, Any] = {"jsonrpc": "2.0"}
        if "error" in answer:
            out["error"] = (
                answer["error"]
                if isinstance(answer["error"], dict)
                else {"code": -32000, "message": str(answer["error"])}
            )
        else:
            out["result"] = to_wire(answer.get("result"))
        return out


class Lag:
    """What a node behind a load balancer that lags answers: `null` for the methods in `methods` (web3 reads
    it as "no such block" / "receipt not found"), as a real node does for what it has not seen yet."""

    def __init__(self) -> None:
        self.methods: set[str] = set()
        self.logs_from_another_fork = False  # eth_getLogs answered by a node on a fork: other block hashes


class _Handler(JsonHandler):
    chain: Chain
    lag: Lag | None = None

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        batch = request if isinstance(request, list) else [request]
        answers = [{**self._answer(item), "id": item.get("id")} for item in batch]
        self.send_json(200, answers if isinstance(request, list) else answers[0])

    def _answer(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.lag is not None and item["method"] in self.lag.methods:
            return {"jsonrpc": "2.0", "result": None}
        answer = self.chain.call(item["method"], item.get("params") or [])
        if self.lag is not None and self.lag.logs_from_another_fork and item["method"] == "eth_getLogs":
            answer["result"] = [{**log, "blockHash": "0x" + "ab" * 32} for log in answer.get("result") or []]
        return answer


@contextmanager
def chain_rpc(chain: Chain | None = None, lag: Lag | None = None) -> Iterator[tuple[str, Chain]]:
    """A chain (a fresh one, or `chain` served again, e.g. as a lagging node) on a free port; yields
    (RPC URL, chain)."""
    chain = chain or Chain()
    with serving(type("Handler", (_Handler,), {"chain": chain, "lag": lag})) as url:
        yield url, chain
