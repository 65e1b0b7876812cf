"""Deposit addresses from a BIP-39 mnemonic and from the same wallet's account-level xprv agree."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from eth_account.hdaccount.deterministic import HDPath, derive_child_key
from eth_account.hdaccount.mnemonic import Mnemonic

from payments.crypto_keys import BASE58, DepositKeys

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
# m/44'/60'/0'/0/0 of that mnemonic, as every wallet shows it (an outside fact, not our output).
FIRST_ADDRESS = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
XPRV_VERSION = bytes.fromhex("0488ade4")


def base58check(payload: bytes) -> str:
    """Base58 with the double-SHA-256 checksum, written here independently of the code under test."""
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number, text = int.from_bytes(raw, "big"), ""
    while number:
        number, digit = divmod(number, 58)
        text = BASE58[digit] + text
    return "1" * (len(raw) - len(raw.lstrip(b"\0"))) + text


def account_xprv(mnemonic: str) -> str:
    """The BIP-32 xprv of m/44'/60'/0' (depth 3), as a wallet exports it."""
    seed = Mnemonic.to_seed(mnemonic)
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key, chain = digest[:32], digest[32:]
    for node in HDPath("m/44'/60'/0'")._path:
        key, chain = derive_child_key(key, chain, node)
    child_number = (0x80000000).to_bytes(4, "big")
    payload = XPRV_VERSION + bytes([3]) + b"\0\0\0\0" + child_number + chain + b"\0" + key
    return base58check(payload)


def test_the_mnemonic_path_gives_the_well_known_first_address() -> None:
    assert DepositKeys(MNEMONIC).address(0) == FIRST_ADDRESS


def test_an_account_xprv_derives_the_same_addresses_as_its_mnemonic() -> None:
    from_xprv, from_words = DepositKeys(account_xprv(MNEMONIC)), DepositKeys(MNEMONIC)
    assert from_xprv.address(0) == FIRST_ADDRESS
    for index in (1, 2, 17, 1000):
        assert from_xprv.address(index) == from_words.address(index)
        assert from_xprv.private_key(index) == from_words.private_key(index)


def test_a_mistyped_xprv_is_refused_at_start_up() -> None:
    xprv = account_xprv(MNEMONIC)
    typo = xprv[:40] + ("A" if xprv[40] != "A" else "B") + xprv[41:]
    with pytest.raises(ValueError, match="not a valid xprv"):
        DepositKeys(typo)


def test_a_mistyped_mnemonic_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="BIP-39"):
        DepositKeys(MNEMONIC.replace("about", "abandon"))
    with pytest.raises(ValueError, match="not a valid xprv"):
        DepositKeys("xprv0OIl")  # characters base58 leaves out


def test_a_bad_hd_key_stops_the_start_without_quoting_it() -> None:
    from orchestration.bootstrap import check_settings
    from runtime.settings import SettingsError, load_settings

    secret = MNEMONIC.replace("about", "zebra")
    with pytest.raises(SettingsError, match="CRYPTO_HD_KEY") as caught:
        check_settings(load_settings(CRYPTO_HD_KEY=secret))
    assert "zebra" not in str(caught.value)
    check_settings(load_settings(CRYPTO_HD_KEY=account_xprv(MNEMONIC)))  # a good key passes


def test_the_mnemonic_is_stretched_once_per_process_not_once_per_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # PBKDF2 (2048 rounds) is the seed's cost: counted where the library calls it, the derivation untouched.
    calls: list[str] = []
    real = hashlib.pbkdf2_hmac

    def counted(*args: Any, **kwargs: Any) -> bytes:
        calls.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counted)
    phrase = "legal winner thank year wave sausage worth useful legal winner thank yellow"  # not cached yet
    keys = DepositKeys(phrase)
    addresses = [keys.address(index) for index in range(5)]
    assert DepositKeys(phrase).address(7) != addresses[0]
    assert calls == ["sha512"]


def test_addresses_agree_with_eth_accounts_own_derivation() -> None:
    from eth_account import Account

    Account.enable_unaudited_hdwallet_features()
    keys = DepositKeys(MNEMONIC)
    for index in (0, 1, 2, 99, 2**31 - 1):
        reference = Account.from_mnemonic(MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
        assert keys.address(index) == reference.address
        assert keys.private_key(index) == bytes(reference.key)
