"""What one GraphQL request carries: the caller (verified lazily, as REST does it),
its data loaders, and the idempotency of its mutations."""
from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import jwt as pyjwt
from flask import Request, Response
from flask_jwt_extended.exceptions import JWTExtendedException, NoAuthorizationError, RevokedTokenError

from app.api.idempotency import HEADER, claim, finished
from app.api.problems import status_of
from app.api.security import _verify_access_token, current_user_id, is_admin
from app.bootstrap import marquee
from app.models import City, Movie, Showtime, Theater
from app.services import catalog, errors, seats, tickets


class Replayed(Exception):
    """The error a mutation answered the first time, answered again for its
    ``Idempotency-Key``."""

    def __init__(self, message: str, extensions: dict) -> None:
        super().__init__(message)
        self.extensions = extensions


def error_extensions(exc: errors.DomainError) -> dict[str, Any]:
    """What REST's problem document says of a domain error, as GraphQL extensions:
    ``code``, ``status``, ``retry_after`` and the error's own fields (``seat_ids``,
    ``errors`` by field path, ...)."""
    extensions: dict[str, Any] = {"code": exc.code, "status": status_of(exc), **exc.extra}
    if exc.retry_after is not None:
        extensions["retry_after"] = exc.retry_after
    return extensions


class Batch:
    """A data loader for a synchronous executor: the parents announce the keys their
    children will ask for (``want``); the first ``get`` fetches every key announced
    so far in one call of ``fetch`` (a batch read of a service)."""

    def __init__(self, fetch: Callable[[list], dict]) -> None:
        self.fetch = fetch
        self.pending: set = set()
        self.loaded: dict = {}

    def want(self, keys: Iterable[Hashable]) -> None:
        self.pending.update(key for key in keys if key not in self.loaded)

    def get(self, key: Hashable) -> Any:
        if key not in self.loaded:
            self.pending.add(key)
            keys, self.pending = sorted(self.pending), set()
            found = self.fetch(keys)
            self.loaded.update({k: found.get(k) for k in keys})
        return self.loaded[key]


class Loaders:
    """One request's loaders: a fixed number of reads however many objects ask."""

    def __init__(self) -> None:
        self.cities = Batch(lambda ids: catalog.by_ids(City, ids))
        self.theaters = Batch(lambda ids: catalog.by_ids(Theater, ids))
        self.movies = Batch(lambda ids: catalog.by_ids(Movie, ids))
        self.showtimes = Batch(self._showtime_details)
        self.seat_maps = Batch(seats.seat_maps_now)
        self.seats_available = Batch(seats.seats_available)
        self.tickets = Batch(tickets.of_reservations)  # keys: reservations the caller was shown

    def _showtime_details(self, ids: list[int]) -> dict[int, dict]:
        details = catalog.showtime_details(list(catalog.by_ids(Showtime, ids).values()))
        self.announce_showtimes(details)
        return {detail["id"]: detail for detail in details}

    def announce_showtimes(self, details: list[dict]) -> None:
        """Showtimes about to be resolved: their children load together."""
        ids = [detail["id"] for detail in details]
        self.showtimes.loaded.update({detail["id"]: detail for detail in details})
        self.movies.want(detail["movie_id"] for detail in details)
        self.theaters.want(detail["theater"]["id"] for detail in details)
        self.cities.want(detail["city"]["id"] for detail in details)
        self.seat_maps.want(ids)
        self.seats_available.want(ids)


class Context:
    """``info.context`` of every resolver."""

    def __init__(self, request: Request, response: Response) -> None:
        self.request = request
        self.response = response
        self.loaders = Loaders()
        self.built: dict[tuple[Batch, int], Any] = {}  # GraphQL objects made once per request
        self._verified = False

    def user_id(self) -> int:
        """The caller's id: the Bearer token checked as REST checks it (signature,
        expiry, revocation), or ``Unauthorized`` with REST's codes."""
        if not self._verified:
            try:
                _verify_access_token()
            except NoAuthorizationError as exc:
                raise errors.TokenMissing() from exc
            except RevokedTokenError as exc:
                raise errors.TokenRevoked("The token has been revoked") from exc
            except pyjwt.ExpiredSignatureError as exc:
                raise errors.TokenExpired() from exc
            except (JWTExtendedException, pyjwt.PyJWTError) as exc:
                raise errors.TokenInvalid() from exc
            self._verified = True
        return current_user_id()

    def is_admin(self) -> bool:
        self.user_id()
        return is_admin()

    def idempotent(self, operation: str, arguments: dict, run: Callable[[], dict]) -> dict:
        """``run`` under the request's ``Idempotency-Key``, as REST's POSTs are: the same
        key from the same user for the same operation and arguments answers the first
        answer again (its data or its error); with other arguments it is a
        ``validation_error`` (``idempotency_key_reused``). Records live where REST's do."""
        key = self.request.headers.get(HEADER)
        if key is None:
            return run()
        records = marquee().idempotency
        record_key, fp, earlier = claim(key, str(self.user_id()), "GRAPHQL", operation,
                                        json.dumps(arguments, sort_keys=True).encode())
        if earlier is not None:
            return self._replay(finished(earlier, fp))
        try:
            data = run()
        except errors.DomainError as exc:
            if status_of(exc) >= 500:
                records.forget(record_key)
            else:
                records.complete(record_key, fp, status_of(exc), json.dumps(
                    {"error": {"message": exc.detail, "extensions": error_extensions(exc)}}), "application/json")
            raise
        except BaseException:
            records.forget(record_key)
            raise
        records.complete(record_key, fp, 200, json.dumps({"data": data}), "application/json")
        return data

    def _replay(self, record) -> dict:
        self.response.headers["Idempotent-Replayed"] = "true"
        answer = json.loads(record.body)
        if "error" in answer:
            raise Replayed(answer["error"]["message"], answer["error"]["extensions"])
        return answer["data"]
