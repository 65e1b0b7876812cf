"""Stripe, PayPal and web3 gateways: verify what the outside world says, then call the ledger."""
