"""The tree a campaign edits: its git repository (repo: a copied template, or a worktree on its own branch of
the user's repository, which stays untouched), hardened git (gitguard), and how a proposal's changes are
applied and checked before they land (edits).
"""
