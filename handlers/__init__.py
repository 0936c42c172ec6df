"""The product's subscriptions, one module per event family. Each module exposes a
``router`` that a worker unit (``workers.units``) runs."""
