"""Payment use cases: orders, provider events, fulfilment, the Stripe/PayPal/crypto rails, reconciler, auto
top-up, refunds. Not the gateways: those are the top-level `payments` package, imported as `from
payments import ...`; import this one by full path (`orchestration.payments.x`)."""
