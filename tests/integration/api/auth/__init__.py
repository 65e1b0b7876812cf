"""Who is calling and what they may do: tokens, OIDC, SIWE, the credential policy, the welcome grant."""
