"""Sealed secrets open only under their key and context, and each sealing differs."""
import pytest

from app.adapters.sealing import Unsealable, seal, unseal

KEY = bytes(range(32))


def test_a_sealed_value_opens_under_its_key_and_context_only():
    sealed = seal(KEY, b"secret", b"user 7")
    assert unseal(KEY, sealed, b"user 7") == b"secret"
    assert unseal(KEY, memoryview(sealed), b"user 7") == b"secret"  # as a database driver may hand it
    assert b"secret" not in sealed and seal(KEY, b"secret", b"user 7") != sealed  # a fresh nonce each time
    for key, context, blob in ((b"\0" * 32, b"user 7", sealed), (KEY, b"user 8", sealed),
                               (KEY, b"user 7", sealed[:-1] + bytes([sealed[-1] ^ 1]))):
        with pytest.raises(Unsealable):
            unseal(key, blob, context)
