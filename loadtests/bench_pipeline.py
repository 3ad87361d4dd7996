"""Checkout pipeline benchmark: POST /reservations to ``confirmed``, and the worker
against RabbitMQ's own rate.

    .venv/bin/python -m loadtests.bench_pipeline [--base http://127.0.0.1:8000] [--checkouts 200] [--concurrency 8]
                                                 [--wait stream|poll]

Against a running stack (``make up``: app, scheduler with the outbox relay, the
worker, the live process), loopback only, bounded in count. It prints:
  - checkouts per second from the first hold to the last reservation seen
    ``confirmed`` (each client holds, reserves, then waits for the outcome), and
    each checkout's latency p50/p99 from POST /reservations to confirmed. A client
    waits on the reservation's event stream (``--wait stream``, the default: the
    live process pushes the outcome) or GETs the reservation every 20 ms (``--wait
    poll``, what clients had to do before the stream);
  - the CPU a checkout cost each process of the stack (app instances, worker, scheduler,
    live, proxy, PostgreSQL, Redis, RabbitMQ; loadtests/servers.py), over the checkouts
    only: steadier than the rate from run to run, where the two cores are full;
  - RabbitMQ's own publish (with confirms) and consume (manual ack) rate for the
    same message size, measured in the same run on a scratch queue: the ceiling.
Each client is a demo customer who holds one seat (best available) of a showtime
to come, then reserves it with tok_visa, and again until the count is done. The
clients share one event loop (loadtests/client.py), each on a keep-alive connection,
a stream on a connection of its own: 4% of a core for 300 checkouts, where a thread
each with requests took 10-11% of the two cores the server has.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from datetime import datetime, timedelta, timezone

import pika
import requests

from loadtests.bench_catalog import require_loopback
from loadtests.client import Connection, Tally, run_clients
from loadtests.servers import cpu_by_role, cpu_spent

DEMO_PASSWORD = "marquee-demo"


def _prepare(base: str, count: int) -> list[int]:
    """A showtime for each of ``count`` checkouts: showtimes to come, without a
    waiting room, each left with a margin of free seats. Each checkout holds one
    seat, best available: seats named in advance by a list would strand single
    seats between parallel holds, which the orphan rule refuses (1 in 4 failed so)."""
    after = (datetime.now(timezone.utc) + timedelta(hours=2)).isoformat()
    shows = requests.get(base + "/api/v1/showtimes", params={"starts_after": after, "page_size": 100}, timeout=10).json()
    slots: list[int] = []
    for show in shows:
        if len(slots) >= count:
            break
        if requests.get(f"{base}/api/v1/showtimes/{show['id']}/queue/status", timeout=10).status_code != 404:
            continue  # a waiting room: holds need an admission
        slots += [show["id"]] * max(0, min(show["seats_available"] - 40, count - len(slots)))
    return slots


def _login(base: str, n: int) -> str:
    r = requests.post(base + "/api/v1/auth/login", timeout=30,
                      json={"email": f"customer{n}@demo.marquee.test", "password": DEMO_PASSWORD})
    r.raise_for_status()
    return r.json()["access_token"]


async def poll(conn: Connection, reservation_id: int, headers: dict) -> str | None:
    """GET the reservation every 20 ms until it no longer awaits payment: its status (None
    after a minute)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = (await conn.request("GET", f"/api/v1/reservations/{reservation_id}", headers)).json()["status"]
        if status != "pending_payment":
            return status
        await asyncio.sleep(0.02)
    return None


async def follow(conn: Connection, reservation_id: int, headers: dict) -> str | None:
    """Read the reservation's stream (the live process) to its end, on a connection of its
    own (the stream ends with the payment's outcome): its last status."""
    async with Connection(conn.host, conn.port) as stream:
        response = await asyncio.wait_for(
            stream.request("GET", f"/api/v1/reservations/{reservation_id}/events", headers), 30)
    if response.status != 200:
        return None
    status = None
    for line in response.body.split(b"\n"):
        if line.startswith(b"data: "):
            status = json.loads(line[6:])["status"]
    return status


WAYS = {"stream": follow, "poll": poll}


def checkouts(base: str, work: list[int], concurrency: int, wait=follow) -> dict:
    """Each client is one demo customer (logged in before the clock starts) making
    checkouts one after another on its keep-alive connection until ``work`` is done;
    ``wait`` waits for the payment's outcome (``follow`` the reservation's stream, or
    ``poll`` it). The clients share one event loop (loadtests/client.py): a thread each
    with requests cost 10-11% of a core here, taken from the server it measured."""
    queue = list(work)
    tokens = [_login(base, n + 1) for n in range(concurrency)]

    async def customer(conn: Connection, i: int, tally: Tally, _deadline: float) -> None:
        headers = {"Authorization": f"Bearer {tokens[i]}"}
        while queue:
            showtime = queue.pop()
            h = await conn.request("POST", f"/api/v1/showtimes/{showtime}/holds", headers, {"quantity": 1})
            if h.status != 201:
                tally.errors += 1
                continue
            started = time.perf_counter()
            r = await conn.request("POST", "/api/v1/reservations", headers,
                                   {"hold_id": h.json()["id"], "payment_token": "tok_visa"})
            status = await wait(conn, r.json()["id"], headers)
            if status == "confirmed":
                tally.latencies.append(time.perf_counter() - started)
            else:
                tally.errors += 1

    before = cpu_by_role()
    tally = run_clients(base, customer, concurrency, seconds=0)
    cpu = cpu_spent(before, cpu_by_role())
    return {"done": len(tally.latencies), "rate": tally.rate, "p50": tally.percentile_ms(50),
            "p99": tally.percentile_ms(99), "mean": tally.mean_ms, "failures": tally.errors, "cpu": cpu}


def rabbitmq_ceiling(url: str, messages: int, body: bytes) -> tuple[float, float]:
    queue = f"mqbench.{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    channel.confirm_delivery()
    started = time.perf_counter()
    for _ in range(messages):
        channel.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
    publish_rate = messages / (time.perf_counter() - started)
    channel.basic_qos(prefetch_count=10)
    consumed = [0]
    started = time.perf_counter()

    def on_message(ch, method, _props, _body):
        ch.basic_ack(method.delivery_tag)
        consumed[0] += 1
        if consumed[0] >= messages:
            ch.stop_consuming()

    channel.basic_consume(queue, on_message)
    channel.start_consuming()
    consume_rate = messages / (time.perf_counter() - started)
    channel.queue_delete(queue)
    connection.close()
    return publish_rate, consume_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--checkouts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--wait", choices=sorted(WAYS), default="stream",
                        help="how a client waits for the payment's outcome: the reservation's event stream "
                             "(pushed by the live process), or GET every 20 ms")
    parser.add_argument("--amqp", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    args = parser.parse_args()
    require_loopback(args.base)
    work = _prepare(args.base, args.checkouts)
    result = checkouts(args.base, work, args.concurrency, WAYS[args.wait])
    body = json.dumps({"topic": "payments.charge", "event_id": 1, "reservation_id": 1, "amount_cents": 1200,
                       "currency": "EUR", "payment_token": "tok_visa", "idempotency_key": "reservation-1"}).encode()
    publish_rate, consume_rate = rabbitmq_ceiling(args.amqp, 2000, body)
    print(f"target {args.base}, {len(work)} checkouts by {args.concurrency} clients, waiting by {args.wait}")
    print(f"checkouts confirmed            {result['done']:6d}   ({result['failures']} failed)")
    print(f"checkouts per second           {result['rate']:8.1f}")
    print(f"reserve -> confirmed latency   p50 {result['p50']:.0f} ms, p99 {result['p99']:.0f} ms, mean {result['mean']:.0f} ms"
          f" (seen {'pushed' if args.wait == 'stream' else 'by polling every 20 ms'})")
    if result["done"]:
        per = {role: 1000 * seconds / result["done"] for role, seconds in result["cpu"].most_common()}
        print(f"CPU per checkout               {sum(per.values()):.1f} ms: "
              + ", ".join(f"{role} {ms:.1f}" for role, ms in per.items()))
    print(f"RabbitMQ alone (quorum queue)  publish with confirms {publish_rate:.0f} msg/s, consume+ack {consume_rate:.0f} msg/s")
    print("(each checkout is two messages through the worker: the charge, then its confirmation email)")


if __name__ == "__main__":
    main()
