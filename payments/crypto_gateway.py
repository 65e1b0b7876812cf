"""EVM chains through web3.py: deposit addresses derived from the HD key, what a transaction paid to
them, and whether its block is deep enough and still canonical.

A payment is a transfer to an intent's own deposit address (ERC-20 has no memo): the transaction's
value for the native coin, or a `Transfer` log emitted by an allow-listed token contract (anyone can
deploy a contract that emits `Transfer`). A receipt with status 0 moved nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3RPCError

from payments.crypto_keys import DepositKeys
from payments.facts import ProviderError, RailDisabled
from runtime.packs import CryptoChain
from runtime.settings import Settings

TRANSFER_TOPIC = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")


@dataclass(frozen=True)
class Transfer:
    """Value that reached one of our deposit addresses; `log_index` -1 is the transaction's own value,
    `token_address` None the chain's native coin; `block_time` (Unix seconds) when the block was read."""

    tx_hash: str
    log_index: int
    to: str
    token_address: str | None
    amount: int
    block_number: int
    block_hash: str
    chain_id: int = 0
    block_time: int | None = None


@dataclass(frozen=True)
class Block:
    """A block as the node answered it: its hash and timestamp (Unix seconds)."""

    number: int
    hash: str
    timestamp: int


@dataclass(frozen=True)
class Scanned:
    """What a scan found, and the last block it could read through (`through` < first: none): a block or
    receipt the node did not answer (a lagging node says "not found") ends the scan before it."""

    found: list[Transfer]
    through: int


def _hex(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes | bytearray) else str(value)
    return text if text.startswith("0x") else "0x" + text


class CryptoGateway:
    """The configured chains and the HD key."""

    def __init__(self, *, keys: DepositKeys, chains: list[CryptoChain], timeout: float) -> None:
        self.keys = keys
        self.chains = {chain.chain_id: chain for chain in chains}
        self._timeout = timeout
        self._clients: dict[int, Web3] = {}

    @classmethod
    def create_service(cls, settings: Settings) -> CryptoGateway:
        """Built from settings; RailDisabled when the HD key or the chains are missing."""
        missing = settings.payment_rail_missing("crypto")
        if missing:
            raise RailDisabled("crypto", missing)
        return cls(
            keys=DepositKeys(settings.CRYPTO_HD_KEY),
            chains=settings.CRYPTO_CHAINS,
            timeout=settings.PAYMENT_HTTP_TIMEOUT_S,
        )

    def chain(self, chain_id: int) -> CryptoChain:
        """A configured chain (KeyError if it is not one)."""
        return self.chains[chain_id]

    def web3(self, chain_id: int) -> Web3:
        """The chain's RPC client."""
        if chain_id not in self._clients:
            provider = Web3.HTTPProvider(
                self.chain(chain_id).rpc_url, request_kwargs={"timeout": self._timeout}
            )
            self._clients[chain_id] = Web3(provider)
        return self._clients[chain_id]

    def _call(self, chain_id: int, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (TransactionNotFound, BlockNotFound):
            # A null answer: not mined yet, or a node behind a load balancer that lags. Unknown, not gone.
            return None
        except (OSError, ValueError, Web3RPCError) as exc:  # requests' errors are OSErrors
            raise ProviderError(f"chain {chain_id}: {exc}", retryable=True) from exc

    def head(self, chain_id: int) -> int:
        """The latest block number."""
        return int(self._call(chain_id, lambda: self.web3(chain_id).eth.block_number))

    def block(self, chain_id: int, number: int) -> Block | None:
        """The canonical block at `number`; None when the node does not answer it (unknown, ask again)."""
        found = self._call(chain_id, self.web3(chain_id).eth.get_block, number)
        return Block(number, _hex(found["hash"]).lower(), int(found["timestamp"])) if found else None

    def paid_by(self, chain_id: int, tx_hash: str, addresses: Collection[str]) -> list[Transfer] | None:
        """What transaction `tx_hash` paid to `addresses`, in the native coin or any allow-listed token
        (the caller decides what counts); None while the node has no receipt (not mined, or lagging),
        [] when it failed or paid none of them."""
        eth = self.web3(chain_id).eth
        receipt = self._call(chain_id, eth.get_transaction_receipt, tx_hash)
        if receipt is None:
            return None
        if int(receipt["status"]) != 1:
            return []
        number, block = int(receipt["blockNumber"]), _hex(receipt["blockHash"]).lower()
        wanted = {address.lower() for address in addresses}
        found: list[Transfer] = []
        tx = self._call(chain_id, eth.get_transaction, tx_hash)
        if tx is None:
            return None
        to = str(tx.get("to") or "").lower()
        if to in wanted and int(tx["value"]) > 0:
            value = int(tx["value"])
            found.append(Transfer(_hex(tx_hash).lower(), -1, to, None, value, number, block, chain_id))
        for log in receipt["logs"]:
            transfer = self._token_transfer(chain_id, log, wanted)
            if transfer is not None:
                found.append(transfer)
        return found

    def _token_transfer(self, chain_id: int, log: Any, wanted: Collection[str]) -> Transfer | None:
        topics = [_hex(topic) for topic in log["topics"]]
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
            return None
        token = str(log["address"]).lower()
        if token not in {address.lower() for address in self.chain(chain_id).tokens.values()}:
            return None  # a contract we did not allow-list: its Transfer logs are worth nothing
        to = "0x" + topics[2][-40:]
        if to not in wanted:
            return None
        return Transfer(
            _hex(log["transactionHash"]).lower(),
            int(log["logIndex"]),
            to,
            token,
            int(_hex(log["data"]), 16),
            int(log["blockNumber"]),
            _hex(log["blockHash"]).lower(),
            chain_id,
        )

    def scan(self, chain_id: int, first: int, last: int, addresses: Collection[str]) -> Scanned:
        """Transfers to `addresses` in blocks first..last (native values and allow-listed token logs),
        up to the first block or receipt the node did not answer."""
        eth = self.web3(chain_id).eth
        wanted = {address.lower() for address in addresses}
        found: list[Transfer] = []
        times: dict[str, int] = {}
        through = first - 1
        for number in range(first, last + 1):
            block = self._call(chain_id, eth.get_block, number, full_transactions=True)
            if block is None:
                break
            paid: list[Transfer] = []
            for tx in block["transactions"]:
                if str(tx.get("to") or "").lower() in wanted and int(tx["value"]) > 0:
                    answer = self.paid_by(chain_id, _hex(tx["hash"]), wanted)
                    if answer is None:
                        break
                    paid.extend(t for t in answer if t.log_index == -1)
            else:
                found.extend(paid)
                times[_hex(block["hash"]).lower()] = int(block["timestamp"])
                through = number
                continue
            break
        tokens = [Web3.to_checksum_address(address) for address in self.chain(chain_id).tokens.values()]
        if tokens and through >= first:
            logs = self._call(
                chain_id,
                eth.get_logs,
                {"fromBlock": first, "toBlock": through, "address": tokens, "topics": [TRANSFER_TOPIC]},
            )
            read = (self._token_transfer(chain_id, log, wanted) for log in logs or [])
            tokens_paid = [transfer for transfer in read if transfer]
            # A log from a block other than the one read at its height came from a node on another fork
            # (behind a load balancer): stop before it, the next pass reads that height again.
            forked = [t.block_number for t in tokens_paid if t.block_hash not in times]
            through = min([through, *(number - 1 for number in forked)])
            found.extend(tokens_paid)
        kept = [replace(t, block_time=times.get(t.block_hash)) for t in found if t.block_number <= through]
        return Scanned(kept, through)
