"""The crypto rail's use cases: intents, the chain scanner, settling, transfers for review; builds on
orchestration.payments (orders, units, fulfilment) and the `payments.crypto_gateway` gateway."""
