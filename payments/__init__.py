"""Payment gateways: Stripe, PayPal and EVM chains. They verify what the outside world says and talk
to the providers, answering plain `PaymentFact`s; the use cases in `orchestration/payment_*` apply
those to orders and the ledger. No Flask, no Celery here."""
