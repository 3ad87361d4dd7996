"""Password hashing with argon2id (argon2-cffi)."""
from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    def __init__(self, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._ph = _Argon2(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Verified against when the account does not exist, so that an unknown
        # email costs the same time as a wrong password (no user enumeration).
        self._dummy = self._ph.hash("marquee-dummy-password")

    def hash(self, password: str) -> str:
        return self._ph.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._ph.verify(stored_hash or self._dummy, password) and stored_hash is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._ph.check_needs_rehash(stored_hash)
