"""Agent tasks as LangGraph graphs: state, nodes, tools, the Python sandbox, data statistics, checkpoint
savers; imports assistant (catalog, providers, memory) and runtime, never orchestration."""
