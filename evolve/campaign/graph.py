"""The campaign loop as a LangGraph StateGraph: wiring only (the steps are in nodes.py).

    START → plan → edit → launch → triage → reflect → decide ─┬─► plan   (budget left)
                                                              └─► finish → END

`plan` (to edit, or to finish when the parent fails and no remedy is left) and `decide` route with a
`Command`. The SQLite checkpointer saves the state after every node with `durability="sync"` (written
before the next node starts), so a SIGKILL loses at most the node in flight.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from evolve.campaign import nodes
from evolve.campaign.state import Campaign, RoundState

NODES_PER_ROUND = 6  # plan, edit, launch, triage, reflect, decide


def build(checkpointer: SqliteSaver) -> CompiledStateGraph:
    g = StateGraph(RoundState, context_schema=Campaign)
    g.add_node("plan", nodes.plan)
    g.add_node("edit", nodes.edit)
    g.add_node("launch", nodes.launch)
    g.add_node("triage", nodes.triage)
    g.add_node("reflect", nodes.reflect)
    g.add_node("decide", nodes.decide)
    g.add_node("finish", nodes.finish)
    g.add_edge(START, "plan")
    g.add_edge("edit", "launch")
    g.add_edge("launch", "triage")
    g.add_edge("triage", "reflect")
    g.add_edge("reflect", "decide")
    g.add_edge("finish", END)
    return g.compile(checkpointer=checkpointer)


def open_checkpointer(path: Path) -> SqliteSaver:
    # one long-lived connection; from_conn_string is a context manager that would close it
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


def recursion_limit(rounds: int) -> int:
    """LangGraph counts supersteps, not rounds: a whole campaign plus finish, with room to spare."""
    return rounds * NODES_PER_ROUND + 10
