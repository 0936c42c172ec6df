"""The HTTP edge of codebus: signed inbound webhooks and the publish API become events.

``gateway.app.create_app`` builds the aiohttp application from a
:class:`schemas.gateway_config.GatewayConfig`, a :class:`bus.abc.Broker` and a Redis
client; ``workers.cli_gateway`` runs it as ``codebus gateway``.
"""
