"""The web console (``codebus console``): an aiohttp app with its assets in the package.

Modules, one concern each:

- :mod:`~gateway.console.config`: who may sign in (gateway API keys, bearer tokens) and
  with which scope;
- :mod:`~gateway.console.auth`: sessions, scopes, CSRF and Origin checks;
- :mod:`~gateway.console.security`: security headers and the JSON error shape;
- :mod:`~gateway.console.sse`: the live event stream (server-sent events from a private
  tail queue);
- :mod:`~gateway.console.routes_*`: dead letters, breakers, rollouts, correlation view;
- :mod:`~gateway.console.app`: the application factory.
"""
