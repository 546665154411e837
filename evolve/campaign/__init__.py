"""The campaign: the round loop and what it runs on.

spec (the typed campaign file), state (what a round carries through the graph), nodes and graph (plan → edit →
launch → triage → reflect → decide, on LangGraph with a SQLite checkpointer), budget and progress (when to stop,
what to print), preflight (what is checked before anything is created), runner (start, resume, status) and cli
(`evolve campaign ...`).
"""
