"""`migrate init`: bootstrap the port of a new upstream, from scan to a draft `minimal` stage.

- `draft`: edits an entry script's syntax tree (LibCST, formatting kept) so that GPU Migration
  is turned on before torch is imported and `mark_step()` runs where Habana's lazy mode needs it.
- `checklist`: what a static scan finds that GPU Migration will not cover (a human's work).
- `project`: fetches the upstream, drafts the patch, checks that it applies, writes the recipe.
"""
