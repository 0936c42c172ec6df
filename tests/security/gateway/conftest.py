"""The gateway attack suites reuse the gateway test fixtures (config, memory broker with a
catch-all queue, clock, aiohttp test clients on live Redis)."""

from tests.gateway.conftest import broker, client, clock, gateway_config, make_client

__all__ = ["broker", "client", "clock", "gateway_config", "make_client"]
