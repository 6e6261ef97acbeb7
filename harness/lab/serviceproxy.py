"""The lab's kube-proxy: ``python -m harness.lab.serviceproxy``.

Every Service with a ClusterIP 10.96.A.B is served on the loopback address
127.96.A.B with the Service's ports, forwarding TCP to the Service's ready
endpoints (from EndpointSlices, round robin, one backend per connection: a
backend that is gone but still listed fails that connection, as it does behind
kube-proxy; the proxy never retries another backend). While a Service has no
ready endpoint its listener is closed, so clients get "connection refused"
exactly as with kube-proxy's REJECT rule. The address stays the same while
pods move. It polls the API every 0.25 s.

The ``default/kubernetes`` Service is the API server itself (``--apiserver``): the lab runs the
API server with its endpoint reconciler off (its address is loopback, which an EndpointSlice
may not hold), so the proxy forwards that Service to it, as a pod's in-cluster configuration
(``KUBERNETES_SERVICE_HOST``) expects.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from harness.lab.paths import loopback_twin, service_address

logger = logging.getLogger("flywheel_chaos.serviceproxy")

POLL_S = 0.25
API_TIMEOUT = (2.0, 5.0)
CONNECT_TIMEOUT_S = 2.0


@dataclass
class Listener:
    """One Service port on its stable loopback address."""

    service: str
    address: str
    port: int
    backends: list[tuple[str, int]] = field(default_factory=list)
    server: asyncio.AbstractServer | None = None
    turn: itertools.count[int] = field(default_factory=itertools.count)


def desired_listeners(
    services: list[Any], slices: list[Any], apiserver: tuple[str, int] | None = None
) -> dict[tuple[str, int], tuple[str, list[tuple[str, int]]]]:
    """(address, port) -> (service, ready backends) for every ClusterIP Service port.

    ``apiserver``: the backend of ``default/kubernetes`` (its EndpointSlice is not kept).
    """
    ready: dict[tuple[str, str], dict[str, list[tuple[str, int]]]] = {}
    if apiserver is not None:
        ready[("default", "kubernetes")] = {"https": [apiserver]}
    for endpoint_slice in slices:
        labels = endpoint_slice.metadata.labels or {}
        service = labels.get("kubernetes.io/service-name")
        if not service or endpoint_slice.address_type != "IPv4":
            continue
        by_port = ready.setdefault((endpoint_slice.metadata.namespace, service), {})
        for port in endpoint_slice.ports or []:
            if port.protocol not in (None, "TCP") or port.port is None:
                continue
            for endpoint in endpoint_slice.endpoints or []:
                conditions = endpoint.conditions
                if conditions is not None and conditions.ready is False:
                    continue
                for address in endpoint.addresses or []:
                    by_port.setdefault(port.name or "", []).append(
                        (loopback_twin(address), int(port.port))
                    )
    wanted: dict[tuple[str, int], tuple[str, list[tuple[str, int]]]] = {}
    for svc in services:
        ip = svc.spec.cluster_ip
        if not ip or ip == "None" or svc.spec.type == "ExternalName":
            continue
        name = f"{svc.metadata.namespace}/{svc.metadata.name}"
        by_port = ready.get((svc.metadata.namespace, svc.metadata.name), {})
        for port in svc.spec.ports or []:
            if port.protocol not in (None, "TCP"):
                continue
            wanted[(service_address(ip), int(port.port))] = (
                name,
                sorted(set(by_port.get(port.name or "", []))),
            )
    return wanted


class ServiceProxy:
    def __init__(
        self, kubeconfig: Path, state_file: Path, apiserver: tuple[str, int] | None = None
    ) -> None:
        self.apiserver = apiserver
        api = config.new_client_from_config(config_file=str(kubeconfig))
        self.core = client.CoreV1Api(api)
        self.discovery = client.DiscoveryV1Api(api)
        self.state_file = state_file
        self.listeners: dict[tuple[str, int], Listener] = {}
        self.loop = asyncio.new_event_loop()
        self.stopping = asyncio.Event()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _handle(
        self, listener: Listener, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        backends = list(listener.backends)
        if not backends:
            writer.close()
            return
        # one backend per connection, as kube-proxy picks one: a backend that is
        # gone but still listed fails the connection (no retry on another backend,
        # which would hide from clients what a real cluster shows them)
        host, port = backends[next(listener.turn) % len(backends)]
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _apply(
        self, wanted: dict[tuple[str, int], tuple[str, list[tuple[str, int]]]]
    ) -> None:
        for key in list(self.listeners):
            if key not in wanted:
                await self._close(self.listeners.pop(key))
        for key, (service, backends) in wanted.items():
            listener = self.listeners.get(key)
            if listener is None:
                listener = self.listeners[key] = Listener(service, key[0], key[1])
            if listener.backends != backends:
                logger.info(
                    "%s %s:%d -> %s",
                    service,
                    key[0],
                    key[1],
                    backends or "no ready endpoint (refusing)",
                )
            listener.backends = backends
            if backends and listener.server is None:
                try:
                    listener.server = await asyncio.start_server(
                        functools.partial(self._handle, listener),
                        host=listener.address,
                        port=listener.port,
                        reuse_address=True,
                    )
                except OSError as exc:
                    logger.error(
                        "cannot listen on %s:%d for %s: %s",
                        listener.address,
                        listener.port,
                        service,
                        exc,
                    )
            elif not backends and listener.server is not None:
                await self._close(listener)
        self._write_state()

    async def _close(self, listener: Listener) -> None:
        if listener.server is not None:
            listener.server.close()
            listener.server = None

    def _write_state(self) -> None:
        document = {
            "services": [
                {
                    "service": lst.service,
                    "address": lst.address,
                    "port": lst.port,
                    "listening": lst.server is not None,
                    "backends": [f"{h}:{p}" for h, p in lst.backends],
                }
                for lst in self.listeners.values()
            ]
        }
        text = json.dumps(document, indent=1)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.state_file)

    def _poll(self) -> dict[tuple[str, int], tuple[str, list[tuple[str, int]]]]:
        services = self.core.list_service_for_all_namespaces(_request_timeout=API_TIMEOUT).items
        slices = self.discovery.list_endpoint_slice_for_all_namespaces(
            _request_timeout=API_TIMEOUT
        ).items
        return desired_listeners(services, slices, self.apiserver)

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                wanted = await asyncio.to_thread(self._poll)
                await self._apply(wanted)
            except Exception as exc:
                logger.warning("service sync failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL_S)
        for listener in self.listeners.values():
            await self._close(listener)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flywheel-lab-service-proxy")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--state-file", required=True)
    parser.add_argument(
        "--apiserver", default="", help="HOST:PORT behind the default/kubernetes Service"
    )
    args = parser.parse_args(argv)
    host, _, port = args.apiserver.rpartition(":")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    proxy = ServiceProxy(
        Path(args.kubeconfig), Path(args.state_file), (host, int(port)) if host else None
    )
    asyncio.set_event_loop(proxy.loop)

    def on_term(signum: int, frame: object) -> None:
        proxy.loop.call_soon_threadsafe(proxy.stopping.set)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    proxy.loop.run_until_complete(proxy.run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
