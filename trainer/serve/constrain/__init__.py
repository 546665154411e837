"""Constrained decoding over a character vocabulary: which next characters keep an output valid.

The in-repo model emits one character per token, so a constraint is a character-level automaton: the
decoder asks which characters may come next, masks every other token id, and asks whether the output
may end here (only then may it sample <|eos|>). Pure Python, no model code.

* ChoiceConstraint(choices) (cursor.py): the output is exactly one of the strings (a trie).
* JsonSchemaConstraint(schema) (schema.py): the output is compact JSON valid against the schema, for the
  subset of JSON Schema that structured outputs use (schema.py lists it).

Both compile to one small pushdown machine: grammar nodes (grammar.py), run by a Cursor (cursor.py) that
feeds one character at a time within a character budget.
"""

from trainer.serve.constrain.cursor import ChoiceConstraint, Constraint, Cursor
from trainer.serve.constrain.schema import JsonSchemaConstraint

__all__ = ["ChoiceConstraint", "Constraint", "Cursor", "JsonSchemaConstraint"]
