"""Payments over HTTP (routes, schemas, admin refunds, operator gauges): thin views over
orchestration.payments; gateways (top-level `payments`) only for their fact and error types."""
