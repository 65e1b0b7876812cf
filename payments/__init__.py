"""Payment gateways (Stripe, PayPal, EVM chains): verify what the outside world says and call the
providers, answering plain `PaymentFact`s. The use cases that apply them to orders and the ledger are
`orchestration/payments/`. No Flask, no Celery, nothing of orchestration."""
