"""EVM chains through web3.py: deposit addresses derived from the HD key, what a transaction paid to
them, and whether its block is deep enough and still canonical.

A payment is a transfer to an intent's own deposit address (ERC-20 has no memo): the transaction's
value for the native coin, or a `Transfer` log emitted by an allow-listed token contract (anyone can
deploy a contract that emits `Transfer`). A receipt with status 0 moved nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.hdaccount.deterministic import HDPath, derive_child_key
from eth_utils.exceptions import ValidationError as EthValidationError
from web3 import Web3
from web3.exceptions import TransactionNotFound

from payments.facts import ProviderError, RailDisabled
from runtime.payment_settings import CryptoChain
from runtime.settings import Settings

TRANSFER_TOPIC = "0x" + Web3.keccak(text="Transfer(address,address,uint256)").hex().removeprefix("0x")
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class Transfer:
    """Value that reached one of our deposit addresses; `log_index` -1 is the transaction's own value."""

    tx_hash: str
    log_index: int
    to: str
    token_address: str | None
    amount: int
    block_number: int
    block_hash: str


def _hex(value: Any) -> str:
    text = value.hex() if isinstance(value, bytes | bytearray) else str(value)
    return text if text.startswith("0x") else "0x" + text


def _xprv_node(xprv: str) -> tuple[bytes, bytes]:
    """(private key, chain code) of a base58check-encoded BIP-32 extended private key."""
    number = 0
    try:
        for char in xprv:
            number = number * 58 + BASE58.index(char)
        raw = number.to_bytes(82, "big")
    except (ValueError, OverflowError):  # a character outside base58, or too long
        raise ValueError("not a valid xprv (a mistyped or truncated key?)") from None
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum or payload[45] != 0:
        raise ValueError("not a valid xprv (a mistyped or truncated key?)")
    return payload[46:78], payload[13:45]


class DepositKeys:
    """Deposit address n: m/44'/60'/0'/0/n of a BIP-39 mnemonic, or <xprv>/0/n of an account-level xprv."""

    def __init__(self, hd_key: str) -> None:
        words = hd_key.split()
        self._xprv: tuple[bytes, bytes] | None = None
        self._mnemonic: str | None = None
        if len(words) == 1 and words[0].startswith(("xprv", "tprv")):
            self._xprv = _xprv_node(words[0])
        else:
            Account.enable_unaudited_hdwallet_features()
            try:  # validates the words and checksum now, not at the first intent
                Account.from_mnemonic(hd_key)
            except (EthValidationError, ValueError):
                # The library's message quotes the words: never let a secret reach a log line.
                raise ValueError("neither an account-level xprv nor a valid BIP-39 mnemonic") from None
            self._mnemonic = hd_key

    def private_key(self, index: int) -> bytes:
        """The key that controls deposit address `index` (to sweep the funds)."""
        if self._xprv is not None:
            key, chain = self._xprv
            for node in HDPath(f"m/0/{index}")._path:
                key, chain = derive_child_key(key, chain, node)
            return key
        assert self._mnemonic is not None
        account = Account.from_mnemonic(self._mnemonic, account_path=f"m/44'/60'/0'/0/{index}")
        return bytes(account.key)

    def address(self, index: int) -> str:
        """The checksummed deposit address `index`."""
        return str(Account.from_key(self.private_key(index)).address)


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
        except TransactionNotFound:
            return None
        except (OSError, ValueError) as exc:  # requests' errors are OSErrors; RPC errors ValueErrors
            raise ProviderError(f"chain {chain_id}: {exc}", retryable=True) from exc

    def head(self, chain_id: int) -> int:
        """The latest block number."""
        return int(self._call(chain_id, lambda: self.web3(chain_id).eth.block_number))

    def block_hash(self, chain_id: int, number: int) -> str | None:
        """The canonical block hash at `number`, if the chain has that block."""
        block = self._call(chain_id, self.web3(chain_id).eth.get_block, number)
        return _hex(block["hash"]) if block else None

    def paid_by(self, chain_id: int, tx_hash: str, watched: dict[str, str | None]) -> list[Transfer] | None:
        """What transaction `tx_hash` paid to the watched addresses ({address: token contract or None});
        None while it is not mined, [] when it failed or paid none of them."""
        eth = self.web3(chain_id).eth
        receipt = self._call(chain_id, eth.get_transaction_receipt, tx_hash)
        if receipt is None:
            return None
        if int(receipt["status"]) != 1:
            return []
        number, block = int(receipt["blockNumber"]), _hex(receipt["blockHash"])
        found: list[Transfer] = []
        wanted = {address.lower(): token for address, token in watched.items()}
        native = {address for address, token in wanted.items() if token is None}
        if native:
            tx = self._call(chain_id, eth.get_transaction, tx_hash)
            to = str(tx.get("to") or "").lower()
            if to in native and int(tx["value"]) > 0:
                found.append(Transfer(_hex(tx_hash), -1, to, None, int(tx["value"]), number, block))
        for log in receipt["logs"]:
            transfer = self._token_transfer(chain_id, log, wanted)
            if transfer is not None:
                found.append(transfer)
        return found

    def _token_transfer(self, chain_id: int, log: Any, wanted: dict[str, str | None]) -> Transfer | None:
        topics = [_hex(topic) for topic in log["topics"]]
        if len(topics) != 3 or topics[0] != TRANSFER_TOPIC:
            return None
        token = str(log["address"]).lower()
        if token not in {address.lower() for address in self.chain(chain_id).tokens.values()}:
            return None  # a contract we did not allow-list: its Transfer logs are worth nothing
        to = "0x" + topics[2][-40:]
        if wanted.get(to) is None or str(wanted[to]).lower() != token:
            return None
        return Transfer(
            _hex(log["transactionHash"]),
            int(log["logIndex"]),
            to,
            token,
            int(_hex(log["data"]), 16),
            int(log["blockNumber"]),
            _hex(log["blockHash"]),
        )

    def scan(self, chain_id: int, first: int, last: int, watched: dict[str, str | None]) -> list[Transfer]:
        """Transfers to the watched addresses in blocks first..last (native values and token logs)."""
        eth = self.web3(chain_id).eth
        wanted = {address.lower(): token for address, token in watched.items()}
        found: list[Transfer] = []
        if any(token is None for token in wanted.values()):
            for number in range(first, last + 1):
                block = self._call(chain_id, eth.get_block, number, full_transactions=True)
                for tx in block["transactions"] if block else []:
                    to = str(tx.get("to") or "").lower()
                    if wanted.get(to, "token") is None and int(tx["value"]) > 0:
                        found.extend(self.paid_by(chain_id, _hex(tx["hash"]), {to: None}) or [])
        tokens = [Web3.to_checksum_address(address) for address in self.chain(chain_id).tokens.values()]
        if tokens and any(token is not None for token in wanted.values()):
            logs = self._call(
                chain_id,
                eth.get_logs,
                {"fromBlock": first, "toBlock": last, "address": tokens, "topics": [TRANSFER_TOPIC]},
            )
            found.extend(t for t in (self._token_transfer(chain_id, log, wanted) for log in logs or []) if t)
        return found
