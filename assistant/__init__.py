"""Model catalog, pricing, providers and the LangGraph chat and agent graphs."""
