"""A fleet of fake model servers for the benchmarks: ONE asyncio HTTP server answering on many
loopback addresses (127.0.x.y, all routed to `lo` on Linux), so each address is a distinct
`instance`. Every page is a small model server's `/metrics` whose counters grow with time.

    python bench/fleetserver.py --count 1000 --port 18080      # prints "ready" when listening

Run as its own process by bench/fleet.py (so its CPU is not counted as the daemon's).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time


def addresses(count: int) -> list[str]:
    """127.0.1.1, 127.0.1.2, … (254 per /24; 127.0.0.x is left alone)."""
    return [f"127.0.{1 + i // 254}.{1 + i % 254}" for i in range(count)]


def page(t: float, model: str) -> bytes:
    ok, err = int(100 * t), int(1 * t)
    lines = [
        "# TYPE requests_total counter",
        f'requests_total{{model="{model}",status="ok"}} {ok}',
        f'requests_total{{model="{model}",status="error"}} {err}',
        "# TYPE request_latency_seconds histogram",
    ]
    for le, share in (("0.05", 0.5), ("0.1", 0.8), ("0.25", 0.95), ("1", 0.99), ("+Inf", 1.0)):
        lines.append(f'request_latency_seconds_bucket{{model="{model}",le="{le}"}} {int(ok * share)}')
    lines += [f'request_latency_seconds_sum{{model="{model}"}} {ok * 0.04:.1f}',
              f'request_latency_seconds_count{{model="{model}"}} {ok}',
              f'model_accuracy{{model="{model}"}} 0.95',
              f'model_info{{model="{model}",version="1.0.0"}} 1']
    return ("\n".join(lines) + "\n").encode()


async def serve(count: int, port: int) -> None:
    names = {addr: f"m{i:04d}" for i, addr in enumerate(addresses(count))}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        model = names.get(writer.get_extra_info("sockname")[0], "unknown")
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                body = page(time.time(), model)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host=list(names), port=port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.count, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
