"""The messaging runtime: brokers, topology names, subscriptions and the consumer runtime."""
